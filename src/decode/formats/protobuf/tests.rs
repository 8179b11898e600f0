use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use prost_reflect::prost::Message as _;
use prost_reflect::prost_types::{self, value::Kind as JsonKind};
use prost_reflect::{DynamicMessage, MapKey, MessageDescriptor, Value};

use super::*;
use crate::decode::formats::schemas::{Reference, SchemaKind};

fn registered(id: u32, text: &str, references: Vec<Reference>) -> RegisteredSchema {
    RegisteredSchema {
        id,
        kind: SchemaKind::Protobuf,
        text: text.into(),
        references,
    }
}

fn reference(name: &str, text: &str, references: Vec<Reference>) -> Reference {
    Reference {
        name: name.into(),
        subject: name.into(),
        version: 1,
        schema: registered(100, text, references),
    }
}

fn parse(text: &str) -> ProtoSchema {
    ProtoSchema::parse(&registered(1, text, vec![])).unwrap()
}

fn descriptor(schema: &ProtoSchema, full_name: &str) -> MessageDescriptor {
    let pool = schema.plans[schema.top].descriptor.parent_pool();
    pool.get_message_by_name(full_name).unwrap()
}

fn message(schema: &ProtoSchema, full_name: &str, fields: Vec<(&str, Value)>) -> DynamicMessage {
    let mut m = DynamicMessage::new(descriptor(schema, full_name));
    for (name, value) in fields {
        m.set_field_by_name(name, value);
    }
    m
}

/// A prost value (the well-known types prost_types has) as a dynamic message of `full_name`.
fn known(
    schema: &ProtoSchema,
    full_name: &str,
    value: &impl prost_reflect::prost::Message,
) -> Value {
    let bytes = value.encode_to_vec();
    Value::Message(DynamicMessage::decode(descriptor(schema, full_name), bytes.as_slice()).unwrap())
}

/// The body of `m` after the message-index list `indexes` (already encoded).
fn body(indexes: &[u8], m: &DynamicMessage) -> Vec<u8> {
    let mut b = indexes.to_vec();
    b.extend(m.encode_to_vec());
    b
}

fn transcode(schema: &ProtoSchema, body: &[u8]) -> Result<String, String> {
    let mut out = String::new();
    schema.transcode(body, &mut out)?;
    // Whatever renders is one valid JSON document.
    assert!(
        serde_json::from_str::<serde_json::Value>(&out).is_ok(),
        "not JSON: {out}"
    );
    Ok(out)
}

const SHOP: &str = r#"
syntax = "proto3";
package shop;

enum State { NEW = 0; DONE = 1; }

message Scalars {
  int32 i32 = 1; int64 i64 = 2; uint32 u32 = 3; uint64 u64 = 4;
  sint32 s32 = 5; sint64 s64 = 6; fixed32 f32 = 7; fixed64 f64 = 8;
  sfixed32 sf32 = 9; sfixed64 sf64 = 10; float fl = 11; double db = 12;
  bool b = 13; string s = 14; bytes by = 15; State state = 16;
}

message Order {
  int64 id = 9;
  optional string note = 2;
  Scalars inner = 3;
  oneof pay { string card = 4; int64 points = 5; }
  repeated sint32 qty = 6;
  map<string, int32> counts = 7;
  map<int64, State> by_id = 8;
  repeated Line lines = 1;
  State state = 10;
  message Line { string sku = 1; int32 qty = 2; }
}
"#;

fn full_order(s: &ProtoSchema) -> DynamicMessage {
    let line = |sku: &str, qty: i32| {
        Value::Message(message(
            s,
            "shop.Order.Line",
            vec![("sku", Value::String(sku.into())), ("qty", Value::I32(qty))],
        ))
    };
    let counts =
        [("z", 1), ("a", -2), ("é", 3)].map(|(k, v)| (MapKey::String(k.into()), Value::I32(v)));
    let by_id = [(10, 1), (-3, 7), (2, 0)].map(|(k, v)| (MapKey::I64(k), Value::EnumNumber(v)));
    message(
        s,
        "shop.Order",
        vec![
            ("id", Value::I64(7)),
            ("note", Value::String(String::new())),
            ("inner", Value::Message(message(s, "shop.Scalars", vec![]))),
            ("points", Value::I64(0)),
            (
                "qty",
                Value::List(vec![Value::I32(1), Value::I32(-2), Value::I32(3)]),
            ),
            ("counts", Value::Map(HashMap::from(counts))),
            ("by_id", Value::Map(HashMap::from(by_id))),
            ("lines", Value::List(vec![line("x", 2), line("", 0)])),
            ("state", Value::EnumNumber(7)),
        ],
    )
}

#[test]
fn every_scalar_type_renders_exactly() {
    let s = parse(SHOP);
    let m = message(
        &s,
        "shop.Scalars",
        vec![
            ("i32", Value::I32(i32::MIN)),
            ("i64", Value::I64(i64::MIN)),
            ("u32", Value::U32(u32::MAX)),
            ("u64", Value::U64(u64::MAX)),
            ("s32", Value::I32(-1)),
            ("s64", Value::I64(i64::MAX)),
            ("f32", Value::U32(u32::MAX)),
            ("f64", Value::U64(u64::MAX)),
            ("sf32", Value::I32(-5)),
            ("sf64", Value::I64(-6)),
            ("fl", Value::F32(0.1)),
            ("db", Value::F64(0.1)),
            ("b", Value::Bool(true)),
            ("s", Value::String("a\"b\n".into())),
            ("by", Value::Bytes(vec![0, 255].into())),
            ("state", Value::EnumNumber(1)),
        ],
    );
    assert_eq!(
        transcode(&s, &body(&[0], &m)).unwrap(),
        r#"{"i32":-2147483648,"i64":-9223372036854775808,"u32":4294967295,"u64":18446744073709551615,"s32":-1,"s64":9223372036854775807,"f32":4294967295,"f64":18446744073709551615,"sf32":-5,"sf64":-6,"fl":0.1,"db":0.1,"b":true,"s":"a\"b\n","by":"\\x00ff","state":"DONE"}"#
    );
    let nan = message(
        &s,
        "shop.Scalars",
        vec![
            ("fl", Value::F32(f32::NAN)),
            ("db", Value::F64(f64::NEG_INFINITY)),
        ],
    );
    let text = transcode(&s, &body(&[0], &nan)).unwrap();
    assert!(text.contains(r#""fl":"NaN","db":"-Infinity""#), "{text}");
}

#[test]
fn absent_scalars_are_their_default_and_absent_fields_with_presence_null() {
    let s = parse(SHOP);
    assert_eq!(
        transcode(&s, &body(&[0], &message(&s, "shop.Scalars", vec![]))).unwrap(),
        r#"{"i32":0,"i64":0,"u32":0,"u64":0,"s32":0,"s64":0,"f32":0,"f64":0,"sf32":0,"sf64":0,"fl":0,"db":0,"b":false,"s":"","by":"\\x","state":"NEW"}"#
    );
    // Order is [1]: the enum declared first is not counted. Fields in declaration order.
    assert_eq!(
        transcode(&s, &body(&[2, 2], &message(&s, "shop.Order", vec![]))).unwrap(),
        r#"{"id":0,"note":null,"inner":null,"card":null,"points":null,"qty":[],"counts":{},"by_id":{},"lines":[],"state":"NEW"}"#
    );
}

#[test]
fn present_defaults_enums_repeated_and_maps_sorted_by_key() {
    let s = parse(SHOP);
    let defaults = r#"{"i32":0,"i64":0,"u32":0,"u64":0,"s32":0,"s64":0,"f32":0,"f64":0,"sf32":0,"sf64":0,"fl":0,"db":0,"b":false,"s":"","by":"\\x","state":"NEW"}"#;
    let expected = format!(
        r#"{{"id":7,"note":"","inner":{defaults},"card":null,"points":0,"qty":[1,-2,3],"counts":{{"a":-2,"z":1,"é":3}},"by_id":{{"-3":7,"2":"NEW","10":"DONE"}},"lines":[{{"sku":"x","qty":2}},{{"sku":"","qty":0}}],"state":7}}"#
    );
    assert_eq!(
        transcode(&s, &body(&[2, 2], &full_order(&s))).unwrap(),
        expected
    );
}

#[test]
fn the_index_list_selects_top_level_and_nested_messages() {
    let s = parse(SHOP);
    let line = message(
        &s,
        "shop.Order.Line",
        vec![("sku", Value::String("k".into())), ("qty", Value::I32(3))],
    );
    // [1, 0]: Order's first nested message; its map entries are not counted.
    assert_eq!(
        transcode(&s, &body(&[4, 2, 0], &line)).unwrap(),
        r#"{"sku":"k","qty":3}"#
    );
    // [0] written out in full, and the count 0, are both the first message.
    let scalars = message(&s, "shop.Scalars", vec![("i32", Value::I32(5))]);
    for indexes in [&[2u8, 0][..], &[0]] {
        let text = transcode(&s, &body(indexes, &scalars)).unwrap();
        assert!(text.starts_with(r#"{"i32":5,"#), "{text}");
    }
    for (indexes, named) in [
        (&[2u8, 10][..], "[5]"),
        (&[4, 2, 6], "[1, 3]"),
        (&[2, 1], "[-1]"),
        (&[4, 0, 0], "[0, 0]"),
    ] {
        let e = transcode(&s, &body(indexes, &scalars)).unwrap_err();
        assert!(
            e.contains(&format!("message indexes {named} name no message"))
                && e.contains("Scalars, Order"),
            "{e}"
        );
    }
    assert!(transcode(&s, &[1]).unwrap_err().contains("negative count"));
    assert!(transcode(&s, &[4, 2]).unwrap_err().contains("truncated"));
    assert!(transcode(&s, &[]).unwrap_err().contains("truncated"));
}

#[test]
fn proto2_optional_and_required_fields_have_presence() {
    let s = parse(
        r#"syntax = "proto2";
        message P { optional int32 a = 1; required string b = 2; optional int32 c = 3 [default = 7]; repeated int32 r = 4; }"#,
    );
    let m = message(&s, "P", vec![("b", Value::String("x".into()))]);
    assert_eq!(
        transcode(&s, &body(&[0], &m)).unwrap(),
        r#"{"a":null,"b":"x","c":null,"r":[]}"#
    );
    let m = message(
        &s,
        "P",
        vec![("b", Value::String("x".into())), ("c", Value::I32(0))],
    );
    assert_eq!(
        transcode(&s, &body(&[0], &m)).unwrap(),
        r#"{"a":null,"b":"x","c":0,"r":[]}"#
    );
}

const KNOWN: &str = r#"
syntax = "proto3";
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/any.proto";
message Known {
  google.protobuf.Timestamp at = 1;
  google.protobuf.Duration took = 2;
  google.protobuf.Int64Value i64 = 3;
  google.protobuf.StringValue s = 4;
  google.protobuf.BytesValue by = 5;
  google.protobuf.FloatValue fl = 6;
  google.protobuf.BoolValue b = 7;
  google.protobuf.UInt64Value u64 = 8;
  google.protobuf.Struct attrs = 9;
  google.protobuf.Value v = 10;
  google.protobuf.ListValue list = 11;
  google.protobuf.Empty nothing = 12;
  repeated google.protobuf.Timestamp history = 13;
  map<string, google.protobuf.Duration> timings = 14;
  google.protobuf.Any any = 15;
}
"#;

fn ts(seconds: i64, nanos: i32) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds, nanos }
}

fn dur(seconds: i64, nanos: i32) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos }
}

fn json(kind: JsonKind) -> prost_types::Value {
    prost_types::Value { kind: Some(kind) }
}

fn wrapper(s: &ProtoSchema, name: &str, value: Value) -> Value {
    Value::Message(message(
        s,
        &format!("google.protobuf.{name}"),
        vec![("value", value)],
    ))
}

#[test]
fn timestamps_durations_and_wrappers_render_as_their_value() {
    let s = parse(KNOWN);
    let timings = [("a", dur(1, 1)), ("b", dur(0, 0)), ("c", dur(2, 1_000))].map(|(k, d)| {
        (
            MapKey::String(k.into()),
            known(&s, "google.protobuf.Duration", &d),
        )
    });
    let m = message(
        &s,
        "Known",
        vec![
            (
                "at",
                known(
                    &s,
                    "google.protobuf.Timestamp",
                    &ts(1_764_780_780, 123_456_789),
                ),
            ),
            (
                "took",
                known(&s, "google.protobuf.Duration", &dur(-1, -500_000_000)),
            ),
            ("i64", wrapper(&s, "Int64Value", Value::I64(0))),
            (
                "by",
                wrapper(&s, "BytesValue", Value::Bytes(vec![1].into())),
            ),
            ("fl", wrapper(&s, "FloatValue", Value::F32(0.1))),
            ("b", wrapper(&s, "BoolValue", Value::Bool(false))),
            ("u64", wrapper(&s, "UInt64Value", Value::U64(u64::MAX))),
            (
                "history",
                Value::List(vec![
                    known(&s, "google.protobuf.Timestamp", &ts(0, 0)),
                    known(&s, "google.protobuf.Timestamp", &ts(-1, 999_000_000)),
                ]),
            ),
            ("timings", Value::Map(HashMap::from(timings))),
        ],
    );
    assert_eq!(
        transcode(&s, &body(&[0], &m)).unwrap(),
        r#"{"at":"2025-12-03T16:53:00.123456789Z","took":"PT-1.500S","i64":0,"s":null,"by":"\\x01","fl":0.1,"b":false,"u64":18446744073709551615,"attrs":null,"v":null,"list":null,"nothing":null,"history":["1970-01-01T00:00:00Z","1969-12-31T23:59:59.999Z"],"timings":{"a":"PT1.000000001S","b":"PT0.000S","c":"PT2.000001S"},"any":null}"#
    );
    for (field, value, error) in [
        (
            "at",
            known(&s, "google.protobuf.Timestamp", &ts(0, -1)),
            "outside 0 to 999999999",
        ),
        (
            "took",
            known(&s, "google.protobuf.Duration", &dur(1, -1)),
            "of the seconds' sign",
        ),
    ] {
        let e =
            transcode(&s, &body(&[0], &message(&s, "Known", vec![(field, value)]))).unwrap_err();
        assert!(e.contains(error), "{e}");
    }
}

#[test]
fn struct_value_and_list_value_render_as_the_json_they_denote() {
    let s = parse(KNOWN);
    let inner = prost_types::Struct {
        fields: BTreeMap::from([("k".to_string(), json(JsonKind::NumberValue(-0.5)))]),
    };
    let attrs = prost_types::Struct {
        fields: BTreeMap::from([
            ("x".to_string(), json(JsonKind::NumberValue(1.5))),
            ("b".to_string(), json(JsonKind::BoolValue(true))),
            ("n".to_string(), json(JsonKind::NullValue(0))),
            ("s".to_string(), json(JsonKind::StringValue("t".into()))),
            ("nan".to_string(), json(JsonKind::NumberValue(f64::NAN))),
            ("none".to_string(), prost_types::Value { kind: None }),
            ("o".to_string(), json(JsonKind::StructValue(inner))),
            (
                "l".to_string(),
                json(JsonKind::ListValue(prost_types::ListValue {
                    values: vec![
                        json(JsonKind::NumberValue(1.0)),
                        json(JsonKind::StringValue("a".into())),
                        json(JsonKind::StructValue(prost_types::Struct::default())),
                    ],
                })),
            ),
        ]),
    };
    let list = prost_types::ListValue {
        values: vec![
            json(JsonKind::BoolValue(true)),
            json(JsonKind::NullValue(0)),
        ],
    };
    let m = message(
        &s,
        "Known",
        vec![
            ("attrs", known(&s, "google.protobuf.Struct", &attrs)),
            (
                "v",
                known(
                    &s,
                    "google.protobuf.Value",
                    &json(JsonKind::StringValue("hi".into())),
                ),
            ),
            ("list", known(&s, "google.protobuf.ListValue", &list)),
            (
                "nothing",
                Value::Message(message(&s, "google.protobuf.Empty", vec![])),
            ),
            ("s", wrapper(&s, "StringValue", Value::String("w".into()))),
        ],
    );
    let text = transcode(&s, &body(&[0], &m)).unwrap();
    assert!(
        text.contains(r#""s":"w","by":null,"#)
            && text.contains(r#""attrs":{"b":true,"l":[1,"a",{}],"n":null,"nan":"NaN","none":null,"o":{"k":-0.5},"s":"t","x":1.5},"v":"hi","list":[true,null],"nothing":{},"#),
        "{text}"
    );
    let any = prost_types::Any {
        type_url: "type.googleapis.com/x".into(),
        value: vec![],
    };
    let m = message(
        &s,
        "Known",
        vec![("any", known(&s, "google.protobuf.Any", &any))],
    );
    assert_eq!(
        transcode(&s, &body(&[0], &m)).unwrap_err(),
        "google.protobuf.Any is not supported"
    );
}

const MONEY: &str = r#"syntax = "proto3";
        import "confluent/type/decimal.proto";
        import "confluent/meta.proto";
        import "google/type/date.proto";
        import "google/type/decimal.proto";
        message Money {
          confluent.type.Decimal amount = 1 [(confluent.field_meta).params = { key: "scale", value: "4" }];
          google.type.Date day = 2;
          repeated google.type.Decimal g = 3;
        }"#;

#[test]
fn confluent_and_google_decimals_and_dates_without_references() {
    let s = parse(MONEY);
    let decimal = |bytes: &[u8], scale: i32| {
        Value::Message(message(
            &s,
            "confluent.type.Decimal",
            vec![
                ("value", Value::Bytes(bytes.to_vec().into())),
                ("scale", Value::I32(scale)),
            ],
        ))
    };
    let date = |y, m, d| {
        Value::Message(message(
            &s,
            "google.type.Date",
            vec![
                ("year", Value::I32(y)),
                ("month", Value::I32(m)),
                ("day", Value::I32(d)),
            ],
        ))
    };
    let g = |t: &str| {
        Value::Message(message(
            &s,
            "google.type.Decimal",
            vec![("value", Value::String(t.into()))],
        ))
    };
    let m = message(
        &s,
        "Money",
        vec![
            ("amount", decimal(&[0xed, 0x29, 0x79], 4)),
            ("day", date(2024, 2, 29)),
            (
                "g",
                Value::List(vec![
                    g("+007.50e-3"),
                    g(".5"),
                    g("-0"),
                    g("1."),
                    g("12E+05"),
                ]),
            ),
        ],
    );
    assert_eq!(
        transcode(&s, &body(&[0], &m)).unwrap(),
        r#"{"amount":-123.4567,"day":"2024-02-29","g":[7.50e-3,0.5,-0,1,12e05]}"#
    );
    // Past 16 bytes, past an i128: 10^38 with scale 20; and i128::MIN in exactly 16 bytes.
    let mut big = vec![0u8];
    big.extend_from_slice(&10u128.pow(38).to_be_bytes());
    let m = message(&s, "Money", vec![("amount", decimal(&big, 20))]);
    let text = transcode(&s, &body(&[0], &m)).unwrap();
    let expected = format!(r#"{{"amount":1{}.{},"#, "0".repeat(18), "0".repeat(20));
    assert!(text.starts_with(&expected), "{text}");
    let m = message(
        &s,
        "Money",
        vec![("amount", decimal(&i128::MIN.to_be_bytes(), 0))],
    );
    let text = transcode(&s, &body(&[0], &m)).unwrap();
    assert!(
        text.starts_with(r#"{"amount":-170141183460469231731687303715884105728,"#),
        "{text}"
    );
    for (field, value, error) in [
        ("day", date(2023, 2, 29), "not a full date"),
        ("day", date(0, 1, 1), "not a full date"),
        ("amount", decimal(&[1], -1), "negative scale"),
        ("g", Value::List(vec![g("1e")]), "not a decimal number"),
        ("g", Value::List(vec![g("NaN")]), "not a decimal number"),
        ("g", Value::List(vec![g(".")]), "not a decimal number"),
        ("g", Value::List(vec![g("1.2.3")]), "not a decimal number"),
    ] {
        let e =
            transcode(&s, &body(&[0], &message(&s, "Money", vec![(field, value)]))).unwrap_err();
        assert!(e.contains(error), "{e}");
    }
}

#[test]
fn imports_come_from_references_recursively() {
    let currency = reference(
        "shop/currency.proto",
        "syntax = \"proto3\"; package shop; enum Currency { EUR = 0; USD = 1; }",
        vec![],
    );
    let money = reference(
        "shop/money.proto",
        "syntax = \"proto3\"; package shop; import \"shop/currency.proto\"; message Money { Currency currency = 1; int64 units = 2; }",
        vec![currency],
    );
    let main = "syntax = \"proto3\"; package shop; import \"shop/money.proto\"; message Payment { Money price = 1; }";
    let s = ProtoSchema::parse(&registered(2, main, vec![money])).unwrap();
    let price = message(
        &s,
        "shop.Money",
        vec![("currency", Value::EnumNumber(1)), ("units", Value::I64(5))],
    );
    let m = message(&s, "shop.Payment", vec![("price", Value::Message(price))]);
    assert_eq!(
        transcode(&s, &body(&[0], &m)).unwrap(),
        r#"{"price":{"currency":"USD","units":5}}"#
    );
}

#[test]
fn a_base64_file_descriptor_proto_parses_like_its_source() {
    let money = "syntax = \"proto3\"; package shop; message Money { int64 units = 1; }";
    let main = "syntax = \"proto3\"; package shop; import \"shop/money.proto\"; import \"google/protobuf/timestamp.proto\";\n\
                message Payment { Money price = 1; google.protobuf.Timestamp at = 2; }";
    let from_source = ProtoSchema::parse(&registered(
        3,
        main,
        vec![reference("shop/money.proto", money, vec![])],
    ))
    .unwrap();
    let serialized = |s: &ProtoSchema, full_name: &str| {
        let mut file = descriptor(s, full_name)
            .parent_file()
            .file_descriptor_proto()
            .clone();
        // The registry's serialized form need not carry the file's name.
        file.name = None;
        base64::engine::general_purpose::STANDARD.encode(file.encode_to_vec())
    };
    let money_b64 = serialized(&from_source, "shop.Money");
    let main_b64 = serialized(&from_source, "shop.Payment");
    let s = ProtoSchema::parse(&registered(
        3,
        &main_b64,
        vec![reference("shop/money.proto", &money_b64, vec![])],
    ))
    .unwrap();
    let m = message(
        &s,
        "shop.Payment",
        vec![
            (
                "price",
                Value::Message(message(&s, "shop.Money", vec![("units", Value::I64(-4))])),
            ),
            ("at", known(&s, "google.protobuf.Timestamp", &ts(86_400, 0))),
        ],
    );
    let expected = r#"{"price":{"units":-4},"at":"1970-01-02T00:00:00Z"}"#;
    assert_eq!(transcode(&s, &body(&[0], &m)).unwrap(), expected);
    assert_eq!(transcode(&from_source, &body(&[0], &m)).unwrap(), expected);
    let e = ProtoSchema::parse(&registered(3, "AAAA", vec![])).unwrap_err();
    assert!(e.contains("not of a serialized FileDescriptorProto"), "{e}");
}

#[test]
fn parse_errors_name_the_file_and_the_place() {
    let e = ProtoSchema::parse(&registered(
        9,
        "syntax = \"proto3\";\nmessage A {\n  int32 x = ;\n}",
        vec![],
    ))
    .unwrap_err();
    assert!(
        e.starts_with("not a valid Protobuf schema: schema-9.proto:3:13: "),
        "{e}"
    );
    let e = ProtoSchema::parse(&registered(
        9,
        "syntax = \"proto3\";\nimport \"shop/nope.proto\";\nmessage A {}",
        vec![],
    ))
    .unwrap_err();
    assert!(
        e.contains("schema-9.proto:2:1: import 'shop/nope.proto' not found"),
        "{e}"
    );
    let broken = reference("shop/money.proto", "message Money {", vec![]);
    let e = ProtoSchema::parse(&registered(
        9,
        "syntax = \"proto3\"; import \"shop/money.proto\"; message A {}",
        vec![broken],
    ))
    .unwrap_err();
    assert!(
        e.contains("schema: shop/money.proto: expected a message field"),
        "{e}"
    );
    let e = ProtoSchema::parse(&registered(
        9,
        "syntax = \"proto3\"; enum E { A = 0; }",
        vec![],
    ))
    .unwrap_err();
    assert!(e.contains("declares no message type"), "{e}");
}

#[test]
fn fields_a_newer_writer_added_are_ignored() {
    let old = parse("syntax = \"proto3\"; message M { int32 a = 1; }");
    let new = parse("syntax = \"proto3\"; message M { int32 a = 1; string b = 2; M c = 3; repeated fixed64 d = 4; }");
    let c = message(&new, "M", vec![("a", Value::I32(9))]);
    let m = message(
        &new,
        "M",
        vec![
            ("a", Value::I32(1)),
            ("b", Value::String("x".into())),
            ("c", Value::Message(c)),
            ("d", Value::List(vec![Value::U64(1)])),
        ],
    );
    assert_eq!(transcode(&old, &body(&[0], &m)).unwrap(), r#"{"a":1}"#);
}

#[test]
fn nesting_deeper_than_a_hundred_is_refused() {
    let s = parse("syntax = \"proto3\"; message Node { Node child = 1; int32 v = 2; }");
    let nested = |depth: usize| {
        let mut m = message(&s, "Node", vec![("v", Value::I32(1))]);
        for _ in 0..depth {
            m = message(&s, "Node", vec![("child", Value::Message(m))]);
        }
        body(&[0], &m)
    };
    let text = transcode(&s, &nested(90)).unwrap();
    assert_eq!(text.matches("child").count(), 91);
    let e = transcode(&s, &nested(150)).unwrap_err();
    // prost stops first; the rendering's own limit is the same depth.
    assert!(
        e.contains("recursion limit") || e.contains("nest deeper than 100"),
        "{e}"
    );
}

#[test]
fn a_short_body_cannot_render_to_far_more_than_its_size() {
    let fields: String = (1..=60)
        .map(|i| format!("int64 a_rather_long_field_name_number_{i} = {i}; "))
        .collect();
    let s = parse(&format!(
        "syntax = \"proto3\"; message Many {{ repeated Wide w = 1; }} message Wide {{ {fields} }}"
    ));
    // 20 kB of empty elements would be 30 MB of default fields.
    let mut b = vec![0u8];
    b.extend([0x0a, 0x00].repeat(10_000));
    let e = transcode(&s, &b).unwrap_err();
    assert!(e.contains("grows past"), "{e}");
    // A few of them are fine.
    let mut b = vec![0u8];
    b.extend([0x0a, 0x00].repeat(10));
    assert_eq!(
        transcode(&s, &b).unwrap().matches("number_60\":0").count(),
        10
    );
}

/// Bodies of every kind of field, as serializers write them, with their schemas.
fn samples() -> Vec<(ProtoSchema, Vec<u8>)> {
    let shop = parse(SHOP);
    let order = body(&[2, 2], &full_order(&shop));
    let scalars = body(
        &[0],
        &message(
            &shop,
            "shop.Scalars",
            vec![("s", Value::String("é".into())), ("fl", Value::F32(1.5))],
        ),
    );
    let known = parse(KNOWN);
    let attrs = prost_types::Struct {
        fields: BTreeMap::from([
            ("n".to_string(), json(JsonKind::NullValue(0))),
            (
                "l".to_string(),
                json(JsonKind::ListValue(prost_types::ListValue {
                    values: vec![
                        json(JsonKind::NumberValue(2.0)),
                        json(JsonKind::BoolValue(true)),
                    ],
                })),
            ),
            (
                "o".to_string(),
                json(JsonKind::StructValue(prost_types::Struct::default())),
            ),
        ]),
    };
    let timings = [("a", dur(1, 1)), ("b", dur(-2, 0))].map(|(k, d)| {
        (
            MapKey::String(k.into()),
            self::known(&known, "google.protobuf.Duration", &d),
        )
    });
    let k = message(
        &known,
        "Known",
        vec![
            (
                "at",
                self::known(&known, "google.protobuf.Timestamp", &ts(5, 5)),
            ),
            (
                "took",
                self::known(&known, "google.protobuf.Duration", &dur(5, 5)),
            ),
            (
                "s",
                wrapper(&known, "StringValue", Value::String("w".into())),
            ),
            ("i64", wrapper(&known, "Int64Value", Value::I64(-3))),
            (
                "attrs",
                self::known(&known, "google.protobuf.Struct", &attrs),
            ),
            (
                "v",
                self::known(
                    &known,
                    "google.protobuf.Value",
                    &json(JsonKind::StringValue("x".into())),
                ),
            ),
            (
                "nothing",
                Value::Message(message(&known, "google.protobuf.Empty", vec![])),
            ),
            (
                "history",
                Value::List(vec![self::known(
                    &known,
                    "google.protobuf.Timestamp",
                    &ts(-1, 0),
                )]),
            ),
            ("timings", Value::Map(HashMap::from(timings))),
        ],
    );
    let k = body(&[0], &k);
    let money = parse(MONEY);
    let m = message(
        &money,
        "Money",
        vec![
            (
                "amount",
                Value::Message(message(
                    &money,
                    "confluent.type.Decimal",
                    vec![
                        ("value", Value::Bytes(vec![0x30, 0x39].into())),
                        ("scale", Value::I32(2)),
                    ],
                )),
            ),
            (
                "day",
                Value::Message(message(
                    &money,
                    "google.type.Date",
                    vec![
                        ("year", Value::I32(2024)),
                        ("month", Value::I32(1)),
                        ("day", Value::I32(31)),
                    ],
                )),
            ),
            (
                "g",
                Value::List(vec![Value::Message(message(
                    &money,
                    "google.type.Decimal",
                    vec![("value", Value::String("-1.5".into()))],
                ))]),
            ),
        ],
    );
    let m = body(&[0], &m);
    vec![
        (shop, order),
        (parse(SHOP), scalars),
        (known, k),
        (money, m),
    ]
}

#[test]
fn repeated_singular_fields_oneofs_and_map_keys_read_as_protobuf_merges_them() {
    let s = parse(SHOP);
    let line = |sku: &str| {
        Value::Message(message(
            &s,
            "shop.Order.Line",
            vec![("sku", Value::String(sku.into()))],
        ))
    };
    let first = message(
        &s,
        "shop.Order",
        vec![
            ("id", Value::I64(1)),
            ("card", Value::String("c".into())),
            (
                "counts",
                Value::Map(HashMap::from([(MapKey::String("k".into()), Value::I32(1))])),
            ),
            (
                "inner",
                Value::Message(message(&s, "shop.Scalars", vec![("i32", Value::I32(5))])),
            ),
            ("lines", Value::List(vec![line("a")])),
        ],
    );
    let second = message(
        &s,
        "shop.Order",
        vec![
            ("id", Value::I64(2)),
            ("points", Value::I64(9)),
            (
                "counts",
                Value::Map(HashMap::from([(MapKey::String("k".into()), Value::I32(2))])),
            ),
            (
                "inner",
                Value::Message(message(&s, "shop.Scalars", vec![("i64", Value::I64(6))])),
            ),
            ("lines", Value::List(vec![line("b")])),
        ],
    );
    // A singular field written twice: the last one counts.
    let id = |n| message(&s, "shop.Order", vec![("id", Value::I64(n))]).encode_to_vec();
    let twice = [&[2, 2][..], &id(1), &id(2)].concat();
    assert!(transcode(&s, &twice).unwrap().starts_with(r#"{"id":2,"#));
    // Two messages back to back read as one, the second merged into the first.
    let mut b = body(&[2, 2], &first);
    b.extend(second.encode_to_vec());
    let text = transcode(&s, &b).unwrap();
    assert!(
        text.starts_with(r#"{"id":2,"note":null,"inner":{"i32":5,"i64":6,"#)
            && text.ends_with(r#""card":null,"points":9,"qty":[],"counts":{"k":2},"by_id":{},"lines":[{"sku":"a","qty":0},{"sku":"b","qty":0}],"state":"NEW"}"#),
        "{text}"
    );
}

#[test]
fn damaged_bodies_are_errors_never_panics() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut ok, mut failed) = (0, 0);
    let mut outcome = |schema: &ProtoSchema, bad: &[u8]| match transcode(schema, bad) {
        Ok(_) => ok += 1,
        Err(e) => {
            assert!(!e.is_empty());
            failed += 1;
        }
    };
    for (schema, good) in samples() {
        assert!(transcode(&schema, &good).is_ok());
        for end in 0..good.len() {
            // A truncated body may still be a valid (shorter) message; it must not panic.
            outcome(&schema, &good[..end]);
        }
        for _ in 0..3000 {
            let mut bad = good.clone();
            for _ in 0..1 + next() % 3 {
                let i = (next() % bad.len() as u64) as usize;
                bad[i] = next() as u8;
            }
            outcome(&schema, &bad);
        }
        for _ in 0..300 {
            // Spliced pieces of the body: fields repeated, cut and out of order.
            let (a, b) = (
                (next() % good.len() as u64) as usize,
                (next() % good.len() as u64) as usize,
            );
            let mut spliced = good.clone();
            let (lo, hi) = (a.min(b).max(1), a.max(b).max(1));
            spliced.extend_from_slice(&good[lo..hi]);
            outcome(&schema, &spliced);
        }
    }
    // Every outcome happens: the damage is neither always harmless nor always caught.
    assert!(ok > 0 && failed > 0, "{ok} {failed}");
}

#[test]
fn decimal_text_is_normalised_to_a_json_number() {
    let cases = [
        ("0", "0"),
        ("-12.50", "-12.50"),
        ("+.5", "0.5"),
        ("00012", "12"),
        ("5.e-3", "5e-3"),
        ("1E9", "1e9"),
    ];
    for (text, expected) in cases {
        let mut out = String::new();
        assert!(wellknown::decimal_number(&mut out, text), "{text}");
        assert_eq!(out, expected);
    }
    for text in ["", "-", "+", "e5", "1e+", "1x", " 1", "0x10", "١"] {
        let mut out = String::new();
        assert!(
            !wellknown::decimal_number(&mut out, text) && out.is_empty(),
            "{text}"
        );
    }
}
