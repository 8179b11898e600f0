//! Exactly-once under crashes: the real binary is killed with SIGKILL mid-stream and restarted,
//! alone and as one of two replicas sharing the partitions. The `applied` audit table records
//! every row application, so a record applied twice is caught even though upserts are idempotent.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use testkit::prelude::*;

const PARTITIONS: i32 = 4;

/// Produces payments 1..=n at about `per_sec`, spread over the partitions; returns total cents.
fn stream_payments(bootstrap: String, topic: String, n: u64, per_sec: u64) -> JoinHandle<i64> {
    std::thread::spawn(move || {
        let mut producer = TestProducer::new(&bootstrap);
        let started = Instant::now();
        let mut total = 0;
        for id in 1..=n {
            let (value, cents) = payment(id);
            producer.send(
                &topic,
                (id % PARTITIONS as u64) as i32,
                &id.to_string(),
                Some(&value),
            );
            total += cents;
            let due = Duration::from_micros(id * 1_000_000 / per_sec);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        producer.flush();
        total
    })
}

/// Waits until every partition's stored offset is the log end, then checks counts and sums.
async fn assert_exactly_once(
    db: &TestDb,
    broker: &Broker,
    group: &str,
    topic: &str,
    n: u64,
    total_cents: i64,
) {
    let ends = broker.end_offsets(topic, PARTITIONS).expect("end offsets");
    let expected: Vec<(i32, i64)> = ends
        .iter()
        .enumerate()
        .map(|(p, e)| (p as i32, *e))
        .collect();
    assert_eq!(
        ends.iter().sum::<i64>(),
        n as i64,
        "the broker does not hold every produced record"
    );
    let caught_up = eventually(Duration::from_secs(90), || async {
        db.stored_offsets(group, topic).await == expected
    })
    .await;
    assert!(
        caught_up,
        "stored offsets {:?} never reached the log end {expected:?}",
        db.stored_offsets(group, topic).await
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM payments").await,
        n as i64,
        "rows lost"
    );
    assert_eq!(
        db.scalar_i64("SELECT (sum(amount) * 100)::bigint FROM payments")
            .await,
        total_cents
    );
    let applied = db.scalar_i64("SELECT count(*) FROM applied").await;
    assert_eq!(
        applied, n as i64,
        "{} record applications for {n} records",
        applied
    );
    assert_eq!(
        db.scalar_i64("SELECT (sum(amount) * 100)::bigint FROM applied")
            .await,
        total_cents
    );
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM (SELECT id FROM applied GROUP BY id HAVING count(*) > 1) d"
        )
        .await,
        0
    );
}

fn small_batches(topic: &str) -> String {
    format!(
        "[batch]\nmax_records = 300\nmax_wait_ms = 50\n{}",
        payments_mapping(topic)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_stored_offsets_after_repeated_kill_9() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(PAYMENTS_DDL)
        .topic("payments")
        .partitions(PARTITIONS)
        .build()
        .await;
    let rest = small_batches(&topic);
    let n = 24_000;
    let producer = stream_payments(broker.bootstrap.clone(), topic.clone(), n, 800);

    let mut rng = Rng::for_test("kill timing");
    let mut kills = 0;
    let mut mid_stream_kills = 0;
    while !producer.is_finished() || kills < 3 {
        let before = db.scalar_i64("SELECT count(*) FROM applied").await;
        let sink = Sink::start(&broker, &db, &group, &rest);
        // A restart waits out the dead member's session; kill only once this one is writing.
        let writing = eventually(Duration::from_secs(40), || async {
            db.scalar_i64("SELECT count(*) FROM applied").await > before
        })
        .await;
        assert!(writing, "the restarted connector never wrote");
        let alive = Duration::from_millis(rng.range(0, 1500));
        tokio::time::sleep(alive).await;
        sink.kill9();
        kills += 1;
        let applied = db.scalar_i64("SELECT count(*) FROM applied").await;
        eprintln!("kill -9 #{kills} {alive:?} into writing; {applied} applications so far");
        if applied < n as i64 {
            mid_stream_kills += 1;
        }
    }
    let total = producer.join().unwrap();
    assert!(
        mid_stream_kills >= 2,
        "only {mid_stream_kills} kills landed before the stream was fully applied"
    );

    let _sink = Sink::start(&broker, &db, &group, &rest);
    assert_exactly_once(&db, &broker, &group, &topic, n, total).await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_partitions_through_kills_and_restarts() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(PAYMENTS_DDL)
        .topic("payments")
        .partitions(PARTITIONS)
        .build()
        .await;
    let rest = small_batches(&topic);
    let n = 24_000;
    let producer = stream_payments(broker.bootstrap.clone(), topic.clone(), n, 1000);

    let a = Sink::start(&broker, &db, &group, &rest);
    let b = Sink::start(&broker, &db, &group, &rest);
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Both replicas must own partitions before the faults start.
    let owned = |s: &Sink| {
        s.metric("kafka_pg_sink_assigned_partitions", "")
            .unwrap_or(0.0)
    };
    assert!(
        eventually(Duration::from_secs(20), || async {
            owned(&a) > 0.0 && owned(&b) > 0.0
        })
        .await,
        "partitions were not shared: a={} b={}",
        owned(&a),
        owned(&b)
    );
    b.kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b = Sink::start(&broker, &db, &group, &rest);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let status = a.signal_and_wait("TERM", Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit status {status:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = Sink::start(&broker, &db, &group, &rest);
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.kill9();
    let total = producer.join().unwrap();
    let b = Sink::start(&broker, &db, &group, &rest);

    assert_exactly_once(&db, &broker, &group, &topic, n, total).await;
    let rebalanced = a
        .metric("kafka_pg_sink_rebalances_total", "assign")
        .unwrap_or(0.0)
        + b.metric("kafka_pg_sink_rebalances_total", "assign")
            .unwrap_or(0.0);
    assert!(rebalanced >= 2.0, "expected rebalances, saw {rebalanced}");
    db.drop_db().await;
}

/// Needs a real Kafka cluster (`KAFKA_BROKERS`): librdkafka's mock broker matches group members
/// by member id only and ignores `group.instance.id` (rdkafka_mock_cgrp.c), so against it a
/// restarted static member waits out the session like a dynamic one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_membership_gets_partitions_back_without_waiting_out_the_session() {
    if unless_real("static membership, which the mock broker ignores") {
        return;
    }
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(PAYMENTS_DDL)
        .topic("payments")
        .partitions(PARTITIONS)
        .build()
        .await;
    // A long session timeout: a dynamic member restarted after kill -9 would wait 30 s for it.
    let rest = format!("{}\n", small_batches(&topic));
    let (config, http) = sink_config(&broker, &db, &group, &rest);
    let text = std::fs::read_to_string(&config.0).unwrap().replace(
        "properties = { \"session.timeout.ms\" = \"6000\"",
        "group_instance_id = \"replica-a\"\nproperties = { \"session.timeout.ms\" = \"30000\"",
    );
    std::fs::write(&config.0, &text).unwrap();
    let first = stream_payments(broker.bootstrap.clone(), topic.clone(), 2000, 5000)
        .join()
        .unwrap();
    let sink = Sink::start_with(config, http.clone());
    assert!(
        eventually(Duration::from_secs(60), || async {
            db.scalar_i64("SELECT count(*) FROM payments").await == 2000
        })
        .await
    );
    sink.kill9();

    let config = TempFile(std::env::temp_dir().join(format!("{}.toml", unique("kps_config"))));
    std::fs::write(&config.0, &text).unwrap();
    let mut producer = TestProducer::new(&broker.bootstrap);
    for id in 2001..=2100u64 {
        let (value, _) = payment(id);
        producer.send(
            &topic,
            (id % PARTITIONS as u64) as i32,
            &id.to_string(),
            Some(&value),
        );
    }
    producer.flush();
    let restarted = Instant::now();
    let _sink = Sink::start_with(config, http);
    let resumed = eventually(Duration::from_secs(25), || async {
        db.scalar_i64("SELECT count(*) FROM payments").await == 2100
    })
    .await;
    let took = restarted.elapsed();
    eprintln!(
        "static membership: restart to all records committed in {took:?} (session timeout 30 s)"
    );
    assert!(
        resumed,
        "the restarted replica waited for its old session to expire"
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM applied").await, 2100);
    assert!(first > 0);
    db.drop_db().await;
}
