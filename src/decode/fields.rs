//! A record's value and key, scanned once for every mapping of its topic, and each column's value
//! read from them as the text its type takes.
//!
//! Guarantee: a value is borrowed from the record whenever no conversion changes it, and
//! otherwise converted exactly or refused with its stage ([`Stage::Decode`] for what cannot be
//! read, [`Stage::Convert`] for what does not fit the column).

use std::borrow::Cow;

use serde_json::Value;

use super::convert::{self, Input};
use super::json::{scalar, Doc, Scalar, Scanned};
use super::scan::Member;
use super::{Failure, Stage};
use crate::config::{ColumnSource, ColumnType, Format, KafkaMeta, Mapping};
use crate::record::Record;

/// A record's value and key, parsed once for every mapping of its topic.
pub(crate) struct Parsed<'r> {
    pub record: &'r Record,
    pub json: Option<Result<Doc<'r>, String>>,
    pub key_json: Option<Result<Doc<'r>, String>>,
}

/// A record's value and key, validated as JSON where a mapping reads them as JSON.
pub(crate) type Scans<'r> = (
    Option<Result<Scanned<'r>, String>>,
    Option<Result<Scanned<'r>, String>>,
);

pub(crate) fn scan<'r>(
    value: Option<Result<&'r [u8], String>>,
    key: Option<Result<&'r [u8], String>>,
    members: &mut Vec<Member<'r>>,
) -> Scans<'r> {
    let value = value.map(|bytes| {
        Scanned::new(bytes?, members).map_err(|e| format!("value is not valid JSON: {e}"))
    });
    let key = key.map(|bytes| {
        Scanned::new(bytes?, members).map_err(|e| format!("key is not valid JSON: {e}"))
    });
    (value, key)
}

/// The column's value as text for its type; `None` is SQL NULL. Borrowed from the record
/// whenever no conversion changes it.
pub(crate) fn extract<'a>(
    m: &Mapping,
    p: &'a Parsed<'a>,
    source: &'a ColumnSource,
    ty: Option<ColumnType>,
    name: &str,
) -> Result<Option<Cow<'a, str>>, Failure> {
    let r = p.record;
    let convert_error = |e: String| (Stage::Convert, format!("column `{name}`: {e}"));
    let from_value = |v: &Value| -> Result<Option<Cow<'a, str>>, Failure> {
        if v.is_null() {
            return Ok(None);
        }
        let converted = match ty {
            Some(ty) => convert::convert(ty, Input::Json(v)),
            None => Ok(untyped_json(v)),
        };
        converted
            .map(|s| Some(Cow::Owned(s)))
            .map_err(convert_error)
    };
    let from_bytes =
        |b: &'a [u8], default: Option<ColumnType>| -> Result<Option<Cow<'a, str>>, Failure> {
            match ty.or(default) {
                Some(ty) => convert::convert(ty, Input::Bytes(b))
                    .map(|s| Some(Cow::Owned(s)))
                    .map_err(convert_error),
                None => std::str::from_utf8(b)
                    .map(|s| Some(Cow::Borrowed(s)))
                    .map_err(|_| convert_error("not valid UTF-8 text (use type bytea)".into())),
            }
        };
    let from_doc = |doc: &'a Result<Doc<'a>, String>, path| match doc {
        Ok(doc) => doc
            .get(path)
            .map_or(Ok(None), |raw| from_raw(raw, ty, name)),
        Err(e) => Err((Stage::Decode, e.clone())),
    };
    match source {
        ColumnSource::Value(path) => match m.format {
            Format::Text => r.value().map_or(Ok(None), |b| from_bytes(b, None)),
            Format::Bytes => r
                .value()
                .map_or(Ok(None), |b| from_bytes(b, Some(ColumnType::Bytea))),
            _ => p.json.as_ref().map_or(Ok(None), |doc| from_doc(doc, path)),
        },
        ColumnSource::Key(path) if path.is_empty() => match m.key_format {
            None | Some(Format::Text) => r.key().map_or(Ok(None), |b| from_bytes(b, None)),
            Some(Format::Bytes) => r
                .key()
                .map_or(Ok(None), |b| from_bytes(b, Some(ColumnType::Bytea))),
            Some(_) => p
                .key_json
                .as_ref()
                .map_or(Ok(None), |doc| from_doc(doc, path)),
        },
        ColumnSource::Key(path) => p
            .key_json
            .as_ref()
            .map_or(Ok(None), |doc| from_doc(doc, path)),
        ColumnSource::Kafka(meta) => from_value(&kafka_meta(r, *meta, ty)),
        ColumnSource::Headers => from_value(&headers_json(r)),
        ColumnSource::Header(name) => match r.headers.iter().rev().find(|(k, _)| k == name) {
            Some((_, Some(value))) => from_bytes(value, None),
            _ => Ok(None),
        },
        ColumnSource::Constant(text) if ty.is_none() => Ok(Some(Cow::Borrowed(text))),
        ColumnSource::Constant(text) => from_value(&Value::String(text.clone())),
        ColumnSource::WindowStart => window_start(m, p).map(|s| Some(Cow::Owned(s))),
        ColumnSource::One => Ok(Some(Cow::Borrowed("1"))),
    }
}

/// A JSON value from the payload, converted; the common cases need no copy.
fn from_raw<'a>(
    raw: &'a str,
    ty: Option<ColumnType>,
    name: &str,
) -> Result<Option<Cow<'a, str>>, Failure> {
    if ty == Some(ColumnType::Jsonb) {
        if let Some(text) = jsonb_as_is(raw) {
            return Ok(Some(Cow::Borrowed(text)));
        }
    }
    let borrowed = match (ty, scalar(raw)) {
        (_, Scalar::Null) => return Ok(None),
        (None, Scalar::Text(t)) | (Some(ColumnType::Text), Scalar::Text(t)) => return Ok(Some(t)),
        (None, Scalar::Number(n) | Scalar::Composite(n)) => Some(n),
        (None, Scalar::Bool(b)) => Some(if b { "true" } else { "false" }),
        // A JSON number is a valid numeric literal, digit for digit.
        (Some(ColumnType::Numeric), Scalar::Number(n)) => Some(n),
        // Exact decimals are often sent as strings ("12.30"); valid ones pass as they are.
        (Some(ColumnType::Numeric), Scalar::Text(t)) if convert::is_decimal(&t) => {
            return Ok(Some(t))
        }
        (Some(ColumnType::Bigint), Scalar::Number(n)) if n.parse::<i64>().is_ok() => Some(n),
        (Some(ColumnType::Integer), Scalar::Number(n)) if n.parse::<i32>().is_ok() => Some(n),
        (Some(ColumnType::Timestamptz), Scalar::Text(t))
            if convert::parse_timestamp_millis(&t).is_ok() =>
        {
            return Ok(Some(t))
        }
        _ => None,
    };
    if let Some(text) = borrowed {
        return Ok(Some(Cow::Borrowed(text)));
    }
    let value: Value = serde_json::from_str(raw).map_err(|e| (Stage::Decode, e.to_string()))?;
    let ty = ty.unwrap_or(ColumnType::Text);
    convert::convert(ty, Input::Json(&value))
        .map(|s| Some(Cow::Owned(s)))
        .map_err(|e| (Stage::Convert, format!("column `{name}`: {e}")))
}

/// A JSON value's text as a `jsonb` column takes it unchanged: `None` for JSON null (SQL NULL)
/// and for text holding `\u0000`, which jsonb cannot store (converted, or refused, the long way).
pub(crate) fn jsonb_as_is(raw: &str) -> Option<&str> {
    jsonb_as_is_with(raw, true)
}

/// [`jsonb_as_is`]; with `may_escape` false (a value of a payload without escapes,
/// `Doc::unescaped`) the text cannot hold `\u0000` and is not searched for one.
#[inline(always)]
pub(crate) fn jsonb_as_is_with(raw: &str, may_escape: bool) -> Option<&str> {
    debug_assert!(may_escape || !raw.contains('\\'));
    const WS: [char; 4] = [' ', '\n', '\r', '\t'];
    // Member values come without surrounding whitespace: trim only when there is some.
    let raw = match (raw.as_bytes().first(), raw.as_bytes().last()) {
        (Some(b' ' | b'\n' | b'\r' | b'\t'), _) | (_, Some(b' ' | b'\n' | b'\r' | b'\t')) => {
            raw.trim_matches(WS)
        }
        _ => raw,
    };
    (raw != "null" && !(may_escape && has_nul_escape(raw))).then_some(raw)
}

/// Whether JSON text holds `\u0000`; most JSON has no backslash at all, so one byte scan comes
/// before the substring search.
fn has_nul_escape(raw: &str) -> bool {
    raw.as_bytes().contains(&b'\\') && raw.contains("\\u0000")
}

fn window_start(m: &Mapping, p: &Parsed<'_>) -> Result<String, Failure> {
    let Some(window) = &m.window else {
        return Err((Stage::Decode, "no window configured".into()));
    };
    let text = extract(m, p, &window.source, None, "window")?.ok_or((
        Stage::Decode,
        "the window timestamp is missing or null".to_string(),
    ))?;
    let ms = match text.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => convert::parse_timestamp_millis(&text)
            .map_err(|e| (Stage::Convert, format!("window timestamp: {e}")))?,
    };
    Ok(convert::format_timestamp_millis(
        convert::window_start_millis(ms, window.size_ms),
    ))
}

fn kafka_meta(r: &Record, meta: KafkaMeta, ty: Option<ColumnType>) -> Value {
    match meta {
        KafkaMeta::Topic => Value::String(r.tp.topic.to_string()),
        KafkaMeta::Partition => Value::from(r.tp.partition),
        KafkaMeta::Offset => Value::from(r.offset),
        KafkaMeta::Timestamp => match (r.timestamp_ms, ty) {
            (None, _) => Value::Null,
            (
                Some(ms),
                Some(
                    ColumnType::Smallint
                    | ColumnType::Integer
                    | ColumnType::Bigint
                    | ColumnType::Numeric,
                ),
            ) => Value::from(ms),
            (Some(ms), _) => Value::String(convert::format_timestamp_millis(ms)),
        },
    }
}

fn headers_json(r: &Record) -> Value {
    let map = r
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_ref().map_or(Value::Null, |b| {
                    Value::String(String::from_utf8_lossy(b).into_owned())
                }),
            )
        })
        .collect();
    Value::Object(map)
}

/// Untyped columns: scalars as their text (numbers keep their exact digits), objects and arrays
/// as JSON; Postgres' input function for the column does the conversion.
fn untyped_json(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => value.to_string(),
    }
}
