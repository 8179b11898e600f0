//! Binary COPY against a real Postgres: the same records written with `postgres.binary_copy` on
//! and off leave the same rows; a batch holding a value binary cannot carry goes as text; a row
//! the server rejects is still isolated as a dead letter while its neighbours commit.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use kafka_pg_sink::config::Config;
use kafka_pg_sink::metrics::Metrics;
use kafka_pg_sink::record::{Record, TopicPartition};
use kafka_pg_sink::sink::{migrate, Outcome};
use testkit::prelude::*;

/// Every type binary COPY covers, with type modifiers the server applies on input.
const COLUMNS: &str = "(id bigint PRIMARY KEY, small smallint, mid integer, amount numeric(14,2), \
    raw numeric, label varchar(8), note text, ok boolean, at timestamptz, at_ms timestamptz(3), \
    doc jsonb, js json, ref uuid)";

fn config(db: &TestDb, table: &str, binary: bool) -> Config {
    let text = format!(
        "[kafka]\nbrokers = 'unused:9092'\ngroup_id = 'g_{table}'\n\
         [postgres]\nurl = '{}'\nbinary_copy = {binary}\n\
         [[mappings]]\ntopic = 't'\ntable = '{table}'\nkey = ['id']\n\
         columns = {{ id = 'value.id', small = 'value.small', mid = 'value.mid', \
         amount = 'value.amount', raw = 'value.raw', label = 'value.label', note = 'value.note', \
         ok = 'value.ok', at = 'value.at', at_ms = 'value.at', doc = 'value.doc', js = 'value.doc', \
         ref = 'value.ref' }}\n\
         types = {{ amount = 'numeric', at = 'timestamptz' }}\n",
        db.url
    );
    Config::from_toml(&text).unwrap()
}

fn record(offset: i64, value: &str) -> Record {
    Record::new(
        TopicPartition::new("t", 0),
        offset,
        None,
        None,
        Some(value.as_bytes()),
        Vec::new(),
    )
}

/// Batches of (offset, JSON value); the first holds one id spelled two ways, the second holds a timestamp with seven fraction digits
/// (rounded by the server, so not written in binary), the third a label too long for
/// `varchar(8)` between two good rows.
fn batches() -> Vec<Vec<Record>> {
    let values: [&[&str]; 3] = [
        &[
            r#"{"id":1,"small":-32768,"mid":2147483647,"amount":"12.345","raw":1.5E-3,"label":"tab\tx","note":"back\\slash\nnewline ü 😀","ok":true,"at":"2026-11-03t10:20:30.123456-02:30","doc":{"a":[1,2,{"b":"\u00e9"}]}}"#,
            r#"{"id":2,"small":5,"raw":"0.0001","note":"older id 2","at":"2026-01-01T00:00:00Z"}"#,
            r#"{"id":3,"raw":"123456789012345678901234567890.123456789","amount":1e3,"at":"2000-02-29T00:00:00+14:00","doc":[],"ref":"0F8E4C2A1B3D4E5F8A9B0C1D2E3F4A5B"}"#,
            r#"{"id":4,"raw":1e20,"mid":"+7","at":"2026-01-01T00:00:00.5Z","doc":{"n":null}}"#,
            // Id 2 again, spelled differently: in binary the batch is reduced on the integer
            // values and written without DISTINCT ON, which would fail on two rows of one id.
            r#"{"id":"0002","note":"id 2 spelled 0002"}"#,
            r#"{"id":2,"small":null,"mid":-1,"amount":-0.005,"raw":"-0.00","label":"","ok":false,"at":"1999-12-31 23:59:59.999999Z","doc":42}"#,
        ],
        &[
            r#"{"id":5,"raw":"1","at":"2026-11-03T10:20:30.1234567Z"}"#,
            r#"{"id":6,"raw":"-12345.6789","at":"2026-11-03T10:20:30.1Z","ref":"{0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b}"}"#,
        ],
        &[
            r#"{"id":7,"label":"short","at":"2026-11-03T10:20:30Z","ref":"0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5c"}"#,
            r#"{"id":8,"label":"far too long for eight"}"#,
            r#"{"id":9,"label":"ok too","amount":"99999999999.99"}"#,
        ],
    ];
    let mut offset = 0;
    values
        .iter()
        .map(|batch| {
            batch
                .iter()
                .map(|v| {
                    offset += 1;
                    record(offset - 1, v)
                })
                .collect()
        })
        .collect()
}

/// Writes every batch with the real writer; returns whether each batch's rows went as binary.
async fn write_all(config: &Config) -> Vec<bool> {
    migrate(
        &sqlx::PgPool::connect(config.postgres.url.expose())
            .await
            .unwrap(),
        &config.schema,
    )
    .await
    .unwrap();
    let (mut writer, decoder) =
        sink_writer(config, &config.kafka.group_id, Metrics::new().unwrap()).await;
    let mut formats = Vec::new();
    let mut expected = None;
    for records in batches() {
        formats.push(decoder.decode(&records, &HashSet::new()).tables[0].binary);
        let next = records.last().unwrap().offset + 1;
        let outcome = writer.write(&batch_of_records(records, expected)).await;
        assert!(
            matches!(outcome, Outcome::Committed { next_offset } if next_offset == next),
            "{outcome:?}"
        );
        expected = Some(next);
    }
    formats
}

async fn rows(db: &TestDb, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT row_to_json(t)::text FROM {table} AS t ORDER BY id"
    ))
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn binary_and_text_copy_leave_the_same_rows() {
    let db = TestDb::create().await;
    for table in ["bin_on", "bin_off"] {
        db.exec(&format!("CREATE TABLE {table} {COLUMNS}")).await;
    }
    let on = write_all(&config(&db, "bin_on", true)).await;
    let off = write_all(&config(&db, "bin_off", false)).await;
    assert_eq!(on, [true, false, true], "formats with binary_copy = true");
    assert_eq!(
        off,
        [false, false, false],
        "formats with binary_copy = false"
    );

    let (binary, text) = (rows(&db, "bin_on").await, rows(&db, "bin_off").await);
    assert_eq!(binary, text);
    assert_eq!(binary.len(), 8, "{binary:#?}");
    let value = |id: i64, expr: &str| {
        let sql = format!("SELECT ({expr})::text FROM bin_on WHERE id = {id}");
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    // Values as the server's text input makes them (rounded to the column's scale, in UTC).
    assert_eq!(value(1, "amount").await.as_deref(), Some("12.35"));
    assert_eq!(value(1, "raw").await.as_deref(), Some("0.0015"));
    assert_eq!(
        value(1, "at AT TIME ZONE 'UTC'").await.as_deref(),
        Some("2026-11-03 12:50:30.123456")
    );
    assert_eq!(
        value(1, "at_ms AT TIME ZONE 'UTC'").await.as_deref(),
        Some("2026-11-03 12:50:30.123")
    );
    assert_eq!(
        value(1, "note").await.as_deref(),
        Some("back\\slash\nnewline ü 😀")
    );
    assert_eq!(value(1, "label").await.as_deref(), Some("tab\tx"));
    assert_eq!(value(1, "doc->'a'->2->>'b'").await.as_deref(), Some("é"));
    // Id 2: the newer record wins, and its missing note is NULL.
    assert_eq!(value(2, "small").await, None);
    assert_eq!(value(2, "note").await, None);
    assert_eq!(value(2, "amount").await.as_deref(), Some("-0.01"));
    assert_eq!(value(2, "raw").await.as_deref(), Some("0.00"));
    assert_eq!(value(2, "label").await.as_deref(), Some(""));
    assert_eq!(value(2, "doc").await.as_deref(), Some("42"));
    assert_eq!(value(3, "amount").await.as_deref(), Some("1000.00"));
    assert_eq!(
        value(3, "raw").await.as_deref(),
        Some("123456789012345678901234567890.123456789")
    );
    assert_eq!(
        value(4, "raw").await.as_deref(),
        Some("100000000000000000000")
    );
    assert_eq!(value(4, "mid").await.as_deref(), Some("7"));
    assert_eq!(value(6, "raw").await.as_deref(), Some("-12345.6789"));
    for (id, uuid) in [(3, "5b"), (6, "5b"), (7, "5c")] {
        let want = format!("0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a{uuid}");
        assert_eq!(value(id, "ref").await, Some(want));
    }
    // The too-long label is a dead letter in both runs; its neighbours are in the table.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM bin_on WHERE id IN (7, 9)")
            .await,
        2
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM kafka_pg_sink.dead_letters \
             WHERE \"offset\" = 9 AND stage = 'database' AND error LIKE '22001:%'"
        )
        .await,
        2
    );
    db.drop_db().await;
}

/// Random value spellings from the test kit's seeded generator, so a failure names a
/// reproducible case.
trait Spellings {
    /// Up to `max` decimal digits.
    fn digits(&mut self, max: u64) -> String;
    /// A numeric literal as a producer might write it.
    fn numeric(&mut self) -> String;
    /// A timestamp literal in one of the accepted forms.
    fn timestamp(&mut self) -> String;
}

impl Spellings for Rng {
    fn digits(&mut self, max: u64) -> String {
        (0..self.below(max + 1))
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }

    fn numeric(&mut self) -> String {
        let sign = ["", "-", "+"][self.below(3) as usize];
        let int = self.digits(22);
        let frac = match self.below(3) {
            0 => String::new(),
            _ => format!(".{}", self.digits(22)),
        };
        let exp = match self.below(4) {
            0 => format!(
                "{}{}{}",
                ["e", "E"][self.below(2) as usize],
                ["", "-", "+"][self.below(3) as usize],
                self.below(40)
            ),
            _ => String::new(),
        };
        format!("{sign}{int}{frac}{exp}")
    }

    fn timestamp(&mut self) -> String {
        let fraction = match self.below(7) {
            0 => String::new(),
            n => format!(
                ".{:0width$}",
                self.below(10u64.pow(n as u32)),
                width = n as usize
            ),
        };
        let offset = match self.below(3) {
            0 => "Z".to_owned(),
            _ => format!(
                "{}{:02}:{:02}",
                ["+", "-"][self.below(2) as usize],
                self.below(15),
                self.below(60)
            ),
        };
        format!(
            "{:04}-{:02}-{:02}{}{:02}:{:02}:{:02}{fraction}{offset}",
            1 + self.below(9999),
            1 + self.below(12),
            1 + self.below(28),
            ["T", "t", " "][self.below(3) as usize],
            self.below(24),
            self.below(60),
            self.below(60),
        )
    }
}

/// Thousands of random numbers and timestamps, COPY text against the binary encoder: the server
/// must store the same values (and the same display scale) for every one the encoder accepts.
#[tokio::test]
async fn random_numerics_and_timestamps_read_the_same_in_binary_and_text() {
    use kafka_pg_sink::sink::encode::binary::{self, BinType};

    let db = TestDb::create().await;
    db.exec("CREATE TABLE as_text (i int PRIMARY KEY, v numeric, t timestamptz); CREATE TABLE as_binary (LIKE as_text)")
        .await;
    let mut rng = Rng::new(7);
    let cases: Vec<(String, String)> = (0..4_000)
        .map(|_| (rng.numeric(), rng.timestamp()))
        .collect();
    let (mut text, mut data) = (String::new(), binary::HEADER.to_vec());
    let mut encoded = 0;
    for (i, (v, t)) in cases.iter().enumerate() {
        let row = binary::start_row(&mut data);
        let before = data.len();
        binary::encode(BinType::Int4, &i.to_string(), &mut data);
        let ok = binary::encode(BinType::Numeric, v, &mut data)
            && binary::encode(BinType::Timestamptz, t, &mut data);
        if !ok {
            data.truncate(before - 2);
            continue;
        }
        binary::end_row(&mut data, row, 3);
        encoded += 1;
        // Text that the server rejects (no digits at all) is left out of both.
        text.push_str(&format!("{i}\t{v}\t{t}\n"));
    }
    data.extend_from_slice(binary::TRAILER);
    assert!(
        encoded > 3_000,
        "only {encoded} of 4000 cases were encodable"
    );
    let mut conn = db.pool.acquire().await.unwrap();
    let mut copy = conn.copy_in_raw("COPY as_text FROM STDIN").await.unwrap();
    copy.send(text.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    let mut copy = conn
        .copy_in_raw("COPY as_binary FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    copy.send(data.as_slice()).await.unwrap();
    copy.finish().await.unwrap();
    let differing: Vec<(i32, String, String)> = sqlx::query_as(
        "SELECT a.i, a.v::text || ' ' || a.t::text, b.v::text || ' ' || b.t::text \
         FROM as_text a FULL JOIN as_binary b USING (i) \
         WHERE a.v::text IS DISTINCT FROM b.v::text OR a.t IS DISTINCT FROM b.t LIMIT 5",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(differing.is_empty(), "text vs binary: {differing:?}");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM as_binary").await,
        encoded
    );
    drop(conn);
    db.drop_db().await;
}

/// Writes one batch of `values` (JSON with the `key` fields and `n`) to `table`, keyed on `key`;
/// returns whether the batch went sorted. Every record must commit: none is a dead letter.
async fn write_keyed(db: &TestDb, table: &str, key: &[&str], values: &[&str]) -> bool {
    let columns: Vec<String> = key.iter().map(|k| format!("{k} = 'value.{k}'")).collect();
    let config = Config::from_toml(&format!(
        "[kafka]\nbrokers = 'unused:9092'\ngroup_id = 'g_{table}'\n\
         [postgres]\nurl = '{}'\n\
         [[mappings]]\ntopic = 't'\ntable = '{table}'\nkey = {key:?}\n\
         columns = {{ {}, n = 'value.n' }}\n",
        db.url,
        columns.join(", ")
    ))
    .unwrap();
    migrate(&db.pool, &config.schema).await.unwrap();
    let (mut writer, decoder) =
        sink_writer(&config, &config.kafka.group_id, Metrics::new().unwrap()).await;
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| record(i as i64, v))
        .collect();
    let decoded = decoder.decode(&records, &HashSet::new());
    assert!(decoded.tables[0].binary);
    let next = records.len() as i64;
    let outcome = writer.write(&batch_of_records(records, None)).await;
    assert!(
        matches!(outcome, Outcome::Committed { next_offset } if next_offset == next),
        "{outcome:?}"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM kafka_pg_sink.dead_letters")
            .await,
        0
    );
    decoded.tables[0].sorted
}

#[tokio::test]
async fn uuid_keys_spelled_differently_are_one_row_in_a_sorted_binary_batch() {
    let db = TestDb::create().await;
    db.exec("CREATE TABLE by_uuid (id uuid PRIMARY KEY, n bigint NOT NULL)")
        .await;
    // One uuid three ways, another once, and the first again, upper case: newest wins.
    let values = [
        r#"{"id":"0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b","n":1}"#,
        r#"{"id":"0F8E4C2A1B3D4E5F8A9B0C1D2E3F4A5B","n":2}"#,
        r#"{"id":"ffffffff-0000-0000-0000-000000000000","n":3}"#,
        r#"{"id":"0F8E4C2A-1B3D-4E5F-8A9B-0C1D2E3F4A5B","n":4}"#,
    ];
    assert!(write_keyed(&db, "by_uuid", &["id"], &values).await);
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT id::text, n FROM by_uuid ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        rows,
        [
            ("0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b".to_string(), 4),
            ("ffffffff-0000-0000-0000-000000000000".to_string(), 3),
        ]
    );
    db.drop_db().await;
}

/// `by_sku_ci (sku text PRIMARY KEY, n bigint)` under an ICU collation blind to case, which
/// compares `AB` and `ab` equal (a nondeterministic collation).
async fn create_case_blind_table(db: &TestDb) {
    db.exec(
        "CREATE COLLATION case_blind (provider = icu, locale = 'und-u-ks-level2', \
         deterministic = false)",
    )
    .await;
    db.exec("CREATE TABLE by_sku_ci (sku text COLLATE case_blind PRIMARY KEY, n bigint NOT NULL)")
        .await;
}

#[tokio::test]
async fn text_keys_go_sorted_where_the_table_compares_them_bytewise_and_not_elsewhere() {
    let db = TestDb::create().await;
    db.exec("CREATE TABLE by_sku (sku text PRIMARY KEY, n bigint NOT NULL)")
        .await;
    create_case_blind_table(&db).await;
    // `a\u0062` is `ab`; `AB` differs from `ab` bytewise but not under the case-blind collation.
    let values = [
        r#"{"sku":"ab","n":1}"#,
        r#"{"sku":"a\u0062","n":2}"#,
        r#"{"sku":"AB","n":3}"#,
        r#"{"sku":"b","n":4}"#,
    ];
    assert!(
        write_keyed(&db, "by_sku", &["sku"], &values).await,
        "bytewise: sorted"
    );
    assert!(
        !write_keyed(&db, "by_sku_ci", &["sku"], &values).await,
        "case-blind collation: DISTINCT ON"
    );
    let rows = |table: &str| {
        let sql = format!("SELECT sku, n FROM {table} ORDER BY n");
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, (String, i64)>(&sql)
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    let owned = |rows: &[(&str, i64)]| -> Vec<(String, i64)> {
        rows.iter().map(|&(s, n)| (s.to_string(), n)).collect()
    };
    assert_eq!(
        rows("by_sku").await,
        owned(&[("ab", 2), ("AB", 3), ("b", 4)])
    );
    assert_eq!(rows("by_sku_ci").await, owned(&[("AB", 3), ("b", 4)]));
    db.drop_db().await;
}

#[tokio::test]
async fn one_instant_written_with_two_offsets_is_one_key() {
    let db = TestDb::create().await;
    db.exec(
        "CREATE TABLE by_time (id bigint, at timestamptz, n bigint NOT NULL, \
         PRIMARY KEY (id, at))",
    )
    .await;
    let values = [
        r#"{"id":1,"at":"2026-01-01T01:30:00+01:30","n":1}"#,
        r#"{"id":1,"at":"2026-01-01T00:00:00.000001Z","n":2}"#,
        r#"{"id":2,"at":"2026-01-01T00:00:00Z","n":3}"#,
        r#"{"id":1,"at":"2025-12-31T19:00:00-05:00","n":4}"#,
    ];
    assert!(write_keyed(&db, "by_time", &["id", "at"], &values).await);
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), n \
         FROM by_time ORDER BY id, at",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let at = |t: &str| format!("2026-01-01 00:00:00.{t}");
    assert_eq!(
        rows,
        [
            (1, at("000000"), 4),
            (1, at("000001"), 2),
            (2, at("000000"), 3)
        ]
    );
    db.drop_db().await;
}

#[tokio::test]
async fn keys_the_table_rounds_or_cuts_go_through_distinct_on() {
    let db = TestDb::create().await;
    // `ab ` fits `varchar(2)` as `ab`, and timestamptz(0) rounds both instants to one second.
    db.exec(
        "CREATE TABLE by_code (code varchar(2), at timestamptz(0), n bigint NOT NULL, \
         PRIMARY KEY (code, at))",
    )
    .await;
    let values = [
        r#"{"code":"ab","at":"2026-01-01T00:00:00.4Z","n":1}"#,
        r#"{"code":"ab ","at":"2026-01-01T00:00:00.1Z","n":2}"#,
        r#"{"code":"b","at":"2026-01-01T00:00:00Z","n":3}"#,
    ];
    assert!(!write_keyed(&db, "by_code", &["code", "at"], &values).await);
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT code::text, n FROM by_code ORDER BY n")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, [("ab".to_string(), 2), ("b".to_string(), 3)]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_sorted_batch_whose_keys_collide_in_the_table_is_written_again_through_distinct_on() {
    let db = TestDb::create().await;
    create_case_blind_table(&db).await;
    let config = Config::from_toml(&format!(
        "[kafka]\nbrokers = 'unused:9092'\ngroup_id = 'g_collide'\n\
         [postgres]\nurl = '{}'\n\
         [[mappings]]\ntopic = 't'\ntable = 'by_sku_ci'\nkey = ['sku']\n\
         columns = {{ sku = 'value.sku', n = 'value.n' }}\n",
        db.url
    ))
    .unwrap();
    migrate(&db.pool, &config.schema).await.unwrap();
    // The catalog says no; a decoder told otherwise sends `ab` and `AB` as two sorted rows.
    let (decoder, sql) = kafka_pg_sink::app::row_plan(&db.pool, &config, Default::default())
        .await
        .unwrap();
    let decoder = Arc::new(Arc::try_unwrap(decoder).unwrap().with_exact_keys(&[true]));
    let records: Vec<Record> = [
        r#"{"sku":"ab","n":1}"#,
        r#"{"sku":"AB","n":2}"#,
        r#"{"sku":"b","n":3}"#,
    ]
    .iter()
    .enumerate()
    .map(|(i, v)| record(i as i64, v))
    .collect();
    assert!(decoder.decode(&records, &HashSet::new()).tables[0].sorted);
    let mut writer = kafka_pg_sink::sink::Writer::new(
        std::str::FromStr::from_str(&db.url).unwrap(),
        decoder,
        sql,
        &config.schema,
        config.kafka.group_id.clone(),
        Metrics::new().unwrap(),
    );
    let outcome = writer.write(&batch_of_records(records, None)).await;
    assert!(
        matches!(outcome, Outcome::Committed { next_offset: 3 }),
        "{outcome:?}"
    );
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT sku, n FROM by_sku_ci ORDER BY n")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, [("AB".to_string(), 2), ("b".to_string(), 3)]);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM kafka_pg_sink.dead_letters")
            .await,
        0
    );
    db.drop_db().await;
}
