//! The configuration file's sections as serde structs: every key with its unit and default,
//! unknown keys refused. Values are checked later, all at once, by `validate`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{is_secret_property, MappingConfig, Secret, SecretUrl};

/// The whole file, as written by the user.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Needed by mappings whose `format` or `key_format` is `avro`, `protobuf` or `json_schema`.
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistryConfig>,
    #[serde(default)]
    pub mappings: Vec<MappingConfig>,
}

/// `[kafka]`: the consumer.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port`. Required.
    pub brokers: String,
    /// Consumer group id; replicas with the same id share the partitions, and stored offsets are
    /// keyed by it. Default `kafka-pg-sink`.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Where a partition with no offset stored in Postgres starts: `earliest` or `latest`.
    /// Default `earliest`.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// After each database commit, also commit the same offsets to Kafka (asynchronously) so that
    /// lag tools keep working. They are never used to resume. Default `true`.
    #[serde(default = "default_true")]
    pub commit_to_kafka: bool,
    /// A stored offset outside the partition's log (retention deleted the data, or the topic was
    /// deleted and recreated): `fail` (default), `earliest` or `latest`. Never skipped silently.
    #[serde(default)]
    pub offset_out_of_range: OutOfRange,
    /// Static group membership: `group.instance.id` for this replica, so a restarted replica gets
    /// its partitions back at once instead of after the session timeout. Must be unique per
    /// replica; `"auto"` uses the `POD_NAME` or `HOSTNAME` variable, else the host name.
    /// Default none (dynamic membership).
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// Extra librdkafka properties (TLS, SASL, timeouts), e.g. `"security.protocol" = "SASL_SSL"`.
    /// Properties the connector owns (`enable.auto.commit`, `group.id`, ...) are refused.
    /// Values of credential properties are redacted when printed. Default empty.
    #[serde(default, serialize_with = "redact_properties")]
    pub properties: BTreeMap<String, String>,
}

/// What to do when a stored offset is outside the partition's log.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutOfRange {
    /// Stop the connector with an error naming the partition (nothing is skipped).
    #[default]
    Fail,
    /// Continue from the log start, with a warning and a metric.
    Earliest,
    /// Continue from the log end, with a warning and a metric.
    Latest,
}

/// Start position for partitions without a stored offset.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    #[default]
    Earliest,
    Latest,
}

/// `[postgres]`: the database.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL, e.g. `postgres://user:pass@host:5432/db`. The password is redacted in
    /// logs. Required.
    pub url: SecretUrl,
    /// Connections for offset reads, health checks and tooling (writers have their own).
    /// Default 2.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Writer connections: batches of different partitions are written concurrently, one
    /// partition never has two batches in flight. Default 2 (one per core is a good start).
    #[serde(default = "default_writers")]
    pub writers: usize,
    /// Schema of the connector's own tables (offsets). Created if missing. Default `kafka_pg_sink`.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// `false` sets `synchronous_commit = off` on the writer connections: commits return before
    /// the WAL is flushed. A Postgres crash may then lose the last commits, but rows and offsets
    /// are lost together, so the connector re-applies them and the effect stays exactly-once.
    /// Default `true`.
    #[serde(default = "default_true")]
    pub synchronous_commit: bool,
    /// Send rows in PostgreSQL's binary COPY format for mappings whose columns are all of types
    /// it covers (smallint, integer, bigint, numeric, text, varchar, json, jsonb, boolean,
    /// timestamptz, uuid): the server then parses no number, timestamp or uuid text. A batch
    /// holding a value that binary cannot carry exactly as its text would be read goes as COPY
    /// text instead.
    /// `false` always sends text. Default `true`.
    #[serde(default = "default_true")]
    pub binary_copy: bool,
}

/// `[batch]`: when a partition's buffer is written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Flush a partition when it holds this many records. Default 10000.
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    /// Flush a partition when its keys and values reach this many bytes. Default 8388608 (8 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// A partition is due when its oldest buffered record has waited this long, in milliseconds,
    /// and is written as soon as a writer has room: the latency floor at low rates (under load,
    /// batches grow while the writers are busy and fill first). Default 100.
    #[serde(default = "default_max_wait_ms")]
    pub max_wait_ms: u64,
    /// Stop taking records from Kafka while this many records are buffered in total (all
    /// partitions), which bounds memory. Default 50000.
    #[serde(default = "default_max_buffered_records")]
    pub max_buffered_records: usize,
    /// The same limit in bytes of keys, values and headers, for large records. Default 33554432
    /// (32 MiB).
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
}

/// `[http]`: metrics and health endpoints.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address for `/metrics`, `/healthz`, `/readyz`. Default `127.0.0.1:8080`; use
    /// `0.0.0.0:8080` in a container.
    #[serde(default = "default_listen")]
    pub listen: String,
}

/// `[shutdown]`: behaviour on SIGTERM/SIGINT.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long buffered records may take to flush and commit after a stop signal, in
    /// milliseconds; what is not committed by then is re-read on the next start. Default 30000.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

/// `[schema_registry]`: where the writers' schemas of `avro`, `protobuf` and `json_schema`
/// payloads are fetched (the Confluent Schema Registry REST API). Schemas are fetched by id once
/// and kept. An unreachable registry, a timeout, or a 5xx/429 answer is retried with backoff
/// while readiness is down; an answer that says the configuration is wrong (401, 403, a 404 that
/// is not "schema not found") stops the connector, so a wrong URL or credential never turns a
/// healthy stream into dead letters.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL(s), comma-separated (`https://registry-1:8081,https://registry-2:8081`); a
    /// request that fails to connect goes to the next. Required. Credentials in the URL
    /// (`https://user:pass@host`) are taken as basic auth and redacted when printed.
    pub url: SecretUrl,
    /// Basic auth user (Confluent Cloud: the API key). Default none.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password (Confluent Cloud: the API secret). Printed as `***`. Default none.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Bearer token sent as `Authorization: Bearer …` (instead of basic auth). Printed as `***`.
    /// Default none.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// PEM file of CA certificates to trust for an `https` registry, in addition to the system's.
    /// Default none.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// PEM client certificate for mutual TLS (with `client_key_file`). Default none.
    #[serde(default)]
    pub client_cert_file: Option<String>,
    /// PEM private key (PKCS #8) of `client_cert_file`. Default none.
    #[serde(default)]
    pub client_key_file: Option<String>,
    /// Connect timeout per request, in milliseconds. Default 5000.
    #[serde(default = "default_registry_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Whole-request timeout, in milliseconds; a timeout is retried like an outage. Default 10000.
    #[serde(default = "default_registry_timeout_ms")]
    pub timeout_ms: u64,
    /// Schemas kept in memory (each id is fetched once while it stays cached; the least recently
    /// fetched go first). Default 1000.
    #[serde(default = "default_registry_cache_capacity")]
    pub cache_capacity: usize,
}

fn default_registry_connect_timeout_ms() -> u64 {
    5_000
}

fn default_registry_timeout_ms() -> u64 {
    10_000
}

fn default_registry_cache_capacity() -> usize {
    1_000
}

/// `[log]`: what the connector tells a person while it runs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Interval of the one-line progress summary at info level (records/s, total lag, dead
    /// letters, stopped and stalled partitions), in milliseconds; 0 turns it off. Default 30000.
    #[serde(default = "default_progress_interval_ms")]
    pub progress_interval_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            progress_interval_ms: default_progress_interval_ms(),
        }
    }
}

fn default_progress_interval_ms() -> u64 {
    30_000
}

/// `kafka.properties` printed back with credential values as `***`.
fn redact_properties<S: serde::Serializer>(
    properties: &BTreeMap<String, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(properties.iter().map(|(k, v)| {
        let v = if is_secret_property(k) {
            "***"
        } else {
            v.as_str()
        };
        (k, v)
    }))
}

fn default_group_id() -> String {
    "kafka-pg-sink".into()
}
fn default_true() -> bool {
    true
}
fn default_pool_size() -> u32 {
    2
}
fn default_writers() -> usize {
    2
}
fn default_schema() -> String {
    "kafka_pg_sink".into()
}
fn default_max_records() -> usize {
    10_000
}
fn default_max_bytes() -> usize {
    8 * 1024 * 1024
}
fn default_max_wait_ms() -> u64 {
    100
}
fn default_max_buffered_records() -> usize {
    50_000
}
fn default_max_buffered_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_drain_timeout_ms() -> u64 {
    30_000
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            max_wait_ms: default_max_wait_ms(),
            max_buffered_records: default_max_buffered_records(),
            max_buffered_bytes: default_max_buffered_bytes(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: default_drain_timeout_ms(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_property(k) {
                        "***"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("offset_out_of_range", &self.offset_out_of_range)
            .field("commit_to_kafka", &self.commit_to_kafka)
            .field("group_instance_id", &self.group_instance_id)
            .field("properties", &properties)
            .finish()
    }
}
