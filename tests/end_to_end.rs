//! The real binary against a real Postgres and a Kafka-protocol broker over TCP.

use std::collections::BTreeMap;
use std::time::Duration;

use testkit::prelude::*;

const FAST_BATCHES: &str = "[batch]\nmax_records = 200\nmax_wait_ms = 50\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upserts_deletes_and_duplicate_keys_end_in_the_state_of_applying_every_record_in_order() {
    let Built { broker, db, topic, group, .. } = Scenario::new()
        .ddl("CREATE TABLE accounts (id text PRIMARY KEY, balance numeric NOT NULL, last_offset bigint, note text)")
        .topic("accounts")
        .partitions(3)
        .build()
        .await;

    // Keys are spread over partitions; each key stays in one partition, so per-key order is
    // the production order. Expected state is computed here, independently of the connector.
    let mut producer = TestProducer::new(&broker.bootstrap);
    let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut offsets = [0i64; 3];
    for i in 0..3000u64 {
        let key = format!("k{}", i * 7 % 101);
        let partition = (i * 7 % 101 % 3) as i32;
        if i % 17 == 5 {
            producer.send(&topic, partition, &key, None);
            expected.remove(&key);
        } else {
            let balance = format!("{}.{:03}", i, i % 1000);
            let note = if i % 2 == 0 {
                "tab\tand \\ backslash"
            } else {
                "plain"
            };
            let value = format!(
                r#"{{"balance":{balance},"meta":{{"note":"{}"}}}}"#,
                note.replace('\\', "\\\\").replace('\t', "\\t")
            );
            producer.send(&topic, partition, &key, Some(&value));
            expected.insert(key, (balance, note.to_owned()));
        }
        offsets[partition as usize] += 1;
    }
    producer.flush();

    let rest = format!(
        "{FAST_BATCHES}\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"accounts\"\nkey = [\"id\"]\n\
         columns = {{ id = \"key\", balance = \"value.balance\", note = \"value.meta.note\", last_offset = \"kafka.offset\" }}\n"
    );
    let sink = Sink::start(&broker, &db, &group, &rest);
    let done = eventually(Duration::from_secs(60), || async {
        db.stored_offsets(&group, &topic).await
            == vec![(0, offsets[0]), (1, offsets[1]), (2, offsets[2])]
    })
    .await;
    assert!(
        done,
        "offsets never reached the log end: {:?}",
        db.stored_offsets(&group, &topic).await
    );

    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, balance::text, note FROM accounts ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let actual: BTreeMap<String, (String, String)> =
        rows.into_iter().map(|(k, b, n)| (k, (b, n))).collect();
    assert_eq!(actual, expected);

    // The metrics agree with what happened.
    let consumed = sink
        .metric("kafka_pg_sink_records_consumed_total", &topic)
        .unwrap();
    assert_eq!(consumed, 3000.0);
    assert!(
        sink.metric("kafka_pg_sink_batches_committed_total", &topic)
            .unwrap()
            >= 1.0
    );
    assert_eq!(sink.get("/readyz").map(|(s, _)| s), Some(200));
    assert_eq!(sink.get("/healthz").map(|(s, _)| s), Some(200));
    drop(sink);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_what_was_buffered_and_exits_zero() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(PAYMENTS_DDL)
        .topic("payments")
        .partitions(2)
        .build()
        .await;
    // Nothing flushes by size or time during the test: only the drain can write these rows.
    let rest = format!(
        "[batch]\nmax_records = 100000\nmax_buffered_records = 100000\nmax_wait_ms = 600000\n{}",
        payments_mapping(&topic)
    );
    let sink = Sink::start(&broker, &db, &group, &rest);

    let mut producer = TestProducer::new(&broker.bootstrap);
    let mut total = 0;
    for id in 1..=500u64 {
        let (value, cents) = payment(id);
        producer.send(&topic, (id % 2) as i32, &id.to_string(), Some(&value));
        total += cents;
    }
    producer.flush();
    let consumed = eventually(Duration::from_secs(30), || async {
        sink.metric("kafka_pg_sink_records_consumed_total", &topic) == Some(500.0)
    })
    .await;
    assert!(consumed, "the connector did not consume the records");
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM payments").await,
        0,
        "rows were written before the drain"
    );

    let status = sink.signal_and_wait("TERM", Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(db.scalar_i64("SELECT count(*) FROM payments").await, 500);
    assert_eq!(
        db.scalar_i64("SELECT (sum(amount) * 100)::bigint FROM payments")
            .await,
        total
    );
    assert_eq!(
        db.stored_offsets(&group, &topic).await,
        vec![(0, 250), (1, 250)]
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_postgres_offsets_whatever_kafka_has_committed() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(PAYMENTS_DDL)
        .topic("payments")
        .partitions(2)
        .build()
        .await;
    let rest = format!("{FAST_BATCHES}{}", payments_mapping(&topic));
    let mut producer = TestProducer::new(&broker.bootstrap);
    let mut next_id = 1u64;
    let mut produce = |producer: &mut TestProducer, n: u64| {
        for _ in 0..n {
            let (value, _) = payment(next_id);
            producer.send(
                &topic,
                (next_id % 2) as i32,
                &next_id.to_string(),
                Some(&value),
            );
            next_id += 1;
        }
        producer.flush();
    };

    // Round 1: consume 400 records, stop cleanly.
    produce(&mut producer, 400);
    let sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(60), || async {
            db.scalar_i64("SELECT count(*) FROM payments").await == 400
        })
        .await
    );
    assert!(sink
        .signal_and_wait("TERM", Duration::from_secs(30))
        .success());

    // Kafka's committed offsets rewound to 0: a connector trusting Kafka would re-apply 400.
    commit_group_offsets(&broker.bootstrap, &group, &topic, &[0, 0]).expect("commit in Kafka");
    produce(&mut producer, 200);
    let sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(60), || async {
            db.scalar_i64("SELECT count(*) FROM payments").await == 600
        })
        .await
    );
    assert!(sink
        .signal_and_wait("TERM", Duration::from_secs(30))
        .success());
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM applied").await,
        600,
        "records were applied twice"
    );

    // Kafka's committed offsets moved to the end: a connector trusting Kafka would skip 200.
    let ends = broker.end_offsets(&topic, 2).expect("end offsets");
    produce(&mut producer, 200);
    let now = broker.end_offsets(&topic, 2).expect("end offsets");
    commit_group_offsets(&broker.bootstrap, &group, &topic, &now).expect("commit in Kafka");
    assert_ne!(ends, broker.end_offsets(&topic, 2).expect("end offsets"));
    let sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(60), || async {
            db.scalar_i64("SELECT count(*) FROM payments").await == 800
        })
        .await,
        "records after the stored offsets were skipped: {} rows",
        db.scalar_i64("SELECT count(*) FROM payments").await
    );
    drop(sink);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM applied").await, 800);
    assert_eq!(
        db.stored_offsets(&group, &topic).await,
        vec![(0, 400), (1, 400)]
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_every_problem_and_the_connector_refuses_to_start() {
    let db = TestDb::create().await;
    db.exec("CREATE TABLE balances (id bigint, amount text)")
        .await;
    let broker = broker();
    let group = unique("group");
    let rest = "[[mappings]]\ntopic = \"t\"\ntable = \"balances\"\nkey = [\"id\"]\ncolumns = { id = \"value.id\", amount = \"value.amount\", note = \"value.note\" }\ntypes = { amount = \"numeric\" }\n";
    let (config, _http) = sink_config(&broker, &db, &group, rest);

    let check = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
        .args(["--config", config.0.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    for needle in ["note", "amount", "CREATE UNIQUE INDEX", "migrate"] {
        assert!(
            report.contains(needle),
            "`{needle}` missing from:\n{report}"
        );
    }

    let run = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
        .args(["--config", config.0.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not match the configuration")
            && stderr.contains("CREATE UNIQUE INDEX"),
        "{stderr}"
    );
    db.drop_db().await;
}

/// Issue 21: the start-up log is a summary a person can read (one line per mapping, the password
/// redacted), without colour codes when it goes to a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_log_is_a_readable_summary_without_colour_codes_in_a_file() {
    let db = TestDb::create().await;
    let broker = broker();
    let topic = unique("summary");
    let rest = format!(
        "[[mappings]]\ntopic = \"{topic}\"\ntable = \"t\"\nmode = \"insert\"\ncolumns = {{ n = \"value.n\" }}\n"
    );
    let (config, _) = sink_config(&broker, &db, &unique("group"), &rest);
    // A password to redact, and a database that does not exist, so the run stops at once.
    let text = std::fs::read_to_string(&config.0).unwrap().replace(
        &format!("/{}", db.name),
        &format!("/{}", unique("kps_missing")),
    );
    let text = text.replacen("postgres://postgres@", "postgres://postgres:s3cret-pw@", 1);
    std::fs::write(&config.0, text).unwrap();
    let (code, stderr) = run_until_exit(&config, Duration::from_secs(30));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "mapping {topic} -> public.t: insert, format json, on_error dead_letter"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("kafka-pg-sink 0."), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a file: {stderr}"
    );
    assert!(
        !stderr.contains("MappingConfig") && !stderr.contains("Some("),
        "{stderr}"
    );
    db.drop_db().await;
}

/// Issue 21: any identifier Postgres accepts when quoted is a table, schema or column name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_columns_with_any_quoted_name_are_written() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(r#"CREATE SCHEMA "eu.billing";"#)
        .ddl(r#"CREATE TABLE "eu.billing"."payments-eu" ("order-id" bigint PRIMARY KEY, "Betrag €" numeric NOT NULL, "say ""hi""" text);"#)
        .topic("quoted")
        .partitions(1)
        .build()
        .await;
    let records: Vec<Produced> = (1..=20)
        .map(|i| {
            (
                0,
                i.to_string(),
                Some(format!(
                    r#"{{"id":{},"amount":"{i}.50","note":"n{i}"}}"#,
                    i % 10
                )),
            )
        })
        .collect();
    stream(&broker.bootstrap, &topic, records, 10_000)
        .join()
        .unwrap();
    let rest = format!(
        "{FAST_BATCHES}[[mappings]]\ntopic = \"{topic}\"\ntable = '\"eu.billing\".\"payments-eu\"'\nkey = [\"order-id\"]\n\
         columns = {{ \"order-id\" = \"value.id\", \"Betrag €\" = \"value.amount\", 'say \"hi\"' = \"value.note\" }}\n"
    );
    let sink = Sink::start(&broker, &db, &group, &rest);
    assert!(
        eventually(Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 20)]
        })
        .await,
        "stored {:?}",
        db.stored_offsets(&group, &topic).await
    );
    // Ids 0..9, each last written by record 10 + id (or 20 for id 0).
    assert_eq!(
        db.scalar_text(r#"SELECT string_agg("order-id" || '=' || "Betrag €" || '/' || "say ""hi""", ',' ORDER BY "order-id") FROM "eu.billing"."payments-eu""#)
            .await,
        (0..10)
            .map(|id| {
                let i = if id == 0 { 20 } else { 10 + id };
                format!("{id}={i}.50/n{i}")
            })
            .collect::<Vec<_>>()
            .join(",")
    );
    drop(sink);
    db.drop_db().await;
}

/// Issue 21: a one-line progress summary at info level, at the configured interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_line_says_rate_lag_and_bad_records() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl("CREATE TABLE t (n bigint NOT NULL)")
        .topic("progress")
        .partitions(2)
        .build()
        .await;
    let mut records: Vec<Produced> = (0..300)
        .map(|i| (i % 2, i.to_string(), Some(format!(r#"{{"n":{i}}}"#))))
        .collect();
    records.push((0, "bad".into(), Some("not json".into())));
    stream(&broker.bootstrap, &topic, records, 10_000)
        .join()
        .unwrap();
    let rest = format!(
        "[log]\nprogress_interval_ms = 500\n{FAST_BATCHES}[[mappings]]\ntopic = \"{topic}\"\ntable = \"t\"\nmode = \"insert\"\ncolumns = {{ n = \"value.n\" }}\n"
    );
    let (config, http) = sink_config(&broker, &db, &group, &rest);
    let log = TempFile(std::env::temp_dir().join(format!("{}.log", unique("kps_progress"))));
    let sink = Sink::start_logged(config, http, &log.0);
    assert!(
        eventually(Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 151), (1, 150)]
        })
        .await
    );
    // Statistics bring the log end every 5 s: the lag reads 0 within a few lines.
    let settled = eventually(Duration::from_secs(20), || async {
        let text = std::fs::read_to_string(&log.0).unwrap_or_default();
        text.lines().any(|l| {
            l.contains("progress: ")
                && l.contains(
                    "lag 0 records, 1 dead letters, 0 skipped, 0 stopped and 0 stalled partitions",
                )
        })
    })
    .await;
    drop(sink);
    let text = std::fs::read_to_string(&log.0).unwrap_or_default();
    assert!(settled, "{text}");
    assert!(
        text.lines().filter(|l| l.contains("progress: ")).count() >= 2,
        "{text}"
    );
    db.drop_db().await;
}

/// Producers compress their batches with whichever codec they are configured with; a topic holds
/// batches of every kind. Each codec Kafka offers gets a partition of its own, so a codec the
/// connector's librdkafka was built without shows as that partition's rows missing, not as a
/// short total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_compressed_with_every_kafka_codec_are_read() {
    const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
    const PER_CODEC: u64 = 400;
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(PAYMENTS_DDL)
        .topic("compressed")
        .partitions(CODECS.len() as i32)
        .build()
        .await;
    let mut expected = Vec::new();
    let mut id = 0;
    for (partition, codec) in CODECS.iter().enumerate() {
        let mut producer =
            TestProducer::with_settings(&broker.bootstrap, &[("compression.type", codec)]);
        let mut cents_total = 0;
        for _ in 0..PER_CODEC {
            id += 1;
            let (value, cents) = payment(id);
            producer.send(&topic, partition as i32, &id.to_string(), Some(&value));
            cents_total += cents;
        }
        producer.flush();
        expected.push((partition as i32, PER_CODEC as i64, cents_total));
    }
    let rest = format!("{FAST_BATCHES}{}", payments_mapping(&topic));
    let sink = Sink::start(&broker, &db, &group, &rest);
    let log_end: Vec<(i32, i64)> = (0..CODECS.len() as i32)
        .map(|p| (p, PER_CODEC as i64))
        .collect();
    let done = eventually(Duration::from_secs(60), || async {
        db.stored_offsets(&group, &topic).await == log_end
    })
    .await;
    let rows: Vec<(i32, i64, i64)> = sqlx::query_as(
        "SELECT src_partition, count(*), (sum(amount) * 100)::bigint FROM payments \
         GROUP BY src_partition ORDER BY src_partition",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows, expected,
        "(partition, rows, cents) per partition, one codec each: {CODECS:?}"
    );
    assert!(
        done,
        "offsets: {:?}",
        db.stored_offsets(&group, &topic).await
    );
    drop(sink);
    db.drop_db().await;
}
