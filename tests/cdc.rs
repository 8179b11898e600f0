//! `mode = "cdc"`: Debezium change streams through the real binary, against real Postgres and a
//! broker over TCP. The source table is modelled by the test kit (`testkit::debezium`), which
//! renders its changes as Debezium's PostgreSQL connector writes them and keeps the table's state;
//! each test compares the target table with that state, row by row and column by column.

use std::collections::BTreeMap;
use std::time::Duration;

use testkit::debezium::{self, Account, Converter, Identity, Message, Source, Written};
use testkit::prelude::*;

/// A target for the `accounts` source: its columns, the change's LSN and Debezium's timestamp.
fn accounts_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, owner text, balance numeric(12,2), \
         updated_at timestamptz, lsn bigint NOT NULL, changed_ms bigint NOT NULL)"
    )
}

/// Every row application to `accounts`, in the order the database made them: with exactly-once
/// effect each row's LSNs only grow (a replayed batch would write an older LSN again).
const AUDIT_DDL: &str = r#"
CREATE TABLE applied (seq bigserial PRIMARY KEY, id bigint NOT NULL, lsn bigint NOT NULL);
CREATE FUNCTION audit_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO applied (id, lsn) VALUES (NEW.id, NEW.lsn);
    RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION audit_account();
"#;

/// A cdc mapping of `topic` into `table`; `extra` is appended (truncate, only_if_newer, formats).
fn mapping(topic: &str, table: &str, extra: &str) -> String {
    format!(
        r#"
[[mappings]]
topic = "{topic}"
table = "{table}"
mode = "cdc"
key = ["id"]
columns = {{ id = "value.id", owner = "value.owner", balance = "value.balance", updated_at = "value.updated_at", lsn = "source.lsn", changed_ms = "envelope.ts_ms" }}
{extra}
"#
    )
}

fn batch(max_records: usize, max_wait_ms: u64) -> String {
    format!("[batch]\nmax_records = {max_records}\nmax_wait_ms = {max_wait_ms}\n")
}

/// The target table as the source model holds rows.
async fn target(db: &TestDb, table: &str) -> BTreeMap<i64, Written> {
    type Row = (i64, Option<String>, Option<i64>, Option<i64>, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT id, owner, (balance * 100)::bigint, \
         (extract(epoch FROM updated_at) * 1000000)::bigint, lsn, changed_ms FROM {table}"
    ))
    .fetch_all(&db.pool)
    .await
    .unwrap_or_else(|e| panic!("reading {table}: {e}"));
    rows.into_iter()
        .map(|(id, owner, balance_cents, updated_at_us, lsn, ts_ms)| {
            let row = Account {
                id,
                owner,
                balance_cents,
                updated_at_us,
            };
            (id, Written { row, lsn, ts_ms })
        })
        .collect()
}

/// The target equals `expected` exactly: the same ids, every column; count and sum of balance
/// checked on their own in SQL too.
async fn assert_target(db: &TestDb, table: &str, expected: &BTreeMap<i64, Written>) {
    let actual = target(db, table).await;
    let missing: Vec<_> = expected
        .keys()
        .filter(|id| !actual.contains_key(id))
        .collect();
    let extra: Vec<_> = actual
        .keys()
        .filter(|id| !expected.contains_key(id))
        .collect();
    let differ: Vec<_> = expected
        .iter()
        .filter_map(|(id, e)| actual.get(id).filter(|a| *a != e).map(|a| (e, a)))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{table} differs from the source: missing ids {missing:?}, ids the source does not have \
         {extra:?}, rows that differ (expected, actual) {differ:#?}"
    );
    let (count, sum): (i64, Option<i64>) = sqlx::query_as(&format!(
        "SELECT count(*), (sum(balance) * 100)::bigint FROM {table}"
    ))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let expected_sum: i64 = expected.values().filter_map(|w| w.row.balance_cents).sum();
    assert_eq!(count, expected.len() as i64, "{table}: row count");
    assert_eq!(sum.unwrap_or(0), expected_sum, "{table}: sum of balance");
}

/// Records committed so far (0 until the connector has created its tables).
async fn committed(db: &TestDb, group: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM kafka_pg_sink.offsets WHERE group_id = $1",
    )
    .bind(group)
    .fetch_one(&db.pool)
    .await
    .unwrap_or(0)
}

/// Waits until the stored offset of every partition is the log end.
async fn wait_for_log_end(s: &Built) {
    let ends = s
        .broker
        .end_offsets(&s.topic, s.partitions)
        .expect("end offsets");
    let expected: Vec<(i32, i64)> = (0..).zip(ends).filter(|(_, e)| *e > 0).collect();
    let done = eventually(Duration::from_secs(90), || async {
        s.stored_offsets().await == expected
    })
    .await;
    assert!(
        done,
        "stored offsets {:?} never reached the log end {expected:?}",
        s.stored_offsets().await
    );
}

/// The log end of partition 0: the offset the next record produced there gets.
fn next_offset(s: &Built) -> i64 {
    s.broker
        .end_offsets(&s.topic, s.partitions)
        .expect("end offsets")[0]
}

/// (partition, offset, target table, stage, error, value) of every dead letter.
async fn dead_letters(db: &TestDb) -> Vec<(i32, i64, String, String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT partition, \"offset\", target_table, stage, error, convert_from(record_value, 'UTF8') \
         FROM kafka_pg_sink.dead_letters ORDER BY target_table, partition, \"offset\"",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap_or_default()
}

fn produce(s: &Built, messages: &[Message]) {
    debezium::produce(&s.broker.bootstrap, &s.topic, messages);
}

fn stop(sink: Sink) {
    let status = sink.signal_and_wait("TERM", Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_stream_through_repeated_kill_9_leaves_the_target_equal_to_the_source() {
    const PARTITIONS: i32 = 4;
    let s = Scenario::new()
        .ddl(&accounts_ddl("accounts"))
        .ddl(AUDIT_DDL)
        .topic("bank_public_accounts")
        .partitions(PARTITIONS)
        .build()
        .await;
    let mut rng = Rng::for_test("debezium history");
    // REPLICA IDENTITY DEFAULT, as most tables: deletes carry only the key in `before`.
    let mut source = Source::new(Converter::Json, Identity::Default, PARTITIONS);
    let initial: Vec<Account> = (1..=400)
        .map(|id| source.random_row(&mut rng, id))
        .collect();
    let mut messages = source.snapshot(&initial);
    let mut next_id = 401;
    messages.extend(source.random_changes(&mut rng, 6_000, &mut next_id));
    let ops = |op: &str| {
        let needle = format!(r#""op":"{op}""#);
        messages
            .iter()
            .filter(|m| m.value.as_ref().is_some_and(|v| v.contains(&needle)))
            .count()
    };
    let (creates, updates, deletes) = (ops("c"), ops("u"), ops("d"));
    eprintln!(
        "{} records: 400 snapshot reads, {creates} creates, {updates} updates, {deletes} deletes \
         (each with its tombstone); {} rows at the end",
        messages.len(),
        source.rows().len()
    );
    assert!(deletes > 500 && updates > 2_000 && 400 + creates > source.rows().len());
    let total = messages.len() as i64;
    let produced: Vec<Produced> = messages
        .into_iter()
        .map(|m| (m.partition, m.key.expect("keyed"), m.value))
        .collect();
    // Slow enough that the stream outlasts several restarts (each waits out the killed member's
    // 6 s session), so that kills land while changes are still arriving.
    let producer = s.stream(produced, 220);

    let rest = format!("{}{}", batch(300, 50), mapping(&s.topic, "accounts", ""));
    let mid = kill_repeatedly(
        &s.broker,
        &s.db,
        &s.group,
        &rest,
        &producer,
        3,
        total,
        || committed(&s.db, &s.group),
    )
    .await;
    producer.join().expect("every record produced");
    assert!(mid >= 3, "only {mid} kills landed mid-stream");
    let _sink = s.sink(&rest);
    wait_for_log_end(&s).await;

    assert_target(&s.db, "accounts", source.rows()).await;
    let went_back = s
        .db
        .scalar_i64(
            "SELECT count(*) FROM (SELECT lsn <= lag(lsn) OVER (PARTITION BY id ORDER BY seq) AS back \
             FROM applied) a WHERE back",
        )
        .await;
    let applications = s.db.scalar_i64("SELECT count(*) FROM applied").await;
    assert!(
        applications >= source.rows().len() as i64,
        "the audit saw {applications} applications"
    );
    assert_eq!(
        went_back, 0,
        "a row was written with an LSN it had already passed: a change applied twice"
    );
    assert_eq!(dead_letters(&s.db).await, vec![], "dead letters");
    s.db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_without_before_deletes_the_row_named_by_the_record_key() {
    let s = Scenario::new()
        .ddl(&accounts_ddl("accounts"))
        .topic("bank_public_accounts")
        .build()
        .await;
    // REPLICA IDENTITY NOTHING: no `before` at all, only the record key names the row.
    let mut source = Source::new(Converter::Json, Identity::Nothing, 1);
    let mut rng = Rng::new(2);
    let rows: Vec<Account> = (1..=6).map(|id| source.random_row(&mut rng, id)).collect();
    let mut first: Vec<Message> = rows.iter().flat_map(|r| source.insert(r.clone())).collect();
    first.extend(source.update(source.random_row(&mut rng, 2)));
    let sink = s.sink(&format!(
        "{}{}",
        batch(1000, 50),
        mapping(&s.topic, "accounts", "")
    ));
    produce(&s, &first);
    wait_for_log_end(&s).await;
    assert_target(&s.db, "accounts", source.rows()).await;

    let mut second = source.delete(1);
    second.extend(source.delete(3));
    second.extend(source.insert(source.random_row(&mut rng, 7)));
    second.extend(source.delete(7));
    second.extend(source.update(source.random_row(&mut rng, 4)));
    // A delete whose key does not hold the key column cannot name a row: a dead letter, and row 5
    // stays.
    let mut expected = source.rows().clone();
    let bad_at = next_offset(&s) + second.len() as i64;
    let mut bad = source.delete(5);
    bad[0].key = Some(r#"{"account":5}"#.into());
    // Without its tombstone, which (with a good key) would delete row 5 by itself.
    bad.truncate(1);
    second.extend(bad.iter().cloned());
    second.extend(source.delete(6));
    expected.remove(&6);
    produce(&s, &second);
    wait_for_log_end(&s).await;

    for gone in [1, 3, 6, 7] {
        assert!(!expected.contains_key(&gone));
    }
    assert!(expected.contains_key(&5));
    assert_target(&s.db, "accounts", &expected).await;
    let letters = dead_letters(&s.db).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let (partition, offset, table, stage, error, value) = &letters[0];
    assert_eq!(
        (*partition, *offset, table.as_str()),
        (0, bad_at, "public.accounts")
    );
    assert_eq!(value.as_deref(), bad[0].value.as_deref());
    assert_eq!(stage, "decode");
    assert!(
        error.contains("column `id` is missing"),
        "the reason names the missing key column: {error}"
    );
    drop(sink);
    s.db.drop_db().await;
}

/// Three targets of one stream, one per truncate policy.
const TRUNCATE_TABLES: [(&str, &str); 3] = [
    ("t_delete_all", "truncate = \"delete_all\""),
    ("t_ignore", "truncate = \"ignore\""),
    ("t_bad", ""),
];

fn truncate_config(topic: &str, max_wait_ms: u64) -> String {
    let mappings: String = TRUNCATE_TABLES
        .iter()
        .map(|(table, extra)| mapping(topic, table, extra))
        .collect();
    format!("{}{mappings}", batch(10_000, max_wait_ms))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_deletes_all_at_its_place_in_the_stream_or_is_ignored_or_dead_lettered() {
    let mut scenario = Scenario::new().topic("bank_public_accounts");
    for (table, _) in TRUNCATE_TABLES {
        scenario = scenario.ddl(&accounts_ddl(table));
    }
    let s = scenario.build().await;
    let mut source = Source::new(Converter::Json, Identity::Full, 1);
    let mut rng = Rng::new(3);
    let check = |table: &'static str, expected: BTreeMap<i64, Written>| {
        let db = &s.db;
        async move { assert_target(db, table, &expected).await }
    };

    // Before any truncate: every table follows the source.
    let rows: Vec<Account> = (1..=4).map(|id| source.random_row(&mut rng, id)).collect();
    let mut first = source.snapshot(&rows);
    first.extend(source.insert(source.random_row(&mut rng, 5)));
    let sink = s.sink(&truncate_config(&s.topic, 50));
    produce(&s, &first);
    wait_for_log_end(&s).await;
    for (table, _) in TRUNCATE_TABLES {
        check(table, source.rows().clone()).await;
    }
    stop(sink);

    // A truncate in the middle of one batch: produced while the connector is down, read at once.
    let mut second = source.insert(source.random_row(&mut rng, 6));
    second.extend(source.update(source.random_row(&mut rng, 1)));
    let kept = source.rows().clone();
    let in_batch_at = next_offset(&s) + second.len() as i64;
    second.extend(source.truncate());
    second.extend(source.insert(source.random_row(&mut rng, 7)));
    second.extend(source.update(source.random_row(&mut rng, 7)));
    second.extend(source.insert(source.random_row(&mut rng, 8)));
    second.extend(source.delete(8));
    second.extend(source.insert(source.random_row(&mut rng, 9)));
    produce(&s, &second);
    let sink = s.sink(&truncate_config(&s.topic, 2_000));
    wait_for_log_end(&s).await;
    let batches = sink.metric("kafka_pg_sink_batches_committed_total", &s.topic);
    assert_eq!(
        batches,
        Some(1.0),
        "the truncate and its neighbours came in one batch"
    );
    assert_eq!(
        source.rows().keys().copied().collect::<Vec<_>>(),
        vec![7, 9]
    );
    check("t_delete_all", source.rows().clone()).await;
    let mut ignored = kept.clone();
    ignored.extend(source.rows().clone());
    check("t_ignore", ignored.clone()).await;
    check("t_bad", ignored.clone()).await;
    let letters = dead_letters(&s.db).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    let (_, offset, table, stage, error, _) = &letters[0];
    assert_eq!(
        (*offset, table.as_str(), stage.as_str()),
        (in_batch_at, "public.t_bad", "decode")
    );
    assert!(error.contains("truncate"), "{error}");

    // A truncate alone in its batch, then a row after it in the next.
    let alone_at = next_offset(&s);
    produce(&s, &source.truncate());
    wait_for_log_end(&s).await;
    assert_eq!(target(&s.db, "t_delete_all").await, BTreeMap::new());
    check("t_ignore", ignored.clone()).await;
    let last = source.insert(source.random_row(&mut rng, 10));
    produce(&s, &last);
    wait_for_log_end(&s).await;
    check("t_delete_all", source.rows().clone()).await;
    ignored.extend(source.rows().clone());
    check("t_ignore", ignored.clone()).await;
    check("t_bad", ignored).await;
    let letters = dead_letters(&s.db).await;
    let offsets: Vec<_> = letters.iter().map(|l| (l.1, l.2.as_str())).collect();
    assert_eq!(
        offsets,
        vec![(in_batch_at, "public.t_bad"), (alone_at, "public.t_bad")]
    );
    drop(sink);
    s.db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_change_replayed_or_out_of_order_never_overwrites_newer_state_with_only_if_newer()
{
    let s = Scenario::new()
        .ddl(&accounts_ddl("accounts"))
        .topic("bank_public_accounts")
        .build()
        .await;
    let mut source = Source::new(Converter::Json, Identity::Full, 1);
    let mut rng = Rng::new(4);
    let rows: Vec<Account> = (7..=9).map(|id| source.random_row(&mut rng, id)).collect();
    let snapshot = source.snapshot(&rows);
    let rest = format!(
        "{}{}",
        batch(1000, 50),
        mapping(&s.topic, "accounts", "only_if_newer = \"lsn\"")
    );
    let _sink = s.sink(&rest);
    produce(&s, &snapshot);
    wait_for_log_end(&s).await;

    // Row 7: its two updates arrive newest first, produced together (as a rule one batch).
    let older_7 = source.update(source.random_row(&mut rng, 7));
    let newer_7 = source.update(source.random_row(&mut rng, 7));
    // Row 8: the older update arrives in a later batch than the newer one.
    let older_8 = source.update(source.random_row(&mut rng, 8));
    let newer_8 = source.update(source.random_row(&mut rng, 8));
    // Row 9: an update in order, which the guard must let through.
    let newer_9 = source.update(source.random_row(&mut rng, 9));
    produce(&s, &[&newer_7[..], &older_7, &newer_8, &newer_9].concat());
    wait_for_log_end(&s).await;
    produce(&s, &older_8);
    wait_for_log_end(&s).await;
    // Debezium restarted from an older position sends the whole history again.
    produce(&s, &[&snapshot[..], &older_7, &newer_7, &older_8].concat());
    wait_for_log_end(&s).await;

    for (id, older) in [(7, &older_7), (8, &older_8)] {
        let older: serde_json::Value =
            serde_json::from_str(older[0].value.as_deref().unwrap()).unwrap();
        let older_lsn = older["source"]["lsn"].as_i64().unwrap();
        assert!(
            older_lsn < source.rows()[&id].lsn,
            "row {id}'s older change is older"
        );
    }
    assert_target(&s.db, "accounts", source.rows()).await;
    assert_eq!(dead_letters(&s.db).await, vec![]);
    s.db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_an_op_or_with_an_unknown_op_are_dead_letters_and_their_neighbours_apply() {
    let s = Scenario::new()
        .ddl(&accounts_ddl("accounts"))
        .topic("bank_public_accounts")
        .build()
        .await;
    let mut source = Source::new(Converter::Json, Identity::Default, 1);
    let mut rng = Rng::new(5);
    let start = next_offset(&s);
    let mut messages = source.insert(source.random_row(&mut rng, 1));
    // The row as an ExtractNewRecordState transform leaves it: no envelope.
    let flattened = source.flattened(&source.random_row(&mut rng, 2));
    // An envelope whose `op` field is missing, and one with an operation Debezium never writes.
    let no_op = source.with_op(None, &source.random_row(&mut rng, 3));
    let unknown = source.with_op(Some("x"), &source.random_row(&mut rng, 4));
    messages.push(flattened.clone());
    messages.extend(source.insert(source.random_row(&mut rng, 5)));
    messages.push(no_op.clone());
    messages.push(unknown.clone());
    // A logical decoding message carries no row: skipped, not a dead letter.
    messages.push(source.logical_message("audit", b"payroll run"));
    messages.extend(source.update(source.random_row(&mut rng, 1)));
    messages.extend(source.insert(source.random_row(&mut rng, 6)));
    let at = |m: &Message| start + messages.iter().position(|x| x == m).unwrap() as i64;
    let bad = [
        (at(&flattened), &flattened),
        (at(&no_op), &no_op),
        (at(&unknown), &unknown),
    ];
    let _sink = s.sink(&format!(
        "{}{}",
        batch(1000, 50),
        mapping(&s.topic, "accounts", "")
    ));
    produce(&s, &messages);
    wait_for_log_end(&s).await;

    assert_eq!(
        source.rows().keys().copied().collect::<Vec<_>>(),
        vec![1, 5, 6]
    );
    assert_target(&s.db, "accounts", source.rows()).await;
    let letters = dead_letters(&s.db).await;
    let offsets: Vec<i64> = letters.iter().map(|l| l.1).collect();
    assert_eq!(
        offsets,
        bad.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        "{letters:#?}"
    );
    for ((_, _, table, stage, error, value), (_, m)) in letters.iter().zip(bad) {
        assert_eq!(
            (table.as_str(), stage.as_str()),
            ("public.accounts", "decode")
        );
        assert_eq!(value.as_deref(), m.value.as_deref());
        let reason = if m == &unknown {
            "`op` = \"x\""
        } else {
            "no `op`"
        };
        assert!(error.contains(reason), "expected {reason:?} in {error:?}");
    }
    s.db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_event_before_a_truncate_in_the_same_batch_is_still_a_dead_letter() {
    let s = Scenario::new()
        .ddl(&accounts_ddl("accounts"))
        .topic("bank_public_accounts")
        .build()
        .await;
    let mut source = Source::new(Converter::Json, Identity::Full, 1);
    let mut rng = Rng::new(7);
    let mut messages = source.insert(source.random_row(&mut rng, 1));
    let unknown = source.with_op(Some("x"), &source.random_row(&mut rng, 2));
    let unknown_at = next_offset(&s) + messages.len() as i64;
    messages.push(unknown.clone());
    messages.extend(source.truncate());
    messages.extend(source.insert(source.random_row(&mut rng, 3)));
    produce(&s, &messages);
    // Everything is in the log before the connector starts: one batch.
    let rest = format!(
        "{}{}",
        batch(10_000, 2_000),
        mapping(&s.topic, "accounts", "truncate = \"delete_all\"")
    );
    let sink = s.sink(&rest);
    wait_for_log_end(&s).await;
    let batches = sink.metric("kafka_pg_sink_batches_committed_total", &s.topic);
    assert_eq!(batches, Some(1.0), "the events came in one batch");
    assert_target(&s.db, "accounts", source.rows()).await;
    // Had the truncate come in the next batch, the bad event would be a dead letter: where the
    // batch happens to end must not decide whether a record is accounted for.
    let letters = dead_letters(&s.db).await;
    assert_eq!(
        letters.iter().map(|l| l.1).collect::<Vec<_>>(),
        vec![unknown_at],
        "a record is either applied or a dead letter: {letters:#?}"
    );
    assert_eq!(letters[0].5.as_deref(), unknown.value.as_deref());
    s.db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_json_with_schemas_replicates_exact_decimals_timestamps_and_keys() {
    const PARTITIONS: i32 = 2;
    let s = Scenario::new()
        .ddl(&accounts_ddl("accounts"))
        .topic("bank_public_accounts")
        .partitions(PARTITIONS)
        .build()
        .await;
    let mut rng = Rng::for_test("debezium history");
    let mut source = Source::new(Converter::ConnectJson, Identity::Full, PARTITIONS);
    let initial: Vec<Account> = (1..=40).map(|id| source.random_row(&mut rng, id)).collect();
    let mut messages = source.snapshot(&initial);
    let mut next_id = 41;
    messages.extend(source.random_changes(&mut rng, 300, &mut next_id));
    // The Decimal's edges: a sign byte needed or not, the column's limits, zero, null; and
    // timestamps before the epoch and on a leap day.
    let edge = |id, cents: Option<i64>, us: Option<i64>, owner: Option<&str>| Account {
        id,
        owner: owner.map(str::to_owned),
        balance_cents: cents,
        updated_at_us: us,
    };
    let edges = [
        edge(1001, Some(0), Some(0), Some("zero")),
        edge(1002, Some(128), Some(-1), Some("Zoë \"Z\" Ng")),
        edge(1003, Some(-128), Some(951_782_400_123_456), None),
        edge(
            1004,
            Some(-129),
            Some(1_767_225_600_000_001),
            Some("tab\there"),
        ),
        edge(
            1005,
            Some(999_999_999_999),
            Some(4_102_444_799_999_999),
            Some("名前"),
        ),
        edge(
            1006,
            Some(-999_999_999_999),
            Some(-2_208_988_800_000_000),
            Some("back\\slash"),
        ),
        edge(1007, None, None, None),
        edge(1008, Some(-1), Some(86_400_000_000), Some("line\nbreak")),
    ];
    for row in &edges {
        messages.extend(source.insert(row.clone()));
    }
    // An update whose `before` holds the edge values too.
    messages.extend(source.update(edge(1008, Some(32_767), Some(1), Some("after"))));
    // A delete without `before`: its row is named by the Connect JSON key alone.
    source.identity = Identity::Nothing;
    let some_id = *source.rows().keys().next().expect("rows");
    messages.extend(source.delete(some_id));
    messages.extend(source.delete(1007));
    let rest = format!(
        "{}{}",
        batch(100, 50),
        mapping(
            &s.topic,
            "accounts",
            "format = \"connect_json\"\nkey_format = \"connect_json\""
        )
    );
    let _sink = s.sink(&rest);
    produce(&s, &messages);
    wait_for_log_end(&s).await;

    assert_target(&s.db, "accounts", source.rows()).await;
    assert!(!source.rows().contains_key(&some_id) && !source.rows().contains_key(&1007));
    // The same values as Postgres prints them, independently of the model's arithmetic.
    let printed: Vec<(i64, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, balance::text, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
         FROM accounts WHERE id BETWEEN 1001 AND 1008 ORDER BY id",
    )
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    let text = |b: &str, t: &str| (Some(b.to_owned()), Some(t.to_owned()));
    let expected = [
        (1001, text("0.00", "1970-01-01 00:00:00.000000")),
        (1002, text("1.28", "1969-12-31 23:59:59.999999")),
        (1003, text("-1.28", "2000-02-29 00:00:00.123456")),
        (1004, text("-1.29", "2026-01-01 00:00:00.000001")),
        (1005, text("9999999999.99", "2099-12-31 23:59:59.999999")),
        (1006, text("-9999999999.99", "1900-01-01 00:00:00.000000")),
        (1008, text("327.67", "1970-01-01 00:00:00.000001")),
    ];
    let printed: Vec<_> = printed.into_iter().map(|(id, b, t)| (id, (b, t))).collect();
    assert_eq!(printed, expected);
    assert_eq!(dead_letters(&s.db).await, vec![]);
    s.db.drop_db().await;
}

/// Debezium writes the tombstone so that log compaction can drop every earlier record of a
/// deleted row, the delete event included: a consumer further behind than the log cleaner then
/// reads the tombstone without the delete before it. The tombstone is all that says the row is
/// gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_whose_delete_event_was_compacted_away_still_deletes_the_row() {
    let s = Scenario::new()
        .ddl(&accounts_ddl("accounts"))
        .topic("bank_public_accounts")
        .build()
        .await;
    let mut source = Source::new(Converter::Json, Identity::Default, 1);
    let mut rng = Rng::new(8);
    let rows: Vec<Account> = (1..=3).map(|id| source.random_row(&mut rng, id)).collect();
    let _sink = s.sink(&format!(
        "{}{}",
        batch(1000, 50),
        mapping(&s.topic, "accounts", "")
    ));
    produce(&s, &source.snapshot(&rows));
    wait_for_log_end(&s).await;

    // What the compacted log holds past the connector's position: row 2's tombstone, not its
    // delete event.
    let deleted = source.delete(2);
    assert!(deleted[0].value.is_some() && deleted[1].value.is_none());
    produce(&s, &deleted[1..]);
    produce(&s, &source.update(source.random_row(&mut rng, 3)));
    wait_for_log_end(&s).await;
    assert_target(&s.db, "accounts", source.rows()).await;
    s.db.drop_db().await;
}
