//! `validate()`: every problem of a configuration at once, each with its key path, or the
//! immutable [`Config`].

use std::net::SocketAddr;

use super::{mapping, Config, ConfigError, Format, Mapping, RawConfig, SchemaRegistryConfig};
use crate::ident::Ident;

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
        check_formats(&mappings, self.schema_registry.as_ref(), &mut problems);
        match (schema, listen) {
            (Some(schema), Some(listen)) if problems.is_empty() => Ok(Config {
                kafka: self.kafka,
                postgres: self.postgres,
                batch: self.batch,
                http: self.http,
                shutdown: self.shutdown,
                log: self.log,
                schema_registry: self.schema_registry,
                resolved,
                schema,
                listen,
                mappings,
            }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }
}

/// Registry formats need `[schema_registry]`, and the mappings of one topic read its payloads in
/// one way (a batch is rendered once for all of them).
fn check_formats(
    mappings: &[Mapping],
    registry: Option<&SchemaRegistryConfig>,
    problems: &mut Vec<String>,
) {
    let rendered = |f: Format| !matches!(f, Format::Json | Format::Text | Format::Bytes);
    for (i, a) in mappings.iter().enumerate() {
        let formats = [Some(a.format), a.key_format];
        if registry.is_none() && formats.iter().flatten().any(|f| f.uses_registry()) {
            problems.push(format!(
                "mappings[{i}] (topic `{}`): format {} needs a [schema_registry] section with its url",
                a.topic,
                formats.iter().flatten().find(|f| f.uses_registry()).map_or("", |f| f.name())
            ));
        }
        let Some(b) = mappings[..i].iter().find(|b| b.topic == a.topic) else {
            continue;
        };
        let differs = (a.format != b.format && (rendered(a.format) || rendered(b.format)))
            || (a.key_format != b.key_format
                && [a.key_format, b.key_format]
                    .into_iter()
                    .flatten()
                    .any(rendered));
        if differs {
            problems.push(format!(
                "mappings[{i}]: topic `{}` is read as format {} / key_format {} by another mapping; \
                 the mappings of one topic must agree on avro, protobuf, json_schema and connect_json formats",
                a.topic,
                b.format.name(),
                b.key_format.map_or("(text)", Format::name)
            ));
        }
    }
    if let Some(r) = registry {
        let urls: Vec<&str> = r.url.expose().split(',').map(str::trim).collect();
        for url in &urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!(
                    "schema_registry.url: `{}` must start with http:// or https://",
                    crate::config::SecretUrl::from(*url).redacted()
                ));
            }
        }
        if r.bearer_token.is_some() && (r.username.is_some() || r.password.is_some()) {
            problems.push(
                "schema_registry: set either bearer_token or username/password, not both".into(),
            );
        }
        if r.password.is_some() != r.username.is_some() {
            problems.push("schema_registry: username and password go together".into());
        }
        if r.client_cert_file.is_some() != r.client_key_file.is_some() {
            problems
                .push("schema_registry: client_cert_file and client_key_file go together".into());
        }
        if r.cache_capacity == 0 {
            problems.push("schema_registry.cache_capacity: must be at least 1".into());
        }
        if r.timeout_ms == 0 || r.connect_timeout_ms == 0 {
            problems.push("schema_registry: timeouts must be at least 1 ms".into());
        }
    }
}
