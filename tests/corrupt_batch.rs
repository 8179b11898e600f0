//! A record batch that fails its checksum: librdkafka reports it once and skips it, so a
//! connector that only logged the error would commit offsets past records that never reached
//! Postgres. The partition must stop there instead, with the stored offset at the batch, and go
//! on only once the data is readable or the operator moves the offset past it deliberately.
//!
//! Mock broker only: a real broker refuses a batch with a wrong checksum when it is produced, so
//! such a batch cannot be put on a real topic from outside.

use std::time::Duration;

use testkit::prelude::*;
use testkit::wire;

/// One topic of `partitions` on the mock broker, a table `t (n)` mapped from it in insert mode,
/// and the records `{"n": i}` for i in 0..`records`, keyed by i, ready to be produced in
/// batches. `None` against a real broker (`KAFKA_BROKERS`), which refuses a batch with a wrong
/// checksum at produce time.
struct Case {
    db: TestDb,
    broker: Broker,
    topic: String,
    group: String,
    /// The config's batch and mapping sections.
    rest: String,
    texts: Vec<(String, String)>,
}

impl Case {
    async fn new(partitions: i32, records: usize) -> Option<Self> {
        if unless_mock("a batch with a wrong checksum: a real broker refuses one at produce time") {
            return None;
        }
        let db = TestDb::create().await;
        db.exec("CREATE TABLE t (n bigint NOT NULL)").await;
        let mut broker = broker();
        let topic = unique("corrupt");
        broker
            .create_topic(&topic, partitions)
            .expect("create the topic");
        let rest = format!(
            "[batch]\nmax_wait_ms = 20\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"t\"\nmode = \"insert\"\ncolumns = {{ n = \"value.n\" }}\n"
        );
        Some(Self {
            db,
            broker,
            topic,
            group: unique("group"),
            rest,
            texts: (0..records)
                .map(|n| (n.to_string(), format!(r#"{{"n":{n}}}"#)))
                .collect(),
        })
    }

    /// The 100 records from `from` on, as the producer takes them.
    fn batch(&self, from: usize) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> {
        self.texts[from..from + 100]
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    }

    fn producer(&self) -> wire::Producer {
        wire::Producer::connect(&self.broker.bootstrap, &self.topic).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_its_checksum_stops_its_partition_before_it() {
    let Some(case) = Case::new(1, 500).await else {
        return;
    };
    // Offsets 0..100 and 100..200 intact, 200..300 with a damaged checksum, 300..400 intact and
    // fetched together with the damaged batch (as a real broker would return them; the mock
    // returns one produce request per fetch), then 400..500 intact on their own.
    let mut producer = case.producer();
    producer.send(0, case.batch(0)).unwrap();
    producer.send(0, case.batch(100)).unwrap();
    producer
        .send_damaged_then(0, case.batch(200), 300, case.batch(300))
        .unwrap();
    producer.send(0, case.batch(400)).unwrap();
    producer.finish(Duration::from_secs(30)).unwrap();
    let Case {
        db,
        broker,
        topic,
        group,
        rest,
        ..
    } = case;
    assert_eq!(
        broker.end_offsets(&topic, 1).expect("end offsets"),
        vec![500]
    );

    // Stops the partition at the damaged batch: what came before is written, nothing after;
    // the process keeps running, not ready, and says why. Run twice: a restart reads from the
    // stored offset and stops at the same place.
    for run in ["first run", "after a restart"] {
        let (config, http) = sink_config(&broker, &db, &group, &rest);
        let sink = Sink::start_with(config, http);
        assert!(
            eventually(Duration::from_secs(40), || async {
                sink.metric("kafka_pg_sink_stopped_partitions", "") == Some(1.0)
                    && db.stored_offsets(&group, &topic).await == vec![(0, 200)]
            })
            .await,
            "{run}: partition stopped with the stored offset at the damaged batch; stored {:?}",
            db.stored_offsets(&group, &topic).await
        );
        let (status, body) = sink.get("/readyz").unwrap();
        assert_eq!(status, 503, "{run}: {body}");
        assert!(body.contains("\"stopped_partitions\":1"), "{run}: {body}");
        // Time for anything after the batch to arrive, were it not dropped.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            db.scalar_i64("SELECT count(*) FROM t").await,
            200,
            "{run}: the records before the damaged batch, and none after it"
        );
        assert_eq!(
            db.scalar_i64("SELECT sum(n)::bigint FROM t").await,
            (0..200).sum::<i64>()
        );
        assert_eq!(db.stored_offsets(&group, &topic).await, vec![(0, 200)]);
        assert!(sink
            .signal_and_wait("TERM", Duration::from_secs(30))
            .success());
    }

    // The operator skips deliberately past the damaged batch. (On the mock, past what was
    // produced with it: it returns that request whole to a fetch at any offset inside it.)
    // The records after it are applied once.
    let (config, http) = sink_config(&broker, &db, &group, &rest);
    let skip = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
        .args(["--config", config.0.to_str().unwrap(), "offsets", "set"])
        .args([
            "--topic",
            &topic,
            "--partition",
            "0",
            "--to-offset",
            "400",
            "--execute",
            // The mock broker cannot list group members; no replica is running here.
            "--force",
        ])
        .output()
        .unwrap();
    assert!(
        skip.status.success(),
        "{}",
        String::from_utf8_lossy(&skip.stderr)
    );
    let sink = Sink::start_with(config, http);
    assert!(
        eventually(Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 500)]
        })
        .await,
        "the records after the skipped batch are applied"
    );
    assert_eq!(
        sink.metric("kafka_pg_sink_stopped_partitions", ""),
        Some(0.0)
    );
    assert!(sink
        .signal_and_wait("TERM", Duration::from_secs(30))
        .success());
    assert_eq!(db.scalar_i64("SELECT count(*) FROM t").await, 300);
    assert_eq!(
        db.scalar_i64("SELECT sum(n)::bigint FROM t").await,
        (0..200).sum::<i64>() + (400..500).sum::<i64>()
    );
    db.drop_db().await;
}

/// A partition stopped at an unreadable batch goes on being reported as stopped by whichever
/// replica holds it after rebalances, including the replica that stopped it first when the
/// partition comes back to it (librdkafka keeps an application's pause across rebalances: the
/// partition would otherwise sit paused, unreported, in a fresh state).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_partition_is_reported_again_after_it_comes_back_in_a_rebalance() {
    let Some(case) = Case::new(2, 300).await else {
        return;
    };
    // Partition 0: 0..100 intact, then a damaged batch. Partition 1: 200..300 intact.
    let mut producer = case.producer();
    producer.send(0, case.batch(0)).unwrap();
    producer.send_damaged(0, case.batch(100)).unwrap();
    producer.send(1, case.batch(200)).unwrap();
    producer.finish(Duration::from_secs(30)).unwrap();
    let Case {
        db,
        broker,
        topic,
        group,
        rest,
        ..
    } = case;

    let stopped = |sink: &Sink| sink.metric("kafka_pg_sink_stopped_partitions", "");
    let a = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(40), || async {
            stopped(&a) == Some(1.0)
                && db.stored_offsets(&group, &topic).await == vec![(0, 100), (1, 100)]
        })
        .await,
        "replica A stops partition 0 at the damaged batch: stored {:?}",
        db.stored_offsets(&group, &topic).await
    );
    // B joins (partitions are split), then leaves (A gets everything back). At every point,
    // the replica holding partition 0 reports it stopped.
    let b = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(40), || async {
            let (sa, sb) = (stopped(&a), stopped(&b));
            let ready_b = b.get("/readyz").map(|(s, _)| s);
            // Both joined (B answers readiness one way or the other) and one of them holds it.
            ready_b.is_some()
                && sa.unwrap_or(0.0) + sb.unwrap_or(0.0) == 1.0
                && b.metric("kafka_pg_sink_assigned_partitions", "") == Some(1.0)
        })
        .await,
        "after B joined: A reports {:?}, B reports {:?}",
        stopped(&a),
        stopped(&b)
    );
    assert!(b.signal_and_wait("TERM", Duration::from_secs(30)).success());
    assert!(
        eventually(Duration::from_secs(40), || async {
            a.metric("kafka_pg_sink_assigned_partitions", "") == Some(2.0) && stopped(&a) == Some(1.0)
        })
        .await,
        "A holds both partitions again and reports partition 0 stopped: assigned {:?}, stopped {:?}",
        a.metric("kafka_pg_sink_assigned_partitions", ""),
        stopped(&a)
    );
    let (status, _) = a.get("/readyz").unwrap();
    assert_eq!(status, 503);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM t").await, 200);
    assert_eq!(
        db.stored_offsets(&group, &topic).await,
        vec![(0, 100), (1, 100)]
    );
    assert!(a.signal_and_wait("TERM", Duration::from_secs(30)).success());
    db.drop_db().await;
}
