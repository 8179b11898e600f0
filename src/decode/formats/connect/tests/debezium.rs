//! Debezium's logical types and a change event of its PostgreSQL connector.

use super::*;

#[test]
fn debezium_variable_scale_decimals_carry_their_scale() {
    let schema = r#"{"type":"struct","optional":true,"name":"io.debezium.data.VariableScaleDecimal",
        "version":1,"fields":[{"type":"int32","optional":false,"field":"scale"},
        {"type":"bytes","optional":false,"field":"value"}]}"#;
    let value = |scale: i32, n: i128| format!(r#"{{"scale":{scale},"value":"{}"}}"#, unscaled(n));
    assert_eq!(rendered(schema, &value(3, -1_234_567)), "-1234.567");
    assert_eq!(rendered(schema, &value(0, 42)), "42");
    assert_eq!(rendered(schema, &value(-2, 7)), "700");
    assert_eq!(rendered(schema, "null"), "null");
    assert_eq!(
        refused(schema, r#"{"scale":2}"#),
        "field `value`: expected bytes, found null"
    );
    assert_eq!(
        refused(schema, r#"{"scale":99999,"value":"AQ=="}"#),
        "the payload: decimal scale 99999 is outside -16383 to 16383"
    );
}

#[test]
fn debezium_temporal_types_render_local_times_without_zone() {
    let schema = struct_of(&[
        ("d", r#""type":"int32","name":"io.debezium.time.Date""#),
        ("t", r#""type":"int32","name":"io.debezium.time.Time""#),
        (
            "tu",
            r#""type":"int64","name":"io.debezium.time.MicroTime""#,
        ),
        ("tn", r#""type":"int64","name":"io.debezium.time.NanoTime""#),
        (
            "ts",
            r#""type":"int64","name":"io.debezium.time.Timestamp""#,
        ),
        (
            "tsu",
            r#""type":"int64","name":"io.debezium.time.MicroTimestamp""#,
        ),
        (
            "tsn",
            r#""type":"int64","name":"io.debezium.time.NanoTimestamp""#,
        ),
        (
            "z",
            r#""type":"string","name":"io.debezium.time.ZonedTimestamp""#,
        ),
        (
            "zt",
            r#""type":"string","name":"io.debezium.time.ZonedTime""#,
        ),
        ("id", r#""type":"string","name":"io.debezium.time.IsoDate""#),
        ("it", r#""type":"string","name":"io.debezium.time.IsoTime""#),
        (
            "its",
            r#""type":"string","name":"io.debezium.time.IsoTimestamp""#,
        ),
    ]);
    let payload = r#"{"d":0,"t":3723004,"tu":3723000004,"tn":3723000000005,
        "ts":1700000000000,"tsu":1700000000123456,"tsn":-1,
        "z":"2023-11-14T22:13:20.5Z","zt":"22:13:20Z","id":"2023-11-14","it":"22:13:20",
        "its":"2023-11-14T22:13:20"}"#;
    assert_eq!(
        rendered(&schema, payload),
        concat!(
            r#"{"d":"1970-01-01","t":"01:02:03.004","tu":"01:02:03.000004","#,
            r#""tn":"01:02:03.000000005","ts":"2023-11-14T22:13:20","#,
            r#""tsu":"2023-11-14T22:13:20.123456","tsn":"1969-12-31T23:59:59.999999999","#,
            r#""z":"2023-11-14T22:13:20.5Z","zt":"22:13:20Z","id":"2023-11-14","#,
            r#""it":"22:13:20","its":"2023-11-14T22:13:20"}"#
        )
    );
    // 24:00 is a time PostgreSQL's `time` takes.
    let micro_time = r#"{"type":"int64","name":"io.debezium.time.MicroTime"}"#;
    assert_eq!(rendered(micro_time, "86400000000"), r#""24:00:00""#);
}

#[test]
fn debezium_strings_bits_and_durations() {
    let schema = struct_of(&[
        ("u", r#""type":"string","name":"io.debezium.data.Uuid""#),
        ("j", r#""type":"string","name":"io.debezium.data.Json""#),
        ("x", r#""type":"string","name":"io.debezium.data.Xml""#),
        (
            "e",
            r#""type":"string","name":"io.debezium.data.Enum","parameters":{"allowed":"a,b"}"#,
        ),
        (
            "bits",
            r#""type":"bytes","name":"io.debezium.data.Bits","parameters":{"length":"12"}"#,
        ),
        (
            "d1",
            r#""type":"int64","name":"io.debezium.time.MicroDuration""#,
        ),
        (
            "d2",
            r#""type":"int64","name":"io.debezium.time.MicroDuration""#,
        ),
        (
            "d3",
            r#""type":"int64","name":"io.debezium.time.MicroDuration""#,
        ),
        ("other", r#""type":"int32","name":"com.example.Unknown""#),
    ]);
    let payload = r#"{"u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","j":"{\"a\":[1]}","x":"<a/>",
        "e":"b","bits":"AQI=","d1":90000001,"d2":-1500000,"d3":-1,"other":7}"#;
    assert_eq!(
        rendered(&schema, payload),
        concat!(
            r#"{"u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","j":"{\"a\":[1]}","x":"<a/>","#,
            r#""e":"b","bits":"\\x0102","d1":"PT90.000001S","d2":"PT-1.500000S","#,
            r#""d3":"PT-0.000001S","other":7}"#
        )
    );
}

/// The value of a Debezium PostgreSQL connector change event with JsonConverter's envelope, in
/// the shape of Debezium's documentation: a row of `inventory.customers` with a `numeric(10,2)`
/// (`decimal.handling.mode=precise`), a `timestamp` (MicroTimestamp) and a `uuid`.
pub(super) const CHANGE_EVENT: &str = r#"{
  "schema": {
    "type": "struct",
    "fields": [
      {"type": "struct", "fields": [
          {"type": "int32", "optional": false, "default": 0, "field": "id"},
          {"type": "string", "optional": false, "field": "email"},
          {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
           "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "price"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "version": 1,
           "field": "created_at"},
          {"type": "string", "optional": true, "name": "io.debezium.data.Uuid", "version": 1, "field": "ref"}
        ], "optional": true, "name": "PostgreSQL_server.inventory.customers.Value", "field": "before"},
      {"type": "struct", "fields": [
          {"type": "int32", "optional": false, "default": 0, "field": "id"},
          {"type": "string", "optional": false, "field": "email"},
          {"type": "bytes", "optional": true, "name": "org.apache.kafka.connect.data.Decimal",
           "version": 1, "parameters": {"scale": "2", "connect.decimal.precision": "10"}, "field": "price"},
          {"type": "int64", "optional": true, "name": "io.debezium.time.MicroTimestamp", "version": 1,
           "field": "created_at"},
          {"type": "string", "optional": true, "name": "io.debezium.data.Uuid", "version": 1, "field": "ref"}
        ], "optional": true, "name": "PostgreSQL_server.inventory.customers.Value", "field": "after"},
      {"type": "struct", "fields": [
          {"type": "string", "optional": false, "field": "version"},
          {"type": "string", "optional": false, "field": "connector"},
          {"type": "string", "optional": false, "field": "name"},
          {"type": "int64", "optional": false, "field": "ts_ms"},
          {"type": "string", "optional": true, "name": "io.debezium.data.Enum", "version": 1,
           "parameters": {"allowed": "true,last,false,incremental"}, "default": "false", "field": "snapshot"},
          {"type": "string", "optional": false, "field": "db"},
          {"type": "string", "optional": true, "field": "sequence"},
          {"type": "string", "optional": false, "field": "schema"},
          {"type": "string", "optional": false, "field": "table"},
          {"type": "int64", "optional": true, "field": "txId"},
          {"type": "int64", "optional": true, "field": "lsn"},
          {"type": "int64", "optional": true, "field": "xmin"}
        ], "optional": false, "name": "io.debezium.connector.postgresql.Source", "field": "source"},
      {"type": "string", "optional": false, "field": "op"},
      {"type": "int64", "optional": true, "field": "ts_ms"},
      {"type": "struct", "fields": [
          {"type": "string", "optional": false, "field": "id"},
          {"type": "int64", "optional": false, "field": "total_order"},
          {"type": "int64", "optional": false, "field": "data_collection_order"}
        ], "optional": true, "name": "event.block", "version": 1, "field": "transaction"}
    ],
    "optional": false,
    "name": "PostgreSQL_server.inventory.customers.Envelope",
    "version": 1
  },
  "payload": {
    "before": null,
    "after": {
      "id": 1004,
      "email": "annek@noanswer.org",
      "price": "AeJA",
      "created_at": 1700000000123456,
      "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    },
    "source": {
      "version": "2.5.0.Final",
      "connector": "postgresql",
      "name": "PostgreSQL_server",
      "ts_ms": 1700000000100,
      "snapshot": "false",
      "db": "postgres",
      "sequence": "[\"24023119\",\"24023128\"]",
      "schema": "inventory",
      "table": "customers",
      "txId": 555,
      "lsn": 24023128,
      "xmin": null
    },
    "op": "c",
    "ts_ms": 1700000000200,
    "transaction": null
  }
}"#;

#[test]
fn a_debezium_postgres_change_event_renders_every_envelope_member() {
    let out = transcode_text(CHANGE_EVENT).unwrap();
    assert_eq!(
        out,
        concat!(
            r#"{"before":null,"after":{"id":1004,"email":"annek@noanswer.org","price":1234.56,"#,
            r#""created_at":"2023-11-14T22:13:20.123456","ref":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},"#,
            r#""source":{"version":"2.5.0.Final","connector":"postgresql","name":"PostgreSQL_server","#,
            r#""ts_ms":1700000000100,"snapshot":"false","db":"postgres","#,
            r#""sequence":"[\"24023119\",\"24023128\"]","schema":"inventory","table":"customers","#,
            r#""txId":555,"lsn":24023128,"xmin":null},"op":"c","ts_ms":1700000000200,"transaction":null}"#
        )
    );
    let value: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["after"]["id"], 1004);
    assert_eq!(value["op"], "c");
    assert_eq!(value["source"]["lsn"], 24_023_128);

    // A delete: the row is in `before`, `after` is null.
    let delete = CHANGE_EVENT
        .replace(
            r#""before": null"#,
            r#""before": {"id": 1004, "email": "x"}"#,
        )
        .replace(r#""after": {"#, r#""after": null, "unused": {"#)
        .replace(r#""op": "c""#, r#""op": "d""#);
    let value: Value = serde_json::from_str(&transcode_text(&delete).unwrap()).unwrap();
    assert_eq!(
        value["before"].to_string(),
        r#"{"created_at":null,"email":"x","id":1004,"price":null,"ref":null}"#
    );
    assert!(value["after"].is_null());
    assert_eq!(value["op"], "d");
}
