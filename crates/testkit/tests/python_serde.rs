//! Confluent's Python serializers, driven through the test kit, frame records as the Confluent
//! wire format says (magic 0, the id the registry assigned, Protobuf message indexes) and
//! register what a Confluent producer registers: `<topic>-value` / `<topic>-key`, and each
//! imported `.proto` file as a reference under its own name.

use serde_json::{json, Value};
use testkit::names::unique;
use testkit::pyserde::PySerializer;
use testkit::registry::{encode_path_segment, Reference, SchemaRegistry, SchemaType};

/// The (version, id, body) of `subject`'s latest version.
fn latest(registry: &SchemaRegistry, subject: &str) -> (u64, u32, Value) {
    let path = format!("/subjects/{}/versions/latest", encode_path_segment(subject));
    let response = registry.client().get(&path).expect("an answer");
    assert_eq!(response.status, 200, "{subject}: {}", response.body);
    let id = response.body["id"].as_u64().expect("an id") as u32;
    (
        response.body["version"].as_u64().unwrap(),
        id,
        response.body,
    )
}

/// Checks the Confluent header (magic 0 and `id` big-endian) and returns what follows.
fn after_header(bytes: &[u8], id: u32) -> &[u8] {
    assert!(bytes.len() >= 5, "{bytes:?}");
    assert_eq!(bytes[0], 0, "magic byte");
    assert_eq!(&bytes[1..5], &id.to_be_bytes(), "schema id");
    &bytes[5..]
}

const PAYMENT_AVRO: &str = r#"{
  "type": "record", "name": "Payment", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 4}},
    {"name": "paid_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "booked_on", "type": {"type": "int", "logicalType": "date"}},
    {"name": "payer", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "tip", "type": ["null", "long"], "default": null}
  ]
}"#;

#[test]
fn avro_record_with_logical_types_is_framed_with_the_registered_id() {
    let registry = SchemaRegistry::start();
    let serde = PySerializer::start(&registry);
    let topic = unique("payments");
    let value = json!({
        "id": 7,
        "amount": {"$decimal": "123.4500"},
        "paid_at": {"$timestamp": "2024-05-06T07:08:09.123456Z"},
        "booked_on": {"$date": "2024-05-06"},
        "payer": {"$uuid": "6f1c2b8e-9a4d-4c1e-8f7a-0b1c2d3e4f50"},
        "note": null,
        "tip": 5,
    });
    let bytes = serde.avro(&topic, false, PAYMENT_AVRO, &value);
    let (version, id, body) = latest(&registry, &format!("{topic}-value"));
    assert_eq!(version, 1);
    assert_eq!(body.get("schemaType"), None, "registered as Avro");
    let payload = after_header(&bytes, id);
    // id: long 7, zigzag 14; amount: 1234500 unscaled = 0x12D644, length 3 (zigzag 6).
    assert_eq!(&payload[..5], &[14, 6, 0x12, 0xD6, 0x44]);
    // The same schema under the key subject gets the same id.
    let key = serde.avro(&topic, true, PAYMENT_AVRO, &value);
    assert_eq!(latest(&registry, &format!("{topic}-key")).1, id);
    assert_eq!(key, bytes);
}

#[test]
fn avro_schema_can_reference_a_type_registered_under_another_subject() {
    let registry = SchemaRegistry::start();
    let serde = PySerializer::start(&registry);
    let money_subject = unique("money");
    let money = r#"{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"cents","type":"long"}]}"#;
    registry.register(&money_subject, SchemaType::Avro, money, &[]);
    let order = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"total","type":"shop.Money"}]}"#;
    let reference = Reference {
        name: "shop.Money".into(),
        subject: money_subject,
        version: 1,
    };
    let topic = unique("orders");
    let value = json!({"total": {"cents": 250}});
    let bytes = serde
        .try_avro(
            &topic,
            false,
            order,
            std::slice::from_ref(&reference),
            &value,
        )
        .expect("serialized");
    let (_, id, body) = latest(&registry, &format!("{topic}-value"));
    assert_eq!(body["references"], json!([reference]));
    assert_eq!(after_header(&bytes, id), &[0xF4, 0x03], "250 zigzag varint");
}

const MONEY_PROTO: &str = r#"syntax = "proto3";
package shop;
message Money {
  string currency = 1;
  int64 units = 2;
}
"#;

fn order_proto(import: &str) -> String {
    format!(
        r#"syntax = "proto3";
package shop;
import "{import}";
import "google/protobuf/timestamp.proto";
message Header {{ string source = 1; }}
message Order {{
  string id = 1;
  shop.Money total = 2;
  google.protobuf.Timestamp placed_at = 3;
}}
"#
    )
}

#[test]
fn protobuf_message_registers_its_import_as_a_reference_and_writes_message_indexes() {
    let registry = SchemaRegistry::start();
    let serde = PySerializer::start(&registry);
    let import = format!("{}/money.proto", unique("shop"));
    let topic = unique("orders");
    let value = json!({
        "id": "o-1",
        "total": {"currency": "EUR", "units": "12"},
        "placedAt": "2024-05-06T07:08:09.5Z",
    });
    let proto = order_proto(&import);
    let imports = [(import.as_str(), MONEY_PROTO)];
    let bytes = serde.protobuf(&topic, false, &proto, Some("shop.Order"), &imports, &value);

    let (_, id, body) = latest(&registry, &format!("{topic}-value"));
    assert_eq!(body["schemaType"], json!("PROTOBUF"));
    let reference = json!([{ "name": import, "subject": import, "version": 1 }]);
    assert_eq!(
        body["references"], reference,
        "only the local import, not the well-known type"
    );
    let (import_version, _, import_body) = latest(&registry, &import);
    assert_eq!(
        (import_version, &import_body["schemaType"]),
        (1, &json!("PROTOBUF"))
    );
    let payload = after_header(&bytes, id);
    // Message indexes [1] (Order is the file's second message): count 1 and index 1, zigzag.
    assert_eq!(&payload[..2], &[2, 2]);
    // Then the message: field 1 (id), length-delimited "o-1".
    assert_eq!(&payload[2..7], &[0x0A, 3, b'o', b'-', b'1']);

    // The file's first message is written with the single-zero index shorthand.
    let header = serde.protobuf(
        &topic,
        true,
        &proto,
        None,
        &imports,
        &json!({"source": "pos"}),
    );
    let (_, key_id, _) = latest(&registry, &format!("{topic}-key"));
    assert_eq!(key_id, id, "one file, one schema");
    assert_eq!(&after_header(&header, id)[..1], &[0]);
}

#[test]
fn protobuf_schemas_are_answered_as_proto_text_that_compiles_to_the_same_schema() {
    let registry = SchemaRegistry::start();
    let serde = PySerializer::start(&registry);
    let import = format!("{}/money.proto", unique("shop"));
    let (topic, again) = (unique("orders"), unique("orders_again"));
    let value = json!({"id": "o-2", "total": {"currency": "EUR", "units": "3"}});
    let imports = [(import.as_str(), MONEY_PROTO)];
    let bytes = serde.protobuf(
        &topic,
        false,
        &order_proto(&import),
        Some("shop.Order"),
        &imports,
        &value,
    );
    let (_, id, body) = latest(&registry, &format!("{topic}-value"));
    let text = body["schema"].as_str().expect("schema text").to_owned();
    assert!(text.starts_with("syntax = \"proto3\";"), "{text}");
    assert!(text.contains("message Order {"), "{text}");
    let (_, _, import_body) = latest(&registry, &import);
    let import_text = import_body["schema"]
        .as_str()
        .expect("schema text")
        .to_owned();
    assert!(import_text.contains("message Money {"), "{import_text}");

    // The registry's text is a schema in its own right: compiled and registered again, it is
    // the same schema (same id) and frames the value the same way.
    let imports = [(import.as_str(), import_text.as_str())];
    let rebuilt = serde.protobuf(&again, false, &text, Some("shop.Order"), &imports, &value);
    assert_eq!(latest(&registry, &format!("{again}-value")).1, id);
    assert_eq!(rebuilt, bytes);
}

#[test]
fn protobuf_errors_come_back_with_protoc_text() {
    let registry = SchemaRegistry::start();
    let serde = PySerializer::start(&registry);
    let broken = "syntax = \"proto3\";\nmessage A { int32 x = 1 }\n";
    let error = serde
        .try_protobuf(&unique("broken"), false, broken, None, &[], &json!({}))
        .expect_err("a syntax error");
    assert!(format!("{error:#}").contains("protoc"), "{error:#}");
}

const CUSTOMER_JSON_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Customer",
  "type": "object",
  "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
  "required": ["id"]
}"#;

#[test]
fn json_schema_value_is_validated_and_framed_with_the_registered_id() {
    let registry = SchemaRegistry::start();
    let serde = PySerializer::start(&registry);
    let topic = unique("customers");
    let value = json!({"id": 42, "name": "Ada"});
    let bytes = serde.json_schema(&topic, false, CUSTOMER_JSON_SCHEMA, &value);
    let (_, id, body) = latest(&registry, &format!("{topic}-value"));
    assert_eq!(body["schemaType"], json!("JSON"));
    let payload: Value = serde_json::from_slice(after_header(&bytes, id)).expect("JSON payload");
    assert_eq!(payload, value);
    let invalid = serde.try_json_schema(&topic, false, CUSTOMER_JSON_SCHEMA, &json!({"name": "x"}));
    let error = invalid.expect_err("id is required");
    assert!(format!("{error:#}").contains("required"), "{error:#}");
}

#[test]
fn serializes_against_a_registry_that_wants_credentials() {
    if testkit::skip::unless_own_registry("server-side credentials") {
        return;
    }
    let registry = SchemaRegistry::start().with_basic_auth("producer", "pw");
    let serde = PySerializer::start(&registry);
    let topic = unique("secured");
    let greeting =
        r#"{"type":"record","name":"Greeting","fields":[{"name":"text","type":"string"}]}"#;
    let bytes = serde.avro(&topic, false, greeting, &json!({"text": "hello"}));
    let (_, id, _) = latest(&registry, &format!("{topic}-value"));
    assert_eq!(after_header(&bytes, id), b"\x0ahello");
    let anonymous = PySerializer::start_for(registry.url()).expect("a serializer");
    let refused = anonymous.try_json_schema(&topic, false, CUSTOMER_JSON_SCHEMA, &json!({"id": 1}));
    assert!(format!("{:#}", refused.unwrap_err()).contains("401"));
}
