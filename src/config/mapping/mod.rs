//! `[[mappings]]`: what a record does to its table; `validate` turns the config into it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod validate;

use super::source::ColumnSource;
use super::ColumnType;
use crate::ident::{Ident, TableName};

pub use validate::validate;

/// What a record does to its table.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Insert or update by the key columns; in a batch, the highest offset per key wins.
    #[default]
    Upsert,
    /// Every record becomes one row, exactly once (the offset transaction is the deduplication).
    Insert,
    /// Per-column aggregates (`add`, `min`, `max`, `last`, `count`) merged into the row by key.
    Accumulate,
    /// Change events (`envelope`, Debezium's by default): creates, snapshot reads and updates
    /// upsert the row image `after`, deletes delete by key (from `before`, else the record key),
    /// tombstones delete by the record key (their delete event may have been compacted away),
    /// truncates follow `truncate`. Columns read the
    /// row image (`value.<field>`), the event's `source` block (`source.lsn`) or the whole
    /// event (`envelope.ts_ms`). Validated into an upsert mapping with [`Cdc`].
    Cdc,
}

impl Mode {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Upsert => "upsert",
            Self::Insert => "insert",
            Self::Accumulate => "accumulate",
            Self::Cdc => "cdc",
        }
    }
}

/// How the record value is read.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A JSON document; `value.<path>` reads its fields.
    #[default]
    Json,
    /// UTF-8 text; only `value` (the whole text) can be mapped.
    Text,
    /// Raw bytes; only `value` (for a bytea column) can be mapped.
    Bytes,
    /// Avro in the Confluent wire format, decoded with the writer's schema from
    /// `[schema_registry]`; fields are read as from JSON.
    Avro,
    /// Protobuf in the Confluent wire format (with its message-index list), decoded with the
    /// writer's schema from `[schema_registry]`.
    Protobuf,
    /// JSON in the Confluent wire format (JSON Schema serializers): the 5-byte header is checked
    /// and the JSON body read as `json`.
    JsonSchema,
    /// Kafka Connect's JSON converter with schemas enabled: `{"schema": …, "payload": …}`; the
    /// payload is read, Connect's logical types (Decimal, Timestamp, Date, Time) converted.
    ConnectJson,
}

impl Format {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
            Self::Bytes => "bytes",
            Self::Avro => "avro",
            Self::Protobuf => "protobuf",
            Self::JsonSchema => "json_schema",
            Self::ConnectJson => "connect_json",
        }
    }

    /// Whether payloads are read as a JSON document (`value.<path>` reads fields).
    pub fn reads_json(self) -> bool {
        !matches!(self, Self::Text | Self::Bytes)
    }

    /// Whether payloads carry a Schema Registry id (the Confluent wire format).
    pub fn uses_registry(self) -> bool {
        matches!(self, Self::Avro | Self::Protobuf | Self::JsonSchema)
    }
}

/// What a tombstone (null value) does.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Tombstone {
    /// Delete the row with the record's key (upsert mode only).
    Delete,
    /// Skip it (counted in metrics).
    Ignore,
    /// Treat it as a bad record (see `on_error`).
    BadRecord,
}

/// What happens to a record that cannot be applied.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Write it to the dead-letter table in the same transaction that advances the offset.
    #[default]
    DeadLetter,
    /// Count it and move on.
    Skip,
    /// Stop the partition (nothing after it is committed) and report not ready.
    Fail,
}

impl OnError {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::DeadLetter => "dead_letter",
            Self::Skip => "skip",
            Self::Fail => "fail",
        }
    }
}

/// Per-column aggregate of the `accumulate` mode.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AccumulateOp {
    Add,
    Min,
    Max,
    Last,
    /// Number of records; the column needs no source.
    Count,
}

/// The change-event envelope of `mode = "cdc"`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    /// Debezium's: `{"before", "after", "source", "op", "ts_ms"}` with `op` one of `c` (create),
    /// `r` (snapshot read), `u` (update), `d` (delete), `t` (truncate), `m` (message).
    #[default]
    Debezium,
}

/// What a truncate event does in `mode = "cdc"`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Truncate {
    /// Delete every row of the table where the truncate falls in the stream (in the batch's
    /// transaction; rows of later events in the batch are kept).
    DeleteAll,
    /// Skip it (counted like an ignored tombstone).
    Ignore,
    /// Treat it as a bad record (see `on_error`): the default, so that a truncate is never
    /// applied or dropped without a decision.
    #[default]
    BadRecord,
}

/// A validated `mode = "cdc"`: the mapping upserts row images and deletes by key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cdc {
    pub envelope: Envelope,
    pub truncate: Truncate,
}

/// `window = { column, source, size }`: bucket a timestamp into fixed windows.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Column that receives the window start (a timestamptz column); it becomes part of the key.
    pub column: String,
    /// Where the timestamp comes from (RFC 3339 text or epoch milliseconds), e.g. `value.ts` or
    /// `kafka.timestamp`.
    pub source: String,
    /// Window length: `500ms`, `30s`, `15m`, `1h`, `1d`.
    pub size: String,
}

/// `[[mappings]]` as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Kafka topic to read. Required. One topic may feed several mappings.
    pub topic: String,
    /// Target table, `table` or `schema.table` (default schema `public`); any name PostgreSQL
    /// takes quoted, a part holding a dot written in double quotes. It must exist.
    pub table: String,
    /// `upsert` (default), `insert` or `accumulate`.
    #[serde(default)]
    pub mode: Mode,
    /// Key columns: the ON CONFLICT target (upsert, accumulate); each must be in `columns`
    /// (or be the window column). Not used by `insert`.
    #[serde(default)]
    pub key: Vec<String>,
    /// Column name = source expression (see docs/reference.md).
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Column name = type the value is converted to explicitly before it reaches Postgres
    /// (text, smallint, integer, bigint, numeric, double, boolean, timestamptz, date, uuid, jsonb,
    /// bytea). Untyped columns are passed as text to the column's own input function.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Columns whose value must be present and non-null (key columns always are); a record
    /// missing one is a bad record. Other missing fields become NULL.
    #[serde(default)]
    pub required: Vec<String>,
    /// Column name = constant text value.
    #[serde(default)]
    pub constants: BTreeMap<String, String>,
    /// Value format: `json` (default), `text`, `bytes`, `avro`, `protobuf`, `json_schema` (the
    /// last three in the Confluent wire format, with `[schema_registry]`), or `connect_json`.
    #[serde(default)]
    pub format: Format,
    /// Key format, same values as `format`. Default: `key` is the key's UTF-8 text and
    /// `key.<path>` reads a JSON key. With a format, `key` is the decoded key (a string key
    /// unquoted, a record as JSON) and `key.<path>` reads its fields.
    pub key_format: Option<Format>,
    /// Upsert only: update a row only when this column's incoming value is greater than the
    /// stored one, so late records never overwrite newer state.
    pub only_if_newer: Option<String>,
    /// What a tombstone does: `delete` (default for upsert when the key does not come from the
    /// value), `ignore`, or `bad_record` (the default otherwise).
    pub tombstone: Option<Tombstone>,
    /// Bad records: `dead_letter` (default), `skip` or `fail`.
    #[serde(default)]
    pub on_error: OnError,
    /// Accumulate only: column name = `add` | `min` | `max` | `last` | `count`, for every non-key column.
    #[serde(default)]
    pub accumulate: BTreeMap<String, AccumulateOp>,
    /// Accumulate only: bucket a timestamp into fixed windows; the window start is part of the key.
    pub window: Option<WindowConfig>,
    /// CDC only: the change-event envelope; `debezium` (default).
    pub envelope: Option<Envelope>,
    /// CDC only: what a truncate event does: `delete_all`, `ignore` or `bad_record` (default).
    pub truncate: Option<Truncate>,
}

/// One target column.
#[derive(Clone, Debug)]
pub struct Column {
    pub name: Ident,
    pub source: ColumnSource,
    /// Explicit conversion; `None` passes text to the column's input function.
    pub ty: Option<ColumnType>,
    /// Missing or null makes the record bad.
    pub required: bool,
    /// Accumulate mode: how the column merges.
    pub op: Option<AccumulateOp>,
}

/// A validated window.
#[derive(Clone, Debug)]
pub struct Window {
    pub source: ColumnSource,
    pub size_ms: i64,
}

/// A validated mapping, ready for SQL generation and decoding.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub topic: String,
    pub table: TableName,
    pub mode: Mode,
    /// Key columns, in the order given (the window column last, when there is one).
    pub key: Vec<Ident>,
    /// All columns, ordered by name (keys and the window column included).
    pub columns: Vec<Column>,
    pub format: Format,
    /// `None`: the key is text, or JSON where `key.<path>` reads it.
    pub key_format: Option<Format>,
    pub only_if_newer: Option<Ident>,
    pub tombstone: Tombstone,
    pub on_error: OnError,
    pub window: Option<Window>,
    /// `mode = "cdc"`, validated into `mode = upsert` with this.
    pub cdc: Option<Cdc>,
}

impl Mapping {
    pub fn column(&self, name: &Ident) -> Option<&Column> {
        self.columns.iter().find(|c| &c.name == name)
    }

    /// Key columns with their definitions, ordered by name like every column list the connector
    /// writes (COPY lines and stage tables use this order).
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| self.key.contains(&c.name))
    }
}
