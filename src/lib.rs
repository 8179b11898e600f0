//! kafka-pg-sink: Kafka topics into PostgreSQL tables with exactly-once effect.
//!
//! Each batch of one partition's records is written in one Postgres transaction together with
//! the partition's next offset, as a compare-and-set on the offset it started from. On start and
//! on every rebalance, partitions resume from the offsets stored in Postgres.
//!
//! # Layout
//! Data flows Kafka → [`record`] → `decode` → COPY rows ([`sink::encode`]) → one transaction
//! ([`sink`]), driven by the `pipeline`; imports follow the same direction.
//!
//! - [`config`]: TOML + environment → validated, immutable [`config::Config`]; the mapping
//!   vocabulary (column types, durations).
//! - [`ident`]: SQL identifiers, validated and always quoted.
//! - [`error`]: the error type, the one function that classifies errors, the one backoff.
//! - [`record`]: the owned [`record::Record`] and [`record::TopicPartition`] every stage shares.
//! - [`metrics`]: the Prometheus metrics, in a registry of their own. `health`: readiness and
//!   liveness state. `http`: `/metrics`, `/healthz`, `/readyz`. `progress`: the periodic
//!   one-line summary in the log.
//! - `kafka`: consumer construction, rebalance handling from stored offsets (read through
//!   `kafka::StoredOffsets`, which `app` wires to the sink's offset store), the poll thread.
//! - [`decode`]: payload → row values: the strict JSON scan, fields along mapped paths, key map,
//!   explicit type conversions (`decode::convert`); Avro, Protobuf, JSON Schema and Kafka Connect
//!   JSON rendered as exact JSON first ([`decode::formats`]).
//! - [`registry`]: the Schema Registry client that fetches a batch's schemas before it is
//!   decoded, waiting out outages.
//! - [`sink`]: records → COPY rows in text or binary ([`sink::encode`]), SQL per mapping, the
//!   batch writer (one transaction per batch), the offset store, dead letters, migrations, the
//!   start-up database check.
//! - `pipeline`: the pure per-partition batcher and the run loop that feeds the writers.
//! - [`app`]: wiring (pool, migrations, metrics, writers, poll thread, pipeline) under one
//!   cancellation token, and the orderly drain. [`shutdown`]: stop signals.
//! - [`ops`]: operator commands at the edge: check, dead letters, offsets, migrate, ddl.
//!
//! # Import graph
//! A module imports only modules listed before it (`grep -rn "use crate::" src`):
//! ```text
//! error, ident, record            (base)
//! config     → error, ident
//! metrics    → record;   health;   http, progress → health, metrics
//! decode     → config, error, record
//! kafka      → config, error, health, metrics, record
//! registry   → config, decode, error, health, metrics, record
//! sink       → config, decode, error, ident, metrics, record, registry
//! pipeline   → error, health, kafka, metrics, record, sink
//! app        → config, error, health, http, kafka, metrics, pipeline, progress, record,
//!              registry, sink
//! ops        → app, config, decode, error, ident, record, registry, sink
//! ```
//! Modules not needed by `main`, the integration tests or the benchmarks are private.

pub mod app;
pub mod config;
pub mod decode;
pub mod error;
mod health;
mod http;
pub mod ident;
mod kafka;
pub mod metrics;
pub mod ops;
mod pipeline;
mod progress;
pub mod record;
pub mod registry;
pub mod shutdown;
pub mod sink;
