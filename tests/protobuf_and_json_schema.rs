//! Protobuf and JSON Schema through a Schema Registry end to end: records serialized by
//! Confluent's own Python serializers (which register the schemas, Protobuf imports as
//! references), produced to the broker, checked as exact rows in Postgres.

use std::time::Duration;

use serde_json::json;
use testkit::prelude::*;

const FAST_BATCHES: &str = "[batch]\nmax_records = 50\nmax_wait_ms = 50\n";

const ORDERS: &str = "CREATE TABLE orders (
    id bigint PRIMARY KEY,
    placed_at timestamptz,
    note text,
    qty integer,
    status text,
    city text,
    tags jsonb,
    attrs jsonb,
    discount bigint,
    weight double precision,
    raw bytea
)";

/// An imported file, registered by the serializer as a reference of the order schema.
const ADDRESS_PROTO: &str = r#"syntax = "proto3";
package shop.common;
message Address {
  string city = 1;
  string zip = 2;
}
"#;

/// Two messages: the serializer writes the message-index list of the second one.
const ORDER_PROTO: &str = r#"syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "shop/common/address.proto";

message Unused {
  int32 x = 1;
}

message Order {
  enum Status {
    NEW = 0;
    PAID = 1;
    VOID = 2;
  }
  int64 id = 1;
  google.protobuf.Timestamp placed_at = 2;
  google.protobuf.StringValue note = 3;
  int32 qty = 4;
  Status status = 5;
  shop.common.Address address = 6;
  repeated string tags = 7;
  map<string, int32> attrs = 8;
  google.protobuf.Int64Value discount = 9;
  double weight = 10;
  bytes raw = 11;
}
"#;

fn mapping(topic: &str, registry: &SchemaRegistry, format: &str, columns: &str) -> String {
    format!(
        "{FAST_BATCHES}\n[schema_registry]\nurl = \"{}\"\n\n\
         [[mappings]]\ntopic = \"{topic}\"\ntable = \"orders\"\nformat = \"{format}\"\n\
         key = [\"id\"]\ncolumns = {{ {columns} }}\n",
        registry.url()
    )
}

async fn wait_for_log_end(built: &Built, end: i64) {
    let done = eventually(Duration::from_secs(90), || async {
        built.stored_offsets().await == [(0, end)]
    })
    .await;
    assert!(done, "stored offsets: {:?}", built.stored_offsets().await);
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn rows(db: &TestDb) -> Vec<Row> {
    sqlx::query_as(
        "SELECT o.id::text, (extract(epoch FROM o.placed_at) * 1000000)::bigint::text, o.note, \
         o.qty::text, o.status, o.city, o.tags::text, o.attrs::text, o.discount::text, \
         o.weight::text, encode(o.raw, 'hex') FROM orders o ORDER BY o.id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

fn text(s: &str) -> Option<String> {
    Some(s.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_records_with_imports_well_known_types_and_nested_messages_become_exact_rows() {
    let built = Scenario::new()
        .ddl(ORDERS)
        .topic("proto_orders")
        .build()
        .await;
    let registry = SchemaRegistry::start();
    let serializer = PySerializer::start(&registry);
    let topic = &built.topic;
    let imports = [("shop/common/address.proto", ADDRESS_PROTO)];
    let values = [
        json!({
            "id": 1, "placed_at": "2026-12-03T16:53:00.123456Z", "note": "first \"one\"",
            "qty": 3, "status": "PAID", "address": {"city": "Zürich", "zip": "8001"},
            "tags": ["a", "b"], "attrs": {"z": 1, "a": -2}, "discount": "9007199254740993",
            "weight": 0.1, "raw": "AP8="
        }),
        // Absent fields: proto3 scalars read as their defaults, wrappers and messages as NULL.
        json!({"id": 2}),
        json!({"id": 3, "placed_at": "1969-12-31T23:59:59.999999Z", "status": "VOID", "qty": -7,
               "note": "", "discount": "0"}),
    ];
    let mut producer = built.producer();
    for value in &values {
        let bytes = serializer
            .try_protobuf(
                topic,
                false,
                ORDER_PROTO,
                Some("shop.Order"),
                &imports,
                value,
            )
            .unwrap_or_else(|e| panic!("serializing {value}: {e:#}"));
        producer.send_bytes(topic, 0, None, Some(&bytes));
    }
    producer.flush();
    let columns = "id = \"value.id\", placed_at = \"value.placed_at\", note = \"value.note\", \
                   qty = \"value.qty\", status = \"value.status\", city = \"value.address.city\", \
                   tags = \"value.tags\", attrs = \"value.attrs\", discount = \"value.discount\", \
                   weight = \"value.weight\", raw = \"value.raw\"";
    let _sink = built.sink(&mapping(topic, &registry, "protobuf", columns));
    wait_for_log_end(&built, 3).await;
    let dead: i64 = built
        .db
        .scalar_i64("SELECT count(*) FROM kafka_pg_sink.dead_letters")
        .await;
    assert_eq!(
        dead,
        0,
        "{}",
        built
            .db
            .scalar_text(
                "SELECT coalesce(string_agg(error, ' | '), '') FROM kafka_pg_sink.dead_letters"
            )
            .await
    );
    assert_eq!(
        rows(&built.db).await,
        vec![
            (
                "1".into(),
                text("1796316780123456"),
                text("first \"one\""),
                text("3"),
                text("PAID"),
                text("Zürich"),
                text(r#"["a", "b"]"#),
                text(r#"{"a": -2, "z": 1}"#),
                text("9007199254740993"),
                text("0.1"),
                text("00ff"),
            ),
            (
                "2".into(),
                None,
                None,
                text("0"),
                text("NEW"),
                None,
                text("[]"),
                text("{}"),
                None,
                text("0"),
                text(""),
            ),
            (
                "3".into(),
                text("-1"),
                text(""),
                text("-7"),
                text("VOID"),
                None,
                text("[]"),
                text("{}"),
                text("0"),
                text("0"),
                text(""),
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_records_are_read_past_their_header_and_bad_headers_are_dead_letters() {
    let built = Scenario::new()
        .ddl(ORDERS)
        .topic("jsonschema_orders")
        .build()
        .await;
    let registry = SchemaRegistry::start();
    let serializer = PySerializer::start(&registry);
    let topic = &built.topic;
    let schema = r#"{"$schema": "http://json-schema.org/draft-07/schema#", "title": "Order",
      "type": "object", "properties": {
        "id": {"type": "integer"}, "qty": {"type": "integer"}, "note": {"type": ["null", "string"]},
        "address": {"type": "object", "properties": {"city": {"type": "string"}}}},
      "required": ["id"]}"#;
    let mut producer = built.producer();
    for (i, value) in [
        json!({"id": 1, "qty": 5, "note": "tab\t", "address": {"city": "Oslo"}}),
        json!({"id": 2, "qty": 12345678901i64 % 1000, "note": null}),
    ]
    .iter()
    .enumerate()
    {
        let bytes = serializer.json_schema(topic, false, schema, value);
        producer.send_bytes(topic, 0, None, Some(&bytes));
        if i == 0 {
            // Plain JSON where the header should be: a bad record, not a crash.
            producer.send_bytes(topic, 0, None, Some(br#"{"id": 9}"#));
        }
    }
    producer.flush();
    let columns = "id = \"value.id\", qty = \"value.qty\", note = \"value.note\", city = \"value.address.city\"";
    let _sink = built.sink(&mapping(topic, &registry, "json_schema", columns));
    wait_for_log_end(&built, 3).await;
    type Short = (String, Option<String>, Option<String>, Option<String>);
    let got: Vec<Short> =
        sqlx::query_as("SELECT id::text, qty::text, note, city FROM orders ORDER BY orders.id")
            .fetch_all(&built.db.pool)
            .await
            .unwrap();
    assert_eq!(
        got,
        vec![
            ("1".into(), text("5"), text("tab\t"), text("Oslo")),
            ("2".into(), text("901"), None, None),
        ]
    );
    let error = built
        .db
        .scalar_text("SELECT stage || ': ' || error FROM kafka_pg_sink.dead_letters")
        .await;
    assert!(
        error.starts_with("decode: ") && error.contains("magic byte 0x7b"),
        "{error}"
    );
}
