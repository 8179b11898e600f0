//! Write modes and bad records through the real binary, against real Postgres and a broker over TCP.

use std::collections::BTreeMap;
use std::time::Duration;

use testkit::prelude::*;

/// Records committed so far (0 until the connector has created its tables).
async fn committed(db: &TestDb, group: &str) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT coalesce(sum(next_offset), 0)::bigint FROM kafka_pg_sink.offsets WHERE group_id = $1")
        .bind(group)
        .fetch_one(&db.pool)
        .await
        .unwrap_or(0)
}

async fn wait_for_log_end(db: &TestDb, broker: &Broker, group: &str, topic: &str, partitions: i32) {
    let ends = broker.end_offsets(topic, partitions).expect("end offsets");
    let expected: Vec<(i32, i64)> = ends
        .iter()
        .enumerate()
        .map(|(p, e)| (p as i32, *e))
        .collect();
    let done = eventually(Duration::from_secs(90), || async {
        db.stored_offsets(group, topic).await == expected
    })
    .await;
    assert!(
        done,
        "stored offsets {:?} never reached the log end {expected:?}",
        db.stored_offsets(group, topic).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_mode_appends_every_record_exactly_once_through_kill_9() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(
            "CREATE TABLE events (seq bigint NOT NULL, amount numeric NOT NULL, src_offset bigint)",
        )
        .topic("events")
        .partitions(3)
        .build()
        .await;
    let n = 15_000u64;
    let mut total = 0i64;
    // No natural key and repeated payloads: only the offset transaction can deduplicate.
    let records: Vec<Produced> = (0..n)
        .map(|i| {
            let cents = (i % 997) as i64;
            total += cents;
            (
                (i % 3) as i32,
                format!("k{}", i % 5),
                Some(format!(
                    r#"{{"seq":{},"amount":"{}.{:02}"}}"#,
                    i % 50,
                    cents / 100,
                    cents % 100
                )),
            )
        })
        .collect();
    let producer = stream(&broker.bootstrap, &topic, records, 700);
    let rest = format!(
        "[batch]\nmax_records = 250\nmax_wait_ms = 50\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"events\"\nmode = \"insert\"\n\
         columns = {{ seq = \"value.seq\", amount = \"value.amount\", src_offset = \"kafka.offset\" }}\ntypes = {{ amount = \"numeric\" }}\n"
    );
    let mid = kill_repeatedly(&broker, &db, &group, &rest, &producer, 3, n as i64, || {
        committed(&db, &group)
    })
    .await;
    producer.join().unwrap();
    assert!(mid >= 2, "only {mid} kills landed mid-stream");
    let _sink = Sink::start(&broker, &db, &group, &rest);
    wait_for_log_end(&db, &broker, &group, &topic, 3).await;
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM events").await,
        n as i64,
        "appended rows"
    );
    assert_eq!(
        db.scalar_i64("SELECT (sum(amount) * 100)::bigint FROM events")
            .await,
        total
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM (SELECT src_offset, seq FROM events GROUP BY 1, 2 HAVING count(*) > 1) d").await, 0);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accumulate_mode_sums_exactly_per_account_and_hour_through_kill_9() {
    let Built { broker, db, topic, group, .. } = Scenario::new()
        .ddl("CREATE TABLE usage (account text NOT NULL, hour timestamptz NOT NULL, bytes numeric NOT NULL, \
         peak bigint, events bigint NOT NULL, last_ref text, PRIMARY KEY (account, hour))")
        .topic("usage")
        .partitions(4)
        .build()
        .await;
    let n = 16_000u64;
    let base_ms: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let mut truth: BTreeMap<(String, i64), (i64, i64, i64)> = BTreeMap::new();
    let records: Vec<Produced> = (0..n)
        .map(|i| {
            let account = format!("acct-{}", i % 7);
            let ts = base_ms + (i as i64 * 7919 % 5) * 3_600_000 + (i as i64 % 3_600_000);
            let bytes = (i as i64 * 31) % 100_000;
            let hour = ts - ts.rem_euclid(3_600_000);
            let e = truth.entry((account.clone(), hour)).or_insert((0, 0, 0));
            e.0 += bytes;
            e.1 = e.1.max(bytes);
            e.2 += 1;
            let value =
                format!(r#"{{"account":"{account}","bytes":{bytes},"ts":{ts},"ref":"r{i}"}}"#);
            ((i % 4) as i32, account, Some(value))
        })
        .collect();
    let producer = stream(&broker.bootstrap, &topic, records, 800);
    let rest = format!(
        "[batch]\nmax_records = 300\nmax_wait_ms = 50\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"usage\"\nmode = \"accumulate\"\n\
         key = [\"account\"]\ncolumns = {{ account = \"value.account\", bytes = \"value.bytes\", peak = \"value.bytes\", last_ref = \"value.ref\" }}\n\
         types = {{ bytes = \"numeric\", peak = \"bigint\" }}\n\
         accumulate = {{ bytes = \"add\", peak = \"max\", events = \"count\", last_ref = \"last\" }}\n\
         window = {{ column = \"hour\", source = \"value.ts\", size = \"1h\" }}\n"
    );
    let mid = kill_repeatedly(&broker, &db, &group, &rest, &producer, 3, n as i64, || {
        committed(&db, &group)
    })
    .await;
    producer.join().unwrap();
    assert!(mid >= 2, "only {mid} kills landed mid-stream");
    let _sink = Sink::start(&broker, &db, &group, &rest);
    wait_for_log_end(&db, &broker, &group, &topic, 4).await;

    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT account, (extract(epoch FROM hour) * 1000)::bigint, bytes::bigint, peak, events FROM usage ORDER BY 1, 2",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let actual: BTreeMap<(String, i64), (i64, i64, i64)> = rows
        .into_iter()
        .map(|(a, h, b, p, e)| ((a, h), (b, p, e)))
        .collect();
    assert_eq!(actual.len(), truth.len());
    assert_eq!(
        actual, truth,
        "per-account, per-hour sums differ from what was produced"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_guard_keeps_the_newest_version_whatever_the_arrival_order() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl("CREATE TABLE profiles (id text PRIMARY KEY, version bigint NOT NULL, name text)")
        .topic("profiles")
        .partitions(2)
        .build()
        .await;
    // Each key gets versions 1..=20 in a scrambled order, spread over several batches.
    let mut records = Vec::new();
    for round in 0..20u64 {
        for key in 0..30u64 {
            let version = (round * 7 + key * 3) % 20 + 1;
            let value = format!(r#"{{"v":{version},"name":"n{key}-v{version}"}}"#);
            records.push(((key % 2) as i32, format!("user-{key}"), Some(value)));
        }
    }
    stream(&broker.bootstrap, &topic, records, 5000)
        .join()
        .unwrap();
    let rest = format!(
        "[batch]\nmax_records = 37\nmax_wait_ms = 20\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"profiles\"\nkey = [\"id\"]\n\
         only_if_newer = \"version\"\ncolumns = {{ id = \"key\", version = \"value.v\", name = \"value.name\" }}\n"
    );
    let _sink = Sink::start(&broker, &db, &group, &rest);
    wait_for_log_end(&db, &broker, &group, &topic, 2).await;
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT id, version, name FROM profiles ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 30);
    for (id, version, name) in rows {
        assert_eq!(version, 20, "{id} ended at version {version}");
        assert_eq!(name, format!("n{}-v20", id.trim_start_matches("user-")));
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstone_sequences_within_and_across_batches_end_as_applied_in_order() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl("CREATE TABLE kv (k text PRIMARY KEY, v bigint NOT NULL, extra text DEFAULT 'fresh')")
        .topic("kv")
        .partitions(1)
        .build()
        .await;
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut records = Vec::new();
    for i in 0..600u64 {
        let key = format!("k{}", i * 13 % 17);
        if (i * 7) % 5 == 0 {
            records.push((0, key.clone(), None));
            expected.remove(&key);
        } else {
            records.push((0, key.clone(), Some(format!(r#"{{"v":{i}}}"#))));
            expected.insert(key, i as i64);
        }
    }
    stream(&broker.bootstrap, &topic, records, 5000)
        .join()
        .unwrap();
    // A row the stream never writes but deletes: an unmapped column shows a delete really happened.
    db.exec("INSERT INTO kv VALUES ('k3', -1, 'stale')").await;
    let rest = format!(
        "[batch]\nmax_records = 23\nmax_wait_ms = 20\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"kv\"\nkey = [\"k\"]\n\
         columns = {{ k = \"key\", v = \"value.v\" }}\n"
    );
    let _sink = Sink::start(&broker, &db, &group, &rest);
    wait_for_log_end(&db, &broker, &group, &topic, 1).await;
    let rows: Vec<(String, i64, Option<String>)> =
        sqlx::query_as("SELECT k, v, extra FROM kv ORDER BY k")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let actual: BTreeMap<String, i64> = rows.iter().map(|(k, v, _)| (k.clone(), *v)).collect();
    assert_eq!(actual, expected);
    assert!(
        rows.iter()
            .all(|(_, _, extra)| extra.as_deref() == Some("fresh")),
        "{rows:?}"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_land_in_dead_letters_once_and_their_neighbours_commit() {
    let Built { broker, db, topic, group, .. } = Scenario::new()
        .ddl("CREATE TABLE orders (id bigint PRIMARY KEY, qty integer NOT NULL CHECK (qty > 0), placed timestamptz, sku uuid)")
        .topic("orders")
        .partitions(2)
        .build()
        .await;
    let mut records = Vec::new();
    let mut good = 0;
    let mut poison = Vec::new();
    for i in 0..400u64 {
        let p = (i % 2) as i32;
        let (value, kind) = match i % 50 {
            7 => ("{broken".to_string(), Some("decode")),
            13 => (format!(r#"{{"id":{i},"qty":"many"}}"#), Some("convert")),
            21 => (format!(r#"{{"id":{i},"qty":-5}}"#), Some("database")),
            33 => (
                format!(r#"{{"id":{i},"qty":1,"sku":"not-a-uuid"}}"#),
                Some("convert"),
            ),
            41 => (r#"{"qty":3}"#.to_string(), Some("decode")),
            _ => (
                format!(
                    r#"{{"id":{i},"qty":{},"placed":{},"sku":"0b5e9e8a-8f4e-4d0c-9a43-7a1f3b9d{:04}"}}"#,
                    i % 9 + 1,
                    1_767_225_600_000i64 + i as i64,
                    i
                ),
                None,
            ),
        };
        match kind {
            Some(stage) => poison.push((i, stage)),
            None => good += 1,
        }
        records.push((p, i.to_string(), Some(value)));
    }
    stream(&broker.bootstrap, &topic, records, 5000)
        .join()
        .unwrap();
    let rest = format!(
        "[batch]\nmax_records = 100\nmax_wait_ms = 50\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"orders\"\nkey = [\"id\"]\n\
         columns = {{ id = \"value.id\", qty = \"value.qty\", placed = \"value.placed\", sku = \"value.sku\" }}\n\
         types = {{ qty = \"integer\", placed = \"timestamptz\", sku = \"uuid\" }}\n"
    );
    let sink = Sink::start(&broker, &db, &group, &rest);
    wait_for_log_end(&db, &broker, &group, &topic, 2).await;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM orders").await, good);
    let letters: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT convert_from(record_key, 'UTF8')::bigint, stage, error FROM kafka_pg_sink.dead_letters ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let found: Vec<(u64, &str)> = letters
        .iter()
        .map(|(k, s, _)| (*k as u64, s.as_str()))
        .collect();
    assert_eq!(found, poison, "dead letters: {letters:#?}");
    assert!(
        letters
            .iter()
            .any(|(_, s, e)| s == "database" && e.contains("23514")),
        "{letters:#?}"
    );
    assert_eq!(
        sink.metric("kafka_pg_sink_dead_letters_total", &topic),
        Some(poison.len() as f64)
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_policy_stops_only_the_partition_with_the_bad_record() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl("CREATE TABLE t (id bigint PRIMARY KEY, n integer NOT NULL)")
        .topic("strict")
        .partitions(2)
        .build()
        .await;
    let mut records = Vec::new();
    for i in 0..200u64 {
        let value = if i == 100 {
            r#"{"id":100,"n":"x"}"#.to_string()
        } else {
            format!(r#"{{"id":{i},"n":{i}}}"#)
        };
        records.push(((i % 2) as i32, i.to_string(), Some(value)));
    }
    stream(&broker.bootstrap, &topic, records, 5000)
        .join()
        .unwrap();
    let rest = format!(
        "[batch]\nmax_records = 10\nmax_wait_ms = 20\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"t\"\nkey = [\"id\"]\non_error = \"fail\"\n\
         columns = {{ id = \"value.id\", n = \"value.n\" }}\ntypes = {{ n = \"integer\" }}\n"
    );
    let sink = Sink::start(&broker, &db, &group, &rest);
    // Partition 1 completes; partition 0 stops at the batch holding record 100 (offset 50).
    let done = eventually(Duration::from_secs(60), || async {
        let offsets = db.stored_offsets(&group, &topic).await;
        offsets.iter().any(|&(p, o)| p == 1 && o == 100)
            && sink.metric("kafka_pg_sink_stopped_partitions", "") == Some(1.0)
    })
    .await;
    assert!(
        done,
        "offsets {:?}",
        db.stored_offsets(&group, &topic).await
    );
    let p0 = db.stored_offsets(&group, &topic).await[0];
    assert_eq!(p0.0, 0);
    assert!(
        p0.1 <= 50,
        "partition 0 committed past the bad record: {p0:?}"
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM t WHERE id = 100").await,
        0
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM kafka_pg_sink.dead_letters")
            .await,
        0
    );
    let (status, body) = sink.get("/readyz").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"stopped_partitions\":1"), "{body}");
    assert_eq!(sink.get("/healthz").unwrap().0, 200);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_feeds_many_tables_from_many_topics() {
    let db = TestDb::create().await;
    db.exec(
        "CREATE TABLE latest (account text PRIMARY KEY, amount numeric NOT NULL); \
         CREATE TABLE journal (account text NOT NULL, amount numeric NOT NULL, src_offset bigint NOT NULL, headers jsonb); \
         CREATE TABLE audit (line text NOT NULL, src_topic text NOT NULL, region text NOT NULL)",
    )
    .await;
    let mut broker = broker();
    let payments = unique("payments");
    let logs = unique("logs");
    broker.create_topic(&payments, 2).expect("create the topic");
    broker.create_topic(&logs, 1).expect("create the topic");
    let mut records = Vec::new();
    for i in 0..300u64 {
        records.push((
            (i % 2) as i32,
            format!("a{}", i % 10),
            Some(format!(r#"{{"amount":"{i}.50"}}"#)),
        ));
    }
    stream(&broker.bootstrap, &payments, records, 5000)
        .join()
        .unwrap();
    let lines: Vec<Produced> = (0..50)
        .map(|i| (0, String::new(), Some(format!("line {i}"))))
        .collect();
    stream(&broker.bootstrap, &logs, lines, 5000)
        .join()
        .unwrap();
    let group = unique("group");
    let rest = format!(
        r#"[batch]
max_records = 64
max_wait_ms = 30

[[mappings]]
topic = "{payments}"
table = "latest"
key = ["account"]
columns = {{ account = "key", amount = "value.amount" }}

[[mappings]]
topic = "{payments}"
table = "journal"
mode = "insert"
columns = {{ account = "key", amount = "value.amount", src_offset = "kafka.offset", headers = "headers" }}

[[mappings]]
topic = "{logs}"
table = "audit"
mode = "insert"
format = "text"
columns = {{ line = "value", src_topic = "kafka.topic" }}
constants = {{ region = "eu-west-1" }}
"#
    );
    let _sink = Sink::start(&broker, &db, &group, &rest);
    wait_for_log_end(&db, &broker, &group, &payments, 2).await;
    wait_for_log_end(&db, &broker, &group, &logs, 1).await;
    assert_eq!(db.scalar_i64("SELECT count(*) FROM latest").await, 10);
    // The last amount per account: ids 290..299 map to accounts a0..a9.
    assert_eq!(
        db.scalar_i64("SELECT (sum(amount) * 10)::bigint FROM latest")
            .await,
        (290..300).map(|i| i * 10 + 5).sum::<i64>()
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM journal").await, 300);
    assert_eq!(
        db.scalar_i64("SELECT (sum(amount) * 10)::bigint FROM journal")
            .await,
        (0..300).map(|i| i * 10 + 5).sum::<i64>()
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM audit WHERE region = 'eu-west-1'")
            .await,
        50
    );
    assert_eq!(
        db.scalar_text("SELECT min(src_topic) FROM audit").await,
        logs
    );
    db.drop_db().await;
}

/// A trigger that records, per row of `ev`, the first word of the statement that stored it.
const VIA_DDL: &str = "CREATE TABLE ev_via (via text NOT NULL);
CREATE FUNCTION note_via() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO ev_via VALUES (upper(split_part(ltrim(current_query()), ' ', 1))); RETURN NEW; END $$;
CREATE TRIGGER via AFTER INSERT ON ev FOR EACH ROW EXECUTE FUNCTION note_via();";

/// Issue 20: insert-mode rows go by COPY straight into the table, in offset order, and a row
/// Postgres refuses is still isolated (the batch is written again through the stage, where the
/// bad row is found) while its neighbours commit. A table with an INSERT rule, which COPY would
/// bypass, keeps the staged `INSERT … SELECT`, so its rule still fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_copy_straight_into_the_table_in_order_and_isolate_refused_rows() {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(
            "CREATE TABLE ev (seq bigserial PRIMARY KEY, n bigint NOT NULL CHECK (n <> 13), src_offset bigint NOT NULL)",
        )
        .ddl(VIA_DDL)
        .ddl("CREATE TABLE ruled (n bigint NOT NULL); CREATE TABLE ruled_log (n bigint NOT NULL)")
        .ddl("CREATE RULE log_it AS ON INSERT TO ruled DO ALSO INSERT INTO ruled_log VALUES (NEW.n)")
        .topic("direct")
        .partitions(2)
        .build()
        .await;
    let n = 600u64;
    let records: Vec<Produced> = (0..n)
        .map(|i| {
            (
                (i % 2) as i32,
                i.to_string(),
                Some(format!(r#"{{"n":{i}}}"#)),
            )
        })
        .collect();
    stream(&broker.bootstrap, &topic, records, 20_000)
        .join()
        .unwrap();
    let rest = format!(
        "[batch]\nmax_records = 100\nmax_wait_ms = 20\n\
         [[mappings]]\ntopic = \"{topic}\"\ntable = \"ev\"\nmode = \"insert\"\non_error = \"dead_letter\"\n\
         columns = {{ n = \"value.n\", src_offset = \"kafka.offset\" }}\n\
         [[mappings]]\ntopic = \"{topic}\"\ntable = \"ruled\"\nmode = \"insert\"\ncolumns = {{ n = \"value.n\" }}\n"
    );
    let sink = Sink::start(&broker, &db, &group, &rest);
    wait_for_log_end(&db, &broker, &group, &topic, 2).await;
    drop(sink);

    let all: i64 = (0..n as i64).sum();
    assert_eq!(db.scalar_i64("SELECT count(*) FROM ev").await, n as i64 - 1);
    assert_eq!(
        db.scalar_i64("SELECT sum(n)::bigint FROM ev").await,
        all - 13
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM kafka_pg_sink.dead_letters WHERE error LIKE '23514:%'")
            .await,
        1,
        "the refused row is a dead letter"
    );
    // Within a partition, rows were inserted in offset order (seq follows src_offset).
    let out_of_order = db
        .scalar_i64(
            "SELECT count(*) FROM (SELECT n % 2 AS p, src_offset, \
             lag(src_offset) OVER (PARTITION BY n % 2 ORDER BY seq) AS prev FROM ev) x \
             WHERE prev >= src_offset",
        )
        .await;
    assert_eq!(
        out_of_order, 0,
        "rows of a partition inserted out of offset order"
    );
    // How the rows arrived: the statement each row's trigger saw. Only the batch holding the
    // refused row (at most 100 records) went through the stage.
    let copied = db
        .scalar_i64("SELECT count(*) FROM ev_via WHERE via = 'COPY'")
        .await;
    assert!(
        copied >= n as i64 - 1 - 100,
        "only {copied} of {} rows were copied straight into the table",
        n - 1
    );
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM ev_via").await,
        n as i64 - 1
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM ruled").await, n as i64);
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM ruled_log").await,
        n as i64,
        "the INSERT rule fired for every row"
    );
}

/// Postgres refuses `COPY FROM` into a table whose row-level security applies to the writer
/// (0A000), so an insert mapping onto such a table keeps the staged `INSERT … SELECT`: the
/// connector, connected as a role the policy binds, writes every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_into_a_table_with_row_level_security_go_through_the_stage() {
    // Declared first, so it is dropped after the database whose tables it comes to own.
    let role = TestRole::create("kps_writer").await;
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl("CREATE TABLE guarded (n bigint NOT NULL)")
        .ddl("ALTER TABLE guarded ENABLE ROW LEVEL SECURITY; ALTER TABLE guarded FORCE ROW LEVEL SECURITY")
        .ddl("CREATE POLICY all_rows ON guarded USING (true) WITH CHECK (true)")
        .topic("guarded")
        .build()
        .await;
    db.exec(&format!(
        "GRANT CREATE, CONNECT ON DATABASE {} TO {r}; GRANT SELECT, INSERT ON guarded TO {r}",
        db.name,
        r = role.name
    ))
    .await;
    let records: Vec<Produced> = (0..200u64)
        .map(|i| (0, i.to_string(), Some(format!(r#"{{"n":{i}}}"#))))
        .collect();
    stream(&broker.bootstrap, &topic, records, 20_000)
        .join()
        .unwrap();
    let rest = format!(
        "[batch]\nmax_wait_ms = 20\n[[mappings]]\ntopic = \"{topic}\"\ntable = \"guarded\"\n\
         mode = \"insert\"\ncolumns = {{ n = \"value.n\" }}\n"
    );
    let (config, http) = sink_config(&broker, &db, &group, &rest);
    // The connector connects as the role (trust authentication on the test server).
    let text = std::fs::read_to_string(&config.0).unwrap();
    let url_line = format!("url = \"{}\"", db.url);
    assert!(text.contains(&url_line), "{text}");
    let as_role = format!("url = \"{}\"", role.url_for(&db.url));
    std::fs::write(&config.0, text.replace(&url_line, &as_role)).unwrap();
    let sink = Sink::start_with(config, http);
    let done = eventually(Duration::from_secs(60), || async {
        db.scalar_i64("SELECT count(*) FROM guarded").await == 200
    })
    .await;
    drop(sink);
    assert!(
        done,
        "{} of 200 rows in a table with row-level security",
        db.scalar_i64("SELECT count(*) FROM guarded").await
    );
    assert_eq!(
        db.scalar_i64("SELECT sum(n)::bigint FROM guarded").await,
        (0..200).sum::<i64>()
    );
}

/// Decimals for accumulate tests, in units of 10^-4 so that a model can sum them exactly.
mod decimals {
    use testkit::prelude::Rng;

    /// A random decimal with up to four places, as text (plain or with an exponent), its value in
    /// units of 10^-4, and its scale.
    pub fn random(rng: &mut Rng) -> (String, i128, u32) {
        let int = rng.range(0, 1_000_000_000) as i128 * if rng.chance(0.5) { 1 } else { 0 };
        let scale = rng.range(0, 5) as u32;
        let frac = rng.range(0, 10u64.pow(scale)) as i128;
        let negative = rng.chance(0.35);
        let units = (int * 10i128.pow(scale) + frac) * 10i128.pow(4 - scale);
        let sign = if negative { "-" } else { "" };
        let text = match scale {
            0 => format!("{sign}{int}"),
            _ if int > 0 && rng.chance(0.25) => {
                format!("{sign}{int}{frac:0w$}e-{scale}", w = scale as usize)
            }
            _ => format!("{sign}{int}.{frac:0w$}", w = scale as usize),
        };
        (text, if negative { -units } else { units }, scale)
    }

    /// `units` printed with `scale` places, as Postgres prints a numeric of that scale.
    pub fn print(units: i128, scale: u32) -> String {
        let sign = if units < 0 { "-" } else { "" };
        let abs = units.unsigned_abs();
        let frac = format!("{:04}", abs % 10_000);
        match scale {
            0 => format!("{sign}{}", abs / 10_000),
            s => format!("{sign}{}.{}", abs / 10_000, &frac[..s as usize]),
        }
    }

    /// A numeric's text in units of 10^-4 (at most four places).
    pub fn units(text: &str) -> i128 {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let frac = format!("{frac:0<4}");
        let units = int.parse::<i128>().unwrap() * 10_000 + frac[..4].parse::<i128>().unwrap();
        if negative {
            -units
        } else {
            units
        }
    }
}

/// One (account, hour) of an accumulate table, as the records say it must end.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Sum in units of 10^-4, and the largest scale of its terms.
    total: Option<(i128, u32)>,
    low: Option<i128>,
    peak: Option<i64>,
    last_ref: Option<String>,
    events: i64,
}

impl Tally {
    fn add(
        &mut self,
        amount: Option<&(String, i128, u32)>,
        peak: Option<i64>,
        reference: Option<String>,
    ) {
        self.events += 1;
        self.last_ref = reference;
        if let Some((_, units, scale)) = amount {
            self.total = Some(match self.total {
                Some((t, s)) => (t + units, s.max(*scale)),
                None => (*units, *scale),
            });
            self.low = Some(self.low.map_or(*units, |l| l.min(*units)));
        }
        if let Some(p) = peak {
            self.peak = Some(self.peak.map_or(p, |q| q.max(p)));
        }
    }
}

/// The accumulate table of [`Tally`] rows: a sum, a minimum, a maximum, the last reference and a
/// count per account and hour; `poison` is not a reference it takes, nor a minimum below -5·10^10.
const TALLY_DDL: &str = "CREATE TABLE tally (account text NOT NULL, hour timestamptz NOT NULL, \
    total numeric, low numeric CHECK (low > -50000000000), peak bigint, \
    last_ref text CHECK (last_ref <> 'poison'), events bigint NOT NULL, PRIMARY KEY (account, hour))";

fn tally_mapping(topic: &str) -> String {
    format!(
        "[[mappings]]\ntopic = \"{topic}\"\ntable = \"tally\"\nmode = \"accumulate\"\nkey = [\"account\"]\n\
         columns = {{ account = \"value.account\", total = \"value.amount\", low = \"value.amount\", peak = \"value.peak\", last_ref = \"value.ref\" }}\n\
         types = {{ total = \"numeric\", low = \"numeric\" }}\n\
         accumulate = {{ total = \"add\", low = \"min\", peak = \"max\", last_ref = \"last\", events = \"count\" }}\n\
         window = {{ column = \"hour\", source = \"value.ts\", size = \"1h\" }}\n"
    )
}

/// The tally table: (account, hour in epoch ms) → row, the sum checked as printed (its scale
/// included) and the minimum by value.
async fn tally_rows(db: &TestDb) -> BTreeMap<(String, i64), Tally> {
    type Row = (
        String,
        i64,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
        i64,
    );
    let rows: Vec<Row> =
        sqlx::query_as(
            "SELECT account, (extract(epoch FROM hour) * 1000)::bigint, total::text, low::text, peak, last_ref, events FROM tally",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(account, hour, total, low, peak, last_ref, events)| {
            let total = total.map(|t| {
                let scale = t.split_once('.').map_or(0, |(_, f)| f.len() as u32);
                let units = decimals::units(&t);
                assert_eq!(decimals::print(units, scale), t, "printed sum");
                (units, scale)
            });
            let low = low.as_deref().map(decimals::units);
            (
                (account, hour),
                Tally {
                    total,
                    low,
                    peak,
                    last_ref,
                    events,
                },
            )
        })
        .collect()
}

/// The records to produce, the table they must leave, and the bad records (index and why).
type TallyStream = (
    Vec<Produced>,
    BTreeMap<(String, i64), Tally>,
    Vec<(u64, &'static str)>,
);

/// A random accumulate stream whose accounts each stay in one partition (so "last" is the
/// newest record of the account and hour), with two records Postgres refuses (a reference the
/// table's CHECK forbids, alone in its key; an amount below the minimum it allows, among other
/// records of its key) and one whose amount is not a number.
fn tally_stream(rng: &mut Rng, n: u64) -> TallyStream {
    let base_ms: i64 = 1_767_225_600_000;
    let accounts: Vec<String> = (0..12)
        .map(|i| format!("{}-{i}", ["acct", "Ä", "a b", "z"][i % 4]))
        .collect();
    let mut truth: BTreeMap<(String, i64), Tally> = BTreeMap::new();
    let mut records = Vec::new();
    let mut bad = Vec::new();
    for i in 0..n {
        let a = rng.index(accounts.len());
        let ts = base_ms + rng.range(0, 4 * 3_600_000) as i64;
        let hour = ts - ts.rem_euclid(3_600_000);
        let amount = rng.chance(0.9).then(|| decimals::random(rng));
        let peak = rng
            .chance(0.8)
            .then(|| rng.range(0, 2_000_000_000_000) as i64 - 1_000_000_000_000);
        let reference = rng.chance(0.8).then(|| format!("r{i}"));
        let json = |v: Option<String>| v.unwrap_or_else(|| "null".into());
        // As a JSON number or as a numeric string: both are read as written.
        let amount_json = amount.as_ref().map(|(t, _, _)| match rng.chance(0.5) {
            true => t.clone(),
            false => format!("\"{t}\""),
        });
        let (account, amount_json, reference) = if i == n / 3 {
            bad.push((i, "database"));
            (
                "poison".to_string(),
                Some("1".into()),
                Some("poison".to_string()),
            )
        } else if i == n / 2 {
            bad.push((i, "convert"));
            (accounts[a].clone(), Some("\"abc\"".into()), reference)
        } else if i == 2 * n / 3 {
            // Refused through the key's minimum: the reduced row stands for every record of the
            // key in the batch, and only this one is bad.
            bad.push((i, "database"));
            (accounts[a].clone(), Some("-99999999999".into()), reference)
        } else {
            truth.entry((accounts[a].clone(), hour)).or_default().add(
                amount.as_ref(),
                peak,
                reference.clone(),
            );
            (accounts[a].clone(), amount_json, reference)
        };
        let value = format!(
            r#"{{"account":"{account}","amount":{},"peak":{},"ref":{},"ts":{ts}}}"#,
            json(amount_json),
            json(peak.map(|p| p.to_string())),
            json(reference.map(|r| format!("\"{r}\""))),
        );
        let partition = if account == "poison" {
            0
        } else {
            (a % 4) as i32
        };
        records.push((partition, i.to_string(), Some(value)));
    }
    (records, truth, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accumulate_sums_a_random_stream_exactly_isolates_bad_records_and_never_counts_a_replay_twice(
) {
    let Built {
        broker,
        db,
        topic,
        group,
        ..
    } = Scenario::new()
        .ddl(TALLY_DDL)
        .topic("tally")
        .partitions(4)
        .build()
        .await;
    let mut rng = Rng::for_test("accumulate_sums_a_random_stream_exactly");
    let n = 12_000u64;
    let (records, truth, bad) = tally_stream(&mut rng, n);
    // 30 s of stream, so that kills land mid-stream although a restarted connector takes
    // seconds to commit again.
    let producer = stream(&broker.bootstrap, &topic, records, 400);
    let rest = format!(
        "[batch]\nmax_records = 400\nmax_wait_ms = 50\n{}",
        tally_mapping(&topic)
    );
    // Every kill -9 leaves batches that were written but not committed: they are read again.
    let mid = kill_repeatedly(&broker, &db, &group, &rest, &producer, 3, n as i64, || {
        committed(&db, &group)
    })
    .await;
    producer.join().unwrap();
    assert!(mid >= 2, "only {mid} kills landed mid-stream");
    let _sink = Sink::start(&broker, &db, &group, &rest);
    wait_for_log_end(&db, &broker, &group, &topic, 4).await;
    let actual = tally_rows(&db).await;
    assert_eq!(actual.len(), truth.len(), "keys");
    for (key, want) in &truth {
        assert_eq!(actual.get(key), Some(want), "{key:?}");
    }
    let letters: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT convert_from(record_key, 'UTF8')::bigint, stage, error FROM kafka_pg_sink.dead_letters ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let found: Vec<(u64, &str)> = letters
        .iter()
        .map(|(k, s, _)| (*k as u64, s.as_str()))
        .collect();
    assert_eq!(found, bad, "dead letters: {letters:#?}");
    assert!(letters[0].2.contains("23514"), "{letters:#?}");
    assert!(letters[2].2.contains("23514"), "{letters:#?}");
    db.drop_db().await;
}

/// Random batches written twice, by a writer that reduces accumulate batches in the connector
/// (binary COPY) and by one that sends every record for the server's `GROUP BY` (COPY text),
/// leave the same table, sums printed to the same scale; values beyond 128 bits included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accumulate_reduced_in_the_connector_leaves_what_the_server_reduction_leaves() {
    use std::str::FromStr;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use kafka_pg_sink::app::row_plan;
    use kafka_pg_sink::config::Config;
    use kafka_pg_sink::metrics::Metrics;
    use kafka_pg_sink::record::{Record, TopicPartition};
    use kafka_pg_sink::sink::{migrate, Batch, Outcome, Writer};

    let ddl = "CREATE TABLE tally (account text NOT NULL, hour timestamptz NOT NULL, total numeric, \
        low numeric, peak bigint, last_ref text, events bigint NOT NULL, PRIMARY KEY (account, hour))";
    let mut writers = Vec::new();
    for binary in [true, false] {
        let db = TestDb::create().await;
        db.exec(ddl).await;
        let text = format!(
            "[kafka]\nbrokers = 'unused:9092'\ngroup_id = 'g'\n[postgres]\nurl = '{}'\nbinary_copy = {binary}\n{}",
            db.url,
            tally_mapping("t")
        );
        let config = Config::from_toml(&text).unwrap();
        migrate(&db.pool, &config.schema).await.unwrap();
        let (decoder, sql) = row_plan(&db.pool, &config, Default::default())
            .await
            .unwrap();
        let writer = Writer::new(
            sqlx::postgres::PgConnectOptions::from_str(&db.url).unwrap(),
            Arc::clone(&decoder),
            sql,
            &config.schema,
            "g".into(),
            Metrics::new().unwrap(),
        );
        writers.push((db, decoder, writer));
    }
    let mut rng = Rng::for_test(
        "accumulate_reduced_in_the_connector_leaves_what_the_server_reduction_leaves",
    );
    let huge = [
        "123456789012345678901234567890123456789012.5",
        "-99999999999999999999999999999999999999999999",
        "0.00000000000000000000000000000000000000001",
    ];
    let mut next = [0i64; 2];
    for _ in 0..40 {
        let partition = rng.index(2);
        let size = rng.range(1, 300) as i64;
        let records: Vec<Record> = (0..size)
            .map(|j| {
                let amount = match rng.range(0, 20) {
                    0 => "null".to_string(),
                    1 => format!("\"{}\"", rng.pick(&huge)),
                    _ => format!("\"{}\"", decimals::random(&mut rng).0),
                };
                let value = format!(
                    r#"{{"account":"{}","amount":{amount},"peak":{},"ref":"r{j}","ts":{}}}"#,
                    rng.pick(&["a", "b", "Ä", "a b"]),
                    if rng.chance(0.2) {
                        "null".to_string()
                    } else {
                        rng.range(0, 100).to_string()
                    },
                    1_767_225_600_000i64 + rng.range(0, 3 * 3_600_000) as i64,
                );
                Record::new(
                    TopicPartition::new("t", partition as i32),
                    next[partition] + j,
                    None,
                    None,
                    Some(value.as_bytes()),
                    vec![],
                )
            })
            .collect();
        let expected = (next[partition] > 0).then_some(next[partition]);
        next[partition] += size;
        for (i, (_, decoder, writer)) in writers.iter_mut().enumerate() {
            let decoded = decoder.decode(&records, &Default::default());
            assert_eq!(
                decoded.tables[0].per_key.is_empty(),
                i == 1,
                "reduced in the connector only with binary COPY"
            );
            let batch = Batch {
                tp: TopicPartition::new("t", partition as i32),
                expected,
                rewind: false,
                records: records.clone(),
                advance_to: None,
                epoch: 1,
                cancel: Arc::new(AtomicBool::new(false)),
            };
            let outcome = writer.write(&batch).await;
            assert!(matches!(outcome, Outcome::Committed { .. }), "{outcome:?}");
        }
    }
    let dump = "SELECT account, hour::text, total::text, trim_scale(low)::text, peak, last_ref, events FROM tally ORDER BY 1, 2";
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
        i64,
    );
    let reduced: Vec<Row> = sqlx::query_as(dump)
        .fetch_all(&writers[0].0.pool)
        .await
        .unwrap();
    let grouped: Vec<Row> = sqlx::query_as(dump)
        .fetch_all(&writers[1].0.pool)
        .await
        .unwrap();
    assert_eq!(reduced.len(), 12, "4 accounts in 3 hours");
    assert_eq!(reduced, grouped);
    for (db, _, _) in writers {
        db.drop_db().await;
    }
}
