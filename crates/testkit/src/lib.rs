//! What kafka-pg-sink's integration tests and developer tools share. It knows the connector only
//! from the outside (its binary, its config file, its tables and its `/metrics`), so it does not
//! depend on the product crate.
//!
//! # Layout
//! - [`broker`]: the one Kafka-protocol broker handle: `KAFKA_BROKERS`, or librdkafka's mock
//!   cluster hosted in its own process ([`broker::host`]) and steered over its stdin; topics,
//!   watermarks, reading the log back, committing group offsets.
//! - [`skip`]: tests that need the mock broker's fault injection, skipped (and counted) on a
//!   real cluster.
//! - [`db`]: a database per test on the server of `DATABASE_URL`, dropped even when the test
//!   fails. [`pg_server`]: a private Postgres cluster to crash and restart.
//! - [`producer`]: a librdkafka producer that checks every delivery, and a paced stream.
//!   [`wire`]: raw Produce requests (fast backlogs and deliberately damaged batches).
//! - [`connector`]: the connector binary as a process: config file, start, kill -9, signals,
//!   HTTP. [`prom`]: `/metrics` scraping, sums and histogram quantiles.
//! - [`scenario`]: the set-up every end-to-end test repeats (database, DDL, topic, group).
//! - [`bins`]: finding the workspace's binaries. [`process`]: children that die with their
//!   parent. [`rng`]: the one seeded random generator.
//! - [`registry`]: the one Schema Registry handle: `SCHEMA_REGISTRY_URL`, or the test kit's own
//!   Confluent-compatible server in-process ([`registry::store`] what it remembers,
//!   [`registry::api`] the REST routes, [`registry::gate`] credentials, outages and request
//!   counts, [`registry::server`] its thread and listener, [`registry::client`] a blocking
//!   client for the REST API, [`registry::proto_text`] Protobuf descriptors stored as `.proto`
//!   text as Confluent stores them, read by [`registry::descriptor`], [`registry::base64`]).
//! - [`pyserde`]: Confluent's own Python serializers (Avro, Protobuf, JSON Schema) in a child
//!   process, an encoder independent of the connector's decoder
//!   (`crates/testkit/python/kps_serde.py`, its venv from `scripts/ensure-python-serde.sh`).
//! - [`fixtures`]: the payments table, mapping and records most tests use. [`debezium`]: a
//!   source table whose changes are rendered as Debezium's PostgreSQL connector writes them.
//! - [`names`]: unique names, free ports, temporary files, polling until true.
//! - [`prelude`]: what a test imports.

pub mod bins;
pub mod broker;
pub mod connector;
pub mod db;
pub mod debezium;
pub mod fixtures;
pub mod names;
pub mod pg_server;
pub mod prelude;
pub mod process;
pub mod producer;
pub mod prom;
pub mod pyserde;
pub mod registry;
pub mod rng;
pub mod scenario;
pub mod skip;
pub mod wire;
