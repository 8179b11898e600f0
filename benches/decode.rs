//! Decoder micro-benchmark: CPU per record for the benchmark's upsert mapping (`scripts/bench.sh`
//! workload: ~200-byte JSON, bigint key, exact decimal, RFC 3339 timestamp, nested object).
//!
//! Run: `cargo bench --bench decode`. Prints ns per record (best and median of the rounds), so
//! decoder changes can be compared without Postgres, Kafka or the machine's other load in the way.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use kafka_pg_sink::config::Config;
use kafka_pg_sink::record::{Record, TopicPartition};
use kafka_pg_sink::sink::encode::{BinType, Decoder};

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

fn main() {
    let config = Config::from_toml(
        r#"
[kafka]
brokers = "127.0.0.1:9092"
[postgres]
url = "postgres://postgres@127.0.0.1/postgres"
[[mappings]]
topic = "bench"
table = "bench_upsert"
mode = "upsert"
key = ["id"]
columns = { id = "value.id", account = "value.account", amount = "value.amount", ts = "value.ts", meta = "value.meta" }
types = { id = "bigint", amount = "numeric", ts = "timestamptz", meta = "jsonb" }
"#,
    )
    .expect("benchmark config is valid");
    let mappings: Arc<[_]> = Arc::from(config.mappings);
    // The benchmark table's column types, as the connector reads them from the catalog.
    let types = mappings[0]
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
    let decoders = [
        (
            "binary",
            Decoder::with_binary(mappings.clone(), vec![Some(types)]),
        ),
        ("text", Decoder::new(mappings)),
    ];
    let tp = TopicPartition::new("bench", 0);
    let records: Vec<Record> = (0..BATCH as u64)
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
        .collect();
    let bytes: usize = records.iter().map(Record::size).sum();
    let excluded = HashSet::new();
    let rounds = std::env::var("DECODE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
        .max(1);
    for (format, decoder) in &decoders {
        let mut per_record = Vec::with_capacity(rounds);
        let mut rows = 0;
        for _ in 0..rounds {
            let started = Instant::now();
            let decoded = decoder.decode(&records, &excluded);
            per_record.push(started.elapsed().as_nanos() as f64 / BATCH as f64);
            assert!(
                decoded.rejected.is_empty(),
                "{:?}",
                decoded.rejected.first()
            );
            assert_eq!(decoded.tables[0].binary, *format == "binary");
            rows = decoded.tables[0].upserts.len();
        }
        per_record.sort_by(f64::total_cmp);
        println!(
            "decode ({format} COPY): {BATCH} records ({:.0} bytes each) -> {rows} rows; ns per record: best {:.0}, median {:.0}",
            bytes as f64 / BATCH as f64,
            per_record[0],
            per_record[rounds / 2]
        );
    }
}
