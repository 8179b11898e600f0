//! Configuration: serde structs ([`sections`]), layered loading (here), and `validate()`
//! ([`validate`]) into an immutable [`Config`]; the mapping vocabulary in `mapping`, `source`
//! and `types`.
//!
//! Layers, lowest to highest (a later layer wins): built-in defaults (the `default_*` functions
//! in `sections.rs`) < the TOML file < environment variables `KAFKA_PG_SINK__<SECTION>__<KEY>` (prefix
//! `KAFKA_PG_SINK`, separator `__`, e.g. `KAFKA_PG_SINK__POSTGRES__URL`).

mod mapping;
mod secret;
mod sections;
mod source;
mod types;
mod validate;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::ident::Ident;
pub use mapping::{
    AccumulateOp, Cdc, Column, Envelope, Format, Mapping, MappingConfig, Mode, OnError, Tombstone,
    Truncate, Window,
};
pub use secret::{is_secret_property, Secret, SecretUrl};
pub use sections::{
    BatchConfig, HttpConfig, KafkaConfig, LogConfig, OffsetReset, OutOfRange, PostgresConfig,
    RawConfig, SchemaRegistryConfig, ShutdownConfig,
};
pub use source::{path_text, ColumnSource, KafkaMeta, PathSegment};
pub use types::{parse_duration_millis, ColumnType};

/// Environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "KAFKA_PG_SINK";

/// Problems found while loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot load configuration: {0}")]
    Load(String),
    #[error("invalid configuration ({} problem(s)):\n  - {}", .0.len(), .0.join("\n  - "))]
    Invalid(Vec<String>),
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
    pub schema_registry: Option<SchemaRegistryConfig>,
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
    ("Mode", &["upsert", "insert", "accumulate", "cdc"]),
    ("Envelope", &["debezium"]),
    ("Truncate", &["delete_all", "ignore", "bad_record"]),
    (
        "Format",
        &[
            "json",
            "text",
            "bytes",
            "avro",
            "protobuf",
            "json_schema",
            "connect_json",
        ],
    ),
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

#[cfg(test)]
mod tests;
