//! Outages of the real Postgres server under a running connector: readiness follows the
//! database, writes are retried, and nothing is lost or applied twice.

mod common;

use std::time::Duration;

use common::*;

/// `count(*)` of a table, or -1 while the database does not answer.
async fn count(db: &TestDb, table: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&db.pool)
        .await
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_flip_readiness_and_lose_or_double_nothing() {
    let server = PgServer::start();
    let db = TestDb::create_on(&server.url()).await;
    db.exec(PAYMENTS_DDL).await;
    let mut broker = Broker::start();
    let topic = unique("payments");
    broker.create_topic(&topic, 4);
    let group = unique("group");
    let n = 12_000u64;
    let mut total = 0;
    let records: Vec<Produced> = (1..=n)
        .map(|id| {
            let (value, cents) = payment(id);
            total += cents;
            ((id % 4) as i32, id.to_string(), Some(value))
        })
        .collect();
    let producer = stream(&broker.bootstrap, &topic, records, 700);
    let rest = format!(
        "[batch]\nmax_records = 300\nmax_wait_ms = 50\n{}",
        payments_mapping(&topic)
    );
    let mut sink = Sink::start(&broker, &db, &group, &rest);
    let ready = || sink.get("/readyz").map(|(s, _)| s);
    assert!(
        eventually(Duration::from_secs(30), || async {
            count(&db, "applied").await > 0 && ready() == Some(200)
        })
        .await
    );

    for round in 1..=2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.stop_immediate();
        let not_ready =
            eventually(Duration::from_secs(15), || async { ready() == Some(503) }).await;
        assert!(
            not_ready,
            "round {round}: /readyz stayed {:?} with Postgres down",
            ready()
        );
        let (status, body) = sink.get("/healthz").unwrap();
        assert_eq!(status, 200, "liveness must not depend on Postgres: {body}");
        assert!(sink
            .get("/readyz")
            .unwrap()
            .1
            .contains("\"postgres\":false"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.start_again();
        let back = eventually(Duration::from_secs(30), || async { ready() == Some(200) }).await;
        assert!(
            back,
            "round {round}: not ready again after Postgres came back"
        );
        eprintln!(
            "round {round}: {} applications so far",
            count(&db, "applied").await
        );
    }
    producer.join().unwrap();
    let done = eventually(Duration::from_secs(60), || async {
        count(&db, "payments").await == n as i64
    })
    .await;
    assert!(done, "{} of {n} rows", count(&db, "payments").await);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM applied").await,
        n as i64,
        "a record was applied twice"
    );
    assert_eq!(
        db.scalar_i64("SELECT (sum(amount) * 100)::bigint FROM applied")
            .await,
        total
    );
    assert!(
        sink.metric("kafka_pg_sink_retries_total", "")
            .unwrap_or(0.0)
            > 0.0,
        "no write was retried"
    );
    assert!(
        sink.exited().is_none(),
        "the connector exited during the outage"
    );
    drop(sink);
    db.drop_db().await;
}
