//! Exactly-once on every offset path (issue 17), through the real binary against a real Postgres
//! and a Kafka-protocol broker: out-of-range answers mid-stream, fresh partitions with "latest",
//! `on_error = "fail"` in the middle of a batch, one record fanned out to several tables, a stop
//! while Postgres is down, owned consumer properties, and connection errors that must not be
//! retried.
//!
//! Transaction markers need a real cluster (the mock broker writes no control records): there
//! `a_transactional_upstream_…` crosses them. On the mock, the move past markers is tested at
//! its seams: `tests/writer.rs` (an offsets-only batch) and the pipeline's
//! unit tests (when one is cut).

use std::time::Duration;

use testkit::prelude::*;

/// Insert-mode rows carrying their partition and offset, so a record applied twice shows.
const LOG_DDL: &str = "CREATE TABLE log (p integer NOT NULL, o bigint NOT NULL, n bigint NOT NULL)";

fn log_mapping(topic: &str) -> String {
    format!(
        "[[mappings]]\ntopic = \"{topic}\"\ntable = \"log\"\nmode = \"insert\"\n\
         columns = {{ p = \"kafka.partition\", o = \"kafka.offset\", n = \"value.n\" }}\n"
    )
}

/// `n` records `{"n": i}` for i in `from..from + n`, round-robin over `partitions`.
fn numbered(from: u64, n: u64, partitions: i32) -> Vec<Produced> {
    (from..from + n)
        .map(|i| {
            (
                (i % partitions as u64) as i32,
                i.to_string(),
                Some(format!(r#"{{"n":{i}}}"#)),
            )
        })
        .collect()
}

async fn stored_total(db: &TestDb, group: &str, topic: &str) -> i64 {
    db.stored_offsets(group, topic)
        .await
        .iter()
        .map(|(_, o)| o)
        .sum()
}

/// Rows, distinct (partition, offset) pairs, and the sum of `n`.
async fn log_summary(db: &TestDb) -> (i64, i64, i64) {
    (
        db.scalar_i64("SELECT count(*) FROM log").await,
        db.scalar_i64("SELECT count(DISTINCT (p, o)) FROM log")
            .await,
        db.scalar_i64("SELECT sum(n)::bigint FROM log").await,
    )
}

fn with_kafka_setting(config: &TempFile, setting: &str) {
    let text = std::fs::read_to_string(&config.0).unwrap();
    std::fs::write(
        &config.0,
        text.replacen("[kafka]\n", &format!("[kafka]\n{setting}\n"), 1),
    )
    .unwrap();
}

/// Findings 1 and 2 (and 3's position): a broker answering fetches with OFFSET_OUT_OF_RANGE
/// for positions inside the log, and with timeouts. librdkafka stops fetching such a partition (`auto.offset.reset=error`); before the
/// fix nothing restarted it (the stream stalled), and the restart of the whole assignment took
/// positions from what was sent to the pipeline, not what the poll thread had taken, so records
/// were fetched and applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_answers_mid_stream_neither_stall_nor_duplicate() {
    if unless_mock("fault injection: Fetch answered OFFSET_OUT_OF_RANGE and REQUEST_TIMED_OUT") {
        return;
    }
    let mut broker = broker();
    let db = TestDb::create().await;
    db.exec(LOG_DDL).await;
    let topic = unique("oor");
    broker.create_topic(&topic, 4).expect("create the topic");
    let group = unique("group");
    let n = 24_000u64;
    let producer = stream(&broker.bootstrap, &topic, numbered(0, n, 4), 4_000);
    let rest = format!("[batch]\nmax_wait_ms = 20\n{}", log_mapping(&topic));
    let sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(40), || async {
            stored_total(&db, &group, &topic).await > 0
        })
        .await,
        "the connector never committed"
    );
    // One fetch answered with OFFSET_OUT_OF_RANGE (code 1) at a time, while the stream goes on;
    // between them REQUEST_TIMED_OUT (7): librdkafka moves its consume position past the offset
    // of such an error, which must not be taken for transaction markers to skip.
    for code in [1, 7, 7, 1, 7, 7, 1, 7, 7, 1] {
        broker
            .command(&format!("request-errors Fetch 1 {code}"))
            .expect("mock broker command");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    producer.join().unwrap();
    let done = eventually(Duration::from_secs(60), || async {
        stored_total(&db, &group, &topic).await == n as i64
    })
    .await;
    let refetched = sink
        .metric("kafka_pg_sink_offset_resets_total", "policy=\"refetch\"")
        .unwrap_or(0.0);
    assert!(
        done,
        "a partition stalled after an out-of-range answer: stored {:?}",
        db.stored_offsets(&group, &topic).await
    );
    assert!(
        refetched >= 1.0,
        "no out-of-range answer reached the connector"
    );
    let (rows, distinct, sum) = log_summary(&db).await;
    assert_eq!(
        (rows, distinct),
        (n as i64, n as i64),
        "lost or applied twice"
    );
    assert_eq!(sum, (0..n as i64).sum::<i64>());
    drop(sink);
    db.drop_db().await;
}

/// Finding 5 (and 8): with `auto_offset_reset = "latest"`, where a partition starts is stored at
/// its first assignment. Before the fix nothing was stored until the first commit, so a replica
/// killed before it restarted at a later log end and never applied what came in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_is_the_log_end_at_the_first_start_even_across_a_crash() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(LOG_DDL)
        .topic("latest")
        .partitions(2)
        .build()
        .await;
    stream(&broker.bootstrap, &topic, numbered(0, 50, 2), 10_000)
        .join()
        .unwrap();
    let rest = format!("[batch]\nmax_wait_ms = 20\n{}", log_mapping(&topic));
    let (config, http) = sink_config(&broker, &db, &group, &rest);
    with_kafka_setting(&config, "auto_offset_reset = \"latest\"");
    let sink = Sink::start_with(config, http);
    assert!(
        eventually(Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 25), (1, 25)]
        })
        .await,
        "the start positions were not stored at assignment: {:?}",
        db.stored_offsets(&group, &topic).await
    );
    // The lag metrics know every assigned partition before anything is committed.
    assert!(
        eventually(Duration::from_secs(10), || async {
            sink.metric("kafka_pg_sink_committed_offset", "partition=\"1\"") == Some(25.0)
        })
        .await,
        "committed_offset is missing for a partition with a stored start"
    );
    sink.kill9();
    stream(&broker.bootstrap, &topic, numbered(50, 1_000, 2), 10_000)
        .join()
        .unwrap();
    let (config, http) = sink_config(&broker, &db, &group, &rest);
    with_kafka_setting(&config, "auto_offset_reset = \"latest\"");
    let sink = Sink::start_with(config, http);
    assert!(
        eventually(Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 525), (1, 525)]
        })
        .await,
        "records produced while the replica was down were skipped: {:?} and {:?} rows",
        db.stored_offsets(&group, &topic).await,
        log_summary(&db).await
    );
    let (rows, distinct, sum) = log_summary(&db).await;
    assert_eq!((rows, distinct), (1_000, 1_000));
    assert_eq!(sum, (50..1_050).sum::<i64>());
    drop(sink);
    db.drop_db().await;
}

/// Finding 9: `on_error = "fail"` commits the records before the bad one, then stops the
/// partition there (before the fix the whole batch was refused, and the stored offset stayed at
/// the batch start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_commits_the_good_prefix_then_stops_before_the_bad_record() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(LOG_DDL)
        .topic("fail")
        .partitions(1)
        .build()
        .await;
    let mut records = numbered(0, 10, 1);
    records.push((0, "bad".into(), Some(r#"{"n":"not a number"}"#.into())));
    records.extend(numbered(11, 5, 1));
    stream(&broker.bootstrap, &topic, records, 10_000)
        .join()
        .unwrap();
    // One batch holds all 16 records: the bad one is in the middle of it.
    let rest = format!(
        "[batch]\nmax_wait_ms = 500\n{}on_error = \"fail\"\n",
        log_mapping(&topic)
    );
    let sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(40), || async {
            sink.metric("kafka_pg_sink_stopped_partitions", "") == Some(1.0)
        })
        .await,
        "the partition never stopped"
    );
    assert_eq!(db.stored_offsets(&group, &topic).await, vec![(0, 10)]);
    let (rows, distinct, sum) = log_summary(&db).await;
    assert_eq!((rows, distinct, sum), (10, 10, (0..10).sum::<i64>()));
    let (status, body) = sink.get("/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    // Finding 8: the stopped partition is not fetched, yet its log end and lag stay true.
    stream(&broker.bootstrap, &topic, numbered(16, 4, 1), 10_000)
        .join()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(40), || async {
            sink.metric("kafka_pg_sink_log_end_offset", "") == Some(20.0)
                && sink.metric("kafka_pg_sink_consumer_lag", "") == Some(10.0)
        })
        .await,
        "log end {:?}, lag {:?}",
        sink.metric("kafka_pg_sink_log_end_offset", ""),
        sink.metric("kafka_pg_sink_consumer_lag", "")
    );
    drop(sink);
    db.drop_db().await;
}

/// Finding 10: one topic feeding two tables commits both and the offset in one transaction; a
/// failure in either table leaves neither changed and the offset where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_fanned_out_to_two_tables_is_applied_to_both_or_neither() {
    let db = TestDb::create().await;
    db.exec(LOG_DDL).await;
    // The second table refuses n = 7 with an error that is not about the record's data
    // (SQLSTATE P0001 is fatal): the connector must stop without committing anything of it.
    db.exec(
        "CREATE TABLE audit (n bigint NOT NULL);
         CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.n = 7 THEN RAISE EXCEPTION 'audit refuses 7'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON audit FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await;
    let mut broker = broker();
    let topic = unique("fanout");
    broker.create_topic(&topic, 1).expect("create the topic");
    let group = unique("group");
    stream(&broker.bootstrap, &topic, numbered(0, 5, 1), 10_000)
        .join()
        .unwrap();
    let rest = format!(
        "[batch]\nmax_wait_ms = 20\n{}\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"audit\"\n\
         mode = \"insert\"\ncolumns = {{ n = \"value.n\" }}\n",
        log_mapping(&topic)
    );
    let (config, _) = sink_config(&broker, &db, &group, &rest);
    let sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 5)]
        })
        .await
    );
    drop(sink);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM log").await, 5);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM audit").await, 5);
    // Records 5..10 go in one batch; the audit table refuses one of them.
    stream(&broker.bootstrap, &topic, numbered(5, 5, 1), 10_000)
        .join()
        .unwrap();
    let (code, stderr) = run_until_exit(&config, Duration::from_secs(40));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("audit refuses 7"), "{stderr}");
    assert_eq!(db.stored_offsets(&group, &topic).await, vec![(0, 5)]);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM log").await,
        5,
        "log changed alone"
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM audit").await, 5);
    db.drop_db().await;
}

/// Finding 7: SIGTERM while Postgres is down. Before the fix a writer went on retrying its
/// batch after the drain timeout and the process never exited. Now it abandons the batch (which
/// commits whole or not at all), says so, and exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_postgres_is_down_exits_after_the_drain_timeout_and_says_why() {
    let server = PgServer::for_test();
    let db = TestDb::create_on(&server.url("postgres")).await;
    db.exec(LOG_DDL).await;
    let mut broker = broker();
    let topic = unique("down");
    broker.create_topic(&topic, 2).expect("create the topic");
    let group = unique("group");
    let rest = format!(
        "[batch]\nmax_wait_ms = 20\n[shutdown]\ndrain_timeout_ms = 3000\n{}",
        log_mapping(&topic)
    );
    let (config, http) = sink_config(&broker, &db, &group, &rest);
    let log = std::env::temp_dir().join(format!("{}.log", unique("kps_down")));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
        .arg("--config")
        .arg(&config.0)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    stream(&broker.bootstrap, &topic, numbered(0, 200, 2), 10_000)
        .join()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(40), || async {
            stored_total(&db, &group, &topic).await == 200
        })
        .await
    );
    server.stop_immediate().expect("pg_ctl stop -m immediate");
    stream(&broker.bootstrap, &topic, numbered(200, 200, 2), 10_000)
        .join()
        .unwrap();
    // Let the records reach the writers, which now retry against a stopped server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut child = child;
    let started = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let status = status.unwrap_or_else(|| panic!("no exit 30 s after SIGTERM:\n{stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("drain_timeout_ms (3000 ms) passed"),
        "the exit must say what was left: {stderr}"
    );
    drop(http);
    server.start_again().expect("pg_ctl start");
    // Nothing partial: a restart applies the rest, each record once.
    let rest_sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(40), || async {
            stored_total(&db, &group, &topic).await == 400
        })
        .await
    );
    let (rows, distinct, sum) = log_summary(&db).await;
    assert_eq!((rows, distinct, sum), (400, 400, (0..400).sum::<i64>()));
    drop(rest_sink);
    db.drop_db().await;
}

/// Finding 4: properties that would break the guarantees are refused, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_level_and_check_crcs_are_owned() {
    let db = TestDb::create().await;
    let broker = broker();
    let rest = log_mapping("t");
    let (config, _) = sink_config(&broker, &db, &unique("group"), &rest);
    let text = std::fs::read_to_string(&config.0).unwrap().replacen(
        "\"heartbeat.interval.ms\" = \"500\"",
        "\"heartbeat.interval.ms\" = \"500\", \"isolation.level\" = \"read_uncommitted\", \"check.crcs\" = \"false\"",
        1,
    );
    std::fs::write(&config.0, text).unwrap();
    let (code, stderr) = run_until_exit(&config, Duration::from_secs(20));
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("kafka.properties.\"isolation.level\"")
            && stderr.contains("aborted transactions"),
        "{stderr}"
    );
    assert!(
        stderr.contains("kafka.properties.\"check.crcs\""),
        "{stderr}"
    );
    db.drop_db().await;
}

/// The retry review: a database that does not exist (like a wrong password) is not waited out
/// as if Postgres were down; the connector stops at once with the server's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_database_stops_at_once_instead_of_retrying() {
    let db = TestDb::create().await;
    let broker = broker();
    let (config, _) = sink_config(&broker, &db, &unique("group"), &log_mapping("t"));
    let missing = unique("kps_missing");
    let text = std::fs::read_to_string(&config.0)
        .unwrap()
        .replace(&format!("/{}", db.name), &format!("/{missing}"));
    std::fs::write(&config.0, text).unwrap();
    let started = std::time::Instant::now();
    let (code, stderr) = run_until_exit(&config, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "{stderr}");
    assert!(
        stderr.contains(&missing) && stderr.contains("does not exist"),
        "{stderr}"
    );
    db.drop_db().await;
}

/// A transactional upstream: committed transactions are applied, aborted ones are not (the
/// consumer reads committed data only), and the stored offsets end at the log end, past the
/// commit and abort markers, not at the last record: otherwise lag would never reach zero and
/// every restart would fetch the markers again. A second round after a restart checks that
/// nothing is applied twice. On a real cluster the log holds the markers; the mock broker writes
/// none and keeps only committed records, so there the test covers the transactional producer
/// and the counts, not the move past markers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_upstream_applies_committed_records_only_and_ends_at_the_log_end() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(LOG_DDL)
        .topic("txn")
        .partitions(2)
        .build()
        .await;
    let rest = format!("[batch]\nmax_wait_ms = 20\n{}", log_mapping(&topic));
    let (mut count, mut sum) = (0i64, 0i64);
    for first in [0, 1_000] {
        // Six transactions of 50 records over both partitions; the second, fifth and last abort,
        // so that the log ends with an abort marker.
        let txns: Vec<Transaction> = (0..6u64)
            .map(|t| Transaction {
                records: numbered(first + t * 50, 50, 2),
                commit: !matches!(t, 1 | 4 | 5),
            })
            .collect();
        for t in (0..6u64).filter(|t| !matches!(t, 1 | 4 | 5)) {
            count += 50;
            sum += (first + t * 50..first + t * 50 + 50).sum::<u64>() as i64;
        }
        transactions(&broker.bootstrap, &topic, &txns);
        let ends = broker.end_offsets(&topic, 2).expect("end offsets");
        let sink = Sink::start(&broker, &db, &group, &rest);
        let expected: Vec<(i32, i64)> = ends
            .iter()
            .enumerate()
            .map(|(p, e)| (p as i32, *e))
            .collect();
        let done = eventually(Duration::from_secs(60), || async {
            db.stored_offsets(&group, &topic).await == expected
        })
        .await;
        assert!(
            done,
            "stored offsets {:?} never reached the log end {expected:?} past the markers",
            db.stored_offsets(&group, &topic).await
        );
        assert_eq!(
            log_summary(&db).await,
            (count, count, sum),
            "rows, distinct (partition, offset), sum of n: only committed records, once"
        );
        let no_lag = eventually(Duration::from_secs(15), || async {
            sink.metric("kafka_pg_sink_consumer_lag", &topic) == Some(0.0)
        })
        .await;
        assert!(
            no_lag,
            "lag is not 0 once everything up to the log end is stored"
        );
        assert!(sink
            .signal_and_wait("TERM", Duration::from_secs(30))
            .success());
    }
}
