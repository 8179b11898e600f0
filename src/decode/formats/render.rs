//! Writing decoded values as the JSON text the rest of the decoder reads: one rendering for every
//! format, so that a column reads the same text whether its record came as JSON, Avro, Protobuf or
//! Kafka Connect JSON.
//!
//! Guarantee: exact. Decimals are written digit for digit from their unscaled integer and scale,
//! never through a float; timestamps, dates and times as the text PostgreSQL's input functions
//! read back to the same instant; bytes as `bytea`'s hex input (`\x…`).

use std::fmt::Write;

/// The unit of an integer count since the epoch (or since midnight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    fn per_second(self) -> i64 {
        match self {
            Self::Millis => 1_000,
            Self::Micros => 1_000_000,
            Self::Nanos => 1_000_000_000,
        }
    }

    fn digits(self) -> usize {
        match self {
            Self::Millis => 3,
            Self::Micros => 6,
            Self::Nanos => 9,
        }
    }
}

/// `s` as a JSON string.
pub fn string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Most strings need no escape: one pass to find out, then a single copy.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

pub fn null(out: &mut String) {
    out.push_str("null");
}

pub fn boolean(out: &mut String, b: bool) {
    out.push_str(if b { "true" } else { "false" });
}

pub fn integer(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// A float as the shortest text that reads back to the same value; NaN and the infinities as the
/// strings PostgreSQL's `real` and `double precision` inputs take (JSON has no such numbers).
pub fn float(out: &mut String, f: f64, single: bool) {
    if f.is_nan() {
        out.push_str("\"NaN\"");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else if single {
        let _ = write!(out, "{}", f as f32);
    } else {
        let _ = write!(out, "{f}");
    }
}

/// Bytes as a JSON string holding `bytea`'s hex input: `"\\x0aff"`.
pub fn bytes(out: &mut String, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(b.len() * 2 + 6);
    out.push_str("\"\\\\x");
    for byte in b {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 15)] as char);
    }
    out.push('"');
}

/// A decimal from its unscaled value, big-endian two's complement of any length (Avro `decimal`,
/// Kafka Connect `Decimal`), and its scale, as a JSON number with exactly `scale` fraction digits.
pub fn decimal(out: &mut String, unscaled: &[u8], scale: u32) {
    let negative = unscaled.first().is_some_and(|b| b & 0x80 != 0);
    if unscaled.len() <= 16 {
        // The common case fits an i128: sign-extend it, no division by limbs.
        let mut be = [if negative { 0xff } else { 0 }; 16];
        be[16 - unscaled.len()..].copy_from_slice(unscaled);
        decimal_i128(out, i128::from_be_bytes(be), scale);
        return;
    }
    // Magnitude as big-endian 32-bit limbs.
    let mut magnitude: Vec<u8> = if negative {
        // Two's complement negation: invert, then add one.
        let mut m: Vec<u8> = unscaled.iter().map(|b| !b).collect();
        for byte in m.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        m
    } else {
        unscaled.to_vec()
    };
    let lead = magnitude.iter().take_while(|&&b| b == 0).count();
    magnitude.drain(..lead);
    let pad = (4 - magnitude.len() % 4) % 4;
    let mut limbs: Vec<u32> = std::iter::repeat_n(0u8, pad)
        .chain(magnitude)
        .collect::<Vec<u8>>()
        .chunks(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // Repeated division by 10^9 gives the digits, nine at a time, least significant first.
    let mut groups = Vec::new();
    while limbs.iter().any(|&l| l != 0) {
        let mut rem = 0u64;
        for limb in &mut limbs {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        groups.push(rem as u32);
        let zeros = limbs.iter().take_while(|&&l| l == 0).count();
        limbs.drain(..zeros);
    }
    let mut digits = String::new();
    for (i, g) in groups.iter().rev().enumerate() {
        if i == 0 {
            let _ = write!(digits, "{g}");
        } else {
            let _ = write!(digits, "{g:09}");
        }
    }
    scaled(out, negative, &digits, scale);
}

/// A decimal from an unscaled integer and a scale (Protobuf and small Avro decimals).
pub fn decimal_i128(out: &mut String, unscaled: i128, scale: u32) {
    let magnitude = unscaled.unsigned_abs();
    let mut buffer = itoa::Buffer::new();
    let digits = if magnitude == 0 {
        ""
    } else {
        buffer.format(magnitude)
    };
    scaled(out, unscaled < 0, digits, scale);
}

/// `digits` (the magnitude, or empty for zero) with a decimal point `scale` digits from the right.
fn scaled(out: &mut String, negative: bool, digits: &str, scale: u32) {
    let scale = scale as usize;
    let digits = if digits.is_empty() { "0" } else { digits };
    if negative && digits != "0" {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
}

/// A count of `unit`s since the Unix epoch as a JSON string in ISO 8601, UTC (`…Z`) when `utc`,
/// else a local date-time without zone. Years before 1 get PostgreSQL's ` BC` suffix.
pub fn timestamp(out: &mut String, value: i64, unit: Unit, utc: bool) {
    let per_second = unit.per_second();
    let seconds = value.div_euclid(per_second);
    let fraction = value.rem_euclid(per_second);
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    out.push('"');
    let bc = date_text(out, days);
    out.push('T');
    clock(out, in_day, fraction, unit);
    if utc {
        out.push('Z');
    }
    if bc {
        out.push_str(" BC");
    }
    out.push('"');
}

/// Days since the Unix epoch as a JSON string `"YYYY-MM-DD"` (` BC` before year 1).
pub fn date(out: &mut String, days: i64) {
    out.push('"');
    if date_text(out, days) {
        out.push_str(" BC");
    }
    out.push('"');
}

/// A time of day, as `unit`s since midnight, as a JSON string `"HH:MM:SS[.fraction]"`; an error
/// outside one day.
pub fn time(out: &mut String, value: i64, unit: Unit) -> Result<(), String> {
    let per_second = unit.per_second();
    if !(0..=86_400 * per_second).contains(&value) {
        return Err(format!("time of day {value} is outside 0 to 24:00"));
    }
    out.push('"');
    clock(out, value / per_second, value % per_second, unit);
    out.push('"');
    Ok(())
}

/// `YYYY-MM-DD`; true when the year is before 1 (written as its BC year).
fn date_text(out: &mut String, days: i64) -> bool {
    let (y, m, d) = crate::decode::convert::civil_from_days(days);
    let (year, bc) = if y < 1 { (1 - y, true) } else { (y, false) };
    if year > 9999 {
        // Beyond four digits (and PostgreSQL's range): written in full, never cut.
        out.push_str(itoa::Buffer::new().format(year / 10_000));
    }
    digits(out, year.rem_euclid(10_000) as u64, 4);
    out.push('-');
    digits(out, m as u64, 2);
    out.push('-');
    digits(out, d as u64, 2);
    bc
}

fn clock(out: &mut String, seconds: i64, fraction: i64, unit: Unit) {
    digits(out, (seconds / 3600) as u64, 2);
    out.push(':');
    digits(out, (seconds / 60 % 60) as u64, 2);
    out.push(':');
    digits(out, (seconds % 60) as u64, 2);
    if fraction != 0 {
        out.push('.');
        digits(out, fraction as u64, unit.digits());
    }
}

/// `value` in exactly `width` decimal digits, zero-padded (`value` has no more digits).
fn digits(out: &mut String, mut value: u64, width: usize) {
    let mut text = [b'0'; 20];
    for at in (0..width).rev() {
        text[at] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&text[..width]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut String)) -> String {
        let mut s = String::new();
        f(&mut s);
        s
    }

    #[test]
    fn decimals_are_exact_at_any_length() {
        assert_eq!(with(|o| decimal(o, &[0x30, 0x39], 2)), "123.45");
        assert_eq!(with(|o| decimal(o, &[0xcf, 0xc7], 2)), "-123.45");
        assert_eq!(with(|o| decimal(o, &[0x05], 4)), "0.0005");
        assert_eq!(with(|o| decimal(o, &[0xfb], 4)), "-0.0005");
        assert_eq!(with(|o| decimal(o, &[], 3)), "0.000");
        assert_eq!(with(|o| decimal(o, &[0x00, 0x00], 0)), "0");
        assert_eq!(with(|o| decimal(o, &[0x80], 0)), "-128");
        // 17 bytes, past an i128: 10^38 with scale 20.
        let big = 10u128.pow(38);
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&big.to_be_bytes());
        let mut expected = String::from("1");
        expected.push_str(&"0".repeat(18));
        expected.push('.');
        expected.push_str(&"0".repeat(20));
        assert_eq!(with(|o| decimal(o, &bytes, 20)), expected);
        for n in [
            -1_000_000_007i128,
            -1,
            0,
            1,
            999_999_999,
            i128::from(i64::MIN),
        ] {
            let be = n.to_be_bytes();
            assert_eq!(
                with(|o| decimal(o, &be, 3)),
                with(|o| decimal_i128(o, n, 3)),
                "{n}"
            );
        }
    }

    #[test]
    fn instants_dates_and_times_read_back_in_postgres_form() {
        assert_eq!(
            with(|o| timestamp(o, 1_764_780_780_123, Unit::Millis, true)),
            "\"2025-12-03T16:53:00.123Z\""
        );
        assert_eq!(
            with(|o| timestamp(o, -1, Unit::Micros, true)),
            "\"1969-12-31T23:59:59.999999Z\""
        );
        assert_eq!(
            with(|o| timestamp(o, 0, Unit::Nanos, false)),
            "\"1970-01-01T00:00:00\""
        );
        assert_eq!(with(|o| date(o, 0)), "\"1970-01-01\"");
        assert_eq!(with(|o| date(o, -719_163)), "\"0001-12-31 BC\"");
        assert_eq!(
            with(|o| time(o, 45_296_000_001, Unit::Micros).unwrap()),
            "\"12:34:56.000001\""
        );
        assert!(time(&mut String::new(), -1, Unit::Millis).is_err());
    }

    #[test]
    fn strings_bytes_and_floats() {
        assert_eq!(
            with(|o| string(o, "a\"b\\c\n\u{1}é")),
            r#""a\"b\\c\n\u0001é""#
        );
        assert_eq!(with(|o| bytes(o, &[0x0a, 0xff])), r#""\\x0aff""#);
        assert_eq!(with(|o| float(o, 0.1, false)), "0.1");
        assert_eq!(with(|o| float(o, f64::from(0.1f32), true)), "0.1");
        assert_eq!(with(|o| float(o, f64::NAN, false)), "\"NaN\"");
        assert_eq!(with(|o| float(o, f64::NEG_INFINITY, true)), "\"-Infinity\"");
        // The rendered text is valid JSON.
        let s = with(|o| string(o, "\u{7f}\u{1f}x"));
        assert_eq!(serde_json::from_str::<String>(&s).unwrap(), "\u{7f}\u{1f}x");
    }
}

/// An instant as whole seconds since the Unix epoch and `nanos` (below 10^9) into the next second
/// (Protobuf's `Timestamp`, whose range overflows a count of nanoseconds), as [`timestamp`] writes
/// it in UTC, with the fewest of 3, 6 or 9 fraction digits that hold it exactly.
pub fn timestamp_parts(out: &mut String, seconds: i64, nanos: u32) {
    let (fraction, unit) = if nanos % 1_000_000 == 0 {
        (nanos / 1_000_000, Unit::Millis)
    } else if nanos % 1_000 == 0 {
        (nanos / 1_000, Unit::Micros)
    } else {
        (nanos, Unit::Nanos)
    };
    let days = seconds.div_euclid(86_400);
    let in_day = seconds.rem_euclid(86_400);
    let (y, m, d) = crate::decode::convert::civil_from_days(days);
    if !(1..=9999).contains(&y) || nanos >= 1_000_000_000 {
        // Rare: the general (formatting) path, with its BC years.
        out.push('"');
        let bc = date_text(out, days);
        out.push('T');
        clock(out, in_day, i64::from(fraction), unit);
        out.push('Z');
        if bc {
            out.push_str(" BC");
        }
        out.push('"');
        return;
    }
    // Records carry one per row or more: digits by hand, not through `fmt`.
    let mut text = *b"\"0000-00-00T00:00:00.000000000Z\"";
    let mut put = |at: usize, width: usize, mut n: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(1, 4, y as u64);
    put(6, 2, m as u64);
    put(9, 2, d as u64);
    put(12, 2, (in_day / 3600) as u64);
    put(15, 2, (in_day / 60 % 60) as u64);
    put(18, 2, (in_day % 60) as u64);
    let end = if fraction == 0 {
        20
    } else {
        put(21, unit.digits(), u64::from(fraction));
        21 + unit.digits()
    };
    text[end] = b'Z';
    text[end + 1] = b'"';
    // ASCII throughout, so always UTF-8.
    out.push_str(std::str::from_utf8(&text[..end + 2]).unwrap_or_default());
}

#[cfg(test)]
mod timestamp_parts_tests {
    use super::*;

    fn parts(seconds: i64, nanos: u32) -> String {
        let mut s = String::new();
        timestamp_parts(&mut s, seconds, nanos);
        s
    }

    #[test]
    fn seconds_and_nanos_read_as_timestamp_writes_them_at_any_range() {
        for (seconds, nanos) in [
            (1_764_780_780, 123_000_000),
            (-1, 999_999_000),
            (0, 1),
            (0, 0),
        ] {
            let mut whole = String::new();
            let unit = if nanos % 1_000_000 == 0 {
                Unit::Millis
            } else if nanos % 1_000 == 0 {
                Unit::Micros
            } else {
                Unit::Nanos
            };
            let per = unit.per_second();
            let fraction = i64::from(nanos) / (1_000_000_000 / per);
            timestamp(&mut whole, seconds * per + fraction, unit, true);
            assert_eq!(parts(seconds, nanos), whole, "{seconds} {nanos}");
        }
        assert_eq!(parts(0, 1), "\"1970-01-01T00:00:00.000000001Z\"");
        assert_eq!(parts(-1, 999_999_000), "\"1969-12-31T23:59:59.999999Z\"");
        // Year 9999 with nanoseconds: past what an i64 of nanoseconds holds.
        assert_eq!(
            parts(253_402_300_799, 999_999_999),
            "\"9999-12-31T23:59:59.999999999Z\""
        );
        assert_eq!(
            parts(-62_135_596_800 - 86_400, 5_000_000),
            "\"0001-12-31T00:00:00.005Z BC\""
        );
        assert_eq!(parts(-62_135_596_800, 0), "\"0001-01-01T00:00:00Z\"");
        assert_eq!(parts(253_402_300_800, 0), "\"10000-01-01T00:00:00Z\"");
        assert_eq!(parts(86_399, 10_000), "\"1970-01-01T23:59:59.000010Z\"");
    }
}
