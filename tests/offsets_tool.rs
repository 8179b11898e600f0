//! `kafka-pg-sink offsets show|set` through the real binary, against a real Postgres and a
//! Kafka-protocol broker, with and without a connector running.

use std::time::Duration;

use testkit::prelude::*;

/// An insert-mode mapping: every applied record is one row, so a record applied again shows up.
fn counter_mapping(topic: &str) -> String {
    format!(
        "[batch]\nmax_records = 100\nmax_wait_ms = 50\n\n[[mappings]]\ntopic = \"{topic}\"\n\
         table = \"t\"\nmode = \"insert\"\ncolumns = {{ n = \"value.n\" }}\n"
    )
}

/// Flags for `set --execute` while no connector runs. The mock broker implements neither
/// ListGroups nor DescribeGroups, so there the tool cannot see whether the group is empty and
/// (failing safe) refuses without `--force`; against a real cluster no flag is needed.
fn idle_group_flags() -> &'static [&'static str] {
    if testkit::skip::real_cluster() {
        &[]
    } else {
        &["--force"]
    }
}

/// Runs `kafka-pg-sink --config <config> offsets <args>`: (exit code, stdout, stderr).
async fn offsets(config: &TempFile, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
        .arg("--config")
        .arg(&config.0)
        .arg("offsets")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run kafka-pg-sink offsets");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    );
    eprintln!("$ offsets {}\n{stdout}{stderr}", args.join(" "));
    (output.status.code().unwrap_or(-1), stdout, stderr)
}

/// The `show` line of one partition, split on whitespace.
fn show_line(stdout: &str, topic: &str, partition: i32) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|w| w.len() > 1 && w[0] == topic && w[1] == partition.to_string())
        .unwrap_or_else(|| panic!("no line for {topic}/{partition} in:\n{stdout}"))
}

fn produce(broker: &Broker, topic: &str, partition: i32, range: std::ops::Range<i64>) {
    let mut producer = TestProducer::new(&broker.bootstrap);
    for n in range {
        producer.send(
            topic,
            partition,
            &n.to_string(),
            Some(&format!(r#"{{"n":{n}}}"#)),
        );
    }
    producer.flush();
}

async fn wait_for_offsets(db: &TestDb, group: &str, topic: &str, expected: &[(i32, i64)]) {
    let reached = eventually(Duration::from_secs(60), || async {
        db.stored_offsets(group, topic).await == expected
    })
    .await;
    assert!(
        reached,
        "stored offsets {:?}, expected {expected:?}",
        db.stored_offsets(group, topic).await
    );
}

/// Stores `next_offset` for each partition directly, as a connector would have.
async fn store_offsets(db: &TestDb, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let schema = kafka_pg_sink::ident::Ident::parse("kafka_pg_sink").unwrap();
    kafka_pg_sink::sink::migrate(&db.pool, &schema)
        .await
        .unwrap();
    for (partition, offset) in offsets {
        sqlx::query("INSERT INTO kafka_pg_sink.offsets (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, $4)")
            .bind(group)
            .bind(topic)
            .bind(partition)
            .bind(offset)
            .execute(&db.pool)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_lists_stored_offsets_watermarks_and_the_lag_behind_a_stopped_connector() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl("CREATE TABLE t (n bigint)")
        .topic("shown")
        .partitions(3)
        .build()
        .await;
    produce(&broker, &topic, 0, 0..30);
    produce(&broker, &topic, 1, 0..20);

    let sink = Sink::start(&broker, &db, &group, &counter_mapping(&topic));
    // Partition 2's start (its log start, empty) is stored at assignment.
    wait_for_offsets(&db, &group, &topic, &[(0, 30), (1, 20), (2, 0)]).await;
    assert!(sink
        .signal_and_wait("TERM", Duration::from_secs(30))
        .success());
    // As if it never had been: a partition with no stored offset follows auto_offset_reset.
    sqlx::query(
        "DELETE FROM kafka_pg_sink.offsets WHERE group_id = $1 AND topic = $2 AND partition = 2",
    )
    .bind(&group)
    .bind(&topic)
    .execute(&db.pool)
    .await
    .unwrap();

    // Produced while stopped: the lag. Partition 2 has no stored offset.
    produce(&broker, &topic, 0, 30..35);
    produce(&broker, &topic, 1, 20..27);
    produce(&broker, &topic, 2, 0..4);
    let (config, _) = sink_config(&broker, &db, &group, &counter_mapping(&topic));
    let (code, stdout, _) = offsets(&config, &["show"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("consumer group `{group}`")));
    assert_eq!(show_line(&stdout, &topic, 0)[2..6], ["30", "0", "35", "5"]);
    assert_eq!(show_line(&stdout, &topic, 1)[2..6], ["20", "0", "27", "7"]);
    assert_eq!(show_line(&stdout, &topic, 2)[2..6], ["-", "0", "4", "4*"]);
    assert!(
        show_line(&stdout, &topic, 0)[6].ends_with('Z'),
        "updated_at in UTC"
    );
    assert!(!stdout.contains("WARNING"));

    // `--topic` limits the report; an offset beyond the log end is flagged.
    sqlx::query("UPDATE kafka_pg_sink.offsets SET next_offset = 1000 WHERE group_id = $1 AND topic = $2 AND partition = 1")
        .bind(&group)
        .bind(&topic)
        .execute(&db.pool)
        .await
        .unwrap();
    let (code, stdout, _) = offsets(&config, &["show", "--topic", &topic]).await;
    assert_eq!(code, 0);
    let line = show_line(&stdout, &topic, 1);
    assert_eq!(line[2..6], ["1000", "0", "27", "-973"]);
    assert!(
        line.join(" ").contains("WARNING: beyond log end"),
        "{line:?}"
    );
    db.drop_db().await;
}

/// Target arguments for `set --topic T`, and the stored offsets they must leave.
type RoundTrip = (Vec<&'static str>, [(i32, i64); 2]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_dry_run_changes_nothing_and_execute_round_trips_every_target() {
    let db = TestDb::create().await;
    let mut broker = broker();
    let topic = unique("settable");
    broker.create_topic(&topic, 2).expect("create the topic");
    let group = unique("group");
    let before_production = "2000-01-01T00:00:00Z";
    produce(&broker, &topic, 0, 0..10);
    produce(&broker, &topic, 1, 0..6);
    store_offsets(&db, &group, &topic, &[(0, 7), (1, 3)]).await;
    let (config, _) = sink_config(&broker, &db, &group, &counter_mapping(&topic));
    let (code, stdout, _) = offsets(&config, &["set", "--topic", &topic, "--to-earliest"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("{topic}/0: 7 -> 0")), "{stdout}");
    assert!(stdout.contains(&format!("{topic}/1: 3 -> 0")), "{stdout}");
    assert!(stdout.contains("dry run"));
    assert_eq!(db.stored_offsets(&group, &topic).await, [(0, 7), (1, 3)]);

    let mut round_trips: Vec<RoundTrip> = vec![
        (vec!["--to-earliest"], [(0, 0), (1, 0)]),
        (
            vec!["--to-offset", "5", "--partition", "1"],
            [(0, 0), (1, 5)],
        ),
        (vec!["--to-latest"], [(0, 10), (1, 6)]),
        (vec!["--to-offset", "4"], [(0, 4), (1, 4)]),
        // No record is that recent: the log end.
        (
            vec!["--to-timestamp", "2100-01-01T00:00:00Z", "--partition", "0"],
            [(0, 10), (1, 4)],
        ),
    ];
    if testkit::skip::real_cluster() {
        // The mock broker does not look offsets up by timestamp (it answers "none" for any).
        round_trips.push((vec!["--to-timestamp", before_production], [(0, 0), (1, 0)]));
    }
    for (target, expected) in round_trips {
        let mut args = vec!["set", "--topic", topic.as_str()];
        args.extend(target.iter().copied());
        args.push("--execute");
        args.extend_from_slice(idle_group_flags());
        let (code, stdout, _) = offsets(&config, &args).await;
        assert_eq!(code, 0, "{target:?}");
        assert!(stdout.contains("done:"), "{stdout}");
        assert_eq!(
            db.stored_offsets(&group, &topic).await,
            expected,
            "{target:?}"
        );
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_refuses_an_offset_outside_the_log_an_unknown_partition_and_a_missing_target() {
    let db = TestDb::create().await;
    let mut broker = broker();
    let topic = unique("ranged");
    broker.create_topic(&topic, 2).expect("create the topic");
    let group = unique("group");
    produce(&broker, &topic, 0, 0..10);
    produce(&broker, &topic, 1, 0..6);
    store_offsets(&db, &group, &topic, &[(0, 7), (1, 3)]).await;
    let (config, _) = sink_config(&broker, &db, &group, &counter_mapping(&topic));

    // 11 is past partition 0's end; 8 fits partition 0 but not partition 1 (end 6).
    for target in [
        ["--to-offset", "11", "--partition", "0"],
        ["--to-offset", "8", "--partition", "1"],
    ] {
        let mut args = vec!["set", "--topic", topic.as_str(), "--execute"];
        args.extend(target);
        let (code, _, stderr) = offsets(&config, &args).await;
        assert_eq!(code, 1, "{target:?}");
        assert!(stderr.contains("outside the log"), "{stderr}");
    }
    let (code, _, stderr) = offsets(
        &config,
        &["set", "--topic", &topic, "--to-offset", "8", "--execute"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("{topic}/1: 8 is outside the log, 0..=6")),
        "{stderr}"
    );
    let (code, _, stderr) = offsets(
        &config,
        &[
            "set",
            "--topic",
            &topic,
            "--to-latest",
            "--partition",
            "2",
            "--execute",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(stderr.contains("has no partition 2"), "{stderr}");
    let (code, _, stderr) =
        offsets(&config, &["set", "--topic", "no_such_topic", "--to-latest"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert_eq!(db.stored_offsets(&group, &topic).await, [(0, 7), (1, 3)]);

    // Exactly one target: clap refuses none or two with its usage exit code.
    let (code, _, _) = offsets(&config, &["set", "--topic", &topic]).await;
    assert_eq!(code, 2);
    let (code, _, _) = offsets(
        &config,
        &[
            "set",
            "--topic",
            &topic,
            "--to-earliest",
            "--to-offset",
            "1",
        ],
    )
    .await;
    assert_eq!(code, 2);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_refuses_while_the_connector_runs_and_with_force_fences_it_to_reapply_from_the_new_offset(
) {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl("CREATE TABLE t (n bigint)")
        .topic("rewound")
        .partitions(1)
        .build()
        .await;
    produce(&broker, &topic, 0, 0..40);
    let sink = Sink::start(&broker, &db, &group, &counter_mapping(&topic));
    wait_for_offsets(&db, &group, &topic, &[(0, 40)]).await;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM t").await, 40);
    let (config, _) = sink_config(&broker, &db, &group, &counter_mapping(&topic));

    // A dry run only warns; --execute without --force refuses and changes nothing.
    let (code, stdout, _) =
        offsets(&config, &["set", "--topic", &topic, "--to-offset", "25"]).await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains("would be refused without --force"),
        "{stdout}"
    );
    let (code, _, stderr) = offsets(
        &config,
        &["set", "--topic", &topic, "--to-offset", "25", "--execute"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("refused") && stderr.contains("--force") && stderr.contains("fenced"),
        "{stderr}"
    );
    if testkit::skip::real_cluster() {
        assert!(stderr.contains("1 live member(s)"), "{stderr}");
    }
    assert_eq!(db.stored_offsets(&group, &topic).await, [(0, 40)]);

    let (code, stdout, _) = offsets(
        &config,
        &[
            "set",
            "--topic",
            &topic,
            "--to-offset",
            "25",
            "--force",
            "--execute",
        ],
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("set {topic}/0: 40 -> 25")),
        "{stdout}"
    );
    assert_eq!(db.stored_offsets(&group, &topic).await, [(0, 25)]);

    // The running connector only notices at its next commit: give it records. Its batch from 40
    // is fenced, it seeks to 25 and applies 25..50, so 25..40 twice in all and nothing else.
    produce(&broker, &topic, 0, 40..50);
    wait_for_offsets(&db, &group, &topic, &[(0, 50)]).await;
    let fenced = sink
        .metric("kafka_pg_sink_fenced_commits_total", "")
        .unwrap_or(0.0);
    assert!(fenced > 0.0, "the running connector was not fenced");
    assert_eq!(db.scalar_i64("SELECT count(*) FROM t").await, 40 + 15 + 10);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM (SELECT n FROM t GROUP BY n HAVING count(*) = 2 AND min(n) >= 25 AND max(n) < 40) d").await,
        15
    );
    assert_eq!(db.scalar_i64("SELECT count(DISTINCT n) FROM t").await, 50);
    assert!(sink
        .signal_and_wait("TERM", Duration::from_secs(30))
        .success());
    db.drop_db().await;
}
