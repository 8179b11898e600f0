//! Kafka Connect's JSON envelope (`JsonConverter` with `schemas.enable=true`): a record value
//! `{"schema": {...}, "payload": ...}` becomes its payload as plain JSON, read by its schema.
//!
//! Guarantee: the payload is rendered exactly, as [`render`](super::render) writes every format,
//! or refused with the path of the field that does not match its schema; arbitrary bytes never
//! panic. Read by the schema: integers in their width's range, floats with their digits as
//! written, `bytes` (base64) as `bytea` hex, structs as objects with the schema's fields in the
//! schema's order (an absent field reads as its default or null), arrays, maps (an object where
//! the keys are strings, else Connect's array of `[key, value]` pairs), and the logical types of
//! Connect (`Decimal`, `Date`, `Time`, `Timestamp`) and of Debezium (`io.debezium.time.*`,
//! `VariableScaleDecimal`, `MicroDuration`). A Debezium change event is a struct like any other,
//! so `before`, `after`, `source`, `op` and `ts_ms` are all there to read.
//!
//! - `schema`: the envelope's schema, parsed once per record into a typed tree.
//! - `payload`: the payload rendered by that tree.

mod payload;
mod schema;

use std::fmt;

use serde_json::Value;

use super::render;
use schema::Schema;

/// Nesting beyond this many arrays, maps or structs is refused rather than followed. The JSON
/// parser refuses documents nested more than 128 deep on its own, which comes first for deep
/// structs (each struct in a schema takes two levels of JSON).
const MAX_DEPTH: usize = 100;

/// Appends the envelope's payload to `out` as plain JSON, logical types rendered. On error `out`
/// is left as it was.
pub fn transcode(value: &[u8], out: &mut String) -> Result<(), String> {
    let start = out.len();
    let result = transcode_document(value, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn transcode_document(value: &[u8], out: &mut String) -> Result<(), String> {
    let document: Value =
        serde_json::from_slice(value).map_err(|e| format!("not a JSON document: {e}"))?;
    let (schema, payload) = envelope(&document)?;
    if schema.is_null() {
        // Connect writes a null schema for schemaless data: the payload is all there is.
        return schemaless(payload, 1, out);
    }
    let schema = Schema::parse(schema, &Path::ROOT, 1)?;
    payload::value(&schema, Some(payload), &Path::ROOT, out)
}

/// The `schema` and `payload` members, which JsonConverter requires to be the only two.
fn envelope(document: &Value) -> Result<(&Value, &Value), String> {
    if let Value::Object(members) = document {
        if let (2, Some(schema), Some(payload)) =
            (members.len(), members.get("schema"), members.get("payload"))
        {
            return Ok((schema, payload));
        }
    }
    let found = match document {
        Value::Object(members) => {
            let names: Vec<String> = members.keys().take(5).map(|k| format!("`{k}`")).collect();
            let more = if members.len() > 5 { ", …" } else { "" };
            format!("an object with members {}{more}", names.join(", "))
        }
        other => kind(other).to_string(),
    };
    Err(format!(
        "not a Kafka Connect envelope: JsonConverter with schemas.enable=true writes an object with \
         exactly the members `schema` and `payload`, and this is {found}; for plain JSON \
         (schemas.enable=false) use format = \"json\""
    ))
}

/// A payload without a schema, as it is; `depth` counts this value if it is an array or object.
fn schemaless(value: &Value, depth: usize, out: &mut String) -> Result<(), String> {
    match value {
        Value::Null => render::null(out),
        Value::Bool(b) => render::boolean(out, *b),
        // With `arbitrary_precision` a number keeps its digits (the exponent reads `e+N`).
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => render::string(out, s),
        Value::Array(_) | Value::Object(_) if depth > MAX_DEPTH => {
            return Err(format!("the payload nests deeper than {MAX_DEPTH} levels"));
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                schemaless(item, depth + 1, out)?;
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (name, member)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render::string(out, name);
                out.push(':');
                schemaless(member, depth + 1, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// What a JSON value is, for errors (its content can be long or private, so it is not quoted).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where a value or schema is in the payload, for errors: a chain of steps on the stack, turned
/// into text only when something is wrong.
#[derive(Clone, Copy)]
struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    step: Step<'a>,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Root,
    /// A struct field, or a map value under a string key (read as `value.map.key`).
    Field(&'a str),
    /// An array item, or a pair of a map with non-string keys and the key or value in it.
    Index(usize),
    /// In a schema: an array's items, a map's keys and values.
    Items,
    Keys,
    Values,
}

impl<'a> Path<'a> {
    const ROOT: Path<'static> = Path {
        parent: None,
        step: Step::Root,
    };

    fn then(&'a self, step: Step<'a>) -> Path<'a> {
        Path {
            parent: Some(self),
            step,
        }
    }

    fn field(&'a self, name: &'a str) -> Path<'a> {
        self.then(Step::Field(name))
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        self.then(Step::Index(i))
    }

    fn steps(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(parent) = self.parent else {
            return Ok(());
        };
        parent.steps(f)?;
        match self.step {
            Step::Root => Ok(()),
            Step::Field(name) if parent.parent.is_none() => f.write_str(name),
            Step::Field(name) => write!(f, ".{name}"),
            Step::Index(i) => write!(f, "[{i}]"),
            Step::Items => f.write_str("[]"),
            Step::Keys => f.write_str("{keys}"),
            Step::Values => f.write_str("{values}"),
        }
    }
}

impl fmt::Display for Path<'_> {
    /// `the payload`, or `field `after.tags[2]``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parent.is_none() {
            return f.write_str("the payload");
        }
        f.write_str("field `")?;
        self.steps(f)?;
        f.write_str("`")
    }
}

#[cfg(test)]
mod tests;
