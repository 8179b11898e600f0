//! Outages of the real Postgres server under a running connector: readiness follows the
//! database, writes are retried, and nothing is lost or applied twice.

use std::time::Duration;

use testkit::prelude::*;

/// `count(*)` of a table, or -1 while the database does not answer.
async fn count(db: &TestDb, table: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&db.pool)
        .await
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_flip_readiness_and_lose_or_double_nothing() {
    let server = PgServer::for_test();
    let db = TestDb::create_on(&server.url("postgres")).await;
    db.exec(PAYMENTS_DDL).await;
    let mut broker = broker();
    let topic = unique("payments");
    broker.create_topic(&topic, 4).expect("create the topic");
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
        server.stop_immediate().expect("pg_ctl stop -m immediate");
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
        server.start_again().expect("pg_ctl start");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_offset_outside_the_log_fails_by_default_and_moves_only_by_policy() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl("CREATE TABLE t (n bigint NOT NULL)")
        .topic("recreated")
        .partitions(1)
        .build()
        .await;
    let produce = |from: u64, to: u64| {
        let records: Vec<Produced> = (from..to)
            .map(|n| (0, n.to_string(), Some(format!(r#"{{"n":{n}}}"#))))
            .collect();
        stream(&broker.bootstrap, &topic, records, 10_000)
            .join()
            .unwrap();
    };
    produce(0, 100);
    let rest = format!(
        "[batch]\nmax_wait_ms = 20\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"t\"\nmode = \"insert\"\ncolumns = {{ n = \"value.n\" }}\n"
    );
    let config_with = |policy: Option<&str>| {
        let (config, http) = sink_config(&broker, &db, &group, &rest);
        if let Some(policy) = policy {
            let text = std::fs::read_to_string(&config.0).unwrap();
            let text = text.replacen(
                "[kafka]\n",
                &format!("[kafka]\noffset_out_of_range = \"{policy}\"\n"),
                1,
            );
            std::fs::write(&config.0, text).unwrap();
        }
        (config, http)
    };
    // As if the topic had been deleted and recreated: the stored offset is past the log end.
    let (config, _) = config_with(None);
    let migrate = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
        .args(["--config", config.0.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let set_stored = |offset: i64| {
        format!(
        "INSERT INTO kafka_pg_sink.offsets (group_id, topic, partition, next_offset) VALUES ('{group}', '{topic}', 0, {offset}) \
         ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"
    )
    };
    db.exec(&set_stored(500)).await;

    let (code, stderr) = run_until_exit(&config, Duration::from_secs(40));
    assert_eq!(code, Some(1), "the connector must stop: {stderr}");
    assert!(
        stderr.contains("stored offset 500 is outside the log [0, 100]"),
        "{stderr}"
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM t").await, 0);
    assert_eq!(
        db.stored_offsets(&group, &topic).await,
        vec![(0, 500)],
        "nothing may move without a policy"
    );

    // earliest: read the recreated topic from its start, and the stored offset moves back.
    let (config, http) = config_with(Some("earliest"));
    let sink = Sink::start_with(config, http);
    assert!(
        eventually(Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 100)]
        })
        .await
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM t").await, 100);
    assert_eq!(
        sink.metric("kafka_pg_sink_offset_resets_total", "earliest"),
        Some(1.0)
    );
    assert!(sink
        .signal_and_wait("TERM", Duration::from_secs(30))
        .success());

    // latest: skip to the log end (loudly), then apply what comes after.
    db.exec(&set_stored(500)).await;
    let (config, http) = config_with(Some("latest"));
    let sink = Sink::start_with(config, http);
    assert!(
        eventually(Duration::from_secs(40), || async {
            sink.metric("kafka_pg_sink_offset_resets_total", "latest") == Some(1.0)
        })
        .await
    );
    produce(100, 110);
    assert!(
        eventually(Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 110)]
        })
        .await
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM t").await, 110);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM t WHERE n >= 100").await,
        10
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outages_mid_stream_lose_or_double_nothing() {
    if unless_mock("fault injection: the broker goes down and comes back") {
        return;
    }
    let Built {
        mut broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(PAYMENTS_DDL)
        .topic("payments")
        .partitions(4)
        .build()
        .await;
    let n = 6_000u64;
    let mut total = 0;
    let records: Vec<Produced> = (1..=n)
        .map(|id| {
            let (value, cents) = payment(id);
            total += cents;
            ((id % 4) as i32, id.to_string(), Some(value))
        })
        .collect();
    // The producer retries through the outages too (idempotent, so no duplicates in the log).
    let producer = stream(&broker.bootstrap, &topic, records, 500);
    let rest = format!(
        "[batch]\nmax_records = 100\nmax_wait_ms = 20\n{}",
        payments_mapping(&topic)
    );
    let mut sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(30), || async {
            count(&db, "applied").await > 0
        })
        .await
    );
    for round in 1..=2 {
        broker.command("broker-down").expect("mock broker command");
        tokio::time::sleep(Duration::from_secs(3)).await;
        broker.command("broker-up").expect("mock broker command");
        let applied = count(&db, "applied").await;
        eprintln!("broker outage {round} over; {applied} of {n} applied");
        assert!(
            applied < n as i64,
            "outage {round} did not happen mid-stream"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    producer.join().unwrap();
    // The mock broker may keep a producer retry twice after an outage; each copy in the log is a
    // record of its own and must be applied exactly once, so the truth is read from the log.
    let log = broker.read_all(&topic, 4).expect("read the log back");
    let mut in_log: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for record in &log {
        *in_log
            .entry(record.key_text().unwrap().parse().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        in_log.len() as u64,
        n,
        "records missing from the log itself"
    );
    let done = eventually(Duration::from_secs(90), || async {
        count(&db, "applied").await == log.len() as i64
    })
    .await;
    assert!(
        done,
        "{} applications for {} records in the log",
        count(&db, "applied").await,
        log.len()
    );
    let applied: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, count(*) FROM applied GROUP BY id ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let applied: std::collections::BTreeMap<i64, i64> = applied.into_iter().collect();
    assert_eq!(
        applied, in_log,
        "applications per id differ from the records in the log"
    );
    assert_eq!(count(&db, "payments").await, n as i64);
    assert_eq!(
        db.scalar_i64("SELECT (sum(amount) * 100)::bigint FROM payments")
            .await,
        total
    );
    assert!(
        sink.exited().is_none(),
        "the connector exited during the broker outage"
    );
    drop(sink);
    db.drop_db().await;
}

/// What bounds the buffer while Postgres is down, and the records that test it.
struct Bound {
    batch: &'static str,
    metric: &'static str,
    limit: f64,
    /// Taken from librdkafka before the limit is seen: up to two chunks of the poll thread.
    slack: f64,
    records: u64,
    /// Extra bytes in every value.
    pad: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffers_stay_bounded_while_postgres_is_down_and_everything_applies_after() {
    bounded_while_postgres_is_down(Bound {
        batch: "max_records = 500\nmax_buffered_records = 3000",
        metric: "kafka_pg_sink_buffered_records",
        limit: 3000.0,
        slack: 2.0 * 2048.0,
        records: 30_000,
        pad: 0,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_records_are_bounded_by_bytes_while_postgres_is_down() {
    let mib = 1024.0 * 1024.0;
    bounded_while_postgres_is_down(Bound {
        batch: "max_records = 500\nmax_bytes = 1048576\nmax_buffered_bytes = 2097152",
        metric: "kafka_pg_sink_buffered_bytes",
        limit: 2.0 * mib,
        slack: 2.0 * (mib + 8192.0),
        // ~4 KB each: 12 MB in all, 3 MB per partition (the mock broker keeps 5 MiB).
        records: 3_000,
        pad: 4000,
    })
    .await;
}

async fn bounded_while_postgres_is_down(bound: Bound) {
    let server = PgServer::for_test();
    let db = TestDb::create_on(&server.url("postgres")).await;
    db.exec(PAYMENTS_DDL).await;
    let mut broker = broker();
    let topic = unique("payments");
    broker.create_topic(&topic, 4).expect("create the topic");
    let group = unique("group");
    let rest = format!(
        "[batch]\nmax_wait_ms = 50\n{}\n{}",
        bound.batch,
        payments_mapping(&topic)
    );
    let sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(30), || async {
            sink.get("/readyz").map(|r| r.0) == Some(200)
        })
        .await
    );
    server.stop_immediate().expect("pg_ctl stop -m immediate");
    let n = bound.records;
    let mut total = 0;
    let padding = "x".repeat(bound.pad);
    let records: Vec<Produced> = (1..=n)
        .map(|id| {
            let (value, cents) = payment(id);
            total += cents;
            let value = format!("{{\"pad\":\"{padding}\",{}", &value[1..]);
            ((id % 4) as i32, id.to_string(), Some(value))
        })
        .collect();
    stream(&broker.bootstrap, &topic, records, 100_000)
        .join()
        .unwrap();
    // With the database down, taking records stops near the limit instead of buffering the
    // backlog.
    let mut peak = 0.0f64;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(sink.metric(bound.metric, "").unwrap_or(0.0));
    }
    assert!(
        peak >= bound.limit / 2.0,
        "the connector did not fetch while Postgres was down ({} peak {peak})",
        bound.metric
    );
    assert!(
        peak <= bound.limit + bound.slack,
        "{} peaked at {peak} with a limit of {}",
        bound.metric,
        bound.limit
    );
    server.start_again().expect("pg_ctl start");
    let done = eventually(Duration::from_secs(90), || async {
        count(&db, "payments").await == n as i64
    })
    .await;
    assert!(done, "{} of {n} rows", count(&db, "payments").await);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM applied").await,
        n as i64
    );
    assert_eq!(
        db.scalar_i64("SELECT (sum(amount) * 100)::bigint FROM applied")
            .await,
        total
    );
    eprintln!(
        "peak {} with Postgres down: {peak} (limit {})",
        bound.metric, bound.limit
    );
    drop(sink);
    db.drop_db().await;
}
