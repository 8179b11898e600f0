//! The benchmark's parts; the run itself is wired in `kafka-pg-sink-bench.rs`.
//!
//! - [`workload`]: the records (deterministic from the seed) and the truth to verify against;
//!   [`clock`] is its small helper; the seeded [`rng`] is the test kit's.
//! - [`procs`]: child processes (always killed) and `/proc` readings (CPU, peak RSS).
//! - [`infra`]: the broker (the test kit's, mock or `KAFKA_BROKERS`) and Postgres
//!   administration.
//! - [`ceiling`]: the raw COPY + upsert path without Kafka or the connector.
//! - [`connector`]: the connector's config and process. [`produce`]: paced and fixed-rate
//!   producers (the paced backlog on the mock in raw Produce requests, the test kit's [`wire`]). [`monitor`]: committed offsets, starvation and retention checks.
//! - [`prom`] (the test kit's): `/metrics` scraping and histogram quantiles. [`mode`]: one connector mode from
//!   an empty database to verified tables; [`verify`]: its checks. [`report`]: the table and
//!   the JSON file.

pub mod ceiling;
pub mod clock;
pub mod connector;
pub mod infra;
pub mod mode;
pub mod monitor;
pub mod procs;
pub mod produce;
pub mod report;
pub mod verify;
pub mod workload;

pub use testkit::{prom, rng, wire};

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Starts the run clock (first call wins).
pub fn start_clock() {
    START.get_or_init(Instant::now);
}

/// One timeline line on stdout.
pub fn say(message: &str) {
    let secs = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    println!("[{secs:7.1}s] {message}");
}
