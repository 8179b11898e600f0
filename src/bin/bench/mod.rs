//! The benchmark's parts; the run itself is wired in `kafka-pg-sink-bench.rs`.
//!
//! - [`workload`]: the records (deterministic from the seed) and the truth to verify against;
//!   [`rng`] and [`clock`] are its small helpers.
//! - [`procs`]: child processes (always killed) and `/proc` readings (CPU, peak RSS).
//! - [`infra`]: the broker (mock or `KAFKA_BROKERS`, through [`mock_broker`]) and Postgres
//!   administration.
//! - [`ceiling`]: the raw COPY + upsert path without Kafka or the connector.
//! - [`connector`]: the connector's config and process. [`produce`]: paced and fixed-rate
//!   producers; [`wire`]: raw Produce requests for the paced backlog on the mock. [`monitor`]: committed offsets, starvation and retention checks.
//! - [`prom`]: `/metrics` scraping and histogram quantiles. [`mode`]: one connector mode from
//!   an empty database to verified tables; [`verify`]: its checks. [`report`]: the table and
//!   the JSON file.

pub mod ceiling;
pub mod clock;
pub mod connector;
pub mod infra;
#[path = "../shared/mock_broker.rs"]
pub mod mock_broker;
pub mod mode;
pub mod monitor;
pub mod procs;
pub mod produce;
pub mod prom;
pub mod report;
#[path = "../shared/rng.rs"]
pub mod rng;
pub mod verify;
pub mod wire;
pub mod workload;

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
