//! Records → rows: JSON extraction, in-batch reduction by key, and COPY text encoding.
//!
//! Guarantee: for each mapping, the rows produced for a batch leave the table in the state that
//! applying every record in offset order would leave — one operation per key, the one with the
//! highest offset (an upsert, or a delete for a tombstone).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{ColumnSource, KafkaMeta, Mapping, PathSegment};
use crate::error::Error;
use crate::kafka::Record;

/// The rows of one mapping for one batch, as COPY text.
#[derive(Debug, Default)]
pub struct TableRows {
    /// Index into the configured mappings.
    pub mapping: usize,
    pub upserts: Vec<u8>,
    pub upsert_rows: usize,
    pub deletes: Vec<u8>,
    pub delete_rows: usize,
}

/// Decodes batches for every configured mapping.
#[derive(Debug)]
pub struct Decoder {
    mappings: Arc<[Mapping]>,
    by_topic: HashMap<String, Vec<usize>>,
}

/// A record's parsed key and value, shared by every mapping of its topic.
struct Parsed<'r> {
    record: &'r Record,
    value: Option<Value>,
    key: Option<Value>,
}

impl Decoder {
    pub fn new(mappings: Arc<[Mapping]>) -> Self {
        let mut by_topic: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, m) in mappings.iter().enumerate() {
            by_topic.entry(m.topic.clone()).or_default().push(i);
        }
        Self { mappings, by_topic }
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// Decodes one partition's batch (records in offset order) for every mapping of its topic.
    pub fn decode(&self, records: &[Record]) -> Result<Vec<TableRows>, Error> {
        let Some(first) = records.first() else {
            return Ok(Vec::new());
        };
        let Some(indexes) = self.by_topic.get(&*first.tp.topic) else {
            return Ok(Vec::new());
        };
        let needs_json_key = indexes.iter().any(|&i| {
            self.mappings[i]
                .columns
                .iter()
                .any(|(_, s)| matches!(s, ColumnSource::Key(p) if !p.is_empty()))
        });
        let parsed: Vec<Parsed<'_>> = records
            .iter()
            .map(|r| parse(r, needs_json_key))
            .collect::<Result<_, _>>()?;
        indexes
            .iter()
            .map(|&i| self.decode_mapping(i, &parsed))
            .collect()
    }

    fn decode_mapping(&self, index: usize, parsed: &[Parsed<'_>]) -> Result<TableRows, Error> {
        let mapping = &self.mappings[index];
        let mut rows = TableRows {
            mapping: index,
            ..TableRows::default()
        };
        let mut seen: HashSet<String> = HashSet::with_capacity(parsed.len());
        let mut key_text = String::new();
        // Newest first: the first operation seen for a key is the one that survives.
        for p in parsed.iter().rev() {
            key_text.clear();
            for key in &mapping.key {
                let source = column_source(mapping, key.as_str());
                if p.value.is_none() && source.needs_value() {
                    return Err(bad(p.record, format!(
                        "tombstone (null value) for table {}, but key column `{key}` comes from the value, so the row to delete is unknown",
                        mapping.table
                    )));
                }
                match extract(p, source)? {
                    Some(text) => {
                        key_text.push_str(&text);
                        key_text.push('\u{1f}');
                    }
                    None => {
                        return Err(bad(
                            p.record,
                            format!("key column `{key}` is missing or null"),
                        ))
                    }
                }
            }
            if !seen.insert(key_text.clone()) {
                continue;
            }
            if p.value.is_none() {
                let keys = mapping
                    .key
                    .iter()
                    .map(|k| column_source(mapping, k.as_str()));
                write_row(&mut rows.deletes, p, keys)?;
                rows.delete_rows += 1;
            } else {
                write_row(&mut rows.upserts, p, mapping.columns.iter().map(|(_, s)| s))?;
                rows.upsert_rows += 1;
            }
        }
        Ok(rows)
    }
}

fn column_source<'m>(mapping: &'m Mapping, name: &str) -> &'m ColumnSource {
    mapping
        .columns
        .iter()
        .find(|(c, _)| c.as_str() == name)
        .map(|(_, s)| s)
        .unwrap_or(&ColumnSource::Kafka(KafkaMeta::Offset))
}

fn parse(record: &Record, needs_json_key: bool) -> Result<Parsed<'_>, Error> {
    let value = match &record.value {
        Some(bytes) => Some(
            serde_json::from_slice(bytes)
                .map_err(|e| bad(record, format!("value is not valid JSON: {e}")))?,
        ),
        None => None,
    };
    let key = match (&record.key, needs_json_key) {
        (Some(bytes), true) => Some(
            serde_json::from_slice(bytes)
                .map_err(|e| bad(record, format!("key is not valid JSON: {e}")))?,
        ),
        _ => None,
    };
    Ok(Parsed { record, value, key })
}

/// The column's value as text, `None` for SQL NULL.
fn extract(p: &Parsed<'_>, source: &ColumnSource) -> Result<Option<String>, Error> {
    let r = p.record;
    Ok(match source {
        ColumnSource::Value(path) => p
            .value
            .as_ref()
            .and_then(|v| walk(v, path))
            .and_then(json_text),
        ColumnSource::Key(path) if path.is_empty() => match &r.key {
            Some(bytes) => Some(
                String::from_utf8(bytes.clone())
                    .map_err(|_| bad(r, "key is not valid UTF-8 text".into()))?,
            ),
            None => None,
        },
        ColumnSource::Key(path) => p
            .key
            .as_ref()
            .and_then(|v| walk(v, path))
            .and_then(json_text),
        ColumnSource::Kafka(KafkaMeta::Topic) => Some(r.tp.topic.to_string()),
        ColumnSource::Kafka(KafkaMeta::Partition) => Some(r.tp.partition.to_string()),
        ColumnSource::Kafka(KafkaMeta::Offset) => Some(r.offset.to_string()),
        ColumnSource::Kafka(KafkaMeta::Timestamp) => r.timestamp_ms.map(rfc3339_millis),
    })
}

fn walk<'v>(mut value: &'v Value, path: &[PathSegment]) -> Option<&'v Value> {
    for segment in path {
        value = match segment {
            PathSegment::Field(name) => value.get(name)?,
            PathSegment::Index(i) => value.get(*i)?,
        };
    }
    Some(value)
}

/// JSON scalars as their text; objects and arrays as JSON (for json/jsonb columns); null as None.
/// Numbers keep their exact digits (serde_json's `arbitrary_precision`): money never passes
/// through a float.
fn json_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(_) | Value::Object(_) => Some(value.to_string()),
    }
}

fn write_row<'a>(
    out: &mut Vec<u8>,
    p: &Parsed<'_>,
    sources: impl Iterator<Item = &'a ColumnSource>,
) -> Result<(), Error> {
    for (i, source) in sources.enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match extract(p, source)? {
            None => out.extend_from_slice(b"\\N"),
            Some(text) => copy_escape(out, &text).map_err(|reason| bad(p.record, reason))?,
        }
    }
    out.push(b'\n');
    Ok(())
}

/// Appends `text` escaped for COPY's text format.
fn copy_escape(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0 => {
                return Err(
                    "text contains a NUL character, which PostgreSQL text cannot store".into(),
                )
            }
            _ => out.push(b),
        }
    }
    Ok(())
}

fn bad(record: &Record, reason: String) -> Error {
    Error::BadRecord {
        topic: record.tp.topic.to_string(),
        partition: record.tp.partition,
        offset: record.offset,
        reason,
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
pub fn rfc3339_millis(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    );
    out
}

#[cfg(test)]
mod tests;
