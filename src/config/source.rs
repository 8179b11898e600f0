//! Where a column's value comes from: the `columns` expressions of a mapping.
//!
//! Grammar (one string per column):
//! - `value` — the whole value as JSON text; `value.<path>` — a field of the JSON value
//! - `key` — the record key as text; `key.<path>` — a field of a JSON key
//! - `kafka.topic`, `kafka.partition`, `kafka.offset`, `kafka.timestamp`
//! - `headers` — all headers as a JSON object; `header.<name>` — one header's value
//!
//! A `<path>` is dot-separated; a segment of digits, or `[n]`, indexes an array
//! (`value.items[0].sku` and `value.items.0.sku` are the same).

use std::fmt;

/// One step into a JSON document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSegment {
    Field(String),
    Index(usize),
}

/// Kafka coordinates a column can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaMeta {
    Topic,
    Partition,
    Offset,
    /// The record timestamp, rendered as RFC 3339 UTC with milliseconds.
    Timestamp,
}

/// A parsed column source expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnSource {
    /// A path into the JSON value; an empty path is the whole value.
    Value(Vec<PathSegment>),
    /// The raw key as UTF-8 text (empty path) or a path into a JSON key.
    Key(Vec<PathSegment>),
    Kafka(KafkaMeta),
    /// All headers as a JSON object of name → UTF-8 text (or null).
    Headers,
    /// The value of the last header with this name.
    Header(String),
    /// A constant from the mapping's `constants` table.
    Constant(String),
    /// The start of the record's aggregation window (the mapping's `window`).
    WindowStart,
    /// The number 1, for `count` aggregates (summed per key).
    One,
}

impl ColumnSource {
    /// Parses an expression such as `value.customer.id`.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let expr = expr.trim();
        let (root, rest) = match expr.split_once('.') {
            Some((root, rest)) => (root, Some(rest)),
            None => (expr, None),
        };
        match (root, rest) {
            ("value", None) => Ok(Self::Value(Vec::new())),
            ("value", Some(path)) => Ok(Self::Value(parse_path(path)?)),
            ("key", None) => Ok(Self::Key(Vec::new())),
            ("key", Some(path)) => Ok(Self::Key(parse_path(path)?)),
            ("headers", None) => Ok(Self::Headers),
            ("header", Some(name)) if !name.is_empty() => Ok(Self::Header(name.to_owned())),
            ("kafka", Some(field)) => match field {
                "topic" => Ok(Self::Kafka(KafkaMeta::Topic)),
                "partition" => Ok(Self::Kafka(KafkaMeta::Partition)),
                "offset" => Ok(Self::Kafka(KafkaMeta::Offset)),
                "timestamp" => Ok(Self::Kafka(KafkaMeta::Timestamp)),
                other => Err(format!(
                    "unknown Kafka field `{other}`; use topic, partition, offset or timestamp"
                )),
            },
            _ => Err(format!(
                "`{expr}` must be `value[.path]`, `key[.path]`, `kafka.<field>`, `headers` or `header.<name>` (for example `value.id`)"
            )),
        }
    }

    /// True when the value is needed to compute this column (so a tombstone cannot provide it).
    pub fn needs_value(&self) -> bool {
        matches!(self, Self::Value(_) | Self::WindowStart)
    }

    /// True for a path into a JSON document (which needs the JSON payload format).
    pub fn is_json_path(&self) -> bool {
        matches!(self, Self::Value(p) | Self::Key(p) if !p.is_empty())
    }
}

fn parse_path(path: &str) -> Result<Vec<PathSegment>, String> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (name, mut indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if name.is_empty() && indexes.is_empty() {
            return Err(format!("path `{path}` has an empty segment"));
        }
        if !name.is_empty() {
            match name.parse::<usize>() {
                Ok(i) => segments.push(PathSegment::Index(i)),
                Err(_) => segments.push(PathSegment::Field(name.to_owned())),
            }
        }
        while !indexes.is_empty() {
            let close = indexes
                .find(']')
                .ok_or_else(|| format!("path `{path}` has an unclosed `[`"))?;
            let index = indexes[1..close].parse::<usize>().map_err(|_| {
                format!(
                    "path `{path}`: `{}` is not an array index",
                    &indexes[..=close]
                )
            })?;
            segments.push(PathSegment::Index(index));
            indexes = &indexes[close + 1..];
            if !indexes.is_empty() && !indexes.starts_with('[') {
                return Err(format!("path `{path}`: expected `.` or `[` after `]`"));
            }
        }
    }
    Ok(segments)
}

/// A path as written in a column source (`a.b[0].c`).
pub fn path_text(path: &[PathSegment]) -> String {
    let mut text = String::new();
    for segment in path {
        if matches!(segment, PathSegment::Field(_)) && !text.is_empty() {
            text.push('.');
        }
        text.push_str(&segment.to_string());
    }
    text
}

impl fmt::Display for PathSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => f.write_str(name),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathSegment::{Field, Index};

    #[test]
    fn parses_nested_paths_and_indexes() {
        let expected =
            ColumnSource::Value(vec![Field("items".into()), Index(0), Field("sku".into())]);
        assert_eq!(ColumnSource::parse("value.items[0].sku").unwrap(), expected);
        assert_eq!(ColumnSource::parse("value.items.0.sku").unwrap(), expected);
        assert_eq!(
            ColumnSource::parse("value.m[1][2]").unwrap(),
            ColumnSource::Value(vec![Field("m".into()), Index(1), Index(2)])
        );
    }

    #[test]
    fn parses_roots() {
        assert_eq!(
            ColumnSource::parse("value").unwrap(),
            ColumnSource::Value(vec![])
        );
        assert_eq!(
            ColumnSource::parse("key").unwrap(),
            ColumnSource::Key(vec![])
        );
        assert_eq!(
            ColumnSource::parse("kafka.offset").unwrap(),
            ColumnSource::Kafka(KafkaMeta::Offset)
        );
        assert_eq!(
            ColumnSource::parse("headers").unwrap(),
            ColumnSource::Headers
        );
        assert_eq!(
            ColumnSource::parse("header.trace-id").unwrap(),
            ColumnSource::Header("trace-id".into())
        );
    }

    #[test]
    fn rejects_malformed_expressions() {
        for bad in [
            "val.id",
            "kafka.lag",
            "value..x",
            "value.a[x]",
            "value.a[1",
            "kafka",
            "value.a[0]b",
        ] {
            assert!(ColumnSource::parse(bad).is_err(), "{bad} must be rejected");
        }
    }
}
