//! Shared helpers for the integration tests: a real Postgres database per test, a real
//! Kafka-protocol broker in its own process (or `KAFKA_BROKERS`), and the real connector binary.
#![allow(dead_code)]

mod pg_server;
#[allow(unused_imports)]
pub use pg_server::PgServer;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// A name unique to this test run, for databases, topics and groups.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        nanos % 100_000
    )
}

/// The server URL from `DATABASE_URL`, or the local default.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database on the test server, dropped by [`TestDb::drop_db`].
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    pub async fn create() -> Self {
        Self::create_on(&server_url()).await
    }

    /// A fresh database on the server at `server` (a URL of any database on it).
    pub async fn create_on(server: &str) -> Self {
        let server = server.to_owned();
        let name = unique("kps_test");
        let mut admin = PgConnection::connect(&server).await.unwrap_or_else(|e| {
            panic!("cannot reach Postgres at {server} (set DATABASE_URL): {e}")
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = replace_database(&server, &name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        Self { name, url, pool }
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, Option<i64>>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap()
            .unwrap_or(0)
    }

    pub async fn scalar_text(&self, sql: &str) -> String {
        sqlx::query_scalar::<_, Option<String>>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap()
            .unwrap_or_default()
    }

    /// Stored next offsets per partition for `group` and `topic`.
    pub async fn stored_offsets(&self, group: &str, topic: &str) -> Vec<(i32, i64)> {
        sqlx::query_as(
            "SELECT partition, next_offset FROM kafka_pg_sink.offsets WHERE group_id = $1 AND topic = $2 ORDER BY 1",
        )
        .bind(group)
        .bind(topic)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default()
    }

    pub async fn drop_db(self) {
        self.pool.close().await;
        let server = replace_database(&self.url, "postgres");
        if let Ok(mut admin) = PgConnection::connect(&server).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{db}{query}", &base[..path_start])
}

/// A Kafka-protocol broker: `KAFKA_BROKERS`, or librdkafka's mock cluster in a child process.
pub struct Broker {
    pub bootstrap: String,
    mock: Option<(Child, ChildStdin, BufReader<ChildStdout>)>,
}

impl Broker {
    pub fn start() -> Self {
        if let Ok(bootstrap) = std::env::var("KAFKA_BROKERS") {
            return Self {
                bootstrap,
                mock: None,
            };
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink-devkit"))
            .arg("broker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the mock broker");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let bootstrap = line
            .trim()
            .strip_prefix("BOOTSTRAP=")
            .expect("broker prints its address")
            .to_owned();
        Self {
            bootstrap,
            mock: Some((child, stdin, stdout)),
        }
    }

    /// Sends a command to the mock broker (`broker-down`, ...); a no-op on a real cluster.
    pub fn command(&mut self, command: &str) {
        if let Some((_, stdin, stdout)) = &mut self.mock {
            writeln!(stdin, "{command}").unwrap();
            let mut answer = String::new();
            stdout.read_line(&mut answer).unwrap();
            assert_eq!(answer.trim(), "ok", "mock broker: {command}");
        }
    }

    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        if self.mock.is_some() {
            self.command(&format!("create-topic {name} {partitions}"));
        } else {
            create_topic_real(&self.bootstrap, name, partitions);
        }
    }

    /// The high watermark (log end) of each partition.
    pub fn end_offsets(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        (0..partitions)
            .map(|p| {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .collect()
    }

    /// Every record in the log of `topic` (partition, offset, key), read back from the broker:
    /// the ground truth when the log itself may hold a producer retry twice.
    pub fn read_all(&self, topic: &str, partitions: i32) -> Vec<(i32, i64, Option<String>)> {
        use rdkafka::message::Message;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("enable.auto.commit", "false")
            .set("group.id", unique("reader"))
            .create()
            .unwrap();
        let ends = self.end_offsets(topic, partitions);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let mut next = vec![0i64; partitions as usize];
        let deadline = Instant::now() + Duration::from_secs(60);
        while next.iter().zip(&ends).any(|(n, e)| n < e) {
            assert!(
                Instant::now() < deadline,
                "could not read the log back: at {next:?} of {ends:?}"
            );
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                out.push((m.partition(), m.offset(), key));
                next[m.partition() as usize] = m.offset() + 1;
            }
        }
        out
    }

    /// Commits `offset` for every partition of `topic` in `group` directly in Kafka, as a group
    /// member (the mock broker refuses commits from non-members once the group exists).
    pub fn commit_kafka_offsets(&self, group: &str, topic: &str, offsets: &[i64]) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while consumer.assignment().unwrap().count() < offsets.len() {
            assert!(Instant::now() < deadline, "could not join group {group}");
            let _ = consumer.poll(Duration::from_millis(100));
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets.iter().enumerate() {
            tpl.add_partition_offset(topic, p as i32, Offset::Offset(*o))
                .unwrap();
        }
        consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .unwrap();
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        for (p, o) in offsets.iter().enumerate() {
            assert_eq!(
                committed.find_partition(topic, p as i32).unwrap().offset(),
                Offset::Offset(*o)
            );
        }
        consumer.unsubscribe();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some((child, _, _)) = &mut self.mock {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Creates a topic on a real cluster and waits until its partitions are visible (creation is
/// asynchronous there). On its own thread: tests call this from inside their async runtime, and
/// a runtime cannot be started inside another.
fn create_topic_real(bootstrap: &str, name: &str, partitions: i32) {
    let (bootstrap, name) = (bootstrap.to_owned(), name.to_owned());
    std::thread::spawn(move || {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let results = rt
            .block_on(admin.create_topics([&topic], &AdminOptions::new()))
            .unwrap();
        for r in results {
            r.unwrap_or_else(|(topic, e)| panic!("creating topic {topic}: {e}"));
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let visible = consumer
                .fetch_metadata(Some(&name), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == name && t.error().is_none())
                        .map(|t| t.partitions().len())
                });
            if visible == Some(partitions as usize) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "topic {name} not visible with {partitions} partitions after 30 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .join()
    .expect("creating a topic on the cluster");
}

/// Counts delivery failures so a test never silently under-produces.
#[derive(Clone, Default)]
pub struct Deliveries {
    failed: Arc<AtomicUsize>,
    delivered: Arc<AtomicUsize>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::SeqCst),
            Err(_) => self.failed.fetch_add(1, Ordering::SeqCst),
        };
    }
}

/// A producer that sends to explicit partitions and checks every delivery.
pub struct TestProducer {
    producer: ThreadedProducer<Deliveries>,
    deliveries: Deliveries,
    sent: usize,
}

impl TestProducer {
    pub fn new(bootstrap: &str) -> Self {
        let deliveries = Deliveries::default();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "2")
            .set("enable.idempotence", "true")
            .create_with_context(deliveries.clone())
            .unwrap();
        Self {
            producer,
            deliveries,
            sent: 0,
        }
    }

    /// Queues one record; `value = None` is a tombstone.
    pub fn send(&mut self, topic: &str, partition: i32, key: &str, value: Option<&str>) {
        let mut record = BaseRecord::to(topic).partition(partition).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        self.sent += 1;
    }

    /// Waits until everything sent is acknowledged; panics on any failed delivery.
    pub fn flush(&self) {
        self.producer.flush(Duration::from_secs(60)).unwrap();
        assert_eq!(
            self.deliveries.failed.load(Ordering::SeqCst),
            0,
            "deliveries failed"
        );
        assert_eq!(
            self.deliveries.delivered.load(Ordering::SeqCst),
            self.sent,
            "not all deliveries acknowledged"
        );
    }
}

/// The connector binary under test.
pub struct Sink {
    child: Child,
    pub http: String,
    _config: TempFile,
}

/// A file removed on drop.
pub struct TempFile(pub PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a config: `kafka`, `postgres` and `http` sections filled in, then `rest` (batch
/// settings and mappings).
pub fn sink_config(broker: &Broker, db: &TestDb, group: &str, rest: &str) -> (TempFile, String) {
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let text = format!(
        r#"
[kafka]
brokers = "{}"
group_id = "{group}"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

[postgres]
url = "{}"

[http]
listen = "{http}"

{rest}
"#,
        broker.bootstrap, db.url
    );
    let path = std::env::temp_dir().join(format!("{}.toml", unique("kps_config")));
    std::fs::write(&path, text).unwrap();
    (TempFile(path), http)
}

/// Runs the binary with `config` until it exits (or `timeout`); returns (exit code, stderr).
pub fn run_until_exit(config: &TempFile, timeout: Duration) -> (Option<i32>, String) {
    let log = TempFile(std::env::temp_dir().join(format!("{}.log", unique("kps_stderr"))));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
        .arg("--config")
        .arg(&config.0)
        .stderr(std::fs::File::create(&log.0).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(&log.0).unwrap_or_default())
}

impl Sink {
    pub fn start(broker: &Broker, db: &TestDb, group: &str, rest: &str) -> Self {
        let (config, http) = sink_config(broker, db, group, rest);
        Self::start_with(config, http)
    }

    /// As [`Sink::start_with`], with stderr (the log, at info level) written to `log`.
    pub fn start_logged(config: TempFile, http: String, log: &std::path::Path) -> Self {
        let stderr = std::fs::File::create(log).expect("create the log file");
        Self::spawn(config, http, "info".into(), stderr.into())
    }

    pub fn start_with(config: TempFile, http: String) -> Self {
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let stderr = match std::env::var("KPS_TEST_LOG").is_ok() {
            true => Stdio::inherit(),
            false => Stdio::null(),
        };
        Self::spawn(config, http, level, stderr)
    }

    fn spawn(config: TempFile, http: String, level: String, stderr: Stdio) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
            .arg("--config")
            .arg(&config.0)
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start kafka-pg-sink");
        Self {
            child,
            http,
            _config: config,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no drain, no goodbye.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. "TERM") and waits up to `timeout` for the exit status.
    pub fn signal_and_wait(mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kafka-pg-sink did not exit within {timeout:?} after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// GETs a path on the HTTP port: (status, body), or None while it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.http, path)
    }

    /// Reads one sample from `/metrics` (summed over matching label sets).
    pub fn metric(&self, name: &str, label_filter: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        parse_metric(&body, name, label_filter)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums the samples of `name` whose label text contains `label_filter`.
pub fn parse_metric(body: &str, name: &str, label_filter: &str) -> Option<f64> {
    let mut found = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
        if metric == name && labels.contains(label_filter) {
            *found.get_or_insert(0.0) += value.parse::<f64>().ok()?;
        }
    }
    found
}

/// A minimal HTTP/1.1 GET over loopback TCP.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Polls `check` until it returns true or `timeout` passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Target table plus an audit trigger that records every row application, so a record applied
/// twice shows up even when the upsert itself is idempotent.
pub const PAYMENTS_DDL: &str = r#"
CREATE TABLE payments (
    id bigint PRIMARY KEY,
    account text NOT NULL,
    amount numeric(14, 2) NOT NULL,
    src_partition integer,
    src_offset bigint
);
CREATE TABLE applied (id bigint NOT NULL, amount numeric(14, 2) NOT NULL);
CREATE FUNCTION audit_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO applied VALUES (NEW.id, NEW.amount);
    RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON payments FOR EACH ROW EXECUTE FUNCTION audit_payment();
"#;

/// The mapping for [`PAYMENTS_DDL`].
pub fn payments_mapping(topic: &str) -> String {
    format!(
        r#"
[[mappings]]
topic = "{topic}"
table = "payments"
key = ["id"]
columns = {{ id = "value.id", account = "value.account", amount = "value.amount", src_partition = "kafka.partition", src_offset = "kafka.offset" }}
"#
    )
}

/// The JSON value of payment `id`, and its amount in cents.
pub fn payment(id: u64) -> (String, i64) {
    let cents = (id * 7919 % 100_000) as i64;
    (
        format!(
            r#"{{"id":{id},"account":"acct-{}","amount":"{}.{:02}"}}"#,
            id % 13,
            cents / 100,
            cents % 100
        ),
        cents,
    )
}

/// One record to produce: partition, key, value (`None` is a tombstone).
pub type Produced = (i32, String, Option<String>);

/// Produces `records` in order at about `per_sec` in a background thread.
pub fn stream(
    bootstrap: &str,
    topic: &str,
    records: Vec<Produced>,
    per_sec: u64,
) -> std::thread::JoinHandle<()> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        let mut producer = TestProducer::new(&bootstrap);
        let started = Instant::now();
        for (i, (partition, key, value)) in records.iter().enumerate() {
            producer.send(&topic, *partition, key, value.as_deref());
            let due = Duration::from_micros((i as u64 + 1) * 1_000_000 / per_sec);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        producer.flush();
    })
}

/// Starts the connector, waits until `progress` grows, kills it with SIGKILL at a random moment,
/// and repeats until `stream` is finished and at least `min_kills` kills happened. Returns how
/// many kills landed before `progress` reached `total`.
#[allow(clippy::too_many_arguments)]
pub async fn kill_repeatedly<F, Fut>(
    broker: &Broker,
    db: &TestDb,
    group: &str,
    rest: &str,
    stream: &std::thread::JoinHandle<()>,
    min_kills: usize,
    total: i64,
    mut progress: F,
) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    use rand::Rng;
    let mut rng = rand::rng();
    let (mut kills, mut mid_stream) = (0, 0);
    while !stream.is_finished() || kills < min_kills {
        let before = progress().await;
        let sink = Sink::start(broker, db, group, rest);
        let deadline = Instant::now() + Duration::from_secs(40);
        while progress().await <= before && before < total {
            assert!(
                Instant::now() < deadline,
                "the restarted connector never made progress"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..1200))).await;
        sink.kill9();
        kills += 1;
        let now = progress().await;
        eprintln!("kill -9 #{kills}: progress {now} of {total}");
        if now < total {
            mid_stream += 1;
        }
    }
    mid_stream
}

/// The real writer for `config`'s mappings, with the row plan the connector builds at start-up
/// (column types read from the database). The schema must be migrated.
pub async fn sink_writer(
    config: &kafka_pg_sink::config::Config,
    group: &str,
    metrics: kafka_pg_sink::metrics::Metrics,
) -> (
    kafka_pg_sink::sink::Writer,
    Arc<kafka_pg_sink::sink::encode::Decoder>,
) {
    use std::str::FromStr;
    let pool = PgPool::connect(config.postgres.url.expose()).await.unwrap();
    let (decoder, sql) = kafka_pg_sink::app::row_plan(&pool, config).await.unwrap();
    let writer = kafka_pg_sink::sink::Writer::new(
        sqlx::postgres::PgConnectOptions::from_str(config.postgres.url.expose()).unwrap(),
        Arc::clone(&decoder),
        sql,
        &config.schema,
        group.into(),
        metrics,
    );
    (writer, decoder)
}

/// One partition's records (all of `records[0]`'s partition, in offset order) as the pipeline
/// hands them to a writer, expecting the stored offset `expected`.
pub fn batch_of_records(
    records: Vec<kafka_pg_sink::record::Record>,
    expected: Option<i64>,
) -> kafka_pg_sink::sink::Batch {
    kafka_pg_sink::sink::Batch {
        tp: records[0].tp.clone(),
        expected,
        rewind: false,
        records,
        advance_to: None,
        epoch: 1,
        cancel: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    }
}
