//! What is refused, and with which path; damaged values never panic.

use testkit::rng::Rng;

use super::debezium::CHANGE_EVENT;
use super::*;

#[test]
fn values_that_are_not_connect_envelopes_are_refused() {
    let hint = "for plain JSON (schemas.enable=false) use format = \"json\"";
    for (value, found) in [
        (r#"{"id":1}"#, "an object with members `id`"),
        (
            r#"{"schema":null,"payload":1,"extra":2}"#,
            "an object with members `extra`, `payload`, `schema`",
        ),
        (r#"{"payload":1}"#, "an object with members `payload`"),
        ("[1]", "an array"),
        ("null", "null"),
    ] {
        let error = transcode_text(value).unwrap_err();
        assert!(error.starts_with("not a Kafka Connect envelope"), "{error}");
        assert!(error.contains(&format!("this is {found};")), "{error}");
        assert!(error.ends_with(hint), "{error}");
    }
    let error = transcode_text("{\"schema\"").unwrap_err();
    assert!(error.starts_with("not a JSON document"), "{error}");
    let mut out = String::new();
    assert!(transcode(&[0xff, 0xfe], &mut out).is_err());
}

#[test]
fn type_mismatches_name_the_field_path_and_leave_the_output_as_it_was() {
    let bad_id = CHANGE_EVENT.replace(r#""id": 1004"#, r#""id": "1004""#);
    let mut out = String::from("[");
    let error = transcode(bad_id.as_bytes(), &mut out).unwrap_err();
    assert_eq!(error, "field `after.id`: expected int32, found a string");
    assert_eq!(out, "[");

    let bad_base64 = CHANGE_EVENT.replace(r#""price": "AeJA""#, r#""price": "AeJ!""#);
    let error = transcode_text(&bad_base64).unwrap_err();
    assert!(
        error.starts_with(
            "field `after.price`: expected bytes (org.apache.kafka.connect.data.Decimal), \
             found invalid base64"
        ),
        "{error}"
    );
    let missing = CHANGE_EVENT.replace(r#""email": "annek@noanswer.org","#, "");
    assert_eq!(
        transcode_text(&missing).unwrap_err(),
        "field `after.email` is missing, but its schema (string) is required and has no default"
    );
    let not_struct = CHANGE_EVENT.replace(r#""source": {"#, r#""source": 1, "unused": {"#);
    assert_eq!(
        transcode_text(&not_struct).unwrap_err(),
        "field `source`: expected struct (io.debezium.connector.postgresql.Source), found a number"
    );
    assert_eq!(
        refused(r#"{"type":"boolean"}"#, "1"),
        "the payload: expected boolean, found a number"
    );
}

#[test]
fn schemas_that_are_not_connect_schemas_are_refused() {
    for (schema, error) in [
        (
            r#"{"type":"int128"}"#,
            "the schema of the payload: unknown type `int128`",
        ),
        (
            r#"{"optional":true}"#,
            "the schema of the payload: has no `type`",
        ),
        (
            "[]",
            "the schema of the payload: is an array, not an object",
        ),
        (
            r#"{"type":"array"}"#,
            "the schema of the payload: has no `items`",
        ),
        (
            r#"{"type":"map","keys":{"type":"string"}}"#,
            "the schema of the payload: has no `values`",
        ),
        (
            r#"{"type":"struct","fields":[{"type":"int8","field":"a"},{"type":"int8","field":"a"}]}"#,
            "the schema of the payload: field `a` is declared twice",
        ),
        (
            r#"{"type":"struct","fields":[{"type":"int8"}]}"#,
            "the schema of the payload: field 0 has no `field` name",
        ),
        (
            r#"{"type":"struct","fields":[{"field":"x","type":"array","items":{"type":"map","keys":{"type":"nope"},"values":{"type":"int8"}}}]}"#,
            "the schema of field `x[]{keys}`: unknown type `nope`",
        ),
    ] {
        assert_eq!(refused(schema, "null"), error);
    }
}

#[test]
fn nesting_deeper_than_100_is_refused() {
    let nested_payload = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let nested_schema = |n: usize| {
        format!(
            "{}{{\"type\":\"int32\"}}{}",
            r#"{"type":"array","items":"#.repeat(n),
            "}".repeat(n)
        )
    };
    assert_eq!(
        rendered(&nested_schema(100), &nested_payload(100)),
        nested_payload(100)
    );
    assert_eq!(
        refused(&nested_schema(101), &nested_payload(101)),
        format!(
            "the schema of field `{}`: nests deeper than 100 levels",
            "[]".repeat(100)
        )
    );
    assert_eq!(rendered("null", &nested_payload(100)), nested_payload(100));
    assert_eq!(
        refused("null", &nested_payload(101)),
        "the payload nests deeper than 100 levels"
    );
}

#[test]
fn damaged_values_are_refused_or_render_valid_json_and_never_panic() {
    let good = CHANGE_EVENT.as_bytes();
    let check = |bytes: &[u8]| {
        let mut out = String::new();
        if transcode(bytes, &mut out).is_ok() {
            assert!(
                serde_json::from_str::<Value>(&out).is_ok(),
                "invalid JSON rendered: {out}"
            );
        } else {
            assert!(out.is_empty());
        }
    };
    for len in 0..good.len() {
        check(&good[..len]);
    }
    // Changes biased to JSON's own characters, so many damaged values still parse and reach the
    // schema checks.
    let alphabet = b"0123456789-+.eE\"{}[],: ntrufalsAQ=/\\\x00\xff";
    let mut rng = Rng::for_test("connect damaged values");
    let mut rendered = 0;
    for _ in 0..3_000 {
        let mut damaged = good.to_vec();
        for _ in 0..rng.range(1, 4) {
            let at = rng.index(damaged.len());
            damaged[at] = if rng.chance(0.8) {
                rng.pick(alphabet)
            } else {
                rng.next_u64() as u8
            };
        }
        if serde_json::from_slice::<Value>(&damaged).is_ok() {
            rendered += 1;
        }
        check(&damaged);
    }
    // The damage reached past the JSON parser often enough to mean something.
    assert!(rendered > 300, "only {rendered} damaged values parsed");
}
