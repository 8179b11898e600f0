//! The batch writer against a real Postgres: one transaction per batch, compare-and-set fencing,
//! replays, and in-batch reduction by key.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_pg_sink::app::row_plan;
use kafka_pg_sink::config::Config;
use kafka_pg_sink::metrics::Metrics;
use kafka_pg_sink::record::{Record, TopicPartition};
use kafka_pg_sink::sink::{migrate, Batch, Outcome, Writer};
use sqlx::postgres::PgConnectOptions;
use testkit::prelude::*;
use tokio::sync::{mpsc, Mutex};

const GROUP: &str = "writer-tests";

async fn setup() -> (TestDb, Config) {
    let db = TestDb::create().await;
    db.exec("CREATE TABLE balances (id bigint PRIMARY KEY, amount numeric NOT NULL)")
        .await;
    let text = format!(
        "[kafka]\nbrokers = 'unused:9092'\ngroup_id = '{GROUP}'\n[postgres]\nurl = '{}'\n\
         [[mappings]]\ntopic = 't'\ntable = 'balances'\nkey = ['id']\ncolumns = {{ id = 'key', amount = 'value.amount' }}\n",
        db.url
    );
    let config = Config::from_toml(&text).unwrap();
    migrate(&db.pool, &config.schema).await.unwrap();
    (db, config)
}

async fn writer(config: &Config, metrics: &Metrics) -> Writer {
    let pool = sqlx::PgPool::connect(config.postgres.url.expose())
        .await
        .unwrap();
    let (decoder, sql) = row_plan(&pool, config, Default::default()).await.unwrap();
    Writer::new(
        PgConnectOptions::from_str(config.postgres.url.expose()).unwrap(),
        decoder,
        sql,
        &config.schema,
        GROUP.into(),
        metrics.clone(),
    )
}

fn batch(expected: Option<i64>, records: &[(i64, u64, Option<&str>)]) -> Batch {
    batch_of(0, expected, records)
}

fn batch_of(partition: i32, expected: Option<i64>, records: &[(i64, u64, Option<&str>)]) -> Batch {
    let records = records
        .iter()
        .map(|&(offset, id, amount)| {
            let value = amount.map(|a| format!(r#"{{"amount":{a}}}"#));
            Record::new(
                TopicPartition::new("t", partition),
                offset,
                None,
                Some(id.to_string().as_bytes()),
                value.as_deref().map(str::as_bytes),
                Vec::new(),
            )
        })
        .collect();
    Batch {
        tp: TopicPartition::new("t", partition),
        expected,
        rewind: false,
        records,
        advance_to: None,
        epoch: 1,
        cancel: Arc::new(AtomicBool::new(false)),
    }
}

async fn table(db: &TestDb) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT id, amount::text FROM balances ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn duplicate_keys_in_one_batch_keep_the_last_value() {
    let (db, config) = setup().await;
    let metrics = Metrics::new().unwrap();
    let mut w = writer(&config, &metrics).await;
    let b = batch(
        None,
        &[
            (0, 1, Some("10")),
            (1, 2, Some("20")),
            (2, 1, Some("11")),
            (3, 1, Some("12.50")),
            (4, 2, None),
        ],
    );
    assert!(matches!(
        w.write(&b).await,
        Outcome::Committed { next_offset: 5 }
    ));
    assert_eq!(table(&db).await, vec![(1, "12.50".to_string())]);
    assert_eq!(db.stored_offsets(GROUP, "t").await, vec![(0, 5)]);
    db.drop_db().await;
}

#[tokio::test]
async fn replaying_a_committed_batch_changes_nothing() {
    let (db, config) = setup().await;
    let metrics = Metrics::new().unwrap();
    let mut w = writer(&config, &metrics).await;
    let first = batch(None, &[(0, 1, Some("1")), (1, 2, Some("2"))]);
    assert!(matches!(
        w.write(&first).await,
        Outcome::Committed { next_offset: 2 }
    ));
    let second = batch(Some(2), &[(2, 1, Some("100"))]);
    assert!(matches!(
        w.write(&second).await,
        Outcome::Committed { next_offset: 3 }
    ));
    let before = table(&db).await;

    // The same batches again, as after a crash between commit and acknowledgement.
    for replay in [first, second] {
        match w.write(&replay).await {
            Outcome::Fenced { stored } => assert_eq!(stored, Some(3)),
            other => panic!("a replay must be fenced, got {other:?}"),
        }
    }
    assert_eq!(table(&db).await, before);
    assert_eq!(before, vec![(1, "100".to_string()), (2, "2".to_string())]);
    assert_eq!(db.stored_offsets(GROUP, "t").await, vec![(0, 3)]);
    assert_eq!(metrics.fenced_commits.with_label_values(&["t"]).get(), 2);
    db.drop_db().await;
}

#[tokio::test]
async fn a_writer_with_a_stale_offset_cannot_commit_or_move_the_offset_back() {
    let (db, config) = setup().await;
    let metrics = Metrics::new().unwrap();
    let mut current = writer(&config, &metrics).await;
    let zombie_metrics = Metrics::new().unwrap();
    let mut zombie = writer(&config, &zombie_metrics).await;
    assert!(matches!(
        current.write(&batch(None, &[(0, 1, Some("1"))])).await,
        Outcome::Committed { .. }
    ));
    assert!(matches!(
        current
            .write(&batch(Some(1), &[(1, 1, Some("2")), (2, 2, Some("5"))]))
            .await,
        Outcome::Committed { next_offset: 3 }
    ));

    // The zombie still believes the partition is at offset 1 and holds different rows.
    let stale = batch(Some(1), &[(1, 1, Some("999")), (2, 7, Some("999"))]);
    assert!(matches!(
        zombie.write(&stale).await,
        Outcome::Fenced { stored: Some(3) }
    ));
    // Its lag is measured from what is stored, not from what it believed.
    assert_eq!(
        zombie_metrics
            .committed_offset
            .with_label_values(&["t", "0"])
            .get(),
        3
    );
    // A zombie that never saw a stored offset cannot start the partition over either.
    let fresh = batch(None, &[(0, 8, Some("999"))]);
    assert!(matches!(
        zombie.write(&fresh).await,
        Outcome::Fenced { stored: Some(3) }
    ));
    // Nor can anyone move the offset backwards.
    let backwards = batch(Some(3), &[(1, 9, Some("999"))]);
    assert!(matches!(
        zombie.write(&backwards).await,
        Outcome::Fenced { stored: Some(3) }
    ));

    assert_eq!(
        table(&db).await,
        vec![(1, "2".to_string()), (2, "5".to_string())]
    );
    assert_eq!(db.stored_offsets(GROUP, "t").await, vec![(0, 3)]);
    db.drop_db().await;
}

#[tokio::test]
async fn concurrent_writers_of_one_partition_commit_exactly_one_batch() {
    let (db, config) = setup().await;
    db.exec("CREATE TABLE log (id bigint); CREATE FUNCTION log_it() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO log VALUES (NEW.id); RETURN NEW; END $$; CREATE TRIGGER t AFTER INSERT OR UPDATE ON balances FOR EACH ROW EXECUTE FUNCTION log_it();").await;
    let metrics = Metrics::new().unwrap();
    let mut committed = 0;
    for round in 0..10i64 {
        let expected = if round == 0 { None } else { Some(round * 2) };
        let rows = [
            (round * 2, round as u64, Some("1")),
            (round * 2 + 1, 1000 + round as u64, Some("1")),
        ];
        let mut a = writer(&config, &metrics).await;
        let mut b = writer(&config, &metrics).await;
        let (ba, bb) = (batch(expected, &rows), batch(expected, &rows));
        let (ra, rb) = tokio::join!(a.write(&ba), b.write(&bb));
        let wins = [ra, rb]
            .iter()
            .filter(|o| matches!(o, Outcome::Committed { .. }))
            .count();
        assert_eq!(wins, 1, "round {round}: exactly one writer must commit");
        committed += 1;
    }
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM log").await,
        committed * 2
    );
    assert_eq!(db.stored_offsets(GROUP, "t").await, vec![(0, 20)]);
    db.drop_db().await;
}

/// Waits until the writer has taken every queued batch (the channel is back to its capacity).
async fn until_taken(tx: &mpsc::Sender<Batch>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tx.capacity() < tx.max_capacity() {
        assert!(Instant::now() < deadline, "the writer never took the batch");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A revoke that arrives while the writer holds the partition's batch decoded, waiting behind the
/// batch it is writing, must abort that batch: nothing of it may reach the table or the offsets.
#[tokio::test]
async fn a_prefetched_batch_of_a_revoked_partition_is_aborted_unwritten() {
    let (db, config) = setup().await;
    let metrics = Metrics::new().unwrap();
    let (tx, rx) = mpsc::channel(4);
    let (results_tx, mut results) = mpsc::unbounded_channel();
    // The first batch waits for this lock inside its transaction, so the writer is busy with it
    // while it takes the second batch ahead.
    let mut lock = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE balances IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let run = tokio::spawn(
        writer(&config, &metrics)
            .await
            .run(Arc::new(Mutex::new(rx)), results_tx),
    );
    tx.send(batch_of(0, None, &[(0, 1, Some("10")), (1, 2, Some("20"))]))
        .await
        .unwrap();
    until_taken(&tx).await;
    let revoked = batch_of(1, None, &[(0, 3, Some("30")), (1, 4, Some("40"))]);
    let cancel = revoked.cancel.clone();
    tx.send(revoked).await.unwrap();
    until_taken(&tx).await;
    // Taken while the first batch is still blocked: it can only be the writer's prefetch.
    cancel.store(true, Ordering::SeqCst);
    lock.rollback().await.unwrap();

    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let r = tokio::time::timeout(Duration::from_secs(30), results.recv())
            .await
            .expect("a result within 30 s")
            .expect("the writer is running");
        outcomes.push((r.tp.partition, r.outcome));
    }
    assert!(
        matches!(outcomes[0], (0, Outcome::Committed { next_offset: 2 })),
        "{outcomes:?}"
    );
    assert!(matches!(outcomes[1], (1, Outcome::Aborted)), "{outcomes:?}");
    assert_eq!(
        table(&db).await,
        vec![(1, "10".to_string()), (2, "20".to_string())]
    );
    assert_eq!(db.stored_offsets(GROUP, "t").await, vec![(0, 2)]);
    drop(tx);
    run.await.unwrap();
    db.drop_db().await;
}

/// Issue 17 (transactional upstreams): the mock broker writes no transaction markers, so the
/// pipeline's move past them is tested at this seam: an offsets-only batch moves the stored offset
/// from exactly `expected` to librdkafka's position, writes no row, and is fenced like any batch.
#[tokio::test]
async fn an_offsets_only_batch_moves_the_stored_offset_past_markers_and_is_fenced() {
    let (db, config) = setup().await;
    let metrics = Metrics::new().unwrap();
    let mut w = writer(&config, &metrics).await;
    assert!(matches!(
        w.write(&batch(None, &[(0, 1, Some("1")), (1, 2, Some("2"))]))
            .await,
        Outcome::Committed { next_offset: 2 }
    ));
    let markers = |expected, to| Batch {
        advance_to: Some(to),
        ..batch(Some(expected), &[])
    };
    // Offsets 2 (commit marker) and 3..5 (an aborted transaction and its marker).
    assert!(matches!(
        w.write(&markers(2, 6)).await,
        Outcome::Committed { next_offset: 6 }
    ));
    assert_eq!(db.stored_offsets(GROUP, "t").await, vec![(0, 6)]);
    assert_eq!(
        metrics
            .committed_offset
            .with_label_values(&["t", "0"])
            .get(),
        6
    );
    // A stale expectation writes nothing, and the offset never moves back.
    assert!(matches!(
        w.write(&markers(2, 9)).await,
        Outcome::Fenced { stored: Some(6) }
    ));
    assert!(matches!(
        w.write(&markers(6, 4)).await,
        Outcome::Fenced { stored: Some(6) }
    ));
    assert_eq!(db.stored_offsets(GROUP, "t").await, vec![(0, 6)]);
    assert_eq!(
        table(&db).await,
        vec![(1, "1".to_string()), (2, "2".to_string())]
    );
    // Records after the markers continue from there.
    assert!(matches!(
        w.write(&batch(Some(6), &[(6, 1, Some("7"))])).await,
        Outcome::Committed { next_offset: 7 }
    ));
    assert_eq!(
        table(&db).await,
        vec![(1, "7".to_string()), (2, "2".to_string())]
    );
    db.drop_db().await;
}
