//! A record batch that fails its checksum: librdkafka reports it once and skips it, so a
//! connector that only logged the error would commit offsets past records that never reached
//! Postgres. It must stop instead, with the stored offset before the batch, and apply it once
//! the data is readable (here: once the operator moves the offset past it deliberately).
//!
//! Mock broker only: a real broker refuses a batch with a wrong checksum when it is produced, so
//! such a batch cannot be put on a real topic from outside.

mod common;

#[allow(dead_code)]
#[path = "../src/bin/bench/wire.rs"]
mod wire;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_its_checksum_stops_the_connector_before_it() {
    if std::env::var("KAFKA_BROKERS").is_ok() {
        eprintln!("skipped: a real broker refuses a batch with a wrong checksum at produce time");
        return;
    }
    let db = TestDb::create().await;
    db.exec("CREATE TABLE t (n bigint NOT NULL)").await;
    let mut broker = Broker::start();
    let topic = unique("corrupt");
    broker.create_topic(&topic, 1);
    let group = unique("group");

    // Offsets 0..100 and 100..200 intact, 200..300 with a damaged checksum, 300..400 intact.
    let texts: Vec<(String, String)> = (0..400)
        .map(|n| (n.to_string(), format!(r#"{{"n":{n}}}"#)))
        .collect();
    let batch = |from: usize| {
        texts[from..from + 100]
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
    };
    let mut producer = wire::Producer::connect(&broker.bootstrap, &topic).unwrap();
    producer.send(0, batch(0)).unwrap();
    producer.send(0, batch(100)).unwrap();
    producer.send_damaged(0, batch(200)).unwrap();
    producer.send(0, batch(300)).unwrap();
    producer.finish(Duration::from_secs(30)).unwrap();
    assert_eq!(broker.end_offsets(&topic, 1), vec![400]);

    let rest = format!(
        "[batch]\nmax_wait_ms = 20\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"t\"\nmode = \"insert\"\ncolumns = {{ n = \"value.n\" }}\n"
    );
    let (config, _) = sink_config(&broker, &db, &group, &rest);
    let (code, stderr) = run_until_exit(&config, Duration::from_secs(60));
    assert_eq!(code, Some(1), "the connector must stop: {stderr}");
    assert!(
        stderr.contains("a record batch cannot be read") && stderr.contains("offset 200"),
        "{stderr}"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM t").await,
        200,
        "the records before the damaged batch, and none after it"
    );
    assert_eq!(
        db.scalar_i64("SELECT sum(n)::bigint FROM t").await,
        (0..200).sum::<i64>()
    );
    assert_eq!(db.stored_offsets(&group, &topic).await, vec![(0, 200)]);

    // Restarted, it stops at the same place: nothing is skipped by a restart either.
    let (code, _) = run_until_exit(&config, Duration::from_secs(60));
    assert_eq!(code, Some(1));
    assert_eq!(db.stored_offsets(&group, &topic).await, vec![(0, 200)]);

    // The operator skips the batch deliberately; the records after it are applied once.
    let skip = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
        .args(["--config", config.0.to_str().unwrap(), "offsets", "set"])
        .args([
            "--topic",
            &topic,
            "--partition",
            "0",
            "--to-offset",
            "300",
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
    let (config2, http) = sink_config(&broker, &db, &group, &rest);
    let sink = Sink::start_with(config2, http);
    assert!(
        eventually(Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 400)]
        })
        .await,
        "the records after the skipped batch are applied"
    );
    assert!(sink
        .signal_and_wait("TERM", Duration::from_secs(30))
        .success());
    assert_eq!(db.scalar_i64("SELECT count(*) FROM t").await, 300);
    assert_eq!(
        db.scalar_i64("SELECT sum(n)::bigint FROM t").await,
        (0..200).sum::<i64>() + (300..400).sum::<i64>()
    );
    db.drop_db().await;
}
