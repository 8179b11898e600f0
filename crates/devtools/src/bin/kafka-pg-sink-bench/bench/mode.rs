//! One connector mode, from an empty database to verified tables: a fresh database, table and
//! topic; the real connector binary with production defaults; the backlog (paced against the
//! mock broker's retention, or produced up front on a real cluster); a fixed-rate latency phase;
//! verification; SIGTERM and a clean exit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::connector::{self, Connector, Settings};
use super::infra::{self, Broker, Database, Server};
use super::monitor::{self, Partitions, PhaseStats, Watch};
use super::produce::{self, Produced, Rendered, Shared, Via};
use super::prom::{self, Histogram};
use super::wire;
use super::workload::Workload;
use super::{procs, report::ModeResult, say, verify};

/// The connector's defaults for `batch.max_records` and `postgres.writers`.
const CONNECTOR_MAX_RECORDS: usize = 10_000;
const CONNECTOR_WRITERS: f64 = 2.0;
/// The start of the latency phase that is not measured (at most half the phase): a new producer
/// (connection, producer id) holds its first records for up to a second, which is the
/// benchmark's start-up, not the connector's latency.
pub fn latency_warm_up(latency_seconds: u64) -> Duration {
    Duration::from_secs(2).min(Duration::from_secs(latency_seconds) / 2)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Upsert,
    Insert,
    Accumulate,
}

const COLUMNS: &str = r#"columns = { id = "value.id", account = "value.account", amount = "value.amount", ts = "value.ts", meta = "value.meta" }
types = { id = "bigint", amount = "numeric", ts = "timestamptz", meta = "jsonb" }"#;

impl Mode {
    /// The ceiling doing this mode's work in Postgres alone.
    pub fn ceiling_work(self) -> super::ceiling::Work {
        match self {
            Self::Upsert => super::ceiling::Work::Upsert,
            Self::Insert => super::ceiling::Work::Insert,
            Self::Accumulate => super::ceiling::Work::Accumulate,
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name.trim() {
            "upsert" => Self::Upsert,
            "insert" => Self::Insert,
            "accumulate" => Self::Accumulate,
            other => bail!("unknown mode `{other}` (upsert, insert, accumulate)"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Upsert => "upsert",
            Self::Insert => "insert",
            Self::Accumulate => "accumulate",
        }
    }

    pub fn table(self) -> &'static str {
        match self {
            Self::Upsert => "bench_upsert",
            Self::Insert => "bench_insert",
            Self::Accumulate => "bench_acc",
        }
    }

    fn ddl(self) -> &'static str {
        match self {
            Self::Upsert => "CREATE TABLE bench_upsert (id bigint PRIMARY KEY, account text, amount numeric(14,2), ts timestamptz, meta jsonb)",
            Self::Insert => "CREATE TABLE bench_insert (id bigint, account text, amount numeric(14,2), ts timestamptz, meta jsonb)",
            Self::Accumulate => "CREATE TABLE bench_acc (account text, hour timestamptz, total numeric, events bigint, PRIMARY KEY (account, hour))",
        }
    }

    fn mapping(self, topic: &str) -> String {
        let head = format!(
            "[[mappings]]\ntopic = {}\ntable = \"{}\"\nmode = \"{}\"\n",
            connector::quote(topic),
            self.table(),
            self.name()
        );
        match self {
            Self::Upsert => format!("{head}key = [\"id\"]\n{COLUMNS}\n"),
            Self::Insert => format!("{head}{COLUMNS}\n"),
            Self::Accumulate => format!(
                "{head}key = [\"account\"]\n\
                 columns = {{ account = \"value.account\", total = \"value.amount\" }}\n\
                 types = {{ total = \"numeric\" }}\n\
                 accumulate = {{ total = \"add\", events = \"count\" }}\n\
                 window = {{ column = \"hour\", source = \"value.ts\", size = \"1h\" }}\n"
            ),
        }
    }

    /// (rows, amounts summed as text, a third figure as text) for [`verify`].
    pub fn check_sql(self) -> &'static str {
        match self {
            Self::Upsert => "SELECT count(*), sum(amount)::text, sum((meta->>'seq')::bigint)::text FROM bench_upsert",
            Self::Insert => "SELECT count(*), sum(amount)::text, sum((meta->>'seq')::bigint)::text FROM bench_insert",
            Self::Accumulate => "SELECT count(*), sum(total)::text, sum(events)::text FROM bench_acc",
        }
    }
}

/// What every mode shares.
pub struct Context<'a> {
    pub server: &'a Server,
    pub broker: &'a mut Broker,
    pub work: &'a Arc<Workload>,
    pub sink: &'a Path,
    /// Prefix of database, topic and group names.
    pub run_id: &'a str,
    /// Where configs and connector logs go.
    pub dir: &'a Path,
    /// Pacing: at most this many records per partition ahead of the committed offset.
    pub window: i64,
    /// Starvation threshold, records per partition.
    pub min_ahead: i64,
    pub latency_rate: u64,
    pub latency_warm_up: Duration,
    pub keep_databases: bool,
    /// Experiments only: librdkafka properties and environment overrides for the connector.
    pub kafka_properties: &'a [(String, String)],
    pub connector_env: &'a [(String, String)],
    /// How the producers compress their batches.
    pub compression: wire::Compression,
}

/// Runs `mode` in its own database; the database is dropped afterwards unless kept.
pub async fn run(ctx: &mut Context<'_>, mode: Mode) -> Result<ModeResult> {
    let name = format!("{}_{}", ctx.run_id, mode.name());
    let db = ctx.server.create_db(&name).await?;
    let result = run_in(ctx, mode, &db, &name).await;
    if ctx.keep_databases {
        say(&format!("{}: database {} kept", mode.name(), db.name));
    } else {
        ctx.server.drop_db(db).await;
    }
    result
}

async fn run_in(
    ctx: &mut Context<'_>,
    mode: Mode,
    db: &Database,
    name: &str,
) -> Result<ModeResult> {
    let run = ModeRun::prepare(ctx, mode, db, name).await?;
    let client = Arc::new(infra::watermark_client(ctx.broker)?);
    let stop = Arc::new(AtomicBool::new(false));
    let retention = monitor::spawn_retention_check(
        client.clone(),
        db.pool.clone(),
        name.to_owned(),
        name.to_owned(),
        run.work.partitions,
        stop.clone(),
    );
    let outcome = phases(ctx, &run).await;
    stop.store(true, Ordering::SeqCst);
    run.shared.stop.store(true, Ordering::SeqCst);
    let violations = retention.await.unwrap_or_default();
    let (mut result, mut connector) = outcome?;
    result.problems.extend(violations);
    let truth = run.work.truth(run.work.records.len());
    let problems = verify::run(db, mode, &truth, &run.shared, &client, name, name).await?;
    result.problems.extend(problems);
    finish(&mut result, &mut connector).await;
    Ok(result)
}

/// Backlog, then the latency phase; returns the result so far and the still-running connector.
async fn phases(ctx: &Context<'_>, run: &ModeRun<'_>) -> Result<(ModeResult, Connector)> {
    let (mut connector, backlog) = run.start(ctx)?;
    let mut watch = Watch {
        pool: &run.db.pool,
        group: &run.name,
        topic: &run.name,
        shared: &run.shared,
        connector: &mut connector,
        broker_pid: ctx.broker.pid(),
        postmaster: ctx.server.postmaster,
    };
    let mut result = run.backlog(&mut watch, backlog, ctx.min_ahead).await?;
    result.fetch_pauses = fetch_pauses(&run.log);
    say(&result.backlog_line());
    if run.work.records.len() > run.work.backlog {
        run.latency(
            &mut watch,
            &mut result,
            ctx.latency_rate,
            ctx.latency_warm_up,
            ctx.compression,
        )
        .await?;
        say(&result.latency_line());
    }
    Ok((result, connector))
}

/// The backlog producer: still running (paced), or finished before the connector started.
enum Backlog {
    Running(std::thread::JoinHandle<Result<Produced>>),
    Done(Produced),
}

/// One mode's names, files and producer state. Topic, group and database share one name.
struct ModeRun<'a> {
    mode: Mode,
    db: &'a Database,
    name: String,
    work: Arc<Workload>,
    rendered: Arc<Rendered>,
    shared: Arc<Shared>,
    bootstrap: String,
    http: String,
    config: PathBuf,
    log: PathBuf,
    /// Against the mock broker the connector runs while the backlog is produced, paced;
    /// against a real cluster the whole backlog is produced first.
    paced: bool,
    window: i64,
    /// The connector's `postgres.writers` (default unless overridden by `--connector-env`).
    writers: f64,
}

impl<'a> ModeRun<'a> {
    /// Table, topic and the connector's config file (printed, password hidden).
    async fn prepare(
        ctx: &mut Context<'_>,
        mode: Mode,
        db: &'a Database,
        name: &str,
    ) -> Result<Self> {
        let work = ctx.work.clone();
        db.exec(mode.ddl()).await?;
        ctx.broker.create_topic(name, work.partitions as i32)?;
        let http = format!("127.0.0.1:{}", testkit::names::try_free_port()?);
        let settings = Settings {
            brokers: &ctx.broker.bootstrap,
            group: name,
            postgres_url: &db.url,
            http: &http,
            kafka_properties: ctx.kafka_properties,
            mapping: &mode.mapping(name),
        };
        let config = ctx.dir.join(format!("{name}.toml"));
        std::fs::write(&config, connector::config_text(&settings, false))?;
        say(&format!(
            "{}: connector config ({}):\n{}",
            mode.name(),
            config.display(),
            indent(&connector::config_text(&settings, true))
        ));
        let rendered = Arc::new(Rendered::backlog(&work));
        ctx.server.checkpoint().await;
        let paced = ctx.broker.is_mock();
        Ok(Self {
            mode,
            db,
            name: name.to_owned(),
            shared: Shared::new(work.partitions),
            work,
            rendered,
            bootstrap: ctx.broker.bootstrap.clone(),
            http,
            config,
            log: ctx.dir.join(format!("{name}.log")),
            paced,
            window: if paced { ctx.window } else { i64::MAX / 4 },
            writers: ctx
                .connector_env
                .iter()
                .find(|(k, _)| k == "KAFKA_PG_SINK__POSTGRES__WRITERS")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(CONNECTOR_WRITERS),
        })
    }

    /// Starts the connector and the backlog producer, in the order the broker needs.
    fn start(&self, ctx: &Context<'_>) -> Result<(Connector, Backlog)> {
        let (w, r, s, b, t) = (
            self.work.clone(),
            self.rendered.clone(),
            self.shared.clone(),
            self.bootstrap.clone(),
            self.name.clone(),
        );
        let window = self.window;
        // On the mock (paced, beside the connector) the backlog goes out as raw Produce
        // requests: librdkafka's producer cost would be measured as if it were the connector's
        // environment. On a real cluster it is produced first, by librdkafka.
        let via = if self.paced {
            Via::Wire(ctx.compression)
        } else {
            Via::Librdkafka(ctx.compression)
        };
        let produce = move || produce::backlog(&b, &t, &w, &r, &s, window, via);
        if self.paced {
            let connector = Connector::start(ctx.sink, &self.config, &self.log, ctx.connector_env)?;
            return Ok((
                connector,
                Backlog::Running(produce::spawn(&self.shared, produce)),
            ));
        }
        say(&format!(
            "{}: producing the whole backlog before starting the connector",
            self.mode.name()
        ));
        let produced = join(produce::spawn(&self.shared, produce))?;
        let connector = Connector::start(ctx.sink, &self.config, &self.log, ctx.connector_env)?;
        Ok((connector, Backlog::Done(produced)))
    }

    /// Waits until the backlog is committed; the figures and the `/metrics` scrape at its end.
    async fn backlog(
        &self,
        watch: &mut Watch<'_>,
        backlog: Backlog,
        min_ahead: i64,
    ) -> Result<ModeResult> {
        let n = self.work.backlog as i64;
        let partitions = Partitions {
            totals: self
                .work
                .backlog_by_partition
                .iter()
                .map(|l| l.len() as i64)
                .collect(),
            min_ahead: self.paced.then_some(min_ahead),
        };
        say(&format!(
            "{}: backlog of {n} records{}",
            self.mode.name(),
            if self.paced { " (paced)" } else { "" }
        ));
        let stats = watch.follow(n, Some(&partitions)).await?;
        let produced = match backlog {
            Backlog::Running(handle) => join(handle)?,
            Backlog::Done(produced) => produced,
        };
        let body = settled(&self.http, n).await?;
        let result = summarize(
            self.mode,
            &self.work,
            &stats,
            &produced,
            &body,
            self.paced,
            self.writers,
        );
        Ok(result)
    }

    /// Offers the records after the backlog at `rate`; end-to-end latency from the difference
    /// of the histograms after the warm-up and at the end.
    async fn latency(
        &self,
        watch: &mut Watch<'_>,
        result: &mut ModeResult,
        rate: u64,
        warm_up: Duration,
        compression: wire::Compression,
    ) -> Result<()> {
        let total = self.work.records.len() as i64;
        let (w, s, b, t) = (
            self.work.clone(),
            self.shared.clone(),
            self.bootstrap.clone(),
            self.name.clone(),
        );
        let window = self.window;
        let producer = produce::spawn(&self.shared, move || {
            produce::fixed_rate(&b, &t, &w, &s, window, rate, compression)
        });
        tokio::time::sleep(warm_up).await;
        let before = prom::scrape(&self.http).await?;
        let stats = watch.follow(total, None).await?;
        let offered = join(producer)?;
        let after = settled(&self.http, total).await?;
        result.add_latency(&before, &after, offered, &stats);
        Ok(())
    }
}

/// Connector figures of the backlog phase.
fn summarize(
    mode: Mode,
    work: &Workload,
    stats: &PhaseStats,
    produced: &Produced,
    body: &str,
    paced: bool,
    writers: f64,
) -> ModeResult {
    let n = work.backlog as f64;
    let (first_at, first_count) = stats.first.unwrap_or((stats.last, 0));
    let secs = stats.last.duration_since(first_at).as_secs_f64();
    let commits = Histogram::parse(body, "kafka_pg_sink_commit_duration_seconds");
    let cpu = stats
        .first_cpu
        .map(|first| stats.last_cpu.since(&first))
        .unwrap_or_default();
    let batches = prom::sum(body, "kafka_pg_sink_batch_records_count");
    let full_batches_needed: u64 = work
        .backlog_by_partition
        .iter()
        .map(|l| l.len().div_ceil(CONNECTOR_MAX_RECORDS) as u64)
        .sum();
    ModeResult {
        mode,
        records: work.backlog as u64,
        records_per_s: (n - first_count as f64) / secs.max(1e-9),
        measured_s: secs,
        partition_done_s: {
            let mut done: Vec<f64> = stats
                .partition_done
                .iter()
                .map(|d| {
                    d.map_or(secs, |d| {
                        d.saturating_duration_since(first_at).as_secs_f64()
                    })
                })
                .collect();
            done.sort_by(f64::total_cmp);
            done
        },
        commit_p50_ms: commits.quantile(0.5).map(|s| s * 1000.0),
        commit_p99_ms: commits.quantile(0.99).map(|s| s * 1000.0),
        batches: batches as u64,
        mean_batch_records: prom::sum(body, "kafka_pg_sink_batch_records_sum") / batches.max(1.0),
        writer_utilization: prom::sum(body, "kafka_pg_sink_commit_duration_seconds_sum")
            / (writers * secs.max(1e-9)),
        peak_rss_mb: stats.peak_rss_bytes as f64 / (1024.0 * 1024.0),
        cpu_s: cpu.connector_s,
        cpu,
        producer: produced.clone(),
        paced,
        polls: stats.polls,
        starved_polls: stats.starved_polls,
        starved_partitions: stats.starved_partitions.iter().copied().collect(),
        starved: paced && stats.starved_polls > 0,
        full_batches_needed,
        batch_size_buckets: Histogram::parse(body, "kafka_pg_sink_batch_records")
            .buckets
            .iter()
            .map(|&(le, n)| {
                (
                    if le.is_finite() {
                        le.to_string()
                    } else {
                        "+Inf".into()
                    },
                    n,
                )
            })
            .collect(),
        retries: prom::by_label(body, "kafka_pg_sink_retries_total", "cause"),
        fenced_commits: prom::sum(body, "kafka_pg_sink_fenced_commits_total"),
        ..ModeResult::default()
    }
}

/// `/metrics` once the end-to-end histogram has seen `records` records (it is observed just
/// after the commit that the offsets table already shows).
async fn settled(http: &str, records: i64) -> Result<String> {
    let mut body = String::new();
    for _ in 0..100 {
        body = prom::scrape(http).await?;
        if prom::sum(&body, "kafka_pg_sink_end_to_end_latency_seconds_count") >= records as f64 {
            return Ok(body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    say("warning: end_to_end_latency_seconds_count never reached the committed record count");
    Ok(body)
}

/// Peak RSS, total CPU and a clean SIGTERM exit.
async fn finish(result: &mut ModeResult, connector: &mut Connector) {
    let pid = connector.pid();
    if let Some(rss) = procs::peak_rss_bytes(pid) {
        result.peak_rss_mb = result.peak_rss_mb.max(rss as f64 / (1024.0 * 1024.0));
    }
    result.connector_cpu_total_s = procs::cpu_seconds(pid).unwrap_or(0.0);
    match connector.stop(Duration::from_secs(60)).await {
        Some(status) if status.success() => result.exit_status = status.to_string(),
        Some(status) => {
            result.exit_status = status.to_string();
            result.problems.push(format!(
                "the connector exited with {status} after SIGTERM (log: {})",
                connector.log.display()
            ));
        }
        None => {
            result.exit_status = "killed".into();
            result
                .problems
                .push("the connector did not exit within 60 s of SIGTERM".into());
        }
    }
}

/// How often the connector's log says it paused fetching (flow control) so far.
fn fetch_pauses(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .map(|text| text.matches("fetching paused").count() as u64)
        .unwrap_or(0)
}

fn join(handle: std::thread::JoinHandle<Result<Produced>>) -> Result<Produced> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))?
        .context("producing")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
