//! The chaos runner's parts; the run itself is wired in `kafka-pg-sink-chaos.rs`.
//!
//! - [`workload`]: events, producer, ground truth. The seeded generator, the private Postgres
//!   cluster and the broker (mock host process or `KAFKA_BROKERS`) are the test kit's.
//! - [`replicas`], [`fleet`]: connector processes. [`faults`]: what is injected and undone.
//! - [`monitor`]: stored offsets never move backwards. [`catchup`]: log and settling. [`verify`], [`scrape`]: the checks.
//! - [`report`]: the summary table.

pub mod catchup;
pub mod faults;
pub mod fleet;
pub mod monitor;
pub mod replicas;
pub mod report;
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
