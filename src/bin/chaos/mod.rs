//! The chaos runner's parts; the run itself is wired in `kafka-pg-sink-chaos.rs`.
//!
//! - [`rng`]: seeded PRNG. [`workload`]: events, producer, ground truth.
//! - [`pg`]: a private Postgres cluster. [`broker`]: the mock broker process (through
//!   [`mock_broker`], shared with the benchmark).
//! - [`replicas`], [`fleet`]: connector processes. [`faults`]: what is injected and undone.
//! - [`monitor`]: stored offsets never move backwards. [`catchup`]: log and settling. [`verify`], [`scrape`]: the checks.
//! - [`report`]: the summary table.

pub mod broker;
pub mod catchup;
pub mod faults;
pub mod fleet;
#[path = "../shared/mock_broker.rs"]
pub mod mock_broker;
pub mod monitor;
#[path = "../shared/pg_server.rs"]
pub mod pg;
pub mod replicas;
pub mod report;
#[path = "../shared/rng.rs"]
pub mod rng;
pub mod scrape;
pub mod verify;
pub mod workload;

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Seconds since the run started.
pub fn elapsed() -> f64 {
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// One timeline line on stdout.
pub fn say(message: &str) {
    println!("[{:7.1}s] {message}", elapsed());
}
