//! Exact renderings and refusals of Kafka Connect JSON: Connect's own types here, Debezium's in
//! `debezium`, refusals and damaged input in `refusals`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::*;

mod debezium;
mod refusals;

fn transcode_text(value: &str) -> Result<String, String> {
    let mut out = String::new();
    transcode(value.as_bytes(), &mut out).map(|()| out)
}

fn envelope(schema: &str, payload: &str) -> String {
    format!(r#"{{"schema":{schema},"payload":{payload}}}"#)
}

fn rendered(schema: &str, payload: &str) -> String {
    transcode_text(&envelope(schema, payload)).unwrap()
}

fn refused(schema: &str, payload: &str) -> String {
    transcode_text(&envelope(schema, payload)).unwrap_err()
}

/// A required struct schema of `(name, members)` fields, `members` being a field schema's JSON
/// members without its braces.
fn struct_of(fields: &[(&str, &str)]) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|(name, members)| format!(r#"{{"field":"{name}",{members}}}"#))
        .collect();
    format!(
        r#"{{"type":"struct","optional":false,"fields":[{}]}}"#,
        fields.join(",")
    )
}

/// An unscaled value as Java's `BigInteger.toByteArray` writes it (shortest two's complement),
/// in base64 as JsonConverter writes bytes.
fn unscaled(n: i128) -> String {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 15
        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    STANDARD.encode(&bytes[start..])
}

fn decimal_schema(scale: &str) -> String {
    format!(
        r#"{{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{{"scale":"{scale}","connect.decimal.precision":"30"}}}}"#
    )
}

#[test]
fn primitives_render_by_their_schema_and_numbers_keep_their_text() {
    let schema = struct_of(&[
        ("i8", r#""type":"int8""#),
        ("i16", r#""type":"int16""#),
        ("i32", r#""type":"int32""#),
        ("i64", r#""type":"int64""#),
        ("f32", r#""type":"float""#),
        ("f64", r#""type":"double""#),
        ("f32b", r#""type":"float32""#),
        ("f64b", r#""type":"float64""#),
        ("yes", r#""type":"boolean""#),
        ("text", r#""type":"string""#),
        ("raw", r#""type":"bytes""#),
    ]);
    let payload = r#"{"i8":-128,"i16":32767,"i32":-2147483648,"i64":9223372036854775807,
        "f32":3.4028235E38,"f64":1.10,"f32b":"NaN","f64b":"-Infinity","yes":true,
        "text":"a\"b\\c\n\u0001é","raw":"AP8K"}"#;
    assert_eq!(
        rendered(&schema, payload),
        concat!(
            r#"{"i8":-128,"i16":32767,"i32":-2147483648,"i64":9223372036854775807,"#,
            r#""f32":3.4028235e+38,"f64":1.10,"f32b":"NaN","f64b":"-Infinity","yes":true,"#,
            r#""text":"a\"b\\c\n\u0001é","raw":"\\x00ff0a"}"#
        )
    );
    // A double beyond f64 keeps its digits, not rounded to infinity; the exponent reads `e+N`
    // (serde_json's `arbitrary_precision` writes it so).
    assert_eq!(rendered(r#"{"type":"double"}"#, "1E400"), "1e+400");
    assert_eq!(rendered(r#"{"type":"float"}"#, "-1.50e-3"), "-1.50e-3");
}

#[test]
fn integers_outside_their_width_are_refused_with_the_path() {
    for (int, bad) in [
        ("int8", "128"),
        ("int8", "-129"),
        ("int16", "32768"),
        ("int32", "2147483648"),
        ("int64", "9223372036854775808"),
    ] {
        let schema = struct_of(&[("n", &format!(r#""type":"{int}""#))]);
        let error = refused(&schema, &format!(r#"{{"n":{bad}}}"#));
        assert_eq!(error, format!("field `n`: {bad} is out of range for {int}"));
    }
    let error = refused(r#"{"type":"int32"}"#, "1.5");
    assert_eq!(
        error,
        "the payload: expected int32, found a number that is not an integer"
    );
    let error = refused(r#"{"type":"double"}"#, r#""1.5""#);
    assert_eq!(error, "the payload: expected float64, found a string");
}

#[test]
fn decimals_render_digit_for_digit_from_their_unscaled_bytes() {
    let cases = [
        (-12_345, "2", "-123.45"),
        (5, "4", "0.0005"),
        (-5, "4", "-0.0005"),
        (0, "2", "0.00"),
        (12_345_678_901_234_567_890, "3", "12345678901234567.890"),
        (-98_765_432_109_876_543_210, "2", "-987654321098765432.10"),
        (99_999_999_999_999_999_999, "0", "99999999999999999999"),
        // A Java BigDecimal may have a negative scale: 12 × 10³.
        (12, "-3", "12000"),
        (0, "-3", "0"),
    ];
    for (n, scale, expected) in cases {
        let payload = format!(r#""{}""#, unscaled(n));
        assert_eq!(rendered(&decimal_schema(scale), &payload), expected, "{n}");
    }
    // JsonConverter's decimal.format=NUMERIC writes a number: passed on exactly as written.
    assert_eq!(rendered(&decimal_schema("3"), "123.450"), "123.450");
    assert_eq!(rendered(&decimal_schema("3"), "null"), "null");

    let no_scale = r#"{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal"}"#;
    assert_eq!(
        refused(no_scale, r#""AQ==""#),
        "the schema of the payload: a Decimal without its `scale` parameter"
    );
    let huge_scale = decimal_schema("100000");
    assert!(refused(&huge_scale, r#""AQ==""#).contains("not an integer from -16383 to 16383"));
    let on_int = r#"{"type":"int64","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"}}"#;
    assert_eq!(
        refused(on_int, "1"),
        "the schema of the payload: `org.apache.kafka.connect.data.Decimal` is a logical type of \
         bytes, but the schema's type is int64"
    );
}

#[test]
fn connect_dates_times_and_timestamps_render_as_postgres_reads_them() {
    let schema = struct_of(&[
        (
            "day",
            r#""type":"int32","name":"org.apache.kafka.connect.data.Date""#,
        ),
        (
            "clock",
            r#""type":"int32","name":"org.apache.kafka.connect.data.Time""#,
        ),
        (
            "at",
            r#""type":"int64","name":"org.apache.kafka.connect.data.Timestamp""#,
        ),
        (
            "before_epoch",
            r#""type":"int64","name":"org.apache.kafka.connect.data.Timestamp""#,
        ),
        (
            "bc",
            r#""type":"int64","name":"org.apache.kafka.connect.data.Timestamp""#,
        ),
    ]);
    let payload = r#"{"day":19723,"clock":45296789,"at":1704067200123,
        "before_epoch":-86400001,"bc":-62135596800001}"#;
    assert_eq!(
        rendered(&schema, payload),
        concat!(
            r#"{"day":"2024-01-01","clock":"12:34:56.789","at":"2024-01-01T00:00:00.123Z","#,
            r#""before_epoch":"1969-12-30T23:59:59.999Z","bc":"0001-12-31T23:59:59.999Z BC"}"#
        )
    );
    let time = r#"{"type":"int32","name":"org.apache.kafka.connect.data.Time"}"#;
    assert_eq!(
        refused(time, "86400001"),
        "the payload: time of day 86400001 is outside 0 to 24:00"
    );
    let date_on_long = r#"{"type":"int64","name":"org.apache.kafka.connect.data.Date"}"#;
    assert!(refused(date_on_long, "1").contains("is a logical type of int32"));
}

#[test]
fn maps_with_string_keys_are_objects_and_others_arrays_of_pairs() {
    let by_name =
        r#"{"type":"map","keys":{"type":"string"},"values":{"type":"int32","optional":true}}"#;
    assert_eq!(
        rendered(by_name, r#"{"a":1,"b":null}"#),
        r#"{"a":1,"b":null}"#
    );
    let by_day = r#"{"type":"map","keys":{"type":"int32","name":"org.apache.kafka.connect.data.Date"},
        "values":{"type":"bytes"}}"#;
    assert_eq!(
        rendered(by_day, r#"[[0,"AQ=="],[-1,""]]"#),
        r#"[["1970-01-01","\\x01"],["1969-12-31","\\x"]]"#
    );
    assert_eq!(
        refused(by_day, r#"{"0":"AQ=="}"#),
        "the payload: expected map, found an object"
    );
    assert_eq!(
        refused(by_day, r#"[[0,"AQ==",1]]"#),
        "field `[0]`: expected a [key, value] pair of a map with int32 \
         (org.apache.kafka.connect.data.Date) keys, found an array"
    );
    let nested = struct_of(&[("m", &by_day[1..by_day.len() - 1])]);
    assert_eq!(
        refused(&nested, r#"{"m":[[0,"AQ=="],["x","AQ=="]]}"#),
        "field `m[1][0]`: expected int32 (org.apache.kafka.connect.data.Date), found a string"
    );
    assert_eq!(
        refused(by_name, r#"[["a",1]]"#),
        "the payload: expected map, found an array"
    );
}

#[test]
fn arrays_render_their_items_by_the_items_schema() {
    let schema = struct_of(&[(
        "at",
        r#""type":"array","items":{"type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp"}"#,
    )]);
    assert_eq!(
        rendered(&schema, r#"{"at":[0,null,-1]}"#),
        r#"{"at":["1970-01-01T00:00:00Z",null,"1969-12-31T23:59:59.999Z"]}"#
    );
    let required_items = struct_of(&[("tags", r#""type":"array","items":{"type":"string"}"#)]);
    assert_eq!(
        refused(&required_items, r#"{"tags":["a",null]}"#),
        "field `tags[1]` is null, but its schema (string) is required and has no default"
    );
}

#[test]
fn absent_fields_read_as_their_default_or_null_in_schema_order() {
    let schema = struct_of(&[
        ("a", r#""type":"int32","optional":true,"default":5"#),
        ("b", r#""type":"string","optional":true"#),
        ("c", r#""type":"int32","optional":false,"default":7"#),
        ("d", r#""type":"string","optional":true,"default":"x""#),
        (
            "e",
            r#""type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"1"},"default":"/w==""#,
        ),
        (
            "f",
            r#""type":"struct","optional":true,"fields":[{"field":"g","type":"int64","name":"org.apache.kafka.connect.data.Timestamp"}],"default":{"g":0}"#,
        ),
        ("h", r#""type":"int8","optional":true"#),
    ]);
    // `c` is null where its schema is required: its default, as JsonConverter reads it; `d` is a
    // null that was written, so it stays null; `ignored` is not in the schema.
    let payload = r#"{"h":1,"ignored":true,"c":null,"d":null}"#;
    assert_eq!(
        rendered(&schema, payload),
        r#"{"a":5,"b":null,"c":7,"d":null,"e":-0.1,"f":{"g":"1970-01-01T00:00:00Z"},"h":1}"#
    );
    let required = struct_of(&[("id", r#""type":"int32""#), ("name", r#""type":"string""#)]);
    assert_eq!(
        refused(&required, r#"{"id":1}"#),
        "field `name` is missing, but its schema (string) is required and has no default"
    );
    let bad_default = struct_of(&[("n", r#""type":"int8","default":1000"#)]);
    assert_eq!(
        refused(&bad_default, "{}"),
        "field `n`: 1000 is out of range for int8 (in the schema's default)"
    );
    assert_eq!(rendered(r#"{"type":"int32","default":3}"#, "null"), "3");
}

#[test]
fn a_null_schema_renders_the_payload_as_it_is() {
    let payload = r#"{"a":[1.10,-0,1e+400,true,null],"b":{"c":"d\"e"}}"#;
    assert_eq!(rendered("null", payload), payload);
    assert_eq!(rendered("null", "null"), "null");
}
