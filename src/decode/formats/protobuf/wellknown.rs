//! The well-known types written as the value they stand for: `Timestamp` as an instant,
//! `Duration` as an ISO 8601 interval, `confluent.type.Decimal` and `google.type.Decimal` as
//! exact numbers, `google.type.Date` as a date, `Empty` as `{}`. Values outside what the type
//! allows are errors, not guesses; `google.protobuf.Any` is refused. Both decoders write these
//! through [`Fields`], so they write them alike.

use std::fmt::Write as _;

use super::json::Scalar;
use super::plan::Special;
use crate::decode::formats::render;

/// The longest `confluent.type.Decimal` value accepted, in bytes (2,466 digits): its digits cost
/// time quadratic in its length.
const MAX_DECIMAL_BYTES: usize = 1024;

/// A decoded message's scalar fields, however it was decoded.
pub(super) trait Fields {
    fn type_name(&self) -> &str;
    /// Field `number`'s value, its default when absent; `None` when the type has no such scalar
    /// field.
    fn get(&self, number: u32) -> Option<Scalar<'_>>;
}

/// Writes a well-known type that stands for a value (not `Wrapper`, `Struct`, `Value` or
/// `ListValue`, which the decoders write as the fields they hold).
pub(super) fn write(out: &mut String, special: Special, f: &impl Fields) -> Result<(), String> {
    match special {
        Special::Timestamp => timestamp(out, f),
        Special::Duration => duration(out, f),
        Special::ConfluentDecimal => confluent_decimal(out, f),
        Special::Date => date(out, f),
        Special::GoogleDecimal => google_decimal(out, f),
        Special::Empty => {
            out.push_str("{}");
            Ok(())
        }
        Special::Any => Err("google.protobuf.Any is not supported".into()),
        Special::None
        | Special::Wrapper
        | Special::Struct
        | Special::Value
        | Special::ListValue => Err(format!("{} is not written as a value", f.type_name())),
    }
}

fn timestamp(out: &mut String, f: &impl Fields) -> Result<(), String> {
    let (seconds, nanos) = (int64(f, 1)?, int32(f, 2)?);
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| {
            format!("google.protobuf.Timestamp with nanos {nanos}: outside 0 to 999999999")
        })?;
    render::timestamp_parts(out, seconds, nanos);
    Ok(())
}

/// `"PT<seconds>.<fraction>S"`, the sign on the seconds (`PT-1.500S`): PostgreSQL's `interval`
/// reads that form, and not a sign before the `P`.
fn duration(out: &mut String, f: &impl Fields) -> Result<(), String> {
    let (seconds, nanos) = (int64(f, 1)?, int32(f, 2)?);
    if nanos.unsigned_abs() >= 1_000_000_000
        || (seconds < 0 && nanos > 0)
        || (seconds > 0 && nanos < 0)
    {
        return Err(format!(
            "google.protobuf.Duration of {seconds} seconds and {nanos} nanos: the nanos must be \
             below one second and of the seconds' sign"
        ));
    }
    out.push_str("\"PT");
    if seconds < 0 || nanos < 0 {
        out.push('-');
    }
    render::integer(out, seconds.unsigned_abs());
    let nanos = nanos.unsigned_abs();
    let _ = if nanos % 1_000_000 == 0 {
        write!(out, ".{:03}", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        write!(out, ".{:06}", nanos / 1_000)
    } else {
        write!(out, ".{nanos:09}")
    };
    out.push_str("S\"");
    Ok(())
}

fn confluent_decimal(out: &mut String, f: &impl Fields) -> Result<(), String> {
    let Some(Scalar::Bytes(unscaled)) = f.get(1) else {
        return Err(layout(f));
    };
    let scale = int32(f, 3)?;
    let scale = u32::try_from(scale)
        .map_err(|_| format!("confluent.type.Decimal with a negative scale ({scale})"))?;
    if unscaled.len() > MAX_DECIMAL_BYTES {
        return Err(format!(
            "confluent.type.Decimal of {} bytes: longer than the {MAX_DECIMAL_BYTES} accepted",
            unscaled.len()
        ));
    }
    match sign_extended(unscaled) {
        Some(bytes) => render::decimal_i128(out, i128::from_be_bytes(bytes), scale),
        None => render::decimal(out, unscaled, scale),
    }
    Ok(())
}

fn date(out: &mut String, f: &impl Fields) -> Result<(), String> {
    let (y, m, d) = (int32(f, 1)?, int32(f, 2)?, int32(f, 3)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=month_days).contains(&d) {
        return Err(format!(
            "google.type.Date {y}-{m}-{d} is not a full date (year 1 to 9999, a month, a day of it)"
        ));
    }
    let _ = write!(out, "\"{y:04}-{m:02}-{d:02}\"");
    Ok(())
}

fn google_decimal(out: &mut String, f: &impl Fields) -> Result<(), String> {
    let Some(Scalar::Str(text)) = f.get(1) else {
        return Err(layout(f));
    };
    if decimal_number(out, text) {
        Ok(())
    } else {
        Err(format!(
            "google.type.Decimal {:?} is not a decimal number",
            text.chars().take(64).collect::<String>()
        ))
    }
}

/// `text`, a decimal in `google.type.Decimal`'s grammar (`[+-]digits[.digits][e[+-]digits]`,
/// either side of the point may be empty but not both), written as a JSON number: no `+`, no
/// leading zeros, a digit either side of the point. False, writing nothing, when it is not one.
pub(super) fn decimal_number(out: &mut String, text: &str) -> bool {
    let b = text.as_bytes();
    let (negative, rest) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
    let int_len = digits(rest);
    let (int, rest) = rest.split_at(int_len);
    let (frac, rest) = match rest.first() {
        Some(b'.') => {
            let n = digits(&rest[1..]);
            (&rest[1..1 + n], &rest[1 + n..])
        }
        _ => (&rest[..0], rest),
    };
    if int.is_empty() && frac.is_empty() {
        return false;
    }
    let exponent = match rest {
        [] => None,
        [b'e' | b'E', tail @ ..] => {
            let (sign, exp) = match tail.first() {
                Some(b'-') => ("-", &tail[1..]),
                Some(b'+') => ("", &tail[1..]),
                _ => ("", tail),
            };
            if exp.is_empty() || digits(exp) != exp.len() {
                return false;
            }
            Some((sign, exp))
        }
        _ => return false,
    };
    // What is left to write is ASCII digits.
    let ascii = |out: &mut String, s: &[u8]| out.extend(s.iter().map(|&c| char::from(c)));
    if negative {
        out.push('-');
    }
    let int = &int[int.iter().take_while(|&&c| c == b'0').count()..];
    if int.is_empty() {
        out.push('0');
    } else {
        ascii(out, int);
    }
    if !frac.is_empty() {
        out.push('.');
        ascii(out, frac);
    }
    if let Some((sign, exp)) = exponent {
        out.push('e');
        out.push_str(sign);
        ascii(out, exp);
    }
    true
}

pub(super) fn layout(f: &impl Fields) -> String {
    format!(
        "{} does not have the fields of the well-known type of that name",
        f.type_name()
    )
}

fn int64(f: &impl Fields, number: u32) -> Result<i64, String> {
    match f.get(number) {
        Some(Scalar::I64(n)) => Ok(n),
        _ => Err(layout(f)),
    }
}

fn int32(f: &impl Fields, number: u32) -> Result<i32, String> {
    match f.get(number) {
        Some(Scalar::I32(n)) => Ok(n),
        _ => Err(layout(f)),
    }
}

/// A big-endian two's complement integer of at most 16 bytes, sign-extended to 16: the common
/// decimal renders without the arbitrary-length path's allocations.
fn sign_extended(unscaled: &[u8]) -> Option<[u8; 16]> {
    let pad = 16usize.checked_sub(unscaled.len())?;
    let fill = if unscaled.first().is_some_and(|b| b & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut bytes = [fill; 16];
    bytes[pad..].copy_from_slice(unscaled);
    Some(bytes)
}
