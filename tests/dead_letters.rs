//! Dead letters against a real Postgres: produced by the real batch writer, listed, and replayed
//! exactly once after their cause is fixed.

mod common;

use std::collections::HashSet;

use common::*;
use kafka_pg_sink::config::Config;
use kafka_pg_sink::error::{classify, Error, ErrorClass};
use kafka_pg_sink::metrics::Metrics;
use kafka_pg_sink::ops::replay::{self, DeadLetter, Filter, ReplayReport};
use kafka_pg_sink::record::{Record, TopicPartition};
use kafka_pg_sink::sink::{migrate, Outcome};
use testkit::prelude::*;

const GROUP: &str = "dead-letter-tests";

/// A target whose CHECK constraint and integer column can both reject records, with an audit
/// trigger that records every application (a record applied twice shows up here).
const ITEMS_DDL: &str = r#"
CREATE TABLE items (
    id bigint PRIMARY KEY,
    n integer,
    label text NOT NULL CONSTRAINT label_short CHECK (length(label) <= 5)
);
CREATE TABLE applied (id bigint NOT NULL);
CREATE FUNCTION audit_item() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO applied VALUES (NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON items FOR EACH ROW EXECUTE FUNCTION audit_item();
"#;

/// `extra` is appended to the `items` mapping (e.g. `types = { n = "integer" }`).
fn items_config(db: &TestDb, extra: &str) -> Config {
    config_with(
        db,
        &format!(
            "[[mappings]]\ntopic = 'items'\ntable = 'items'\nkey = ['id']\n\
             columns = {{ id = 'value.id', n = 'value.n', label = 'value.label' }}\n{extra}\n"
        ),
    )
}

fn config_with(db: &TestDb, mappings: &str) -> Config {
    let text = format!(
        "[kafka]\nbrokers = 'unused:9092'\ngroup_id = '{GROUP}'\n[postgres]\nurl = '{}'\n{mappings}",
        db.url
    );
    Config::from_toml(&text).unwrap()
}

async fn setup() -> (TestDb, Config) {
    let db = TestDb::create().await;
    db.exec(ITEMS_DDL).await;
    let config = items_config(&db, "types = { n = 'integer' }");
    migrate(&db.pool, &config.schema).await.unwrap();
    (db, config)
}

/// Writes `records` (one partition, in offset order) with the real writer.
async fn write(config: &Config, expected: Option<i64>, records: Vec<Record>) {
    let outcome = write_outcome(config, expected, records).await;
    assert!(matches!(outcome, Outcome::Committed { .. }), "{outcome:?}");
}

async fn write_outcome(config: &Config, expected: Option<i64>, records: Vec<Record>) -> Outcome {
    let (mut writer, _) = sink_writer(config, GROUP, Metrics::new().unwrap()).await;
    writer.write(&batch_of_records(records, expected)).await
}

fn item(offset: i64, value: &str) -> Record {
    Record::new(
        TopicPartition::new("items", 0),
        offset,
        None,
        None,
        Some(value.as_bytes()),
        Vec::new(),
    )
}

/// Two good records around a convert failure (offset 1) and a CHECK violation (offset 2).
fn mixed_batch() -> Vec<Record> {
    vec![
        item(0, r#"{"id":1,"n":1,"label":"ok"}"#),
        item(1, r#"{"id":2,"n":"many","label":"ok"}"#),
        item(2, r#"{"id":3,"n":3,"label":"far too long"}"#),
        item(3, r#"{"id":4,"n":4,"label":"fine"}"#),
    ]
}

async fn write_mixed_batch(config: &Config) {
    write(config, None, mixed_batch()).await;
}

fn all() -> Filter {
    Filter {
        limit: 1000,
        ..Filter::default()
    }
}

fn only(ids: &[i64]) -> Filter {
    Filter {
        ids: ids.to_vec(),
        ..all()
    }
}

async fn pending(db: &TestDb, config: &Config) -> Vec<DeadLetter> {
    replay::list(&db.pool, config, &all()).await.unwrap()
}

/// (convert-stage id, database-stage id) of [`write_mixed_batch`]'s dead letters.
async fn mixed_ids(db: &TestDb, config: &Config) -> (i64, i64) {
    let rows = pending(db, config).await;
    let id = |offset| rows.iter().find(|d| d.offset == offset).unwrap().id;
    (id(1), id(2))
}

async fn item_ids(db: &TestDb) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM items ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

async fn applications(db: &TestDb) -> i64 {
    db.scalar_i64("SELECT count(*) FROM applied").await
}

async fn run_replay(db: &TestDb, config: &Config, filter: &Filter, dry_run: bool) -> ReplayReport {
    replay::replay(&db.pool, config, filter, dry_run)
        .await
        .unwrap()
}

#[tokio::test]
async fn bad_records_are_listed_with_their_stage_and_error() {
    let (db, config) = setup().await;
    write_mixed_batch(&config).await;
    assert_eq!(item_ids(&db).await, vec![1, 4]);

    let rows = pending(&db, &config).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[0].id < rows[1].id, "oldest first");
    let (convert, database) = (&rows[0], &rows[1]);
    assert_eq!(
        (convert.topic.as_str(), convert.partition, convert.offset),
        ("items", 0, 1)
    );
    assert_eq!(convert.target_table, "public.items");
    assert_eq!(convert.stage, "convert");
    assert!(convert.error.contains("column `n`"), "{}", convert.error);
    assert_eq!(
        convert.value.as_deref(),
        Some(&br#"{"id":2,"n":"many","label":"ok"}"#[..])
    );
    assert_eq!(convert.key, None);
    assert_eq!(database.offset, 2);
    assert_eq!(database.stage, "database");
    assert!(
        database.error.contains("23514") && database.error.contains("label_short"),
        "{}",
        database.error
    );
    assert!(rows
        .iter()
        .all(|d| d.replayed_at.is_none() && !d.created_at.is_empty()));

    // Filters.
    let by_topic = Filter {
        topic: Some("other".into()),
        ..all()
    };
    assert!(replay::list(&db.pool, &config, &by_topic)
        .await
        .unwrap()
        .is_empty());
    let by_table = Filter {
        table: Some("public.items".into()),
        ..all()
    };
    assert_eq!(
        replay::list(&db.pool, &config, &by_table)
            .await
            .unwrap()
            .len(),
        2
    );
    let listed = replay::list(&db.pool, &config, &only(&[database.id]))
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![database.id]
    );
    let first = Filter { limit: 1, ..all() };
    let listed = replay::list(&db.pool, &config, &first).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![convert.id]
    );
    let mut other_group = config.clone();
    other_group.kafka.group_id = "someone-else".into();
    assert!(pending(&db, &other_group).await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn replay_applies_a_fixed_dead_letter_once_and_marks_it() {
    let (db, config) = setup().await;
    write_mixed_batch(&config).await;
    let (convert, database) = mixed_ids(&db, &config).await;
    let offsets = db.stored_offsets(GROUP, "items").await;
    let before = applications(&db).await;

    db.exec("ALTER TABLE items DROP CONSTRAINT label_short")
        .await;
    let report = run_replay(&db, &config, &all(), false).await;
    assert_eq!(report.replayed, vec![database]);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0, convert);
    assert_eq!(item_ids(&db).await, vec![1, 3, 4]);
    assert_eq!(applications(&db).await, before + 1);
    let replayed_at = db
        .scalar_text(&format!(
            "SELECT replayed_at::text FROM kafka_pg_sink.dead_letters WHERE id = {database}"
        ))
        .await;
    assert!(!replayed_at.is_empty());
    let listed = pending(&db, &config).await;
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![convert]
    );
    let with_replayed = Filter {
        include_replayed: true,
        ..all()
    };
    let listed = replay::list(&db.pool, &config, &with_replayed)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .any(|d| d.id == database && d.replayed_at.is_some()));

    // Again: the replayed one is never applied a second time, even when asked for by id.
    let report = run_replay(&db, &config, &only(&[database]), false).await;
    assert!(
        report.replayed.is_empty() && report.failed.is_empty(),
        "{report:?}"
    );
    assert_eq!(applications(&db).await, before + 1);

    // Fix the other cause (the column accepts any text, the mapping no longer converts).
    db.exec("ALTER TABLE items ALTER COLUMN n TYPE text").await;
    let untyped = items_config(&db, "");
    let report = run_replay(&db, &untyped, &all(), false).await;
    assert_eq!(report.replayed, vec![convert]);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(item_ids(&db).await, vec![1, 2, 3, 4]);
    assert_eq!(
        db.scalar_text("SELECT n FROM items WHERE id = 2").await,
        "many"
    );
    assert_eq!(applications(&db).await, before + 2);
    assert!(pending(&db, &config).await.is_empty());
    assert_eq!(db.stored_offsets(GROUP, "items").await, offsets);
    db.drop_db().await;
}

#[tokio::test]
async fn a_still_failing_dead_letter_stays_pending_with_its_reason() {
    let (db, config) = setup().await;
    write_mixed_batch(&config).await;
    let (convert, database) = mixed_ids(&db, &config).await;
    let before = applications(&db).await;

    let report = run_replay(&db, &config, &all(), false).await;
    assert!(report.replayed.is_empty(), "{report:?}");
    let reasons: Vec<_> = report.failed.iter().map(|(id, _)| *id).collect();
    assert_eq!(reasons, vec![convert, database]);
    let (_, why) = &report.failed[0];
    assert!(
        why.contains("column `n`") && why.contains("convert"),
        "{why}"
    );
    let (_, why) = &report.failed[1];
    assert!(
        why.contains("23514") && why.contains("label_short"),
        "{why}"
    );
    assert_eq!(pending(&db, &config).await.len(), 2);
    assert_eq!(item_ids(&db).await, vec![1, 4]);
    assert_eq!(applications(&db).await, before);

    // A configuration that no longer maps the table says so and leaves them pending too.
    db.exec("CREATE TABLE elsewhere (id bigint PRIMARY KEY)")
        .await;
    let unmapped = config_with(
        &db,
        "[[mappings]]\ntopic = 'items'\ntable = 'elsewhere'\nkey = ['id']\ncolumns = { id = 'value.id' }\n",
    );
    let report = run_replay(&db, &unmapped, &only(&[database]), false).await;
    assert_eq!(report.failed.len(), 1);
    assert!(
        report.failed[0]
            .1
            .contains("no mapping for topic items → table public.items"),
        "{:?}",
        report.failed
    );
    assert_eq!(pending(&db, &config).await.len(), 2);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM elsewhere").await, 0);
    db.drop_db().await;
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let (db, config) = setup().await;
    write_mixed_batch(&config).await;
    let (convert, database) = mixed_ids(&db, &config).await;
    let before = applications(&db).await;

    // Before the fix, a dry run reports the failure it would hit.
    let report = run_replay(&db, &config, &only(&[database]), true).await;
    assert!(report.replayed.is_empty());
    assert_eq!(report.failed.len(), 1);

    db.exec("ALTER TABLE items DROP CONSTRAINT label_short")
        .await;
    for _ in 0..2 {
        let report = run_replay(&db, &config, &all(), true).await;
        assert_eq!(report.replayed, vec![database]);
        assert_eq!(
            report.failed.iter().map(|f| f.0).collect::<Vec<_>>(),
            vec![convert]
        );
    }
    assert_eq!(item_ids(&db).await, vec![1, 4]);
    assert_eq!(applications(&db).await, before);
    assert_eq!(pending(&db, &config).await.len(), 2);

    // The real replay still applies it, once.
    let report = run_replay(&db, &config, &all(), false).await;
    assert_eq!(report.replayed, vec![database]);
    assert_eq!(applications(&db).await, before + 1);
    db.drop_db().await;
}

#[tokio::test]
async fn concurrent_replays_apply_each_dead_letter_exactly_once() {
    let (db, config) = setup().await;
    let records = (0..40)
        .map(|i| {
            // Every other record is rejected by the CHECK constraint.
            let label = if i % 2 == 0 { "bad label" } else { "ok" };
            item(i, &format!(r#"{{"id":{i},"n":{i},"label":"{label}"}}"#))
        })
        .collect();
    write(&config, None, records).await;
    let ids: Vec<i64> = pending(&db, &config).await.iter().map(|d| d.id).collect();
    assert_eq!(ids.len(), 20);
    db.exec("ALTER TABLE items DROP CONSTRAINT label_short")
        .await;

    let filter = only(&ids);
    let (a, b) = tokio::join!(
        replay::replay(&db.pool, &config, &filter, false),
        replay::replay(&db.pool, &config, &filter, false)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.failed.is_empty() && b.failed.is_empty(), "{a:?} {b:?}");
    let mut replayed: Vec<i64> = a.replayed.iter().chain(&b.replayed).copied().collect();
    replayed.sort_unstable();
    assert_eq!(
        replayed, ids,
        "every dead letter replayed by exactly one of them"
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM items").await, 40);
    assert_eq!(
        db.scalar_i64("SELECT max(c) FROM (SELECT count(*) AS c FROM applied GROUP BY id) a")
            .await,
        1,
        "a record was applied twice"
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM applied").await, 40);
    assert!(pending(&db, &config).await.is_empty());
    db.drop_db().await;
}

/// Every dead letter of the group, replayed or not, oldest first.
async fn everything(db: &TestDb, config: &Config) -> Vec<DeadLetter> {
    let filter = Filter {
        include_replayed: true,
        ..all()
    };
    replay::list(&db.pool, config, &filter).await.unwrap()
}

async fn replayed_at(db: &TestDb, id: i64) -> String {
    db.scalar_text(&format!(
        "SELECT replayed_at::text FROM kafka_pg_sink.dead_letters WHERE id = {id}"
    ))
    .await
}

/// Replays the CHECK violation of [`mixed_batch`] (offset 2), then brings the constraint back
/// for new writes only (the replayed row breaks it), so reading that record again rejects it
/// again. Returns the dead letter's id.
async fn replay_the_check_violation(db: &TestDb, config: &Config) -> i64 {
    let (_, database) = mixed_ids(db, config).await;
    db.exec("ALTER TABLE items DROP CONSTRAINT label_short")
        .await;
    let report = run_replay(db, config, &only(&[database]), false).await;
    assert_eq!(report.replayed, vec![database], "{report:?}");
    db.exec("ALTER TABLE items ADD CONSTRAINT label_short CHECK (length(label) <= 5) NOT VALID")
        .await;
    database
}

#[tokio::test]
async fn dead_lettering_a_record_again_keeps_its_dead_letter_and_replay_state() {
    let (db, config) = setup().await;
    write_mixed_batch(&config).await;
    let (convert, database) = mixed_ids(&db, &config).await;
    replay_the_check_violation(&db, &config).await;
    let replayed = replayed_at(&db, database).await;
    assert!(!replayed.is_empty());
    let stored = |rows: Vec<DeadLetter>| {
        rows.into_iter()
            .map(|d| {
                (
                    d.id,
                    d.offset,
                    d.stage,
                    d.error,
                    d.value,
                    d.created_at,
                    d.replayed_at,
                )
            })
            .collect::<Vec<_>>()
    };
    let before = stored(everything(&db, &config).await);

    // `offsets set` back to the start: the batch is read, and its bad records rejected, again.
    db.exec("UPDATE kafka_pg_sink.offsets SET next_offset = 0")
        .await;
    write(&config, Some(0), mixed_batch()).await;
    // The offsets row deleted: the same once more from the first commit on.
    db.exec("DELETE FROM kafka_pg_sink.offsets").await;
    write(&config, None, mixed_batch()).await;

    assert_eq!(stored(everything(&db, &config).await), before);
    assert_eq!(replayed_at(&db, database).await, replayed);
    let pending_ids: Vec<i64> = pending(&db, &config).await.iter().map(|d| d.id).collect();
    assert_eq!(pending_ids, vec![convert]);
    assert_eq!(db.stored_offsets(GROUP, "items").await, vec![(0, 4)]);
    assert_eq!(item_ids(&db).await, vec![1, 3, 4]);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM applied WHERE id = 3")
            .await,
        1,
        "the replayed record is rejected again when read again, not applied"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_different_record_at_a_dead_lettered_offset_is_pending_again() {
    let (db, config) = setup().await;
    write_mixed_batch(&config).await;
    let (convert, database) = mixed_ids(&db, &config).await;
    replay_the_check_violation(&db, &config).await;

    // The topic recreated: other records at the same offsets, rejected for the same reasons.
    db.exec("DELETE FROM kafka_pg_sink.offsets").await;
    let lots = r#"{"id":2,"n":"lots","label":"ok"}"#;
    let long = r#"{"id":5,"n":5,"label":"much too long"}"#;
    write(
        &config,
        None,
        vec![
            item(0, r#"{"id":1,"n":1,"label":"ok"}"#),
            item(1, lots),
            item(2, long),
        ],
    )
    .await;

    let rows = everything(&db, &config).await;
    let seen: Vec<_> = rows
        .iter()
        .map(|d| (d.id, d.offset, d.value.as_deref(), d.replayed_at.as_deref()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (convert, 1, Some(lots.as_bytes()), None),
            (database, 2, Some(long.as_bytes()), None)
        ]
    );
    assert!(rows[0].error.contains("\"lots\""), "{}", rows[0].error);
    assert_eq!(rows[1].stage, "database");

    // The new record is replayed like any other.
    db.exec("ALTER TABLE items DROP CONSTRAINT label_short")
        .await;
    let report = run_replay(&db, &config, &only(&[database]), false).await;
    assert_eq!(report.replayed, vec![database], "{report:?}");
    assert_eq!(item_ids(&db).await, vec![1, 3, 4, 5]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_stops_as_such_not_as_a_bad_record() {
    let (db, config) = setup().await;
    db.exec(
        "ALTER TABLE kafka_pg_sink.dead_letters ADD CONSTRAINT refuse CHECK (stage <> 'convert')",
    )
    .await;
    let outcome = write_outcome(&config, None, mixed_batch()).await;
    let Outcome::Failed(error) = outcome else {
        panic!("expected a failure, got {outcome:?}");
    };
    assert!(matches!(error, Error::Fatal(_)), "{error:?}");
    assert_eq!(classify(&error), ErrorClass::Fatal);
    let text = error.to_string();
    assert!(
        text.starts_with("cannot write the dead letter of items/0@1 for table public.items: ")
            && text.contains("refuse"),
        "{text}"
    );
    assert!(item_ids(&db).await.is_empty());
    assert!(db.stored_offsets(GROUP, "items").await.is_empty());
    assert!(everything(&db, &config).await.is_empty());
    db.drop_db().await;
}

#[tokio::test]
async fn replay_rebuilds_key_headers_and_timestamp() {
    let db = TestDb::create().await;
    db.exec(
        "CREATE TABLE events (k text PRIMARY KEY, source text, trace text, ts timestamptz, \
         CONSTRAINT closed CHECK (false))",
    )
    .await;
    let config = config_with(
        &db,
        "[[mappings]]\ntopic = 'events'\ntable = 'events'\nkey = ['k']\n\
         columns = { k = 'key', source = 'header.source', trace = 'headers', ts = 'kafka.timestamp' }\n",
    );
    migrate(&db.pool, &config.schema).await.unwrap();
    let record = Record::new(
        TopicPartition::new("events", 3),
        41,
        Some(1_700_000_000_123),
        Some(b"user-7"),
        Some(b"{}"),
        vec![
            ("source".into(), Some(b"old".to_vec())),
            ("empty".into(), None),
            ("source".into(), Some(b"billing".to_vec())),
        ],
    );
    write(&config, None, vec![record]).await;
    let rows = pending(&db, &config).await;
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].partition, rows[0].offset), (3, 41));
    assert_eq!(rows[0].key.as_deref(), Some(&b"user-7"[..]));

    db.exec("ALTER TABLE events DROP CONSTRAINT closed").await;
    let report = run_replay(&db, &config, &all(), false).await;
    assert_eq!(report.replayed, vec![rows[0].id], "{report:?}");
    let row: (String, String, String, i64) = sqlx::query_as(
        "SELECT k, source, trace, (extract(epoch FROM ts) * 1000)::bigint FROM events",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.0, "user-7");
    assert_eq!(
        row.1, "billing",
        "the last header of a name wins, as when consumed"
    );
    let trace: serde_json::Value = serde_json::from_str(&row.2).unwrap();
    assert_eq!(
        trace,
        serde_json::json!({"source": "billing", "empty": null})
    );
    assert_eq!(row.3, 1_700_000_000_123);
    db.drop_db().await;
}

#[tokio::test]
async fn replays_of_different_mappings_use_their_own_stage_tables() {
    let (db, _) = setup().await;
    db.exec(
        "CREATE TABLE totals (id bigint PRIMARY KEY, amount numeric NOT NULL CONSTRAINT positive CHECK (amount > 0))",
    )
    .await;
    let config = config_with(
        &db,
        "[[mappings]]\ntopic = 'items'\ntable = 'items'\nkey = ['id']\n\
         columns = { id = 'value.id', n = 'value.n', label = 'value.label' }\n\
         [[mappings]]\ntopic = 'items'\ntable = 'totals'\nkey = ['id']\n\
         columns = { id = 'value.id', amount = 'value.n' }\n",
    );
    // Each record fails in one mapping only, so the replay switches between mappings.
    write(
        &config,
        None,
        vec![
            item(0, r#"{"id":1,"n":-1,"label":"ok"}"#),
            item(1, r#"{"id":2,"n":2,"label":"too long"}"#),
            item(2, r#"{"id":3,"n":-3,"label":"ok"}"#),
            item(3, r#"{"id":4,"n":4,"label":"too long"}"#),
        ],
    )
    .await;
    let rows = pending(&db, &config).await;
    let tables: Vec<_> = rows.iter().map(|d| d.target_table.as_str()).collect();
    assert_eq!(
        tables.iter().copied().collect::<HashSet<_>>(),
        HashSet::from(["public.items", "public.totals"])
    );
    assert_eq!(rows.len(), 4);

    db.exec("ALTER TABLE items DROP CONSTRAINT label_short; ALTER TABLE totals DROP CONSTRAINT positive")
        .await;
    let report = run_replay(&db, &config, &all(), false).await;
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.replayed.len(), 4);
    assert_eq!(item_ids(&db).await, vec![1, 2, 3, 4]);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM totals").await, 4);
    assert_eq!(
        db.scalar_i64("SELECT sum(amount)::bigint FROM totals")
            .await,
        2
    );
    db.drop_db().await;
}

#[tokio::test]
async fn replay_rebuilds_header_bytes_that_are_not_text() {
    let db = TestDb::create().await;
    db.exec(
        "CREATE TABLE events (k text PRIMARY KEY, nul bytea, latin1 bytea, empty bytea, \
         absent bytea, names text, CONSTRAINT closed CHECK (false))",
    )
    .await;
    let config = config_with(
        &db,
        "[[mappings]]\ntopic = 'events'\ntable = 'events'\nkey = ['k']\n\
         columns = { k = 'key', nul = 'header.nul', latin1 = 'header.latin1', \
         empty = 'header.empty', absent = 'header.absent', names = 'headers' }\n\
         types = { nul = 'bytea', latin1 = 'bytea', empty = 'bytea', absent = 'bytea' }\n",
    );
    migrate(&db.pool, &config.schema).await.unwrap();
    let record = Record::new(
        TopicPartition::new("events", 0),
        7,
        None,
        Some(b"k1"),
        Some(b"{}"),
        vec![
            ("nul".into(), Some(b"a\0b".to_vec())),
            ("latin1".into(), Some(b"caf\xe9".to_vec())),
            ("empty".into(), Some(Vec::new())),
            ("absent".into(), None),
            ("nul\0name".into(), Some(b"x".to_vec())),
        ],
    );
    write(&config, None, vec![record]).await;
    let stored: serde_json::Value = serde_json::from_str(
        &db.scalar_text("SELECT headers::text FROM kafka_pg_sink.dead_letters")
            .await,
    )
    .unwrap();
    assert_eq!(
        stored,
        serde_json::json!([
            ["nul", {"base64": "YQBi"}],
            ["latin1", {"base64": "Y2Fm6Q=="}],
            ["empty", ""],
            ["absent", null],
            [{"base64": "bnVsAG5hbWU="}, "x"]
        ])
    );

    db.exec("ALTER TABLE events DROP CONSTRAINT closed").await;
    let report = run_replay(&db, &config, &all(), false).await;
    assert_eq!(report.replayed.len(), 1, "{report:?}");
    type Bytes = Option<Vec<u8>>;
    let row: (Bytes, Bytes, Bytes, Bytes, String) =
        sqlx::query_as("SELECT nul, latin1, empty, absent, names FROM events")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(row.0.as_deref(), Some(&b"a\0b"[..]));
    assert_eq!(row.1.as_deref(), Some(&b"caf\xe9"[..]));
    assert_eq!(row.2.as_deref(), Some(&b""[..]));
    assert_eq!(row.3, None);
    let names: serde_json::Value = serde_json::from_str(&row.4).unwrap();
    assert_eq!(names["nul\0name"], "x", "{names}");
    db.drop_db().await;
}
