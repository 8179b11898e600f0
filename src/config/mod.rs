//! Configuration: serde structs, layered loading, and `validate()` into an immutable [`Config`].
//!
//! Layers, lowest to highest (a later layer wins): built-in defaults (the `default_*` functions
//! below) < the TOML file < environment variables `KAFKA_PG_SINK__<SECTION>__<KEY>` (prefix
//! `KAFKA_PG_SINK`, separator `__`, e.g. `KAFKA_PG_SINK__POSTGRES__URL`).

mod mapping;
mod secret;
mod source;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ident::Ident;
pub use mapping::{
    AccumulateOp, Column, Format, Mapping, MappingConfig, Mode, OnError, Tombstone, Window,
};
pub use secret::{is_secret_property, SecretUrl};
pub use source::{ColumnSource, KafkaMeta, PathSegment};
pub use types::{parse_duration_millis, ColumnType};

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "KAFKA_PG_SINK";

/// librdkafka properties the connector sets itself, and why: letting a user change them would
/// break the exactly-once contract (offsets live in Postgres, aborted transactions are never
/// applied, corrupt batches stop their partition) or the resume logic.
const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("group.instance.id", "derived from kafka.group_instance_id"),
    ("bootstrap.servers", "use kafka.brokers"),
    ("metadata.broker.list", "use kafka.brokers"),
    ("group.id", "use kafka.group_id"),
    (
        "enable.auto.commit",
        "offsets are committed in Postgres with the rows",
    ),
    (
        "enable.auto.offset.store",
        "offsets are committed in Postgres with the rows",
    ),
    (
        "auto.offset.reset",
        "use kafka.auto_offset_reset and kafka.offset_out_of_range",
    ),
    (
        "enable.partition.eof",
        "the poll loop does not expect end-of-partition events",
    ),
    (
        "isolation.level",
        "always read_committed: read_uncommitted would apply records of aborted transactions",
    ),
    (
        "check.crcs",
        "always true: a corrupt record batch must stop its partition, not be applied",
    ),
];

/// Problems found while loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration: {0}")]
    Load(String),
    #[error("invalid configuration ({} problem(s)):\n  - {}", .0.len(), .0.join("\n  - "))]
    Invalid(Vec<String>),
}

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

/// The validated, immutable configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub postgres: PostgresConfig,
    pub batch: BatchConfig,
    pub http: HttpConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    /// The whole configuration as resolved (defaults, file, environment), for `check-config`.
    pub resolved: RawConfig,
    /// Parsed `postgres.schema`.
    pub schema: Ident,
    /// Parsed `http.listen`.
    pub listen: SocketAddr,
    pub mappings: Vec<Mapping>,
}

/// Allowed values of every enum in the configuration, by the enum's name as the `config` crate
/// reports it (a test checks each value parses).
const ENUM_VALUES: &[(&str, &[&str])] = &[
    ("Mode", &["upsert", "insert", "accumulate"]),
    ("Format", &["json", "text", "bytes"]),
    ("Tombstone", &["delete", "ignore", "bad_record"]),
    ("OnError", &["dead_letter", "skip", "fail"]),
    ("AccumulateOp", &["add", "min", "max", "last", "count"]),
    ("OutOfRange", &["fail", "earliest", "latest"]),
    ("OffsetReset", &["earliest", "latest"]),
];

/// Rewrites the `config` crate's message for an unknown enum value ("enum Mode does not have
/// variant constructor upserrt for key `mappings[0]mode`") into one that says where, what, and
/// which values are allowed; other messages pass unchanged.
fn explain(message: &str) -> String {
    let parsed = message
        .strip_prefix("enum ")
        .and_then(|rest| rest.split_once(" does not have variant constructor "))
        .and_then(|(name, rest)| {
            let (value, key) = rest.split_once(" for key `")?;
            Some((name, value, key.strip_suffix('`')?))
        });
    let Some((name, value, key)) = parsed else {
        return message.to_owned();
    };
    // `mappings[0]mode` -> `mappings[0].mode`: a dot after `]` where a name follows.
    let mut dotted = String::with_capacity(key.len() + 4);
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        dotted.push(c);
        if c == ']' && chars.peek().is_some_and(|n| !matches!(n, '[' | '.')) {
            dotted.push('.');
        }
    }
    let key = dotted;
    match ENUM_VALUES.iter().find(|(n, _)| *n == name) {
        Some((_, allowed)) => format!(
            "{key}: unknown value `{value}`; allowed values: {}",
            allowed.join(", ")
        ),
        None => format!("{key}: unknown value `{value}`"),
    }
}

impl Config {
    /// The resolved configuration as TOML (defaults filled in, environment overrides applied,
    /// secrets as `***`), as `check-config` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.resolved)
            .unwrap_or_else(|e| format!("# cannot print the configuration as TOML: {e}\n"))
    }

    /// What a person reads at start-up: one line for the connector and one per mapping (topic →
    /// table, mode, key, format, bad-record policy), the Postgres password redacted. The whole
    /// resolved configuration is logged at debug level and printed by `check-config`.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "kafka-pg-sink {}: brokers {}, group {}, postgres {}, {} writer(s)",
            env!("CARGO_PKG_VERSION"),
            self.kafka.brokers,
            self.kafka.group_id,
            self.postgres.url,
            self.postgres.writers
        )];
        for m in &self.mappings {
            let key = match m.key.is_empty() {
                true => String::new(),
                false => {
                    let names: Vec<String> = m.key.iter().map(ToString::to_string).collect();
                    format!(", key ({})", names.join(", "))
                }
            };
            lines.push(format!(
                "mapping {} -> {}: {}{key}, format {}, on_error {}",
                m.topic,
                m.table,
                m.mode.name(),
                m.format.name(),
                m.on_error.name()
            ));
        }
        lines
    }

    /// Loads `path` under the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, std::env::vars().collect())
    }

    /// Loads `path` under the given environment (tests pass their own).
    pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env));
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(env)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::Load(explain(&e.to_string())))?;
        raw.validate()
    }

    /// Parses TOML text without environment overrides.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| ConfigError::Load(explain(&e.to_string())))?;
        raw.validate()
    }

    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.batch.max_wait_ms)
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown.drain_timeout_ms)
    }

    /// The `group.instance.id` to use, if static membership is configured.
    pub fn group_instance_id(&self) -> Option<String> {
        let id = self.kafka.group_instance_id.as_deref()?;
        if id != "auto" {
            return Some(id.to_owned());
        }
        ["POD_NAME", "HOSTNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|s| s.trim().to_owned())
            })
    }

    /// The distinct topics to subscribe to.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.mappings.iter().map(|m| m.topic.clone()).collect();
        topics.sort();
        topics.dedup();
        topics
    }
}

impl RawConfig {
    /// Checks everything and reports every problem at once, each with its key path.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let resolved = self.clone();
        let mut problems = Vec::new();
        let mut check = |ok: bool, msg: String| {
            if !ok {
                problems.push(msg);
            }
        };
        check(
            !self.kafka.brokers.trim().is_empty(),
            "kafka.brokers: must not be empty".into(),
        );
        check(
            !self.kafka.group_id.trim().is_empty(),
            "kafka.group_id: must not be empty".into(),
        );
        for name in self.kafka.properties.keys() {
            if let Some((_, why)) = OWNED_PROPERTIES.iter().find(|(owned, _)| owned == name) {
                check(
                    false,
                    format!("kafka.properties.\"{name}\": set by the connector itself and cannot be overridden ({why})"),
                );
            }
        }
        let url = self.postgres.url.expose();
        check(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "postgres.url: must start with postgres:// or postgresql://".into(),
        );
        check(
            self.postgres.pool_size > 0,
            "postgres.pool_size: must be at least 1".into(),
        );
        check(
            self.postgres.writers > 0,
            "postgres.writers: must be at least 1".into(),
        );
        check(
            self.batch.max_records > 0,
            "batch.max_records: must be at least 1".into(),
        );
        check(
            self.batch.max_bytes > 0,
            "batch.max_bytes: must be at least 1".into(),
        );
        check(
            self.batch.max_wait_ms > 0,
            "batch.max_wait_ms: must be at least 1".into(),
        );
        check(
            self.batch.max_buffered_records >= self.batch.max_records,
            "batch.max_buffered_records: must be at least batch.max_records".into(),
        );
        check(
            self.batch.max_buffered_bytes >= self.batch.max_bytes,
            "batch.max_buffered_bytes: must be at least batch.max_bytes".into(),
        );
        let schema = Ident::parse(&self.postgres.schema)
            .map_err(|e| problems.push(format!("postgres.schema: {e}")))
            .ok();
        let listen = self
            .http
            .listen
            .parse::<SocketAddr>()
            .map_err(|_| {
                problems.push(format!(
                    "http.listen: `{}` is not an address like 127.0.0.1:8080",
                    self.http.listen
                ))
            })
            .ok();
        if self.mappings.is_empty() {
            problems.push("mappings: at least one [[mappings]] entry is required".into());
        }
        let mut mappings = Vec::new();
        for (i, m) in self.mappings.iter().enumerate() {
            if let Some(mapping) = mapping::validate(&format!("mappings[{i}]"), m, &mut problems) {
                mappings.push(mapping);
            }
        }
        for (i, a) in mappings.iter().enumerate() {
            if mappings[..i]
                .iter()
                .any(|b| b.topic == a.topic && b.table == a.table)
            {
                problems.push(format!(
                    "mappings: topic `{}` is mapped to table `{}` twice",
                    a.topic, a.table
                ));
            }
        }
        match (schema, listen) {
            (Some(schema), Some(listen)) if problems.is_empty() => Ok(Config {
                kafka: self.kafka,
                postgres: self.postgres,
                batch: self.batch,
                http: self.http,
                shutdown: self.shutdown,
                log: self.log,
                resolved,
                schema,
                listen,
                mappings,
            }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }
}

#[cfg(test)]
mod tests;
