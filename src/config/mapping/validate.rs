//! Validation of one `[[mappings]]` entry into a [`Mapping`]: every problem is reported, with its
//! key path, and a mapping is built only when there is none.

use super::{AccumulateOp, Cdc, Column, Mapping, MappingConfig, Mode, Tombstone, Window};
use crate::config::source::ColumnSource;
use crate::config::{parse_duration_millis, ColumnType};
use crate::ident::{Ident, TableName};

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
    let cdc = validate_cdc(m, &mut problem);
    // A change-event mapping is an upsert of row images; the rest of validation sees it so.
    let upsert;
    let m = match cdc {
        Some(_) => {
            upsert = MappingConfig {
                mode: Mode::Upsert,
                tombstone: Some(m.tombstone.unwrap_or(Tombstone::Delete)),
                columns: m
                    .columns
                    .iter()
                    .map(|(name, expr)| (name.clone(), change_source(expr)))
                    .collect(),
                ..m.clone()
            };
            &upsert
        }
        None => m,
    };
    let mut columns = mapped_columns(m, &mut problem);
    let window = validate_window(m, &mut columns, &mut problem);
    validate_accumulate(m, &mut columns, &mut problem);
    apply_types_and_required(m, &mut columns, &mut problem);
    columns.sort_by(|a, b| a.name.cmp(&b.name));
    // Only when none was given: a column that was given and refused already has its problem.
    if columns.is_empty() && m.columns.is_empty() && m.constants.is_empty() {
        problem("columns: at least one column is required".into());
    }
    let key = validate_key(m, &mut columns, &mut problem);
    let only_if_newer = validate_version(m, &columns, &mut problem);
    // A change stream's tombstone deletes by the record key's fields (the key columns' paths
    // under `key`), which the value does not need to provide.
    let tombstone = match cdc {
        Some(_) => m.tombstone.unwrap_or(Tombstone::Delete),
        None => validate_tombstone(m, &key, &columns, &mut problem),
    };
    check_operations(m, &key, &columns, &mut problem);
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
        key_format: m.key_format,
        only_if_newer,
        tombstone,
        on_error: m.on_error,
        window,
        cdc,
    })
}

/// `mode = "cdc"` and its options; `None` for other modes (whose CDC options are refused).
fn validate_cdc(m: &MappingConfig, problem: &mut impl FnMut(String)) -> Option<Cdc> {
    if m.mode != Mode::Cdc {
        if m.envelope.is_some() || m.truncate.is_some() {
            problem("envelope, truncate: only for mode = \"cdc\"".into());
        }
        return None;
    }
    if !m.accumulate.is_empty() || m.window.is_some() {
        problem("accumulate, window: not for mode = \"cdc\"".into());
    }
    Some(Cdc {
        envelope: m.envelope.unwrap_or_default(),
        truncate: m.truncate.unwrap_or_default(),
    })
}

/// A CDC column source as a path into the change event: `value[.p]` reads the row image
/// (`value.after[.p]`), `source.p` the event's source block, `envelope.p` the whole event.
fn change_source(expr: &str) -> String {
    let expr = expr.trim();
    match expr.split_once('.') {
        _ if expr == "value" => "value.after".into(),
        Some(("value", path)) => format!("value.after.{path}"),
        Some(("source", path)) => format!("value.source.{path}"),
        Some(("envelope", path)) => format!("value.{path}"),
        _ => expr.to_owned(),
    }
}

/// The columns from `columns` and `constants`, untyped and optional so far.
fn mapped_columns(m: &MappingConfig, problem: &mut impl FnMut(String)) -> Vec<Column> {
    let mut columns = Vec::new();
    for (name, expr) in &m.columns {
        let ident = Ident::parse(name).map_err(|e| problem(format!("columns.{name}: {e}")));
        let source = ColumnSource::parse(expr).map_err(|e| problem(format!("columns.{name}: {e}")));
        if let (Ok(name), Ok(source)) = (ident, source) {
            if !m.format.reads_json()
                && source.is_json_path()
                && matches!(source, ColumnSource::Value(_))
            {
                problem(format!(
                    "columns.{name}: format {:?} has no fields; map the whole `value`",
                    m.format
                ));
            }
            if m.key_format.is_some_and(|f| !f.reads_json())
                && source.is_json_path()
                && matches!(source, ColumnSource::Key(_))
            {
                problem(format!(
                    "columns.{name}: key_format {:?} has no fields; map the whole `key`",
                    m.key_format
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
    columns
}

/// The window (accumulate only), with its column added to `columns`.
fn validate_window(
    m: &MappingConfig,
    columns: &mut Vec<Column>,
    problem: &mut impl FnMut(String),
) -> Option<Window> {
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
    window
}

/// Each `accumulate` operation set on its column; a count is a column of its own.
fn validate_accumulate(
    m: &MappingConfig,
    columns: &mut Vec<Column>,
    problem: &mut impl FnMut(String),
) {
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
}

/// `types` and `required` set on their columns.
fn apply_types_and_required(
    m: &MappingConfig,
    columns: &mut [Column],
    problem: &mut impl FnMut(String),
) {
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
}

/// In accumulate mode, every column but the key needs an operation.
fn check_operations(
    m: &MappingConfig,
    key: &[Ident],
    columns: &[Column],
    problem: &mut impl FnMut(String),
) {
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
