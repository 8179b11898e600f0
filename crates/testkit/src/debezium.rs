//! Debezium's PostgreSQL connector, played by the test: a source table `public.accounts` (`id
//! bigint` primary key, `owner text`, `balance numeric(12,2)`, `updated_at timestamptz`) whose
//! changes are rendered as the change events Debezium 3.0 writes to Kafka, and the table's state
//! after them, kept to compare a replicated target with.
//!
//! The shapes follow Debezium's documentation of the PostgreSQL connector's data change events:
//! the record key is the primary key (`{"id": 7}`); the value is the envelope `before`, `after`,
//! `source` (`io.debezium.connector.postgresql.Source`: `version`, `connector`, `name`, `ts_ms`,
//! `snapshot`, `db`, `sequence`, `ts_us`, `ts_ns`, `schema`, `table`, `txId`, `lsn`, `xmin`),
//! `transaction`, `op`, `ts_ms`, `ts_us`, `ts_ns`; a delete is followed by a tombstone (null
//! value) with the same key; a truncate has no key. What `before` holds depends on the table's
//! `REPLICA IDENTITY` ([`Identity`]). With the JSON converter's schemas enabled
//! ([`Converter::ConnectJson`]) key and value are `{"schema": …, "payload": …}`, the `numeric`
//! as `org.apache.kafka.connect.data.Decimal` (base64 of the unscaled value's big-endian two's
//! complement, the `scale` a schema parameter); without schemas ([`Converter::Json`]) the
//! connector is taken to run with `decimal.handling.mode=string`, since Decimal bytes without
//! their schema carry no scale. `timestamptz` is `io.debezium.time.ZonedTimestamp`: ISO-8601
//! text in UTC.
//!
//! Records go to partitions as the Kafka producer's default partitioner puts keyed records:
//! murmur2 of the key bytes. Each change is a transaction of its own (a new `txId`); the LSN
//! grows with every event.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::registry::base64;
use crate::rng::Rng;

/// The logical server name (`topic.prefix`), the database and the table of the source.
pub const SERVER: &str = "bank";
pub const DB: &str = "bank";
pub const TABLE: &str = "accounts";

/// A row of the source table. `None` is SQL NULL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: i64,
    pub owner: Option<String>,
    /// `balance` in cents (the column is `numeric(12,2)`).
    pub balance_cents: Option<i64>,
    /// `updated_at` in microseconds since the epoch.
    pub updated_at_us: Option<i64>,
}

/// A source row with the `source.lsn` and envelope `ts_ms` of the event that last wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub row: Account,
    pub lsn: i64,
    pub ts_ms: i64,
}

/// Kafka Connect's JSON converter with `schemas.enable` false or true.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Converter {
    Json,
    ConnectJson,
}

/// The source table's `REPLICA IDENTITY`: what an update's and a delete's `before` hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The whole old row, for updates and deletes.
    Full,
    /// Updates: no `before`; deletes: the key columns, the others null.
    Default,
    /// No `before` at all: a delete names its row only by the record key.
    Nothing,
}

/// One Kafka record: `key = None` is no key, `value = None` a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub partition: i32,
    pub key: Option<String>,
    pub value: Option<String>,
}

/// The source database with Debezium capturing it.
pub struct Source {
    pub converter: Converter,
    pub identity: Identity,
    partitions: i32,
    lsn: i64,
    last_commit_lsn: Option<i64>,
    tx_id: i64,
    clock_us: i64,
    rows: BTreeMap<i64, Written>,
}

/// Where a transaction is: its LSN, its commit time and when Debezium stamped its events.
#[derive(Clone, Copy)]
struct At {
    lsn: i64,
    commit_us: i64,
    envelope_us: i64,
}

/// What an event's `before` holds.
enum Before<'a> {
    None,
    Row(&'a Account),
    KeyOnly(i64),
}

impl Source {
    /// An empty table, its changes spread over `partitions`.
    pub fn new(converter: Converter, identity: Identity, partitions: i32) -> Self {
        Self {
            converter,
            identity,
            partitions,
            lsn: 0x0200_0000,
            last_commit_lsn: None,
            tx_id: 760,
            clock_us: 1_767_225_600_000_000, // 2026-01-01T00:00:00Z
            rows: BTreeMap::new(),
        }
    }

    /// The table now.
    pub fn rows(&self) -> &BTreeMap<i64, Written> {
        &self.rows
    }

    /// The initial snapshot of `rows`: `op = "r"`, all at the snapshot's LSN, `snapshot` "true"
    /// and "last" on the last row.
    pub fn snapshot(&mut self, rows: &[Account]) -> Vec<Message> {
        let at = self.begin();
        let mut out = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let marker = if i + 1 == rows.len() { "last" } else { "true" };
            out.push(self.render(Some("r"), Before::None, Some(row), marker, at));
            self.apply(row, at);
        }
        out
    }

    /// `INSERT`: `op = "c"`.
    pub fn insert(&mut self, row: Account) -> Vec<Message> {
        assert!(!self.rows.contains_key(&row.id), "row {} exists", row.id);
        vec![self.change("c", Before::None, Some(&row))]
    }

    /// `UPDATE` of an existing row to `row`: `op = "u"`.
    pub fn update(&mut self, row: Account) -> Vec<Message> {
        let old = self
            .rows
            .get(&row.id)
            .expect("the row to update")
            .row
            .clone();
        let before = match self.identity {
            Identity::Full => Before::Row(&old),
            Identity::Default | Identity::Nothing => Before::None,
        };
        vec![self.change("u", before, Some(&row))]
    }

    /// `DELETE`: `op = "d"`, then the tombstone with the same key.
    pub fn delete(&mut self, id: i64) -> Vec<Message> {
        let old = self.rows.get(&id).expect("the row to delete").row.clone();
        let before = match self.identity {
            Identity::Full => Before::Row(&old),
            Identity::Default => Before::KeyOnly(id),
            Identity::Nothing => Before::None,
        };
        let delete = self.change("d", before, None);
        let delete = Message {
            key: Some(self.key(id)),
            partition: self.partition(&self.key(id)),
            ..delete
        };
        let tombstone = Message {
            value: None,
            ..delete.clone()
        };
        self.rows.remove(&id);
        vec![delete, tombstone]
    }

    /// `TRUNCATE`: `op = "t"`, no key (partition 0), no row images.
    pub fn truncate(&mut self) -> Vec<Message> {
        let event = self.change("t", Before::None, None);
        self.rows.clear();
        vec![Message {
            partition: 0,
            key: None,
            ..event
        }]
    }

    /// An event of `row` with `op` as given, or with no `op` field: for events a connector must
    /// refuse. The table is not changed.
    pub fn with_op(&mut self, op: Option<&str>, row: &Account) -> Message {
        let at = self.begin();
        self.render(op, Before::None, Some(row), "false", at)
    }

    /// The row alone, as `ExtractNewRecordState` leaves an event: no envelope, no `op`.
    pub fn flattened(&self, row: &Account) -> Message {
        let key = self.key(row.id);
        Message {
            partition: self.partition(&key),
            value: Some(self.with_schema(&self.row_json(row), &row_schema(None))),
            key: Some(key),
        }
    }

    /// A logical decoding message (`pg_logical_emit_message`): `op = "m"`, no row images, the
    /// key its prefix.
    pub fn logical_message(&mut self, prefix: &str, content: &[u8]) -> Message {
        let at = self.begin();
        let source = self.source_json("false", at);
        let key = self.with_schema(
            &format!(r#"{{"prefix":{}}}"#, json_str(prefix)),
            r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"prefix"}],"optional":false,"name":"io.debezium.connector.common.MessageKey"}"#,
        );
        let payload = format!(
            r#"{{"op":"m","ts_ms":{},"source":{source},"message":{{"prefix":{},"content":"{}"}}}}"#,
            at.envelope_us / 1000,
            json_str(prefix),
            base64::encode(content),
        );
        Message {
            partition: self.partition(&key),
            key: Some(key),
            // Debezium writes messages to a topic of their own; this schema is not looked at.
            value: Some(self.with_schema(&payload, r#"{"type":"struct","optional":false}"#)),
        }
    }

    /// A random row `id` with `updated_at` before the source's clock.
    pub fn random_row(&self, rng: &mut Rng, id: i64) -> Account {
        random_account(rng, id, self.clock_us)
    }

    /// A random history: `n` changes (inserts of new ids from `next_id`, updates and deletes of
    /// existing rows), each as Debezium writes it.
    pub fn random_changes(&mut self, rng: &mut Rng, n: usize, next_id: &mut i64) -> Vec<Message> {
        let mut out = Vec::new();
        for _ in 0..n {
            let ids: Vec<i64> = self.rows.keys().copied().collect();
            let roll = rng.below(100);
            if ids.is_empty() || roll < 30 {
                let row = random_account(rng, *next_id, self.clock_us);
                *next_id += 1;
                out.extend(self.insert(row));
            } else if roll < 82 {
                let id = ids[rng.index(ids.len())];
                out.extend(self.update(random_account(rng, id, self.clock_us)));
            } else {
                out.extend(self.delete(ids[rng.index(ids.len())]));
            }
        }
        out
    }

    /// The record key of row `id`, as the converter writes it.
    pub fn key(&self, id: i64) -> String {
        let schema = format!(
            r#"{{"type":"struct","fields":[{{"type":"int64","optional":false,"field":"id"}}],"optional":false,"name":"{SERVER}.public.{TABLE}.Key"}}"#
        );
        self.with_schema(&format!(r#"{{"id":{id}}}"#), &schema)
    }

    /// The partition of a keyed record: murmur2 of the key bytes, as Kafka's producers do.
    pub fn partition(&self, key: &str) -> i32 {
        ((murmur2(key.as_bytes()) & 0x7fff_ffff) % self.partitions as u32) as i32
    }

    /// Starts a transaction: its LSN and commit time.
    fn begin(&mut self) -> At {
        self.tx_id += 1 + (self.lsn % 3);
        self.lsn += 56 + 8 * (self.tx_id % 41);
        self.clock_us += 1_000 + 7_919 * (self.tx_id % 13);
        At {
            lsn: self.lsn,
            commit_us: self.clock_us,
            // Debezium stamps the envelope when it processes the event, after the commit.
            envelope_us: self.clock_us + 3_000 + (self.lsn % 97) * 1_000,
        }
    }

    /// One change in a transaction of its own, applied to the table.
    fn change(&mut self, op: &str, before: Before<'_>, after: Option<&Account>) -> Message {
        let at = self.begin();
        let event = self.render(Some(op), before, after, "false", at);
        if let Some(row) = after {
            self.apply(row, at);
        }
        self.last_commit_lsn = Some(at.lsn);
        event
    }

    fn apply(&mut self, row: &Account, at: At) {
        let written = Written {
            row: row.clone(),
            lsn: at.lsn,
            ts_ms: at.envelope_us / 1000,
        };
        self.rows.insert(row.id, written);
    }

    /// The event as the converter writes it, keyed by the row's id.
    fn render(
        &self,
        op: Option<&str>,
        before: Before<'_>,
        after: Option<&Account>,
        snapshot: &str,
        at: At,
    ) -> Message {
        let envelope_us = at.envelope_us;
        let key_only = |id| Account {
            id,
            owner: None,
            balance_cents: None,
            updated_at_us: None,
        };
        let (before_json, before_id) = match before {
            Before::None => ("null".to_owned(), None),
            Before::Row(r) => (self.row_json(r), Some(r.id)),
            Before::KeyOnly(id) => (self.row_json(&key_only(id)), Some(id)),
        };
        let after_json = after.map_or("null".to_owned(), |r| self.row_json(r));
        let op = op.map_or(String::new(), |op| format!(r#""op":{},"#, json_str(op)));
        let source = self.source_json(snapshot, at);
        let payload = format!(
            r#"{{"before":{before_json},"after":{after_json},"source":{source},"transaction":null,{op}"ts_ms":{},"ts_us":{envelope_us},"ts_ns":{}}}"#,
            envelope_us / 1000,
            envelope_us * 1000,
        );
        let id = after.map(|r| r.id).or(before_id).unwrap_or(0);
        let key = self.key(id);
        Message {
            partition: self.partition(&key),
            key: Some(key),
            value: Some(self.with_schema(&payload, &envelope_schema())),
        }
    }

    /// The `source` block of an event at `at`.
    fn source_json(&self, snapshot: &str, at: At) -> String {
        let At { lsn, commit_us, .. } = at;
        let sequence = match self.last_commit_lsn {
            Some(c) => format!(r#"[\"{c}\",\"{lsn}\"]"#),
            None => format!(r#"[null,\"{lsn}\"]"#),
        };
        format!(
            r#"{{"version":"3.0.0.Final","connector":"postgresql","name":"{SERVER}","ts_ms":{},"snapshot":"{snapshot}","db":"{DB}","sequence":"{sequence}","ts_us":{commit_us},"ts_ns":{},"schema":"public","table":"{TABLE}","txId":{},"lsn":{lsn},"xmin":null}}"#,
            commit_us / 1000,
            commit_us * 1000,
            self.tx_id,
        )
    }

    /// A row image: `balance` as text (schemas off) or Decimal bytes (schemas on).
    fn row_json(&self, r: &Account) -> String {
        let balance = match (r.balance_cents, self.converter) {
            (None, _) => "null".to_owned(),
            (Some(c), Converter::Json) => format!("\"{}\"", cents_text(c)),
            (Some(c), Converter::ConnectJson) => format!("\"{}\"", decimal_base64(c)),
        };
        let owner = r.owner.as_deref().map_or("null".to_owned(), json_str);
        let updated = r
            .updated_at_us
            .map_or("null".to_owned(), |us| format!("\"{}\"", iso_utc(us)));
        format!(
            r#"{{"id":{},"owner":{owner},"balance":{balance},"updated_at":{updated}}}"#,
            r.id
        )
    }

    fn with_schema(&self, payload: &str, schema: &str) -> String {
        match self.converter {
            Converter::Json => payload.to_owned(),
            Converter::ConnectJson => format!(r#"{{"schema":{schema},"payload":{payload}}}"#),
        }
    }
}

/// A random row `id` updated around `now_us`; owners include text that needs escaping in JSON
/// and in COPY (quotes, backslashes, tabs, newlines, non-ASCII), balances both signs and the
/// column's limits.
pub fn random_account(rng: &mut Rng, id: i64, now_us: i64) -> Account {
    const OWNERS: &[&str] = &[
        "Ada Lovelace",
        "O'Brien",
        "Zoë \"Z\" Ng",
        "tab\there",
        "back\\slash",
        "line\nbreak",
        "名前",
        "\\N",
        "",
    ];
    let balance_cents = match rng.below(20) {
        0 => None,
        1 => Some(999_999_999_999),
        2 => Some(-999_999_999_999),
        3 => Some(0),
        _ => Some(rng.range(0, 20_000_000) as i64 - 2_000_000),
    };
    Account {
        id,
        owner: (rng.below(25) != 0).then(|| format!("{} #{}", rng.pick(OWNERS), rng.below(100))),
        balance_cents,
        updated_at_us: (rng.below(30) != 0).then(|| now_us - rng.below(86_400_000_000) as i64),
    }
}

/// Produces `messages` in order (keyless ones too, which the test producer does not send) and
/// waits until every one is acknowledged; panics otherwise.
pub fn produce(bootstrap: &str, topic: &str, messages: &[Message]) {
    let failed = Arc::new(AtomicUsize::new(0));
    let producer: ThreadedProducer<Failures> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .create_with_context(Failures(failed.clone()))
        .expect("a producer");
    for m in messages {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(topic).partition(m.partition);
        if let Some(k) = &m.key {
            record = record.key(k.as_str());
        }
        if let Some(v) = &m.value {
            record = record.payload(v.as_str());
        }
        while let Err((_, returned)) = producer.send(record) {
            record = returned;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every record acknowledged within 60 s");
    assert_eq!(failed.load(Ordering::SeqCst), 0, "deliveries failed");
}

/// Counts failed deliveries.
struct Failures(Arc<AtomicUsize>);

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// Cents as `numeric(12,2)` text: `-0.05`, `12.30`.
pub fn cents_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        cents.unsigned_abs() / 100,
        cents.unsigned_abs() % 100
    )
}

/// A Connect Decimal of scale 2: base64 of the unscaled value's minimal big-endian two's
/// complement (Java's `BigInteger.toByteArray`).
pub fn decimal_base64(cents: i64) -> String {
    let bytes = cents.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        let redundant = (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        start += 1;
    }
    base64::encode(&bytes[start..])
}

/// Microseconds since the epoch as ISO-8601 in UTC with six fraction digits.
pub fn iso_utc(us: i64) -> String {
    let (secs, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The Connect schema of a row image (`Value`), as the field `field` of the envelope or alone.
fn row_schema(field: Option<&str>) -> String {
    let field = field.map_or(String::new(), |f| format!(r#","field":"{f}""#));
    format!(
        r#"{{"type":"struct","fields":[{{"type":"int64","optional":false,"field":"id"}},{{"type":"string","optional":true,"field":"owner"}},{{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,"parameters":{{"scale":"2","connect.decimal.precision":"12"}},"field":"balance"}},{{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"updated_at"}}],"optional":true,"name":"{SERVER}.public.{TABLE}.Value"{field}}}"#
    )
}

/// The Connect schema of the envelope, as Debezium 3.0's PostgreSQL connector writes it.
fn envelope_schema() -> String {
    let source = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"name"},{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,last,false,incremental"},"default":"false","field":"snapshot"},{"type":"string","optional":false,"field":"db"},{"type":"string","optional":true,"field":"sequence"},{"type":"int64","optional":true,"field":"ts_us"},{"type":"int64","optional":true,"field":"ts_ns"},{"type":"string","optional":false,"field":"schema"},{"type":"string","optional":false,"field":"table"},{"type":"int64","optional":true,"field":"txId"},{"type":"int64","optional":true,"field":"lsn"},{"type":"int64","optional":true,"field":"xmin"}],"optional":false,"name":"io.debezium.connector.postgresql.Source","field":"source"}"#;
    let transaction = r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},{"type":"int64","optional":false,"field":"total_order"},{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block","version":1,"field":"transaction"}"#;
    format!(
        r#"{{"type":"struct","fields":[{},{},{source},{transaction},{{"type":"string","optional":false,"field":"op"}},{{"type":"int64","optional":true,"field":"ts_ms"}},{{"type":"int64","optional":true,"field":"ts_us"}},{{"type":"int64","optional":true,"field":"ts_ns"}}],"optional":false,"name":"{SERVER}.public.{TABLE}.Envelope","version":2}}"#,
        row_schema(Some("before")),
        row_schema(Some("after")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_murmur2_and_partitions_match_the_java_client() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(
            murmur2(b"a-little-bit-longer-string") as i32,
            -1_486_304_829
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58_897_971
        );
        assert_eq!(murmur2(b"abc") as i32, 479_470_107);
    }

    #[test]
    fn decimals_are_minimal_twos_complement_and_timestamps_iso() {
        assert_eq!(decimal_base64(0), "AA==");
        assert_eq!(decimal_base64(127), "fw==");
        assert_eq!(decimal_base64(128), "AIA=");
        assert_eq!(decimal_base64(-128), "gA==");
        assert_eq!(decimal_base64(-129), "/38=");
        assert_eq!(decimal_base64(-1234), "+y4=");
        assert_eq!(decimal_base64(999_999_999_999), "AOjUpQ//");
        assert_eq!(cents_text(-5), "-0.05");
        assert_eq!(cents_text(1230), "12.30");
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso_utc(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            iso_utc(1_767_225_600_123_456),
            "2026-01-01T00:00:00.123456Z"
        );
        assert_eq!(iso_utc(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn events_are_json_with_debeziums_fields_and_the_table_follows_them() {
        let value = |m: &Message| -> serde_json::Value {
            serde_json::from_str(m.value.as_deref().expect("a value")).expect("JSON")
        };
        let mut rng = Rng::new(1);
        let mut json = Source::new(Converter::Json, Identity::Default, 3);
        let row = json.random_row(&mut rng, 7);
        let created = json.insert(row.clone());
        let v = value(&created[0]);
        assert_eq!(v["op"], "c");
        assert!(v["before"].is_null());
        assert_eq!(v["after"]["id"], 7);
        for field in [
            "version",
            "connector",
            "name",
            "ts_ms",
            "snapshot",
            "db",
            "schema",
            "table",
            "txId",
            "lsn",
        ] {
            assert!(!v["source"][field].is_null(), "source.{field}");
        }
        assert_eq!(created[0].key.as_deref(), Some(r#"{"id":7}"#));
        let deleted = json.delete(7);
        assert_eq!(
            value(&deleted[0])["before"]["id"],
            7,
            "REPLICA IDENTITY DEFAULT keeps the key"
        );
        assert!(value(&deleted[0])["before"]["owner"].is_null());
        assert_eq!(
            (deleted[1].key.as_ref(), deleted[1].value.as_ref()),
            (deleted[0].key.as_ref(), None)
        );
        assert!(json.rows().is_empty());

        let mut connect = Source::new(Converter::ConnectJson, Identity::Full, 3);
        let row = Account {
            balance_cents: Some(-1234),
            ..row
        };
        connect.snapshot(std::slice::from_ref(&row));
        let updated = connect.update(Account {
            owner: None,
            ..row.clone()
        });
        let v = value(&updated[0]);
        assert_eq!(v["payload"]["before"]["balance"], "+y4=");
        assert_eq!(v["payload"]["source"]["snapshot"], "false");
        assert_eq!(
            v["schema"]["fields"][2]["name"],
            "io.debezium.connector.postgresql.Source"
        );
        let key: serde_json::Value =
            serde_json::from_str(updated[0].key.as_deref().unwrap()).unwrap();
        assert_eq!(key["payload"]["id"], 7);
        assert_eq!(connect.rows()[&7].row.owner, None);
    }
}
