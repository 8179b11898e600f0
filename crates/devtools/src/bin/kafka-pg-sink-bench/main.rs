//! `kafka-pg-sink-bench`: how fast the real connector moves records from Kafka into Postgres on
//! this machine, and how that compares with the fastest raw path into the same table.
//!
//! One run, every setting printed:
//! 1. a deterministic workload (`--records` JSON records of ~155 bytes over `--partitions`,
//!    `--update-share` of them updating an earlier key), generated from `--seed`;
//! 2. the ceiling: the same rows loaded by COPY + `INSERT ... ON CONFLICT` in 10,000-row
//!    transactions with an offsets update, on one and on two connections, no Kafka, no connector;
//! 3. for each mode (`upsert`, `insert`, `accumulate`): a fresh database, table and topic, the real
//!    connector binary with production defaults, the backlog produced (paced against the mock
//!    broker's 5 MiB-per-partition retention, or up front on a real cluster), its rate from the
//!    first committed batch to the last, commit latency quantiles, peak RSS and CPU; then a
//!    fixed-rate latency phase for end-to-end latency; then exact verification of the table,
//!    the stored offsets and the retention;
//! 4. a table on stdout and the same as JSON in `--out` (default `bench/results`).
//!
//! Exits non-zero when any verification fails. Every child process is killed on every exit path.
//!
//! ```sh
//! scripts/bench.sh                      # release build, DATABASE_URL from ensure-postgres.sh
//! scripts/bench.sh --records 400000     # a shorter run
//! ```

#[path = "bench/mod.rs"]
mod bench;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;

use bench::ceiling::{self, Ceiling};
use bench::infra::{redact, Broker, Server};
use bench::mode::{self, Mode};
use bench::report::{Machine, ModeResult, Report};
use bench::workload::Workload;
use bench::{clock, procs, produce, say};

/// Benchmark of kafka-pg-sink against real PostgreSQL and a Kafka-protocol broker.
#[derive(Parser)]
#[command(about)]
struct Args {
    /// Records in the backlog of each mode.
    #[arg(long, default_value_t = 2_000_000)]
    records: usize,
    #[arg(long, default_value_t = 8)]
    partitions: usize,
    /// Share of records that update a key produced before (the rest introduce a new key).
    #[arg(long, default_value_t = 0.3)]
    update_share: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Records per second offered in the latency phase (after the backlog is committed).
    #[arg(long, default_value_t = 20_000)]
    latency_rate: u64,
    /// Length of the latency phase; 0 skips it.
    #[arg(long, default_value_t = 20)]
    latency_seconds: u64,
    /// Modes to run, comma-separated.
    #[arg(long, default_value = "upsert,insert,accumulate")]
    modes: String,
    /// Mock broker only: a partition is never more than this many MiB ahead of the connector's
    /// committed offset (the mock keeps 5 MiB per partition and drops older data). The default
    /// leaves room for one batch in flight plus one full batch behind it (2 x 10,000 records,
    /// ~3.6 MiB) and stays 1 MiB under the retention; at 2 MiB a partition's lead falls to almost
    /// nothing whenever a full batch commits.
    #[arg(long, default_value_t = 4.0)]
    pace_max_ahead_mib: f64,
    /// Mock broker only: a partition with records left to produce but less than this many MiB
    /// ahead of the committed offset counts as starved.
    #[arg(long, default_value_t = 1.0)]
    pace_min_ahead_mib: f64,
    /// The connector binary; default: `kafka-pg-sink` next to this binary.
    #[arg(long)]
    sink: Option<PathBuf>,
    /// The mock broker host (the test kit's `kafka-pg-sink-mock-broker`); default: next to this
    /// binary.
    #[arg(long)]
    mock_broker: Option<PathBuf>,
    /// Directory for the JSON results.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Server URL; every phase creates (and drops) its own database on it.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// A real Kafka cluster; without it the test kit's mock broker is started.
    #[arg(long, env = "KAFKA_BROKERS")]
    kafka_brokers: Option<String>,
    /// Keep the databases after the run (for inspection).
    #[arg(long)]
    keep_databases: bool,
    /// Keep the connector configs and logs even when every check passes.
    #[arg(long)]
    keep_logs: bool,
    /// Experiment: a librdkafka property for the connector's `kafka.properties` (repeatable;
    /// printed as a changed setting). By default the benchmark sets none.
    #[arg(long = "kafka-property", value_name = "NAME=VALUE", value_parser = pair)]
    kafka_properties: Vec<(String, String)>,
    /// Experiment: a connector setting as an environment override (repeatable; printed as a
    /// changed setting), e.g. KAFKA_PG_SINK__POSTGRES__SYNCHRONOUS_COMMIT=false.
    #[arg(long = "connector-env", value_name = "KAFKA_PG_SINK__SECTION__KEY=VALUE", value_parser = pair)]
    connector_env: Vec<(String, String)>,
    /// How the producers compress their batches: none, lz4 or zstd (the connector decompresses
    /// them in librdkafka's broker thread).
    #[arg(long, default_value = "none")]
    compression: bench::wire::Compression,
}

/// `NAME=VALUE`.
fn pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // On SIGINT/SIGTERM the run future is dropped (its guards kill the children), anything
    // still registered is killed and the run's databases and logs are removed.
    let url = args.database_url.clone();
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(args) => outcome.map(|ok| if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
            signal = stop_signal() => {
                procs::kill_all();
                clean_up(&url).await;
                signal.map(|_| ExitCode::from(130))
            }
        }
    });
    procs::kill_all();
    match outcome {
        Ok(code) => code,
        Err(error) => {
            println!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn stop_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!("interrupted: stopping every child process");
    Ok(())
}

/// Why end-to-end latency against the mock broker is higher than against Kafka.
const MOCK_FETCH_NOTE: &str = "note: the mock broker answers a fetch that finds no new data only \
    after fetch.wait.max.ms (500 ms), even if data arrives meanwhile (librdkafka \
    rdkafka_mock_handlers.c), so at moderate rates end-to-end latency includes up to 500 ms of \
    fetch delay on top of the connector's batch.max_wait_ms";

/// Prefix of this run's database, topic and group names and of its log directory.
fn run_id() -> String {
    format!("kps_bench_{}", std::process::id())
}

/// Drops the databases and the log directory of an interrupted run.
async fn clean_up(url: &str) {
    if let Ok(server) = Server::connect(url).await {
        server.drop_run_databases(&run_id()).await;
    }
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(run_id()));
}

/// The working tree's commit (`-dirty` with uncommitted changes), if this runs in a checkout.
fn git_revision() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// The derived settings of a run.
struct Plan {
    modes: Vec<Mode>,
    sink: PathBuf,
    latency_records: usize,
    window: i64,
    min_ahead: i64,
}

impl Plan {
    /// Checks the arguments and derives the run's settings from them and the workload.
    fn new(args: &Args, work: &Workload) -> Result<Self> {
        let modes = args
            .modes
            .split(',')
            .map(Mode::parse)
            .collect::<Result<Vec<_>>>()?;
        let sink = args
            .sink
            .clone()
            .unwrap_or_else(|| testkit::bins::dir().join("kafka-pg-sink"));
        ensure!(
            sink.is_file(),
            "no connector binary at {} (build it or pass --sink)",
            sink.display()
        );
        for (key, _) in &args.connector_env {
            ensure!(
                key.starts_with("KAFKA_PG_SINK__"),
                "--connector-env takes KAFKA_PG_SINK__SECTION__KEY=VALUE, not `{key}`"
            );
        }
        // Bytes a record takes in the broker's log: value, key (the id) and ~20 bytes of framing.
        let record_bytes = work.mean_value_bytes() + 19.0 + 20.0;
        let records_in = |mib: f64| (mib * 1024.0 * 1024.0 / record_bytes) as i64;
        Ok(Self {
            modes,
            sink,
            latency_records: work.records.len() - work.backlog,
            window: records_in(args.pace_max_ahead_mib).max(1),
            min_ahead: records_in(args.pace_min_ahead_mib),
        })
    }
}

async fn run(args: Args) -> Result<bool> {
    bench::start_clock();
    let started_at = clock::now_rfc3339();
    let stamp = clock::file_stamp();
    let load_before = procs::load_average();
    ensure!(
        args.partitions > 0 && args.records > 0,
        "--records and --partitions must be positive"
    );
    ensure!(
        (0.0..1.0).contains(&args.update_share),
        "--update-share must be in [0, 1)"
    );
    let server = Server::connect(&args.database_url).await?;
    let info = server.info().await?;
    let generated = Instant::now();
    let work = Arc::new(Workload::generate(
        args.records,
        (args.latency_rate * args.latency_seconds) as usize,
        args.partitions,
        args.update_share,
        args.seed,
    ));
    let plan = Plan::new(&args, &work)?;
    let settings = print_settings(&args, &plan, &work, generated);
    match server.postmaster {
        Some(pid) => say(&format!(
            "postgres runs here (postmaster pid {pid}): its CPU use is measured"
        )),
        None => say("postgres is not a local process: its CPU use is not measured"),
    }

    let mut problems = Vec::new();
    let run_id = run_id();
    let mut ceilings = Vec::new();
    for kind in ceiling_kinds(&plan.modes) {
        say(&format!(
            "{} ceiling: the backlog's rows by raw COPY, no Kafka, no connector",
            kind.name()
        ));
        match ceiling::run(&server, &work, &run_id, kind).await {
            Ok(c) => ceilings.push(c),
            Err(error) => problems.push(format!("{} ceiling: {error:#}", kind.name())),
        }
    }
    let dir = std::env::temp_dir().join(&run_id);
    std::fs::create_dir_all(&dir)?;
    let modes = run_modes(&args, &plan, &server, &work, &run_id, &dir, &mut ceilings).await?;
    for r in &modes {
        problems.extend(r.problems.iter().map(|p| format!("{}: {p}", r.mode.name())));
    }
    let report = Report {
        started_at,
        settings,
        machine: Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average_before: load_before,
            load_average_after: procs::load_average(),
            postgres: info,
        },
        ceilings,
        modes,
        ok: problems.is_empty(),
        problems,
    };
    publish(&report, &args.out, &stamp, &dir, args.keep_logs)
}

/// Prints the table, writes the JSON, and keeps the logs only when something failed.
fn publish(
    report: &Report,
    out: &std::path::Path,
    stamp: &str,
    dir: &std::path::Path,
    keep_logs: bool,
) -> Result<bool> {
    report.print();
    let path = report.write(out, stamp)?;
    println!("results: {}", path.display());
    if report.ok && !keep_logs {
        let _ = std::fs::remove_dir_all(dir);
    } else {
        println!("connector configs and logs kept in {}", dir.display());
    }
    Ok(report.ok)
}

async fn run_modes(
    args: &Args,
    plan: &Plan,
    server: &Server,
    work: &Arc<Workload>,
    run_id: &str,
    dir: &std::path::Path,
    ceilings: &mut [Ceiling],
) -> Result<Vec<ModeResult>> {
    let mut broker = match &args.kafka_brokers {
        Some(bootstrap) => Broker::external(bootstrap.clone()),
        None => {
            let host = args
                .mock_broker
                .clone()
                .unwrap_or_else(|| testkit::bins::dir().join("kafka-pg-sink-mock-broker"));
            if !host.is_file() {
                bail!(
                    "no mock broker host at {} (build the workspace, pass --mock-broker or set KAFKA_BROKERS)",
                    host.display()
                );
            }
            let broker = Broker::start_mock(&host, Some(&dir.join("broker.log")))
                .context("starting the mock broker")?;
            say(&format!(
                "mock broker (test kit host, librdkafka mock cluster) on {}",
                broker.bootstrap
            ));
            broker
        }
    };
    let mut ctx = mode::Context {
        server,
        broker: &mut broker,
        work,
        sink: &plan.sink,
        run_id,
        dir,
        window: plan.window,
        min_ahead: plan.min_ahead,
        latency_rate: args.latency_rate,
        latency_warm_up: mode::latency_warm_up(args.latency_seconds),
        keep_databases: args.keep_databases,
        kafka_properties: &args.kafka_properties,
        connector_env: &args.connector_env,
        compression: args.compression,
    };
    let mut results = Vec::new();
    for &m in &plan.modes {
        let mut result = match mode::run(&mut ctx, m).await {
            Ok(result) => result,
            Err(error) => {
                say(&format!("{}: FAILED: {error:#}", m.name()));
                ModeResult {
                    mode: m,
                    problems: vec![format!("{error:#}")],
                    ..ModeResult::default()
                }
            }
        };
        let same_work = m.ceiling_work();
        if let Some(c) = ceilings.iter_mut().find(|c| c.work == same_work) {
            bracket(&mut result, c, server, run_id).await;
        }
        results.push(result);
    }
    Ok(results)
}

/// The ceilings the modes are compared with, each once.
fn ceiling_kinds(modes: &[Mode]) -> Vec<ceiling::Work> {
    let mut kinds: Vec<ceiling::Work> = Vec::new();
    for work in modes.iter().map(|m| m.ceiling_work()) {
        if !kinds.contains(&work) {
            kinds.push(work);
        }
    }
    kinds
}

/// The mode's rate against its ceiling (the same work), and against that ceiling's
/// two-connection loads measured just before and just after it (measured here); a failed
/// measurement becomes a problem.
async fn bracket(result: &mut ModeResult, ceiling: &mut Ceiling, server: &Server, run_id: &str) {
    let rate = result.records_per_s;
    result.ratio_to_ceiling = (ceiling.rows_per_s > 0.0).then(|| rate / ceiling.rows_per_s);
    let before = ceiling.latest_two_connections();
    let measured = ceiling.again.len();
    if let Err(error) = ceiling.again(server, run_id, result.mode.name()).await {
        result.problems.push(format!("ceiling again: {error:#}"));
    }
    // Only a load measured now: after a failed one, `last` would be the ceiling before the mode.
    let after = ceiling
        .again
        .get(measured)
        .map(|l| l.rows_per_s)
        .filter(|r| *r > 0.0);
    result.ratio_to_ceiling_before = before.map(|b| rate / b);
    result.ratio_to_ceiling_after = after.map(|a| rate / a);
    if let (Some(b), Some(a)) = (before, after) {
        result.ratio_to_ceiling_bracket = Some(rate / ((a + b) / 2.0));
    }
}

fn print_settings(
    args: &Args,
    plan: &Plan,
    work: &Workload,
    generated: Instant,
) -> serde_json::Value {
    let value_bytes = work.mean_value_bytes();
    let truth = work.truth(work.backlog);
    let producer: Vec<String> = produce::SETTINGS
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let broker = match &args.kafka_brokers {
        Some(b) => format!("KAFKA_BROKERS={b} (backlog produced before the connector starts; no pacing)"),
        None => "mock cluster (kafka-pg-sink-mock-broker; keeps 5 MiB or 100,000 message sets per partition)".into(),
    };
    let rust_log =
        std::env::var("RUST_LOG").unwrap_or_else(|_| "unset (connector default: info)".into());
    let git = git_revision();
    let mut lines = vec![
        format!("source: git {}", git.as_deref().unwrap_or("unknown")),
        format!("records {} per mode over {} partitions, update share {:.2}, seed {}", args.records, args.partitions, args.update_share, args.seed),
        format!("workload generated in {:.1} s: {} distinct ids in the backlog, values {:.0} bytes on average", generated.elapsed().as_secs_f64(), truth.keys, value_bytes),
        format!("latency phase: {} records/s for {} s = {} records after each backlog; the first {:.1} s are a warm-up (producer start) and not measured", args.latency_rate, args.latency_seconds, plan.latency_records, mode::latency_warm_up(args.latency_seconds).as_secs_f64()),
        format!("modes: {}", plan.modes.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")),
        format!("broker: {broker}"),
        format!("postgres: {} (a fresh database per phase)", redact(&args.database_url)),
        format!("producer: {} compression.type={} (librdkafka defaults otherwise), explicit partition = hash(id) % partitions, delivery of every record checked", producer.join(" "), args.compression.name()),
        if args.kafka_brokers.is_some() {
            "backlog producer: librdkafka, as above".to_owned()
        } else {
            format!("backlog producer (mock broker, beside the connector): raw Produce v3 requests on one connection, one batch of up to 1,000 records per request (compression: {}), acks=all, every response checked; the latency phase uses librdkafka", args.compression.name())
        },
        format!("pacing (mock broker only): each partition at most {} MiB = {} records ahead of the committed offset; starved below {} MiB = {} records", args.pace_max_ahead_mib, plan.window, args.pace_min_ahead_mib, plan.min_ahead),
        format!("connector: {}, production defaults; set by the benchmark: kafka.brokers, kafka.group_id, postgres.url, http.listen (free port) and the mapping; KAFKA_PG_SINK_* variables removed; RUST_LOG {rust_log}", plan.sink.display()),
        format!("ceilings: {} records per transaction, 1 and 2 connections; upsert: {}; insert: {}; accumulate: {}", ceiling::BATCH_ROWS, ceiling::Work::Upsert.describe(), ceiling::Work::Insert.describe(), ceiling::Work::Accumulate.describe()),
    ];
    if args.kafka_brokers.is_none() {
        lines.push(MOCK_FETCH_NOTE.to_owned());
    }
    let changed: Vec<String> = args
        .kafka_properties
        .iter()
        .map(|(k, v)| format!("kafka.properties.{k} = {v}"))
        .chain(args.connector_env.iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    if !changed.is_empty() {
        lines.push(format!(
            "EXPERIMENT: connector settings changed from production defaults: {}",
            changed.join(", ")
        ));
    }
    say("settings:");
    for line in &lines {
        println!("    {line}");
    }
    serde_json::json!({
        "git": git,
        "records": args.records,
        "partitions": args.partitions,
        "update_share": args.update_share,
        "seed": args.seed,
        "distinct_ids_in_backlog": truth.keys,
        "mean_value_bytes": value_bytes,
        "latency_rate": args.latency_rate,
        "latency_seconds": args.latency_seconds,
        "modes": plan.modes,
        "broker": broker,
        "database": redact(&args.database_url),
        "producer": producer,
        "compression": args.compression.name(),
        "pace_max_ahead_records": plan.window,
        "pace_min_ahead_records": plan.min_ahead,
        "connector": plan.sink.display().to_string(),
        "connector_settings_set": ["kafka.brokers", "kafka.group_id", "postgres.url", "http.listen", "mappings"],
        "connector_defaults_changed": changed,
        "rust_log": rust_log,
        "ceiling_batch_rows": ceiling::BATCH_ROWS,
        "lines": lines,
    })
}
