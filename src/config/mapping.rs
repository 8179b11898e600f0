//! `[[mappings]]`: what a record does to its table, and its validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::source::ColumnSource;
use super::{parse_duration_millis, ColumnType};
use crate::ident::{Ident, TableName};

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
}

impl Mode {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Upsert => "upsert",
            Self::Insert => "insert",
            Self::Accumulate => "accumulate",
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
}

impl Format {
    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Text => "text",
            Self::Bytes => "bytes",
        }
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
    /// Payload format: `json` (default), `text`, `bytes`.
    #[serde(default)]
    pub format: Format,
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
    pub only_if_newer: Option<Ident>,
    pub tombstone: Tombstone,
    pub on_error: OnError,
    pub window: Option<Window>,
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

/// Validates one mapping, pushing every problem with its key path.
pub fn validate(path: &str, m: &MappingConfig, problems: &mut Vec<String>) -> Option<Mapping> {
    let before = problems.len();
    let mut problem = |msg: String| problems.push(format!("{path}.{msg}"));
    if m.topic.trim().is_empty() {
        problem("topic: must not be empty".into());
    }
    let table = TableName::parse(&m.table)
        .map_err(|e| problem(format!("table: {e}")))
        .ok();
    let mut columns = Vec::new();
    for (name, expr) in &m.columns {
        let ident = Ident::parse(name).map_err(|e| problem(format!("columns.{name}: {e}")));
        let source = ColumnSource::parse(expr).map_err(|e| problem(format!("columns.{name}: {e}")));
        if let (Ok(name), Ok(source)) = (ident, source) {
            if m.format != Format::Json
                && source.is_json_path()
                && matches!(source, ColumnSource::Value(_))
            {
                problem(format!(
                    "columns.{name}: format {:?} has no fields; map the whole `value`",
                    m.format
                ));
            }
            columns.push(Column {
                name,
                source,
                ty: None,
                required: false,
                op: None,
            });
        }
    }
    for (name, value) in &m.constants {
        match Ident::parse(name) {
            Ok(_) if m.columns.contains_key(name) => {
                problem(format!("constants.{name}: also listed in columns"))
            }
            Ok(ident) => columns.push(Column {
                name: ident,
                source: ColumnSource::Constant(value.clone()),
                ty: None,
                required: false,
                op: None,
            }),
            Err(e) => problem(format!("constants.{name}: {e}")),
        }
    }
    let mut window = None;
    if let Some(w) = &m.window {
        if m.mode != Mode::Accumulate {
            problem("window: only the accumulate mode buckets into windows".into());
        }
        let size = parse_duration_millis(&w.size).map_err(|e| problem(format!("window.size: {e}")));
        let source =
            ColumnSource::parse(&w.source).map_err(|e| problem(format!("window.source: {e}")));
        match Ident::parse(&w.column) {
            Ok(ident) if columns.iter().any(|c| c.name == ident) => problem(format!(
                "window.column: `{ident}` is computed from the window; remove it from columns"
            )),
            Ok(ident) => columns.push(Column {
                name: ident,
                source: ColumnSource::WindowStart,
                ty: None,
                required: true,
                op: None,
            }),
            Err(e) => problem(format!("window.column: {e}")),
        }
        if let (Ok(size_ms), Ok(source)) = (size, source) {
            window = Some(Window { source, size_ms });
        }
    }
    for (name, op) in &m.accumulate {
        if m.mode != Mode::Accumulate {
            problem(format!(
                "accumulate.{name}: only used with mode = \"accumulate\""
            ));
            continue;
        }
        match columns.iter_mut().find(|c| c.name.as_str() == name) {
            Some(c) if *op == AccumulateOp::Count => problem(format!(
                "accumulate.{}: a count column takes no source; remove it from columns",
                c.name
            )),
            Some(c) => c.op = Some(*op),
            None if *op == AccumulateOp::Count => match Ident::parse(name) {
                Ok(ident) => columns.push(Column {
                    name: ident,
                    source: ColumnSource::One,
                    ty: None,
                    required: true,
                    op: Some(*op),
                }),
                Err(e) => problem(format!("accumulate.{name}: {e}")),
            },
            None => problem(format!(
                "accumulate.{name}: not in columns; add where its value comes from"
            )),
        }
    }
    for (name, ty) in &m.types {
        match (
            columns.iter_mut().find(|c| c.name.as_str() == name),
            ColumnType::parse(ty),
        ) {
            (Some(c), Ok(ty)) => c.ty = Some(ty),
            (None, _) => problem(format!("types.{name}: not in columns")),
            (_, Err(e)) => problem(format!("types.{name}: {e}")),
        }
    }
    for (i, name) in m.required.iter().enumerate() {
        match columns.iter_mut().find(|c| c.name.as_str() == name) {
            Some(c) => c.required = true,
            None => problem(format!("required[{i}]: `{name}` is not in columns")),
        }
    }
    columns.sort_by(|a, b| a.name.cmp(&b.name));
    // Only when none was given: a column that was given and refused already has its problem.
    if columns.is_empty() && m.columns.is_empty() && m.constants.is_empty() {
        problem("columns: at least one column is required".into());
    }
    let key = validate_key(m, &mut columns, &mut problem);
    let only_if_newer = validate_version(m, &columns, &mut problem);
    let tombstone = validate_tombstone(m, &key, &columns, &mut problem);
    if m.mode == Mode::Accumulate {
        for c in columns
            .iter()
            .filter(|c| c.op.is_none() && !key.contains(&c.name))
        {
            problem(format!(
                "accumulate: column `{}` needs an operation (add, min, max, last or count)",
                c.name
            ));
        }
    }
    if problems.len() != before {
        return None;
    }
    Some(Mapping {
        topic: m.topic.clone(),
        table: table?,
        mode: m.mode,
        key,
        columns,
        format: m.format,
        only_if_newer,
        tombstone,
        on_error: m.on_error,
        window,
    })
}

fn validate_key(
    m: &MappingConfig,
    columns: &mut [Column],
    problem: &mut impl FnMut(String),
) -> Vec<Ident> {
    let mut key = Vec::new();
    match m.mode {
        Mode::Insert if !m.key.is_empty() => problem(
            "key: insert mode appends every record; remove key or use mode = \"upsert\"".into(),
        ),
        Mode::Upsert | Mode::Accumulate if m.key.is_empty() && m.window.is_none() => {
            problem("key: at least one key column is required".into())
        }
        _ => {}
    }
    for (i, name) in m.key.iter().enumerate() {
        match Ident::parse(name) {
            Ok(ident) if key.contains(&ident) => {
                problem(format!("key[{i}]: `{ident}` is listed twice"))
            }
            Ok(ident) => match columns.iter_mut().find(|c| c.name == ident) {
                Some(c) if c.op.is_some() => problem(format!(
                    "key[{i}]: `{ident}` is a key and cannot be aggregated"
                )),
                Some(c) => {
                    c.required = true;
                    key.push(ident);
                }
                None => problem(format!(
                    "key[{i}]: `{ident}` is not in columns; add where its value comes from"
                )),
            },
            Err(e) => problem(format!("key[{i}]: {e}")),
        }
    }
    if let Some(w) = columns
        .iter()
        .find(|c| c.source == ColumnSource::WindowStart)
    {
        if !key.contains(&w.name) {
            key.push(w.name.clone());
        }
    }
    key
}

fn validate_version(
    m: &MappingConfig,
    columns: &[Column],
    problem: &mut impl FnMut(String),
) -> Option<Ident> {
    let name = m.only_if_newer.as_ref()?;
    if m.mode != Mode::Upsert {
        problem("only_if_newer: only the upsert mode has a version guard".into());
        return None;
    }
    match columns.iter().find(|c| c.name.as_str() == name) {
        Some(c) if m.key.contains(name) => {
            problem(format!("only_if_newer: `{}` is a key column", c.name))
        }
        Some(c) => return Some(c.name.clone()),
        None => problem(format!("only_if_newer: `{name}` is not in columns")),
    }
    None
}

fn validate_tombstone(
    m: &MappingConfig,
    key: &[Ident],
    columns: &[Column],
    problem: &mut impl FnMut(String),
) -> Tombstone {
    let key_needs_value = columns
        .iter()
        .any(|c| key.contains(&c.name) && c.source.needs_value());
    match (m.tombstone, m.mode) {
        (Some(Tombstone::Delete), Mode::Insert | Mode::Accumulate) => {
            problem("tombstone: `delete` is only for the upsert mode".into());
            Tombstone::BadRecord
        }
        (Some(Tombstone::Delete), Mode::Upsert) if key_needs_value => {
            problem("tombstone: `delete` needs key columns that come from the record key or Kafka metadata, not the value".into());
            Tombstone::BadRecord
        }
        (Some(policy), _) => policy,
        (None, Mode::Upsert) if !key_needs_value => Tombstone::Delete,
        (None, _) => Tombstone::BadRecord,
    }
}
