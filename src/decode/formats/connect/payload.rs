//! The payload rendered by its parsed schema. Every value is checked against the type its schema
//! declares; a mismatch is refused with the field's path.

use std::fmt::Write;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::render;
use super::schema::{Field, Int, Kind, Logical, Schema, MAX_SCALE};
use super::{kind, Path};

/// The most bytes an unscaled decimal may have: PostgreSQL's `numeric` holds at most 131072
/// digits before the point and 16383 after, which take under 61232 bytes; a longer value could
/// never be stored, and rendering takes time quadratic in the length.
const MAX_DECIMAL_BYTES: usize = 61_232;

/// The value at `path`, `None` where a struct's field is absent.
pub(super) fn value(
    schema: &Schema<'_>,
    value: Option<&Value>,
    path: &Path<'_>,
    out: &mut String,
) -> Result<(), String> {
    match value {
        Some(v) if !v.is_null() => present(schema, v, path, out),
        _ => missing(schema, value.is_none(), path, out),
    }
}

/// An absent value reads as the schema's default, else null where the schema is optional. A null
/// that is there reads as null where the schema is optional: JsonConverter writes a null as the
/// default unless told not to (`replace.null.with.default=false`), so a null in the payload was
/// meant. Where the schema is required, a null reads as the default, as JsonConverter reads it.
fn missing(
    schema: &Schema<'_>,
    absent: bool,
    path: &Path<'_>,
    out: &mut String,
) -> Result<(), String> {
    if let Some(default) = schema.default.filter(|_| absent || !schema.optional) {
        return present(schema, default, path, out)
            .map_err(|e| format!("{e} (in the schema's default)"));
    }
    if schema.optional {
        render::null(out);
        return Ok(());
    }
    Err(format!(
        "{path} is {}, but its schema ({}) is required and has no default",
        if absent { "missing" } else { "null" },
        schema.expected()
    ))
}

/// A value that is there, by its schema's type.
fn present(
    schema: &Schema<'_>,
    v: &Value,
    path: &Path<'_>,
    out: &mut String,
) -> Result<(), String> {
    let bad = |b: Bad| b.explain(&schema.expected(), v, path);
    match &schema.kind {
        Kind::Int(int) => integer_value(schema, integer(*int, v).map_err(bad)?, path, out)?,
        Kind::Float32 | Kind::Float64 => match v {
            // With `arbitrary_precision` a number keeps its digits (the exponent reads `e+N`).
            Value::Number(n) => {
                let _ = write!(out, "{n}");
            }
            // Jackson writes the non-finite values as these strings.
            Value::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => {
                render::string(out, s)
            }
            _ => return Err(bad(Bad::Type)),
        },
        Kind::Boolean => render::boolean(out, v.as_bool().ok_or(Bad::Type).map_err(bad)?),
        Kind::String => render::string(out, v.as_str().ok_or(Bad::Type).map_err(bad)?),
        Kind::Bytes => match (schema.logical, v) {
            // JsonConverter's `decimal.format=NUMERIC`: the decimal as a number, its digits kept.
            (Logical::Decimal { .. }, Value::Number(n)) => {
                let _ = write!(out, "{n}");
            }
            (Logical::Decimal { scale }, _) => {
                decimal(out, &base64(v).map_err(bad)?, scale.into(), path)?
            }
            _ => render::bytes(out, &base64(v).map_err(bad)?),
        },
        Kind::Array(items) => {
            let Value::Array(list) = v else {
                return Err(bad(Bad::Type));
            };
            out.push('[');
            for (i, item) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(items, Some(item), &path.index(i), out)?;
            }
            out.push(']');
        }
        Kind::Map { keys, values } => map(schema, keys, values, v, path, out)?,
        Kind::Struct(fields) => {
            let Value::Object(members) = v else {
                return Err(bad(Bad::Type));
            };
            if schema.logical == Logical::VariableScaleDecimal {
                return variable_scale_decimal(members, path, out);
            }
            structure(fields, members, path, out)?
        }
    }
    Ok(())
}

/// An integer, as its logical type reads it if it has one.
fn integer_value(
    schema: &Schema<'_>,
    n: i64,
    path: &Path<'_>,
    out: &mut String,
) -> Result<(), String> {
    match schema.logical {
        Logical::Date => render::date(out, n),
        Logical::Time(unit) => render::time(out, n, unit).map_err(|e| format!("{path}: {e}"))?,
        Logical::Timestamp { unit, utc } => render::timestamp(out, n, unit, utc),
        Logical::MicroDuration => interval(out, n),
        _ => render::integer(out, n),
    }
    Ok(())
}

/// A struct as an object of the schema's fields, in the schema's order; members the schema does
/// not name are left out, as JsonConverter leaves them.
fn structure(
    fields: &[Field<'_>],
    members: &serde_json::Map<String, Value>,
    path: &Path<'_>,
    out: &mut String,
) -> Result<(), String> {
    out.push('{');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        render::string(out, field.name);
        out.push(':');
        let member = members.get(field.name);
        value(&field.schema, member, &path.field(field.name), out)?;
    }
    out.push('}');
    Ok(())
}

/// A map as JsonConverter writes it: an object where the keys are strings, else an array of
/// `[key, value]` pairs, rendered as such.
fn map(
    schema: &Schema<'_>,
    keys: &Schema<'_>,
    values: &Schema<'_>,
    v: &Value,
    path: &Path<'_>,
    out: &mut String,
) -> Result<(), String> {
    match (&keys.kind, v) {
        (Kind::String, Value::Object(members)) => {
            out.push('{');
            for (i, (key, member)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                render::string(out, key);
                out.push(':');
                value(values, Some(member), &path.field(key), out)?;
            }
            out.push('}');
        }
        (key_kind, Value::Array(pairs)) if !matches!(key_kind, Kind::String) => {
            out.push('[');
            for (i, pair) in pairs.iter().enumerate() {
                let path = path.index(i);
                let Some([key, member]) = pair.as_array().map(Vec::as_slice) else {
                    return Err(format!(
                        "{path}: expected a [key, value] pair of a map with {} keys, found {}",
                        keys.expected(),
                        kind(pair)
                    ));
                };
                if i > 0 {
                    out.push(',');
                }
                out.push('[');
                value(keys, Some(key), &path.index(0), out)?;
                out.push(',');
                value(values, Some(member), &path.index(1), out)?;
                out.push(']');
            }
            out.push(']');
        }
        _ => return Err(Bad::Type.explain(&schema.expected(), v, path)),
    }
    Ok(())
}

/// Debezium's `VariableScaleDecimal`: `{"scale": int32, "value": bytes}`, the scale travelling
/// with each value (PostgreSQL's `numeric` without a declared scale).
fn variable_scale_decimal(
    members: &serde_json::Map<String, Value>,
    path: &Path<'_>,
    out: &mut String,
) -> Result<(), String> {
    let member = |name| members.get(name).unwrap_or(&Value::Null);
    let (scale, unscaled) = (member("scale"), member("value"));
    let scale =
        integer(Int::I32, scale).map_err(|b| b.explain("int32", scale, &path.field("scale")))?;
    let unscaled =
        base64(unscaled).map_err(|b| b.explain("bytes", unscaled, &path.field("value")))?;
    decimal(out, &unscaled, scale, path)
}

/// A decimal from its unscaled big-endian two's complement bytes. A negative scale (a Java
/// `BigDecimal` can have one) multiplies by a power of ten.
fn decimal(out: &mut String, unscaled: &[u8], scale: i64, path: &Path<'_>) -> Result<(), String> {
    if unscaled.len() > MAX_DECIMAL_BYTES {
        return Err(format!(
            "{path}: a decimal of {} bytes has more digits than PostgreSQL's numeric holds",
            unscaled.len()
        ));
    }
    if !(-MAX_SCALE..=MAX_SCALE).contains(&scale) {
        return Err(format!(
            "{path}: decimal scale {scale} is outside -{MAX_SCALE} to {MAX_SCALE}"
        ));
    }
    match u32::try_from(scale) {
        Ok(scale) => render::decimal(out, unscaled, scale),
        Err(_) => {
            let start = out.len();
            render::decimal(out, unscaled, 0);
            if &out[start..] != "0" {
                out.extend(std::iter::repeat_n('0', scale.unsigned_abs() as usize));
            }
        }
    }
    Ok(())
}

/// Debezium's `MicroDuration` as an ISO 8601 interval of seconds, which PostgreSQL's `interval`
/// reads: `"PT-90.000001S"`.
fn interval(out: &mut String, micros: i64) {
    let sign = if micros < 0 { "-" } else { "" };
    let magnitude = micros.unsigned_abs();
    let _ = write!(
        out,
        "\"PT{sign}{}.{:06}S\"",
        magnitude / 1_000_000,
        magnitude % 1_000_000
    );
}

/// Why a value does not read as its schema's type.
enum Bad {
    Type,
    Fraction,
    Range,
    Base64(base64::DecodeError),
}

impl Bad {
    fn explain(self, expected: &str, v: &Value, path: &Path<'_>) -> String {
        match self {
            Self::Type => format!("{path}: expected {expected}, found {}", kind(v)),
            Self::Fraction => {
                format!("{path}: expected {expected}, found a number that is not an integer")
            }
            Self::Range => {
                let text = v.to_string();
                let shown = if text.len() > 40 { "the number" } else { &text };
                format!("{path}: {shown} is out of range for {expected}")
            }
            Self::Base64(e) => format!("{path}: expected {expected}, found invalid base64 ({e})"),
        }
    }
}

fn integer(int: Int, v: &Value) -> Result<i64, Bad> {
    let Value::Number(n) = v else {
        return Err(Bad::Type);
    };
    let (min, max) = int.range();
    match n.as_i64() {
        Some(i) if (min..=max).contains(&i) => Ok(i),
        Some(_) => Err(Bad::Range),
        None if n.to_string().contains(['.', 'e', 'E']) => Err(Bad::Fraction),
        None => Err(Bad::Range),
    }
}

fn base64(v: &Value) -> Result<Vec<u8>, Bad> {
    let Value::String(text) = v else {
        return Err(Bad::Type);
    };
    STANDARD.decode(text).map_err(Bad::Base64)
}
