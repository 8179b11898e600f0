use apache_avro::types::{Record, Value};
use apache_avro::{to_avro_datum, Decimal, Schema};

use super::*;
use crate::decode::formats::schemas::{Reference, SchemaKind};

fn registered(id: u32, text: &str, references: Vec<Reference>) -> RegisteredSchema {
    RegisteredSchema {
        id,
        kind: SchemaKind::Avro,
        text: text.into(),
        references,
    }
}

const PAYMENT: &str = r#"{
  "type": "record", "name": "Payment", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4}},
    {"name": "fee", "type": {"type": "fixed", "name": "Fee", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 2}},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "at_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "clock", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "ref", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "int"}},
    {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["NEW", "DONE"]}},
    {"name": "raw", "type": "bytes"},
    {"name": "ratio", "type": "double"}
  ]}"#;

fn payment_body(schema: &Schema, note: Option<&str>) -> Vec<u8> {
    let mut r = Record::new(schema).unwrap();
    r.put("id", 7i64);
    r.put(
        "amount",
        Value::Decimal(Decimal::from(&(-1_234_567i64).to_be_bytes()[..])),
    );
    r.put(
        "fee",
        Value::Decimal(Decimal::from(&150i64.to_be_bytes()[..])),
    );
    r.put("at", Value::TimestampMicros(1_764_780_780_123_456));
    r.put("at_ms", Value::TimestampMillis(-1));
    r.put("day", Value::Date(20_425));
    r.put("clock", Value::TimeMicros(45_296_000_001));
    r.put(
        "ref",
        Value::Uuid("5a0b6f3e-8d4c-4a1e-9b2f-0c1d2e3f4a5b".parse().unwrap()),
    );
    r.put(
        "note",
        match note {
            Some(n) => Value::Union(1, Box::new(Value::String(n.into()))),
            None => Value::Union(0, Box::new(Value::Null)),
        },
    );
    r.put("tags", Value::Array(vec![Value::String("a\"b".into())]));
    r.put(
        "attrs",
        Value::Map(
            [
                ("z".to_string(), Value::Int(1)),
                ("a".to_string(), Value::Int(-2)),
            ]
            .into(),
        ),
    );
    r.put("state", Value::Enum(1, "DONE".into()));
    r.put("raw", Value::Bytes(vec![0, 255]));
    r.put("ratio", Value::Double(0.1));
    to_avro_datum(schema, r).unwrap()
}

fn transcode(schema: &AvroSchema, body: &[u8]) -> Result<serde_json::Value, String> {
    let mut out = String::new();
    schema.transcode(body, &mut out)?;
    Ok(serde_json::from_str(&out).expect("valid JSON"))
}

#[test]
fn every_logical_type_renders_exactly() {
    let parsed = AvroSchema::parse(&registered(1, PAYMENT, vec![])).unwrap();
    let writer = Schema::parse_str(PAYMENT).unwrap();
    let mut out = String::new();
    parsed
        .transcode(&payment_body(&writer, Some("hi")), &mut out)
        .unwrap();
    assert_eq!(
        out,
        concat!(
            r#"{"id":7,"amount":-123.4567,"fee":1.50,"at":"2025-12-03T16:53:00.123456Z","#,
            r#""at_ms":"1969-12-31T23:59:59.999Z","day":"2025-12-03","clock":"12:34:56.000001","#,
            r#""ref":"5a0b6f3e-8d4c-4a1e-9b2f-0c1d2e3f4a5b","note":"hi","tags":["a\"b"],"#,
            r#""attrs":{"a":-2,"z":1},"state":"DONE","raw":"\\x00ff","ratio":0.1}"#
        )
    );
    let null_note = transcode(&parsed, &payment_body(&writer, None)).unwrap();
    assert!(null_note["note"].is_null());
}

#[test]
fn named_types_from_references_resolve() {
    let money = r#"{"type": "record", "name": "Money", "namespace": "shop",
        "fields": [{"name": "units", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3}},
                   {"name": "currency", "type": "string"}]}"#;
    let order = r#"{"type": "record", "name": "Order", "namespace": "shop",
        "fields": [{"name": "total", "type": "shop.Money"}, {"name": "shipping", "type": ["null", "shop.Money"]}]}"#;
    let reference = Reference {
        name: "shop.Money".into(),
        subject: "money".into(),
        version: 1,
        schema: registered(1, money, vec![]),
    };
    let parsed = AvroSchema::parse(&registered(2, order, vec![reference])).unwrap();
    let (writer, deps) = Schema::parse_str_with_list(order, [money]).unwrap();
    let money_value = |units: i64| {
        Value::Record(vec![
            (
                "units".into(),
                Value::Decimal(Decimal::from(&units.to_be_bytes()[..])),
            ),
            ("currency".into(), Value::String("EUR".into())),
        ])
    };
    let value = Value::Record(vec![
        ("total".into(), money_value(12_345)),
        (
            "shipping".into(),
            Value::Union(1, Box::new(money_value(-5))),
        ),
    ]);
    let body = apache_avro::to_avro_datum_schemata(&writer, deps.iter().collect(), value).unwrap();
    let json = transcode(&parsed, &body).unwrap();
    assert_eq!(json["total"]["units"].to_string(), "12.345");
    assert_eq!(json["shipping"]["units"].to_string(), "-0.005");
    assert_eq!(json["shipping"]["currency"], "EUR");
}

#[test]
fn damaged_bodies_are_refused_with_a_reason_and_never_panic() {
    let parsed = AvroSchema::parse(&registered(1, PAYMENT, vec![])).unwrap();
    let writer = Schema::parse_str(PAYMENT).unwrap();
    let body = payment_body(&writer, Some("hi"));
    let truncated = transcode(&parsed, &body[..body.len() - 3]).unwrap_err();
    assert!(truncated.contains("does not decode"), "{truncated}");
    let mut longer = body.clone();
    longer.push(0);
    let trailing = transcode(&parsed, &longer).unwrap_err();
    assert!(trailing.contains("1 byte(s) left"), "{trailing}");
    assert!(
        AvroSchema::parse(&registered(9, "{\"type\": \"nope\"}", vec![]))
            .unwrap_err()
            .contains("schema 9")
    );
    // Every prefix and every single-byte change of a good body decodes or is refused.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..body.len() {
        let _ = transcode(&parsed, &body[..len]);
    }
    for _ in 0..2_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut damaged = body.clone();
        let at = (rng % body.len() as u64) as usize;
        damaged[at] = (rng >> 32) as u8;
        let _ = transcode(&parsed, &damaged);
    }
}
