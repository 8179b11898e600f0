//! Unit tests for [`super`]: every column type with good and bad values, and the calendar.

use super::*;
use ColumnType as T;

/// Converts the JSON document `json` for `ty`.
fn json(ty: ColumnType, json: &str) -> Result<String, String> {
    let value: Value = serde_json::from_str(json).expect("test JSON parses");
    convert(ty, Input::Json(&value))
}

fn bytes(ty: ColumnType, raw: &[u8]) -> Result<String, String> {
    convert(ty, Input::Bytes(raw))
}

/// Asserts `result` is an error whose message contains every one of `parts`.
#[track_caller]
fn assert_err(result: Result<String, String>, parts: &[&str]) {
    let message = result.expect_err("conversion should fail");
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

fn ok(s: &str) -> Result<String, String> {
    Ok(s.to_owned())
}

#[test]
fn text_takes_strings_numbers_and_booleans_but_not_documents() {
    assert_eq!(json(T::Text, r#""héllo""#), ok("héllo"));
    assert_eq!(json(T::Text, "-0.50"), ok("-0.50"));
    assert_eq!(json(T::Text, "true"), ok("true"));
    assert_err(
        json(T::Text, r#"{"a":1}"#),
        &["expected text, found an object", "jsonb"],
    );
    assert_err(json(T::Text, "[1]"), &["found an array"]);
    assert_err(json(T::Text, r#""a\u0000b""#), &["NUL"]);
    assert_eq!(bytes(T::Text, b" raw "), ok(" raw "));
    assert_err(bytes(T::Text, &[0xff, 0xfe]), &["not valid UTF-8"]);
}

#[test]
fn integers_keep_their_range() {
    assert_eq!(json(T::Smallint, "-32768"), ok("-32768"));
    assert_eq!(json(T::Smallint, "32767"), ok("32767"));
    assert_err(
        json(T::Smallint, "70000"),
        &["expected an integer for smallint, found 70000 (out of range -32768..32767)"],
    );
    assert_eq!(json(T::Integer, "2147483647"), ok("2147483647"));
    assert_err(
        json(T::Integer, "-2147483649"),
        &["out of range -2147483648..2147483647"],
    );
    assert_eq!(
        json(T::Bigint, "-9223372036854775808"),
        ok("-9223372036854775808")
    );
    assert_eq!(
        json(T::Bigint, "9223372036854775807"),
        ok("9223372036854775807")
    );
    assert_err(json(T::Bigint, "9223372036854775808"), &["out of range"]);
    assert_err(json(T::Bigint, "-9223372036854775809"), &["out of range"]);
    assert_err(
        json(T::Bigint, "123456789012345678901234567890"),
        &["out of range"],
    );
}

#[test]
fn integers_reject_fractions_exponents_and_other_values() {
    assert_eq!(json(T::Integer, r#""42""#), ok("42"));
    assert_err(
        json(T::Integer, "1.0"),
        &["found 1.0 (has a fraction or exponent)"],
    );
    assert_err(json(T::Integer, "1e3"), &["has a fraction or exponent"]);
    assert_err(json(T::Integer, "1.5"), &["found 1.5"]);
    assert_err(json(T::Integer, r#""1.0""#), &["found string \"1.0\""]);
    assert_err(json(T::Integer, r#""abc""#), &["not an integer"]);
    assert_err(
        json(T::Integer, "true"),
        &["expected an integer for integer, found boolean true"],
    );
    assert_eq!(bytes(T::Bigint, b" -17\n"), ok("-17"));
    assert_eq!(bytes(T::Bigint, b"+0017"), ok("17"));
    assert_eq!(json(T::Smallint, r#""+7""#), ok("7"));
    assert_err(bytes(T::Bigint, b"+-7"), &["found \"+-7\""]);
    assert_err(bytes(T::Bigint, b"++7"), &["not an integer"]);
    assert_err(bytes(T::Smallint, b"12x"), &["found \"12x\""]);
}

#[test]
fn numeric_keeps_exact_digits() {
    let exact = "12345678901234567890.123456789";
    assert_eq!(json(T::Numeric, exact), ok(exact));
    assert_eq!(json(T::Numeric, "-0.50"), ok("-0.50"));
    // serde_json writes the exponent sign it normalised in; PostgreSQL reads both forms.
    assert_eq!(json(T::Numeric, "1e3"), ok("1e+3"));
    for good in ["+1.25", ".5", "5.", "-3E-7", "007"] {
        assert_eq!(json(T::Numeric, &format!("{good:?}")), ok(good));
    }
    assert_err(
        json(T::Numeric, r#""NaN""#),
        &["NaN and infinities are not accepted"],
    );
    assert_err(json(T::Numeric, r#""-Infinity""#), &["NaN and infinities"]);
    for bad in ["", ".", "1e", "1.2.3", "0x10", " 1"] {
        assert_err(
            json(T::Numeric, &format!("{bad:?}")),
            &["not a decimal number"],
        );
    }
    assert_err(
        json(T::Numeric, "false"),
        &["expected a decimal number for numeric"],
    );
    assert_eq!(bytes(T::Numeric, b"99.990\r\n"), ok("99.990"));
}

#[test]
fn double_takes_numbers_as_written_within_range() {
    assert_eq!(json(T::Double, "0.1"), ok("0.1"));
    assert_eq!(json(T::Double, r#""-2.5e10""#), ok("-2.5e10"));
    assert_err(json(T::Double, r#""Infinity""#), &["NaN and infinities"]);
    assert_err(
        json(T::Double, "1e400"),
        &["out of range for double precision"],
    );
    assert_err(
        json(T::Double, "1e-400"),
        &["out of range for double precision"],
    );
    assert_eq!(json(T::Double, "0e-400"), ok("0e-400"));
}

#[test]
fn booleans_are_explicit() {
    assert_eq!(json(T::Boolean, "true"), ok("true"));
    assert_eq!(json(T::Boolean, r#""FALSE""#), ok("false"));
    assert_err(
        json(T::Boolean, r#""yes""#),
        &["expected a boolean, found string \"yes\""],
    );
    assert_err(json(T::Boolean, "1"), &["expected a boolean, found 1"]);
    assert_err(json(T::Boolean, "0"), &["found 0"]);
    assert_eq!(bytes(T::Boolean, b"True"), ok("true"));
    assert_err(bytes(T::Boolean, b"t"), &["expected a boolean"]);
}

#[test]
fn timestamps_pass_through_or_come_from_epoch_millis() {
    let text = "2024-03-01T12:34:56.123456+05:30";
    assert_eq!(json(T::Timestamptz, &format!("{text:?}")), ok(text));
    assert_eq!(
        json(T::Timestamptz, "951782400000"),
        ok("2000-02-29T00:00:00.000Z")
    );
    assert_eq!(
        json(T::Timestamptz, r#""-1""#),
        ok("1969-12-31T23:59:59.999Z")
    );
    assert_eq!(bytes(T::Timestamptz, b"0"), ok("1970-01-01T00:00:00.000Z"));
    assert_err(
        json(T::Timestamptz, r#""yesterday""#),
        &["expected an RFC 3339 timestamp or epoch milliseconds, found \"yesterday\""],
    );
    assert_err(
        json(T::Timestamptz, r#""2023-02-29T00:00:00Z""#),
        &["day 29"],
    );
    assert_err(json(T::Timestamptz, "1.5"), &["must be an integer"]);
    assert_err(
        json(T::Timestamptz, "9223372036854775807"),
        &["outside years 1-9999"],
    );
    assert_err(json(T::Timestamptz, "true"), &["found boolean true"]);
}

#[test]
fn dates_are_validated_including_leap_years() {
    assert_eq!(json(T::Date, r#""2000-02-29""#), ok("2000-02-29"));
    assert_eq!(json(T::Date, r#""2024-02-29""#), ok("2024-02-29"));
    assert_err(
        json(T::Date, r#""1900-02-29""#),
        &["day 29 is out of range for 1900-02"],
    );
    assert_err(json(T::Date, r#""2023-13-01""#), &["month 13"]);
    assert_err(json(T::Date, r#""2023-04-31""#), &["day 31"]);
    assert_err(json(T::Date, r#""2023-4-1""#), &["YYYY-MM-DD"]);
    assert_err(
        json(T::Date, "20230401"),
        &["expected a date (YYYY-MM-DD), found 20230401"],
    );
}

#[test]
fn uuids_become_lowercase_canonical_text() {
    let canonical = "0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b";
    assert_eq!(
        json(T::Uuid, r#""0F8E4C2A-1B3D-4E5F-8A9B-0C1D2E3F4A5B""#),
        ok(canonical)
    );
    assert_eq!(
        json(T::Uuid, r#""0f8e4c2a1b3d4e5f8a9b0c1d2e3f4a5b""#),
        ok(canonical)
    );
    assert_eq!(bytes(T::Uuid, canonical.as_bytes()), ok(canonical));
    let raw = [
        0x0f, 0x8e, 0x4c, 0x2a, 0x1b, 0x3d, 0x4e, 0x5f, 0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a,
        0x5b,
    ];
    assert_eq!(bytes(T::Uuid, &raw), ok(canonical));
    assert_err(
        json(T::Uuid, r#""{0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b}""#),
        &["expected a UUID"],
    );
    assert_err(
        json(T::Uuid, r#""0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5g""#),
        &["expected a UUID"],
    );
    assert_err(
        json(T::Uuid, r#""0f8e4c2a1-b3d-4e5f-8a9b-0c1d2e3f4a5b""#),
        &["expected a UUID"],
    );
    assert_err(json(T::Uuid, "12"), &["found 12"]);
}

#[test]
fn jsonb_reserializes_and_keeps_number_digits() {
    assert_eq!(
        json(T::Jsonb, r#"{"a": [1, 2.50]}"#),
        ok(r#"{"a":[1,2.50]}"#)
    );
    assert_eq!(json(T::Jsonb, r#""x""#), ok(r#""x""#));
    assert_eq!(
        bytes(T::Jsonb, b" {\"n\": 12345678901234567890.1} "),
        ok(r#"{"n":12345678901234567890.1}"#)
    );
    assert_err(bytes(T::Jsonb, b"{oops"), &["not valid JSON", "line 1"]);
    assert_err(json(T::Jsonb, r#"["\u0000"]"#), &["\\u0000"]);
}

#[test]
fn bytea_decodes_base64_with_or_without_padding() {
    assert_eq!(json(T::Bytea, r#""aGk=""#), ok("\\x6869"));
    assert_eq!(json(T::Bytea, r#""aGk""#), ok("\\x6869"));
    assert_eq!(json(T::Bytea, r#""aA==""#), ok("\\x68"));
    assert_eq!(json(T::Bytea, r#""aA""#), ok("\\x68"));
    assert_eq!(json(T::Bytea, r#""+/8=""#), ok("\\xfbff"));
    assert_eq!(json(T::Bytea, r#""""#), ok("\\x"));
    assert_err(json(T::Bytea, r#""a""#), &["wrong length or padding"]);
    assert_err(json(T::Bytea, r#""aGk==""#), &["wrong length or padding"]);
    assert_err(
        json(T::Bytea, r#""a-k=""#),
        &["'-' is not a base64 character"],
    );
    assert_err(
        json(T::Bytea, "5"),
        &["expected base64 text for bytea, found 5"],
    );
    assert_eq!(bytes(T::Bytea, &[0x00, 0xab, 0xff]), ok("\\x00abff"));
}

#[test]
fn long_found_values_are_truncated() {
    let long = "x".repeat(500);
    let message = json(T::Boolean, &format!("{long:?}")).expect_err("not a boolean");
    assert!(message.len() < 120 && message.ends_with('…'), "{message}");
}

#[test]
fn timestamp_parsing_applies_offsets_and_validates_fields() {
    let utc = parse_timestamp_millis("2024-01-01T00:00:00Z");
    assert_eq!(utc, Ok(1_704_067_200_000));
    assert_eq!(parse_timestamp_millis("2024-01-01T05:30:00+05:30"), utc);
    assert_eq!(parse_timestamp_millis("2023-12-31 18:30:00-05:30"), utc);
    assert_eq!(parse_timestamp_millis("1970-01-01T00:00:00.9999z"), Ok(999));
    assert_eq!(parse_timestamp_millis("1970-01-01T00:00:00.5Z"), Ok(500));
    assert_eq!(parse_timestamp_millis("1969-12-31T23:59:59.999Z"), Ok(-1));
    assert_eq!(
        parse_timestamp_millis("2000-02-29T00:00:00Z"),
        Ok(951_782_400_000)
    );
    assert!(parse_timestamp_millis("2016-12-31T23:59:60Z").is_ok());
    for bad in [
        "2001-02-29T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:60:00Z",
        "2024-01-01T00:00:61Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00+0530",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01",
        "2024-01-01T00:00:00Zjunk",
        "ü024-01-01T00:00:00Z",
    ] {
        assert!(parse_timestamp_millis(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn epoch_millis_format_round_trips() {
    assert_eq!(format_timestamp_millis(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_timestamp_millis(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(
        format_timestamp_millis(951_782_400_000),
        "2000-02-29T00:00:00.000Z"
    );
    assert_eq!(
        format_timestamp_millis(MIN_TIMESTAMP_MS),
        "0001-01-01T00:00:00.000Z"
    );
    assert_eq!(
        format_timestamp_millis(MAX_TIMESTAMP_MS),
        "9999-12-31T23:59:59.999Z"
    );
    for ms in [
        0,
        -1,
        1,
        951_782_400_000,
        -86_400_001,
        MIN_TIMESTAMP_MS,
        MAX_TIMESTAMP_MS,
    ] {
        assert_eq!(parse_timestamp_millis(&format_timestamp_millis(ms)), Ok(ms));
    }
    let _ = format_timestamp_millis(i64::MIN);
    let _ = format_timestamp_millis(i64::MAX);
    // Years outside 1-9999 keep every digit and their sign.
    assert_eq!(
        format_timestamp_millis(MIN_TIMESTAMP_MS - 1),
        "0000-12-31T23:59:59.999Z"
    );
    assert_eq!(
        format_timestamp_millis(MAX_TIMESTAMP_MS + 1),
        "10000-01-01T00:00:00.000Z"
    );
    assert_eq!(
        format_timestamp_millis(MIN_TIMESTAMP_MS - 367 * 86_400_000),
        "-0001-12-31T00:00:00.000Z"
    );
    let mut out = String::from("ts=");
    push_timestamp_millis(&mut out, 1_767_225_600_123);
    assert_eq!(out, "ts=2026-01-01T00:00:00.123Z");
}

#[test]
fn windows_align_to_the_epoch() {
    assert_eq!(window_start_millis(12_345, 1000), 12_000);
    assert_eq!(window_start_millis(12_000, 1000), 12_000);
    assert_eq!(window_start_millis(-1, 1000), -1000);
    assert_eq!(window_start_millis(-1000, 1000), -1000);
    assert_eq!(window_start_millis(-1001, 1000), -2000);
    assert_eq!(window_start_millis(i64::MIN, 1000), i64::MIN);
    assert_eq!(window_start_millis(5, 0), 5);
}
