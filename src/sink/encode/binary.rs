//! PostgreSQL's binary COPY format for the column types where it saves the server work: the
//! server parses no text for integers, numerics and timestamps (about a third of a text COPY's
//! cost for the benchmark's rows), and the connector escapes nothing.
//!
//! Guarantee: a value is written in binary only when the result is exactly what the server's text
//! input function would make of the same text; for anything else [`encode`] says no, and the
//! caller writes the batch as COPY text instead (so PostgreSQL still decides, and reports, what
//! it does not accept). Values reach [`encode`] as the text the decoder would put in a COPY text
//! line.

use crate::decode::convert::{days_from_civil, parse_date};

/// The 11-byte signature, the flags word (no OIDs) and the header extension length (none).
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The file trailer: a field count of -1.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// A column's type as binary COPY writes it; only built-in types, never a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinType {
    Int2,
    Int4,
    Int8,
    /// `text`, `varchar(n)` and `json`: the text's bytes.
    Text,
    /// A version byte, then the JSON text.
    Jsonb,
    Numeric,
    Timestamptz,
    Bool,
    /// The 16 bytes.
    Uuid,
}

impl BinType {
    /// The type of a column whose catalog type `format_type()` prints as `format_type`, if
    /// binary COPY can feed it (type modifiers are applied by the server either way).
    pub fn from_catalog(format_type: &str) -> Option<Self> {
        let base = match format_type.split_once('(') {
            // "numeric(14,2)", "character varying(20)", "timestamp(3) with time zone".
            Some((name, rest)) => match rest.split_once(')') {
                Some((_, after)) => format!("{}{after}", name.trim_end()),
                None => return None,
            },
            None => format_type.to_owned(),
        };
        Some(match base.as_str() {
            "smallint" => Self::Int2,
            "integer" => Self::Int4,
            "bigint" => Self::Int8,
            "text" | "character varying" | "json" => Self::Text,
            "jsonb" => Self::Jsonb,
            "numeric" => Self::Numeric,
            "timestamp with time zone" => Self::Timestamptz,
            "boolean" => Self::Bool,
            "uuid" => Self::Uuid,
            _ => return None,
        })
    }

    /// Whether [`sort_key`] takes a key column of this type: its binary form is equal exactly
    /// when the values are equal in SQL. Integers and uuids always. Text and timestamptz
    /// (microseconds: one instant, one value, whatever offset its text had) only where the
    /// caller knows from the catalog that the table keeps them as written (`exact`: no
    /// `varchar(n)` or `timestamptz(p)` modifier, deterministic collations). Never numeric
    /// (`1.0` = `1.00`), booleans or JSON.
    pub fn sorts_exactly(self, exact: bool) -> bool {
        match self {
            Self::Int2 | Self::Int4 | Self::Int8 | Self::Uuid => true,
            Self::Text | Self::Timestamptz => exact,
            _ => false,
        }
    }
}

/// Starts a row of `fields` fields; returns where the count is, for [`end_row`].
pub fn start_row(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    at
}

/// Writes the field count of the row started at `at`.
pub fn end_row(out: &mut [u8], at: usize, fields: u16) {
    out[at..at + 2].copy_from_slice(&fields.to_be_bytes());
}

pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_be_bytes());
}

pub fn int8(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&n.to_be_bytes());
}

/// Appends a key field as [`encode`] wrote it (length word included) in a form whose bytes are
/// equal exactly when the values are, and order as Postgres orders the values (text as its
/// bytes, the `C` collation's order): NULL is `0`; a value is `1`, then an integer or a
/// timestamp's microseconds as 8 big-endian bytes with the sign bit flipped, a uuid's 16 bytes,
/// or a text's bytes and a `0` (text holds no NUL), so the keys of several columns can follow
/// each other. False for a type [`BinType::sorts_exactly`] never takes.
pub fn sort_key(ty: BinType, field: &[u8], out: &mut Vec<u8>) -> bool {
    if field.starts_with(&(-1i32).to_be_bytes()) {
        out.push(0);
        return true;
    }
    let bytes = field.get(4..).unwrap_or_default();
    let int = |v: i64| ((v as u64) ^ (1 << 63)).to_be_bytes();
    let int = match ty {
        BinType::Int2 => bytes
            .try_into()
            .ok()
            .map(|b| int(i16::from_be_bytes(b).into())),
        BinType::Int4 => bytes
            .try_into()
            .ok()
            .map(|b| int(i32::from_be_bytes(b).into())),
        BinType::Int8 | BinType::Timestamptz => {
            bytes.try_into().ok().map(|b| int(i64::from_be_bytes(b)))
        }
        _ => None,
    };
    out.push(1);
    match (ty, int) {
        (_, Some(int)) => out.extend_from_slice(&int),
        (BinType::Uuid, None) => out.extend_from_slice(bytes),
        (BinType::Text, None) => {
            out.extend_from_slice(bytes);
            out.push(0);
        }
        _ => {
            out.pop();
            return false;
        }
    }
    true
}

/// Appends `text` as a value of type `ty`; false (with `out` possibly extended, for the caller
/// to cut) when the value cannot be written exactly as the text input would read it.
pub fn encode(ty: BinType, text: &str, out: &mut Vec<u8>) -> bool {
    match ty {
        BinType::Int2 => fixed(out, text.parse::<i16>().ok().map(i16::to_be_bytes)),
        BinType::Int4 => fixed(out, text.parse::<i32>().ok().map(i32::to_be_bytes)),
        BinType::Int8 => fixed(out, text.parse::<i64>().ok().map(i64::to_be_bytes)),
        BinType::Bool => fixed(
            out,
            match text {
                "true" => Some([1]),
                "false" => Some([0]),
                _ => None,
            },
        ),
        BinType::Timestamptz => fixed(out, timestamptz_micros(text).map(i64::to_be_bytes)),
        BinType::Uuid => fixed(out, uuid(text)),
        // A NUL is refused by the text path with its own message: let it say so.
        BinType::Text | BinType::Jsonb if text.as_bytes().contains(&0) => false,
        BinType::Text => text_without_nul(text, out),
        BinType::Jsonb => jsonb_without_nul(text, out),
        BinType::Numeric => {
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            if !numeric(text, out) {
                return false;
            }
            set_length(out, at)
        }
    }
}

/// Appends `text` as a `text` value; the caller knows it holds no NUL (the server refuses one):
/// [`encode`] after its search, or a string read without escapes out of valid JSON.
pub fn text_without_nul(text: &str, out: &mut Vec<u8>) -> bool {
    debug_assert!(!text.as_bytes().contains(&0));
    length_prefixed(out, |out| out.extend_from_slice(text.as_bytes()))
}

/// Appends JSON text as a `jsonb` value (format version 1, then the text); the caller knows it
/// holds no NUL: [`encode`] after its search, or valid JSON (where a raw NUL is a control
/// character, which JSON forbids).
pub fn jsonb_without_nul(json: &str, out: &mut Vec<u8>) -> bool {
    debug_assert!(!json.as_bytes().contains(&0));
    length_prefixed(out, |out| {
        out.push(1);
        out.extend_from_slice(json.as_bytes());
    })
}

/// The standard form (`8-4-4-4-12` hex digits) or 32 hex digits, in either case: forms the
/// server reads as the same 16 bytes. Braces and other hyphen positions are left to its parser.
fn uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    let hyphens = match b.len() {
        36 if [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') => true,
        32 => false,
        _ => return None,
    };
    let mut digits = b
        .iter()
        .enumerate()
        .filter(|&(i, _)| !hyphens || ![8, 13, 18, 23].contains(&i));
    let mut out = [0u8; 16];
    for byte in &mut out {
        let mut next = || digits.next().and_then(|(_, &c)| (c as char).to_digit(16));
        *byte = (next()? << 4 | next()?) as u8;
    }
    Some(out)
}

fn fixed<const N: usize>(out: &mut Vec<u8>, bytes: Option<[u8; N]>) -> bool {
    let Some(bytes) = bytes else {
        return false;
    };
    out.extend_from_slice(&(N as i32).to_be_bytes());
    out.extend_from_slice(&bytes);
    true
}

fn length_prefixed(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> bool {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write(out);
    set_length(out, at)
}

/// Fills in the length word at `at` for the bytes after it; false if it does not fit.
fn set_length(out: &mut [u8], at: usize) -> bool {
    let Ok(len) = i32::try_from(out.len() - at - 4) else {
        return false;
    };
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    true
}

/// The most digits and the largest exponent written in binary; longer or larger numbers go as
/// text, where the server applies its own limits and says what they are.
const MAX_NUMERIC_DIGITS: usize = 300;
const MAX_NUMERIC_EXPONENT: i64 = 300;

/// `[+-]?digits[.digits]?([eE][+-]?digits)?` as a `numeric`: the digit count, weight, sign and
/// display scale header, then base-10000 digits, as `numeric_send` writes them.
fn numeric(text: &str, out: &mut Vec<u8>) -> bool {
    let b = text.as_bytes();
    let (negative, b) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let (int, rest) = b.split_at(int_len);
    let (frac, rest) = match rest.split_first() {
        Some((b'.', after)) => {
            let n = after.iter().take_while(|c| c.is_ascii_digit()).count();
            after.split_at(n)
        }
        _ => (&rest[..0], rest),
    };
    if int.is_empty() && frac.is_empty() {
        return false;
    }
    let exponent = match rest.split_first() {
        None => 0,
        Some((b'e' | b'E', digits)) if digits.len() <= 7 => {
            match std::str::from_utf8(digits).map(str::parse::<i64>) {
                Ok(Ok(e)) => e,
                _ => return false,
            }
        }
        Some(_) => return false,
    };
    if exponent.abs() > MAX_NUMERIC_EXPONENT || int.len() + frac.len() > MAX_NUMERIC_DIGITS {
        return false;
    }
    // The value is 0.DDDD × 10^point, with D the integer digits then the fraction digits.
    let total = int.len() + frac.len();
    let digit = |k: usize| {
        if k < int.len() {
            int[k]
        } else {
            frac[k - int.len()]
        }
    };
    let dscale = (frac.len() as i64 - exponent).max(0);
    let leading_zeros = (0..total).take_while(|&k| digit(k) == b'0').count();
    let trailing_zeros = (leading_zeros..total)
        .rev()
        .take_while(|&k| digit(k) == b'0')
        .count();
    let significant = total - leading_zeros - trailing_zeros;
    let point = int.len() as i64 + exponent - leading_zeros as i64;
    // Significant digit k (0-based) has decimal exponent point - 1 - k; base-10000 digit number
    // floor(x / 4) holds exponent x. So the first base-10000 digit holds `pad` zeros before the
    // first significant digit, and the last is filled up with zeros.
    let (weight, pad) = if significant == 0 {
        (0, 0)
    } else {
        (
            (point - 1).div_euclid(4),
            3 - (point - 1).rem_euclid(4) as usize,
        )
    };
    let groups = (pad + significant).div_ceil(4);
    let (Ok(weight), Ok(ndigits), Ok(dscale)) = (
        i16::try_from(weight),
        u16::try_from(groups),
        u16::try_from(dscale),
    ) else {
        return false;
    };
    let sign: u16 = if negative && significant > 0 {
        0x4000
    } else {
        0
    };
    for word in [ndigits, weight as u16, sign, dscale] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    // The significant digits' values, after `pad` zeros and followed by up to three.
    let mut padded = [0u8; 3 + MAX_NUMERIC_DIGITS + 3];
    for (slot, k) in padded[pad..]
        .iter_mut()
        .zip(leading_zeros..total - trailing_zeros)
    {
        *slot = digit(k) - b'0';
    }
    for g in padded[..groups * 4].chunks_exact(4) {
        let value =
            u16::from(g[0]) * 1000 + u16::from(g[1]) * 100 + u16::from(g[2]) * 10 + u16::from(g[3]);
        out.extend_from_slice(&value.to_be_bytes());
    }
    true
}

/// Microseconds from 2000-01-01T00:00:00Z (the server's epoch) for an RFC 3339 timestamp with
/// an explicit offset and at most six fraction digits; `None` for anything else (other forms,
/// a leap second, finer fractions that the server would round).
fn timestamptz_micros(text: &str) -> Option<i64> {
    const SERVER_EPOCH_S: i64 = 946_684_800;
    let b = text.as_bytes();
    let (y, mo, d) = parse_date(b.get(..10)?).ok()?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let two = |at: usize| -> Option<i64> {
        let p = b.get(at..at + 2)?;
        p.iter()
            .all(u8::is_ascii_digit)
            .then(|| i64::from(p[0] - b'0') * 10 + i64::from(p[1] - b'0'))
    };
    let (h, mi, s) = (two(11)?, two(14)?, two(17)?);
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0;
    if b.get(i) == Some(&b'.') {
        let count = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if count == 0 || count > 6 {
            return None;
        }
        for &c in &b[i + 1..i + 1 + count] {
            micros = micros * 10 + i64::from(c - b'0');
        }
        micros *= 10i64.pow(6 - count as u32);
        i += 1 + count;
    }
    let offset_s = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (two(i + 1)?, two(i + 4)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let s = oh * 3600 + om * 60;
            if *sign == b'-' {
                -s
            } else {
                s
            }
        }
        _ => return None,
    };
    let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset_s;
    Some((seconds - SERVER_EPOCH_S) * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_words(text: &str) -> Option<Vec<i64>> {
        let mut out = Vec::new();
        numeric(text, &mut out).then(|| {
            out.chunks(2)
                .map(|w| i64::from(i16::from_be_bytes([w[0], w[1]])))
                .collect()
        })
    }

    #[test]
    fn numerics_are_written_as_the_server_reads_their_text() {
        // [ndigits, weight, sign, dscale, digits...]
        let cases: &[(&str, &[i64])] = &[
            ("0", &[0, 0, 0, 0]),
            ("-0.00", &[0, 0, 0, 2]),
            ("12.30", &[2, 0, 0, 2, 12, 3000]),
            ("-12345.6789", &[3, 1, 0x4000, 4, 1, 2345, 6789]),
            ("10000", &[1, 1, 0, 0, 1]),
            ("0.0001", &[1, -1, 0, 4, 1]),
            ("0.00012", &[2, -1, 0, 5, 1, 2000]),
            ("1e5", &[1, 1, 0, 0, 10]),
            ("1.5E-3", &[1, -1, 0, 4, 15]),
            ("+.5", &[1, -1, 0, 1, 5000]),
            ("5.", &[1, 0, 0, 0, 5]),
            (
                "123456789012345678",
                &[5, 4, 0, 0, 12, 3456, 7890, 1234, 5678],
            ),
            ("000120.500", &[2, 0, 0, 3, 120, 5000]),
        ];
        for (text, want) in cases {
            assert_eq!(numeric_words(text).as_deref(), Some(*want), "{text}");
        }
        for text in ["", ".", "-", "1e", "1e+", "NaN", "1x", "1e1000", "1.2.3"] {
            assert_eq!(numeric_words(text), None, "{text}");
        }
    }

    #[test]
    fn timestamps_with_an_offset_and_microseconds_at_most_are_written() {
        assert_eq!(timestamptz_micros("2000-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            timestamptz_micros("2000-01-01T01:00:00.5+01:00"),
            Some(500_000)
        );
        assert_eq!(timestamptz_micros("1999-12-31 23:59:59.999999z"), Some(-1));
        assert_eq!(
            timestamptz_micros("2026-11-03t10:20:30.123-02:30"),
            Some(((9803 * 86_400 + 12 * 3600 + 50 * 60 + 30) * 1_000_000) + 123_000)
        );
        for text in [
            "2026-11-03T10:20:30.1234567Z",
            "2026-11-03T23:59:60Z",
            "2026-11-03T10:20:30",
            "2026-11-03T10:20:30+0100",
            "2026-02-30T10:20:30Z",
            "0000-01-01T00:00:00Z",
            "infinity",
        ] {
            assert_eq!(timestamptz_micros(text), None, "{text}");
        }
    }

    #[test]
    fn catalog_types_map_to_binary_types_with_or_without_modifiers() {
        for (name, want) in [
            ("numeric(14,2)", Some(BinType::Numeric)),
            ("character varying(20)", Some(BinType::Text)),
            ("timestamp(3) with time zone", Some(BinType::Timestamptz)),
            ("timestamp without time zone", None),
            ("bigint", Some(BinType::Int8)),
            ("jsonb", Some(BinType::Jsonb)),
            ("json", Some(BinType::Text)),
            ("character(3)", None),
            ("bigint[]", None),
            ("public.money_domain", None),
        ] {
            assert_eq!(BinType::from_catalog(name), want, "{name}");
        }
    }

    #[test]
    fn values_that_the_text_input_reads_differently_are_refused() {
        let mut out = Vec::new();
        for (ty, text) in [
            (BinType::Int4, "3000000000"),
            (BinType::Int8, " 1"),
            (BinType::Int8, "1.0"),
            (BinType::Bool, "t"),
            (BinType::Text, "a\0b"),
            (BinType::Jsonb, "\"\0\""),
        ] {
            assert!(!encode(ty, text, &mut out), "{ty:?} {text:?}");
        }
        out.clear();
        assert!(encode(BinType::Jsonb, "{}", &mut out));
        assert_eq!(out, [0, 0, 0, 3, 1, b'{', b'}']);
    }

    #[test]
    fn uuids_in_the_standard_and_plain_forms_are_their_sixteen_bytes_and_others_go_as_text() {
        let want: [u8; 16] = [
            0x0f, 0x8e, 0x4c, 0x2a, 0x1b, 0x3d, 0x4e, 0x5f, 0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f,
            0x4a, 0x5b,
        ];
        for text in [
            "0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
            "0F8E4C2A-1B3D-4E5F-8A9B-0C1D2E3F4A5B",
            "0f8e4c2a1b3d4e5f8a9b0c1d2e3f4a5b",
        ] {
            assert_eq!(uuid(text), Some(want), "{text}");
        }
        for text in [
            "{0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b}",
            "0f8e-4c2a-1b3d-4e5f-8a9b-0c1d-2e3f-4a5b",
            "0f8e4c2a-1b3d-4e5f-8a9b0c1d2e3f4a5b00",
            "0f8e4c2a11b3d14e5f18a9b10c1d2e3f4a5b",
            "0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5g",
            "0f8e4c2a1b3d4e5f8a9b0c1d2e3f4a5",
            "0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b ",
            "",
        ] {
            assert_eq!(uuid(text), None, "{text}");
        }
    }

    #[test]
    fn sort_keys_are_equal_and_ordered_as_postgres_compares_the_keys() {
        let key = |ty: BinType, text: Option<&str>| {
            let mut field = Vec::new();
            match text {
                Some(text) => assert!(encode(ty, text, &mut field), "{text}"),
                None => null(&mut field),
            }
            let mut out = Vec::new();
            assert!(sort_key(ty, &field, &mut out));
            out
        };
        // Ascending as Postgres sorts them (uuids bytewise, text in the C collation).
        let cases: [(BinType, &[&str]); 6] = [
            (BinType::Int2, &["-32768", "-1", "0", "255", "256", "32767"]),
            (
                BinType::Int4,
                &["-2147483648", "-256", "-1", "0", "1", "2147483647"],
            ),
            (
                BinType::Int8,
                &["-9223372036854775808", "-1", "0", "9223372036854775807"],
            ),
            (
                BinType::Uuid,
                &[
                    "00000000-0000-0000-0000-000000000000",
                    "00000000-0000-0000-8000-000000000000",
                    "7fffffff-ffff-ffff-0000-000000000000",
                    "80000000-0000-0000-0000-000000000000",
                    "ffffffff-ffff-ffff-ffff-ffffffffffff",
                ],
            ),
            (BinType::Text, &["", "A", "a", "a b", "ab", "b", "é", "😀"]),
            (
                BinType::Timestamptz,
                &[
                    "1969-12-31T23:59:59.999999Z",
                    "2000-01-01T00:00:00Z",
                    "2026-01-01T00:00:00+01:00",
                    "2026-01-01T00:00:00.000001Z",
                ],
            ),
        ];
        for (ty, values) in cases {
            // NULL first, then every value above the one before it.
            let mut before = key(ty, None);
            for value in values {
                let now = key(ty, Some(value));
                assert!(before < now, "{ty:?}: {value:?}");
                before = now;
            }
        }
        // Composite keys: a shorter text before a longer one with the same start.
        let pair =
            |a: &str, b: &str| [key(BinType::Text, Some(a)), key(BinType::Int8, Some(b))].concat();
        assert!(pair("a", "9") < pair("ab", "0"));
        assert!(pair("a", "-1") < pair("a", "0"));
        let mut out = Vec::new();
        assert!(!sort_key(BinType::Numeric, &[0, 0, 0, 1, 5], &mut out));
        assert!(out.is_empty());
        assert!(!BinType::Text.sorts_exactly(false) && BinType::Text.sorts_exactly(true));
        assert!(!BinType::Timestamptz.sorts_exactly(false));
        assert!(BinType::Timestamptz.sorts_exactly(true));
        assert!(!BinType::Numeric.sorts_exactly(true) && BinType::Uuid.sorts_exactly(false));
        // One instant written with two offsets is one key.
        assert_eq!(
            key(BinType::Timestamptz, Some("2026-01-01T01:30:00+01:30")),
            key(BinType::Timestamptz, Some("2026-01-01T00:00:00Z"))
        );
    }
}
