//! Explicit type conversions from record data to the text PostgreSQL's input functions accept.
//!
//! Guarantee: a value is either converted exactly or rejected with a message saying what was
//! found and what was expected. Numbers never pass through a float: their decimal digits are
//! kept as written (serde_json is built with `arbitrary_precision`). SQL NULL and COPY escaping
//! are the caller's job.

mod time;

pub use time::{
    format_timestamp_millis, parse_timestamp_millis, push_timestamp_millis, window_start_millis,
};

use serde_json::Value;

use crate::config::ColumnType;
use crate::error::quote;
pub(crate) use time::{civil_from_days, days_from_civil, parse_date};
use time::{MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};

/// What a value of each column type should look like, and the integer types' ranges: the
/// conversions' side of [`ColumnType`] (its names are the config's).
impl ColumnType {
    /// What a value for this type should look like, for error messages.
    fn expected(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Smallint => "an integer for smallint",
            Self::Integer => "an integer for integer",
            Self::Bigint => "an integer for bigint",
            Self::Numeric => "a decimal number for numeric",
            Self::Double => "a number for double precision",
            Self::Boolean => "a boolean",
            Self::Timestamptz => "an RFC 3339 timestamp or epoch milliseconds",
            Self::Date => "a date (YYYY-MM-DD)",
            Self::Uuid => "a UUID",
            Self::Jsonb => "JSON for jsonb",
            Self::Bytea => "base64 text for bytea",
        }
    }

    /// The inclusive range of an integer type.
    fn int_range(self) -> (i64, i64) {
        match self {
            Self::Smallint => (i16::MIN.into(), i16::MAX.into()),
            Self::Integer => (i32::MIN.into(), i32::MAX.into()),
            _ => (i64::MIN, i64::MAX),
        }
    }
}

/// Why NUL characters are refused rather than passed on.
const NO_NUL: &str = "PostgreSQL text cannot store it";

/// Where a value comes from.
pub enum Input<'a> {
    /// A JSON value from a key or value document (never Value::Null: the caller maps null to SQL NULL).
    Json(&'a Value),
    /// Raw bytes (a whole record key or value, a header value).
    Bytes(&'a [u8]),
}

/// Converts `input` for a column of type `ty`. Err says what was found and what was expected.
pub fn convert(ty: ColumnType, input: Input<'_>) -> Result<String, String> {
    match input {
        Input::Json(value) => convert_json(ty, value),
        Input::Bytes(bytes) => convert_bytes(ty, bytes),
    }
}

fn convert_json(ty: ColumnType, value: &Value) -> Result<String, String> {
    use ColumnType as T;
    match (ty, value) {
        (T::Jsonb, v) => to_jsonb(v),
        (_, Value::String(s)) => convert_str(ty, s, &format!("string {}", quote(s))),
        (T::Text | T::Numeric | T::Double, Value::Number(n)) => {
            let digits = n.to_string();
            if ty == T::Double {
                check_double_range(&digits, &digits)?;
            }
            Ok(digits)
        }
        (T::Smallint | T::Integer | T::Bigint, Value::Number(n)) => {
            let digits = n.to_string();
            integer(ty, &digits, &short(&digits))
        }
        (T::Timestamptz, Value::Number(n)) => {
            let digits = n.to_string();
            epoch_millis(&digits, &short(&digits))
        }
        (T::Text | T::Boolean, Value::Bool(b)) => Ok(b.to_string()),
        (T::Text, Value::Object(_) | Value::Array(_)) => Err(format!(
            "{}; use column type jsonb for JSON documents",
            mismatch(ty, &describe(value), "")
        )),
        _ => Err(mismatch(ty, &describe(value), "")),
    }
}

fn convert_bytes(ty: ColumnType, bytes: &[u8]) -> Result<String, String> {
    match ty {
        ColumnType::Bytea => return Ok(hex(bytes)),
        ColumnType::Uuid if bytes.len() == 16 => return Ok(canonical_uuid(&hex(bytes)[2..])),
        ColumnType::Jsonb => {
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|e| mismatch(ty, "bytes that are not valid JSON", &e.to_string()))?;
            return to_jsonb(&value);
        }
        _ => {}
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| mismatch(ty, "bytes that are not valid UTF-8", &e.to_string()))?;
    if ty == ColumnType::Text {
        return convert_str(ty, text, "");
    }
    let text = text.trim_ascii();
    convert_str(ty, text, &quote(text))
}

/// Converts text for `ty`; `found` describes the text in error messages.
fn convert_str(ty: ColumnType, s: &str, found: &str) -> Result<String, String> {
    use ColumnType as T;
    match ty {
        T::Text if s.contains('\0') => Err(mismatch(ty, "a NUL (\\0) character", NO_NUL)),
        T::Text => Ok(s.to_owned()),
        T::Smallint | T::Integer | T::Bigint => integer(ty, s, found),
        T::Numeric | T::Double => decimal(ty, s, found),
        T::Boolean if s.eq_ignore_ascii_case("true") => Ok("true".into()),
        T::Boolean if s.eq_ignore_ascii_case("false") => Ok("false".into()),
        T::Boolean => Err(mismatch(ty, found, "")),
        T::Timestamptz if is_integer(s) => epoch_millis(s, found),
        T::Timestamptz => match parse_timestamp_millis(s) {
            Ok(_) => Ok(s.to_owned()),
            Err(why) => Err(mismatch(ty, &quote(s), &why)),
        },
        T::Date => match parse_date(s.as_bytes()) {
            Ok(_) => Ok(s.to_owned()),
            Err(why) => Err(mismatch(ty, found, &why)),
        },
        T::Uuid => parse_uuid(s).ok_or_else(|| mismatch(ty, found, "")),
        T::Jsonb => to_jsonb(&Value::String(s.to_owned())),
        T::Bytea => decode_base64(s)
            .map(|b| hex(&b))
            .map_err(|why| mismatch(ty, found, &why)),
    }
}

/// "expected X, found Y" with an optional reason in parentheses.
fn mismatch(ty: ColumnType, found: &str, why: &str) -> String {
    if why.is_empty() {
        format!("expected {}, found {found}", ty.expected())
    } else {
        format!("expected {}, found {found} ({why})", ty.expected())
    }
}

/// A JSON value described for an error message.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => short(&n.to_string()),
        Value::String(s) => format!("string {}", quote(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// At most 60 characters of `s`, marked when cut.
fn short(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

/// `-?digits`: the only integer syntax accepted, so "1.0" and "1e3" are never rounded.
fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An integer column's value, written canonically; a leading `+` is accepted, as Postgres does.
fn integer(ty: ColumnType, s: &str, found: &str) -> Result<String, String> {
    let s = s
        .strip_prefix('+')
        .filter(|rest| rest.bytes().next().is_some_and(|b| b.is_ascii_digit()))
        .unwrap_or(s);
    if !is_integer(s) {
        let why = if is_decimal(s) {
            "has a fraction or exponent"
        } else {
            "not an integer"
        };
        return Err(mismatch(ty, found, why));
    }
    let (min, max) = ty.int_range();
    match s.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n.to_string()),
        _ => Err(mismatch(ty, found, &format!("out of range {min}..{max}"))),
    }
}

/// `[+-]?digits[.digits]?([eE][+-]?digits)?`, where ".5" and "5." count.
pub(crate) fn is_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize| {
        b.get(from..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_digits = digits(i);
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        frac_digits = digits(i + 1);
        i += 1 + frac_digits;
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let exp_digits = digits(i);
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == b.len()
}

fn decimal(ty: ColumnType, s: &str, found: &str) -> Result<String, String> {
    if !is_decimal(s) {
        let word = s.trim_start_matches(['+', '-']).to_ascii_lowercase();
        let why = if matches!(word.as_str(), "nan" | "inf" | "infinity") {
            "NaN and infinities are not accepted"
        } else {
            "not a decimal number"
        };
        return Err(mismatch(ty, found, why));
    }
    if ty == ColumnType::Double {
        check_double_range(s, found)?;
    }
    Ok(s.to_owned())
}

/// PostgreSQL rejects float8 input that overflows or underflows; say so before it does.
fn check_double_range(s: &str, found: &str) -> Result<(), String> {
    let value: f64 = s
        .parse()
        .map_err(|_| mismatch(ColumnType::Double, found, "not a number"))?;
    let mantissa_nonzero = s
        .bytes()
        .take_while(|c| !matches!(c, b'e' | b'E'))
        .any(|c| matches!(c, b'1'..=b'9'));
    if value.is_infinite() || (value == 0.0 && mantissa_nonzero) {
        return Err(mismatch(
            ColumnType::Double,
            found,
            "out of range for double precision",
        ));
    }
    Ok(())
}

/// Integer text as epoch milliseconds, written as an ISO timestamp in UTC.
fn epoch_millis(s: &str, found: &str) -> Result<String, String> {
    let ty = ColumnType::Timestamptz;
    if !is_integer(s) {
        return Err(mismatch(ty, found, "epoch milliseconds must be an integer"));
    }
    match s.parse::<i64>() {
        Ok(ms) if (MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&ms) => {
            Ok(format_timestamp_millis(ms))
        }
        _ => Err(mismatch(
            ty,
            found,
            "epoch milliseconds outside years 1-9999",
        )),
    }
}

fn to_jsonb(value: &Value) -> Result<String, String> {
    if contains_nul(value) {
        return Err(
            "expected JSON for jsonb, found a string containing \\u0000, which jsonb cannot store"
                .into(),
        );
    }
    serde_json::to_string(value).map_err(|e| format!("cannot serialize JSON for jsonb: {e}"))
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// `\x` followed by lowercase hex: PostgreSQL's bytea hex input format.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// 8-4-4-4-12 or 32 hex digits, any case, into lowercase 8-4-4-4-12.
fn parse_uuid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let digits: String = match b.len() {
        32 => s.to_owned(),
        36 if [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') => s.replace('-', ""),
        _ => return None,
    };
    if digits.len() != 32 || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    Some(canonical_uuid(&digits.to_ascii_lowercase()))
}

/// 32 lowercase hex digits as 8-4-4-4-12.
fn canonical_uuid(digits: &str) -> String {
    let (a, rest) = digits.split_at(8);
    let (b, rest) = rest.split_at(4);
    let (c, rest) = rest.split_at(4);
    let (d, e) = rest.split_at(4);
    format!("{a}-{b}-{c}-{d}-{e}")
}

/// Standard base64 (`+/`), padding optional.
fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    let body = s.trim_end_matches('=');
    let padding = s.len() - body.len();
    if padding > 2 || (padding > 0 && s.len() % 4 != 0) || body.len() % 4 == 1 {
        return Err("base64 has the wrong length or padding".into());
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("{:?} is not a base64 character", char::from(c))),
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
