//! kafka-pg-sink: Kafka topics into PostgreSQL tables with exactly-once effect.
//!
//! Each batch of one partition's records is written in one Postgres transaction together with
//! the partition's next offset, as a compare-and-set on the offset it started from. On start and
//! on every rebalance, partitions resume from the offsets stored in Postgres.
//!
//! # Layout
//! - [`config`]: TOML + environment → validated, immutable [`config::Config`].
//! - [`ident`]: SQL identifiers, validated and always quoted.
//! - [`error`]: the error type and the one function that classifies errors.
//! - [`kafka`]: consumer, rebalance handling from stored offsets, the poll thread, [`kafka::Record`].
//! - [`pipeline`]: pure batcher, decoder (records → rows), the run loop.
//! - [`sink`]: SQL per mapping, batch writer (one transaction per batch), offset store, migrations.
//! - [`metrics`], [`health`], [`http`]: Prometheus metrics and `/metrics`, `/healthz`, `/readyz`.
//! - [`progress`]: the periodic one-line progress summary in the log.
//! - [`shutdown`]: stop signals. [`app`]: wiring and orderly drain.

pub mod app;
pub mod config;
pub mod decode;
pub mod error;
pub mod health;
pub mod http;
pub mod ident;
pub mod kafka;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod progress;
pub mod record;
pub mod shutdown;
pub mod sink;

/// The old path of `decode::convert`, for the developer tools in `src/bin` until they move to
/// their own crate and import the new path.
#[doc(hidden)]
pub use decode::convert;
