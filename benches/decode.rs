//! Decoder micro-benchmark: CPU per record for the benchmark's upsert mapping (`scripts/bench.sh`
//! workload: ~200-byte JSON, bigint key, exact decimal, RFC 3339 timestamp, nested object), and
//! for the same columns in insert mode, whose rows go straight into the table.
//!
//! The same rows also come as Avro and as Protobuf in the Confluent wire format (encoded here by
//! `apache-avro` and `prost-reflect`, the schemas put in the decoder's schema cache): their cost
//! per record is printed next to JSON's, with their throughput as a share of the JSON path's.
//!
//! Run: `cargo bench --bench decode` (`DECODE_ONLY=avro` for the cases whose name holds `avro`). Prints ns per record (best and median of the rounds), so
//! decoder changes can be compared without Postgres, Kafka or the machine's other load in the way.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use apache_avro::types::Value;
use apache_avro::{Decimal, Schema};
use kafka_pg_sink::config::{Config, Mapping};
use kafka_pg_sink::decode::formats::schemas::Decoding;
use kafka_pg_sink::decode::formats::{RegisteredSchema, SchemaKind, Schemas};
use kafka_pg_sink::record::{Record, TopicPartition};
use kafka_pg_sink::sink::encode::{BinType, Decoder};
use prost_reflect::prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value as ProtoValue};

const BATCH: usize = 10_000;
/// Rounds, unless `DECODE_ROUNDS` says otherwise (e.g. 3 under `valgrind --tool=callgrind`,
/// whose instruction counts do not depend on the machine's other load).
const ROUNDS: usize = 40;

fn payload(seq: u64) -> Vec<u8> {
    // Ids spread over the whole bigint range, as in the benchmark's workload.
    let id = (seq + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) & (u64::MAX >> 1);
    format!(
        r#"{{"id":{id},"account":"acct-{}","amount":"{}.{:02}","ts":"2026-01-01T{:02}:{:02}:{:02}.{:03}Z","meta":{{"source":"bench","region":"eu-{}","seq":{seq}}}}}"#,
        seq % 10_000,
        seq % 100_000,
        seq % 100,
        seq / 3600 % 24,
        seq / 60 % 60,
        seq % 60,
        seq % 1000,
        seq % 12 + 1,
    )
    .into_bytes()
}

/// The benchmark row as Avro: the same fields, the amount an exact decimal, the timestamp
/// `timestamp-millis`.
const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "Row", "fields": [
  {"name": "id", "type": "long"},
  {"name": "account", "type": "string"},
  {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
  {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "meta", "type": {"type": "record", "name": "Meta", "fields": [
    {"name": "source", "type": "string"}, {"name": "region", "type": "string"}, {"name": "seq", "type": "long"}]}}
]}"#;

/// Payload `seq` as Avro in the Confluent wire format, schema id 1.
fn avro_payload(schema: &Schema, seq: u64) -> Vec<u8> {
    let id = (seq + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) & (u64::MAX >> 1);
    let cents = (seq % 100_000 * 100 + seq % 100) as i64;
    let ts = 1_767_225_600_000
        + ((seq / 3600 % 24) * 3_600_000
            + (seq / 60 % 60) * 60_000
            + (seq % 60) * 1000
            + seq % 1000) as i64;
    let value = Value::Record(vec![
        ("id".into(), Value::Long(id as i64)),
        (
            "account".into(),
            Value::String(format!("acct-{}", seq % 10_000)),
        ),
        (
            "amount".into(),
            Value::Decimal(Decimal::from(cents.to_be_bytes().to_vec())),
        ),
        ("ts".into(), Value::TimestampMillis(ts)),
        (
            "meta".into(),
            Value::Record(vec![
                ("source".into(), Value::String("bench".into())),
                (
                    "region".into(),
                    Value::String(format!("eu-{}", seq % 12 + 1)),
                ),
                ("seq".into(), Value::Long(seq as i64)),
            ]),
        ),
    ]);
    let mut framed = vec![0, 0, 0, 0, 1];
    framed.extend(apache_avro::to_avro_datum(schema, value).expect("the row fits its schema"));
    framed
}

/// The benchmark row as Protobuf: the amount a decimal string, the timestamp a
/// `google.protobuf.Timestamp`.
const PROTO: &str = r#"syntax = "proto3";
import "google/protobuf/timestamp.proto";
message Meta { string source = 1; string region = 2; int64 seq = 3; }
message Row {
  int64 id = 1;
  string account = 2;
  string amount = 3;
  google.protobuf.Timestamp ts = 4;
  Meta meta = 5;
}
"#;

/// The `Row` message type of [`PROTO`], compiled by `protox` from a file written for it.
fn proto_row() -> MessageDescriptor {
    let dir = std::env::temp_dir().join(format!("kps-bench-proto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    std::fs::write(dir.join("row.proto"), PROTO).expect("write the .proto");
    let set = protox::compile(["row.proto"], [&dir]).expect("the .proto compiles");
    let _ = std::fs::remove_dir_all(&dir);
    DescriptorPool::from_file_descriptor_set(set)
        .expect("a descriptor pool")
        .get_message_by_name("Row")
        .expect("the Row message")
}

/// Payload `seq` as Protobuf in the Confluent wire format, schema id 2, message index [1].
fn proto_payload(row: &MessageDescriptor, seq: u64) -> Vec<u8> {
    let id = (seq + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) & (u64::MAX >> 1);
    let ts_ms = 1_767_225_600_000
        + ((seq / 3600 % 24) * 3_600_000
            + (seq / 60 % 60) * 60_000
            + (seq % 60) * 1000
            + seq % 1000) as i64;
    let mut message = DynamicMessage::new(row.clone());
    message.set_field_by_name("id", ProtoValue::I64(id as i64));
    message.set_field_by_name(
        "account",
        ProtoValue::String(format!("acct-{}", seq % 10_000)),
    );
    message.set_field_by_name(
        "amount",
        ProtoValue::String(format!("{}.{:02}", seq % 100_000, seq % 100)),
    );
    let ts = row.get_field_by_name("ts").expect("ts").kind();
    let ts = ts.as_message().expect("a Timestamp");
    let mut timestamp = DynamicMessage::new(ts.clone());
    timestamp.set_field_by_name("seconds", ProtoValue::I64(ts_ms.div_euclid(1000)));
    timestamp.set_field_by_name(
        "nanos",
        ProtoValue::I32((ts_ms.rem_euclid(1000) * 1_000_000) as i32),
    );
    message.set_field_by_name("ts", ProtoValue::Message(timestamp));
    let meta = row.get_field_by_name("meta").expect("meta").kind();
    let mut inner = DynamicMessage::new(meta.as_message().expect("Meta").clone());
    inner.set_field_by_name("source", ProtoValue::String("bench".into()));
    inner.set_field_by_name("region", ProtoValue::String(format!("eu-{}", seq % 12 + 1)));
    inner.set_field_by_name("seq", ProtoValue::I64(seq as i64));
    message.set_field_by_name("meta", ProtoValue::Message(inner));
    // Magic byte, schema id 2, then the message-index list [1] (count 1, index 1, zigzag).
    let mut framed = vec![0, 0, 0, 0, 2, 2, 2];
    framed.extend(message.encode_to_vec());
    framed
}

fn config(format: &str) -> Config {
    config_in(format, "upsert")
}

/// The benchmark's mapping in `mode` (`upsert` or `insert`, which takes no key).
fn config_in(format: &str, mode: &str) -> Config {
    let key = if mode == "upsert" {
        r#"key = ["id"]"#
    } else {
        ""
    };
    Config::from_toml(&format!(
        r#"
[kafka]
brokers = "127.0.0.1:9092"
[postgres]
url = "postgres://postgres@127.0.0.1/postgres"
[schema_registry]
url = "http://127.0.0.1:8081"
[[mappings]]
topic = "bench"
table = "bench_{mode}"
mode = "{mode}"
format = "{format}"
{key}
columns = {{ id = "value.id", account = "value.account", amount = "value.amount", ts = "value.ts", meta = "value.meta" }}
types = {{ id = "bigint", amount = "numeric", ts = "timestamptz", meta = "jsonb" }}
"#
    ))
    .expect("benchmark config is valid")
}

fn main() {
    let json_config = config("json");
    let mappings: Arc<[Mapping]> = Arc::from(json_config.mappings);
    // The benchmark table's column types, as the connector reads them from the catalog.
    let types: Vec<BinType> = mappings[0]
        .columns
        .iter()
        .map(|c| match c.name.as_str() {
            "id" => BinType::Int8,
            "amount" => BinType::Numeric,
            "ts" => BinType::Timestamptz,
            "meta" => BinType::Jsonb,
            _ => BinType::Text,
        })
        .collect();
    let schemas = Arc::new(Schemas::default());
    let registered = RegisteredSchema {
        id: 1,
        kind: SchemaKind::Avro,
        text: AVRO_SCHEMA.into(),
        references: Vec::new(),
    };
    schemas.insert(1, Decoding::parse(&registered).map(Arc::new));
    let registered = RegisteredSchema {
        id: 2,
        kind: SchemaKind::Protobuf,
        text: PROTO.into(),
        references: Vec::new(),
    };
    schemas.insert(2, Decoding::parse(&registered).map(Arc::new));
    let proto_mappings: Arc<[Mapping]> = Arc::from(config("protobuf").mappings);
    let avro_mappings: Arc<[Mapping]> = Arc::from(config("avro").mappings);
    let insert_mappings: Arc<[Mapping]> = Arc::from(config_in("json", "insert").mappings);
    let records = |payload: &dyn Fn(u64) -> Vec<u8>| -> Vec<Record> {
        let tp = TopicPartition::new("bench", 0);
        (0..BATCH as u64)
            .map(|seq| {
                Record::new(
                    tp.clone(),
                    seq as i64,
                    Some(1_767_225_600_000 + seq as i64),
                    Some(seq.to_string().as_bytes()),
                    Some(&payload(seq)),
                    Vec::new(),
                )
            })
            .collect()
    };
    let json = records(&payload);
    let schema = Schema::parse_str(AVRO_SCHEMA).expect("the Avro schema parses");
    let avro = records(&|seq| avro_payload(&schema, seq));
    let row = proto_row();
    let proto = records(&|seq| proto_payload(&row, seq));
    let cases = [
        (
            "json, binary COPY",
            Decoder::with_binary(mappings.clone(), vec![Some(types.clone())]),
            &json,
        ),
        ("json, text COPY", Decoder::new(mappings), &json),
        (
            // Insert mode as `scripts/bench.sh` runs it: every row, straight into the table.
            "json insert, binary COPY",
            Decoder::with_binary(insert_mappings, vec![Some(types.clone())])
                .with_direct_inserts(&[true]),
            &json,
        ),
        (
            "avro, binary COPY",
            Decoder::with_binary(avro_mappings, vec![Some(types.clone())])
                .with_schemas(Arc::clone(&schemas)),
            &avro,
        ),
        (
            "protobuf, binary COPY",
            Decoder::with_binary(proto_mappings, vec![Some(types)]).with_schemas(schemas),
            &proto,
        ),
    ];
    let excluded = HashSet::new();
    let rounds = std::env::var("DECODE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
        .max(1);
    // `DECODE_ONLY=avro` runs the cases whose name holds it (for a profiler).
    let only = std::env::var("DECODE_ONLY").unwrap_or_default();
    let mut medians = Vec::new();
    for (name, decoder, records) in cases.iter().filter(|c| c.0.contains(only.as_str())) {
        let bytes: usize = records.iter().map(Record::size).sum();
        let mut per_record = Vec::with_capacity(rounds);
        let mut rows = 0;
        for _ in 0..rounds {
            let started = Instant::now();
            let decoded = decoder.decode(records, &excluded);
            per_record.push(started.elapsed().as_nanos() as f64 / BATCH as f64);
            assert!(
                decoded.rejected.is_empty(),
                "{:?}",
                decoded.rejected.first()
            );
            assert_eq!(decoded.tables[0].binary, name.ends_with("binary COPY"));
            rows = decoded.tables[0].upserts.len();
        }
        per_record.sort_by(f64::total_cmp);
        println!(
            "decode ({name}): {BATCH} records ({:.0} bytes each) -> {rows} rows; ns per record: best {:.0}, median {:.0}",
            bytes as f64 / BATCH as f64,
            per_record[0],
            per_record[rounds / 2]
        );
        medians.push((*name, per_record[rounds / 2]));
    }
    let median = |case: &str| medians.iter().find(|m| m.0 == case).map(|m| m.1);
    if let Some(json) = median("json, binary COPY") {
        for format in ["avro", "protobuf"] {
            if let Some(other) = median(&format!("{format}, binary COPY")) {
                println!(
                    "{format} rows decode at {:.2} of the json path's throughput (binary COPY, medians)",
                    json / other
                );
            }
        }
    }
}
