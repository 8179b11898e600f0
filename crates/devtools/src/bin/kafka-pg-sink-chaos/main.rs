//! `kafka-pg-sink-chaos`: proves the exactly-once effect under faults, with the real binaries.
//!
//! It starts its own PostgreSQL cluster (initdb/pg_ctl, on a free port), the mock Kafka broker
//! (the test kit's `kafka-pg-sink-mock-broker`, or the cluster named by `KAFKA_BROKERS`, then without broker
//! faults) and `--replicas` connector processes in one group, each applying one topic through
//! three mappings (upsert with an audit trigger, insert, hourly accumulate) with dead letters.
//! While a producer streams deterministic payment events (about `--poison-percent` of them
//! poison: invalid JSON, a non-numeric amount, a missing field, an amount every table's CHECK
//! rejects), it injects faults at random moments: `kill -9` and SIGTERM of replicas (restarted
//! later), Postgres crash-restarts, broker outages, scaling up and down, broker request errors
//! and latency. Every 200 ms it checks that no stored offset moved backwards. At the end it waits
//! until every stored offset is the log end and checks every table, the dead letters and the
//! connector's metrics against what was produced. Exit status 0 only if every check passes.
//!
//! Run the long scenario (a few minutes on 2 cores):
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo run --release --bin kafka-pg-sink-chaos -- --records 200000 --partitions 12 --replicas 3
//! ```
//!
//! The seed is printed first; `--seed N` replays the same faults in the same order (timings
//! still vary with the machine). Replica logs (`RUST_LOG`, default `info`), configs and the
//! Postgres log are kept under the printed directory when a check fails (`--keep-logs` always).
//! `--self-test-corrupt` damages the tables before verifying, to show the checker fails.

mod chaos;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use sqlx::postgres::PgPoolOptions;

use chaos::faults::{self, Env, Fault, Injector};
use chaos::fleet::Fleet;
use chaos::monitor::Monitor;
use chaos::replicas::Spec;
use chaos::report::Summary;
use chaos::workload::{Production, Truth};
use chaos::{catchup, say, scrape, verify};
use testkit::broker::{cluster, Broker};
use testkit::pg_server::PgServer;
use testkit::rng::Rng;

/// Fault-injection run of kafka-pg-sink against real PostgreSQL and a Kafka-protocol broker.
#[derive(Parser, Clone)]
struct Args {
    /// Records to produce (ids 1..=N).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// Connector replicas in the group (a scale-up fault adds one more for a while).
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Records produced per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Share of poison records, in percent.
    #[arg(long, default_value_t = 1.0)]
    poison_percent: f64,
    /// PRNG seed for the faults and their timing; default from the clock (printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Keep injecting faults for at least this long, even after everything is produced.
    #[arg(long, alias = "duration", default_value_t = 0)]
    duration_secs: u64,
    /// Mean gap between two faults.
    #[arg(long, default_value_t = 4000)]
    fault_interval_ms: u64,
    /// Faults to inject: `all`, `none`, or a comma-separated list of kill9, sigterm,
    /// pg-restart, broker-outage, scale-up-down, request-errors, latency. Each enabled kind is
    /// injected at least once (injection goes on after the stream until it has been).
    #[arg(long, default_value = "all")]
    faults: String,
    /// How long the connector may take to catch up once the faults stop.
    #[arg(long, default_value_t = 300)]
    settle_timeout_secs: u64,
    /// Connector `batch.max_records`.
    #[arg(long, default_value_t = 500)]
    max_records: usize,
    /// Connector `batch.max_wait_ms`.
    #[arg(long, default_value_t = 50)]
    max_wait_ms: u64,
    /// The mock broker host (the test kit's `kafka-pg-sink-mock-broker`); default: next to this
    /// binary.
    #[arg(long)]
    mock_broker: Option<PathBuf>,
    /// The connector binary; default: next to this binary.
    #[arg(long)]
    sink: Option<PathBuf>,
    /// After the run, delete one applied row and apply one record twice, then verify: the
    /// run must fail and name both records.
    #[arg(long)]
    self_test_corrupt: bool,
    /// Keep the logs directory even when every check passes.
    #[arg(long)]
    keep_logs: bool,
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
    // Dropping the run future on Ctrl-C drops its processes, which kills them.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(args) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    match outcome {
        Ok(Verdict::Pass) => ExitCode::SUCCESS,
        Ok(Verdict::Fail) => ExitCode::FAILURE,
        Ok(Verdict::Inconclusive) => ExitCode::from(3),
        Err(error) => {
            println!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Removes the logs directory on drop unless `keep` was set.
struct LogDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if self.keep {
            println!("logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// How a run ended.
enum Verdict {
    Pass,
    Fail,
    /// The mock broker process died: nothing can be concluded about the connector (exit code 3).
    Inconclusive,
}

async fn run(args: Args) -> Result<Verdict> {
    let started = Instant::now();
    chaos::elapsed();
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(1, |d| d.as_nanos() as u64 % 1_000_000_000)
    });
    println!("seed = {seed}");
    let path = std::env::temp_dir().join(format!("kps-chaos-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    // Failing early (an error) keeps the logs; a passing run clears `keep` at the end.
    let mut logs = LogDir { path, keep: true };
    say(&format!("logs in {}", logs.path.display()));
    let passed = scenario(&args, seed, &logs.path, started).await;
    logs.keep = args.keep_logs || !matches!(passed, Ok(Verdict::Pass));
    passed
}

async fn scenario(args: &Args, seed: u64, dir: &Path, started: Instant) -> Result<Verdict> {
    let pg = Arc::new(PgServer::start(dir).context("starting PostgreSQL")?);
    pg.create_database("chaos").await?;
    let db_url = pg.url("chaos");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&db_url)
        .await?;
    sqlx::raw_sql(verify::DDL).execute(&pool).await?;
    say(&format!("Postgres on port {}", pg.port));

    let mut broker = match std::env::var("KAFKA_BROKERS") {
        Ok(bootstrap) => Broker::external(bootstrap),
        Err(_) => {
            let host = args
                .mock_broker
                .clone()
                .unwrap_or_else(|| testkit::bins::dir().join("kafka-pg-sink-mock-broker"));
            Broker::start_mock(&host, Some(&dir.join("broker.log")))?
        }
    };
    let (topic, group) = (
        format!("chaos_payments_{seed}"),
        format!("kps-chaos-{seed}"),
    );
    broker.create_topic(&topic, args.partitions)?;
    let mut kinds = Fault::parse_list(&args.faults)?;
    let broker_note = (!broker.is_mock()).then_some("skipped: KAFKA_BROKERS names a real cluster");
    if !broker.is_mock() {
        kinds.retain(|k| !k.needs_mock());
    }
    faults::check_kinds(&kinds, broker.is_mock())?;
    say(&format!(
        "broker {}; topic {topic}; group {group}",
        broker.bootstrap
    ));

    let spec = Spec {
        sink: args
            .sink
            .clone()
            .unwrap_or_else(|| testkit::bins::dir().join("kafka-pg-sink")),
        dir: dir.to_owned(),
        bootstrap: broker.bootstrap.clone(),
        db_url: db_url.clone(),
        group: group.clone(),
        topic: topic.clone(),
        max_records: args.max_records,
        max_wait_ms: args.max_wait_ms,
    };
    let mut env = Env {
        fleet: Fleet::new(spec, args.replicas),
        broker,
        pg,
        violations: Vec::new(),
    };
    env.fleet.start_all()?;
    let monitor = Monitor::start(db_url, Duration::from_millis(200));
    let poison_bp = (args.poison_percent * 100.0).round().max(0.0) as u64;
    let production = Production::start(
        &env.broker.bootstrap,
        &topic,
        args.records,
        args.rate,
        args.partitions,
        poison_bp,
    )?;
    let injector = Injector::new(Rng::new(seed), kinds);
    let driven = drive(
        args, injector, &mut env, production, &monitor, &pool, &topic, &group,
    )
    .await;
    // A broker that died (a librdkafka mock assertion) fails broker commands and stalls the
    // group: whatever went wrong after that says nothing about the connector.
    let wait = Duration::from_secs(if driven.is_err() { 2 } else { 0 });
    if let Some(death) = env.broker.died_within(wait).await {
        println!("INCONCLUSIVE: the mock broker process died during the run ({death}); this is the test broker, not the connector: run again");
        return Ok(Verdict::Inconclusive);
    }
    let (injector, truth, ends) = driven?;

    if args.self_test_corrupt {
        let (lost, twice) = verify::corrupt(&pool, &truth).await?;
        say(&format!(
            "self-test: deleted the payments_latest row of {} and applied {} a second time",
            truth.describe(lost),
            truth.describe(twice)
        ));
    }
    let findings = verify::tables(&pool, &truth, &group, &topic).await?;
    let metrics = scrape::agree(&env.fleet, &topic, &ends, Duration::from_secs(30)).await;
    let seen = monitor.stop().await;

    let mut violations = std::mem::take(&mut env.violations);
    violations.extend(findings.violations.iter().cloned());
    violations.extend(seen.regressions.iter().cloned());
    if let Err(problem) = &metrics {
        violations.push(format!("metrics disagree with the tables: {problem}"));
    }
    Summary {
        seed,
        partitions: args.partitions,
        replicas: args.replicas,
        truth: &truth,
        faults: &injector.counts,
        broker_note,
        findings: &findings,
        seen: &seen,
        metrics: &metrics,
        wall_secs: started.elapsed().as_secs_f64(),
        violations: &violations,
    }
    .print();
    for (i, violation) in violations.iter().enumerate() {
        println!("VIOLATION {}: {violation}", i + 1);
    }
    Ok(if violations.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    })
}

/// Faults, then the end of production, the ground truth from the log and the catch-up.
#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &Args,
    mut injector: Injector,
    env: &mut Env,
    production: Production,
    monitor: &Monitor,
    pool: &sqlx::PgPool,
    topic: &str,
    group: &str,
) -> Result<(Injector, Truth, Vec<i64>)> {
    wait_for_first_commit(&mut injector, env, monitor).await?;
    inject_faults(args, &mut injector, env, &production, monitor).await?;

    say("faults stopped; undoing the last ones and starting every replica");
    injector.undo_all(env).await?;
    env.fleet.restart_all_now()?;
    let produced = tokio::task::spawn_blocking(move || production.join()).await??;
    let (bootstrap, t, partitions) = (
        env.broker.bootstrap.clone(),
        topic.to_owned(),
        args.partitions,
    );
    let (marks, log) = tokio::task::spawn_blocking(move || -> Result<_> {
        let marks = cluster::watermarks(&bootstrap, &t, partitions)?;
        let log = cluster::read_log(&bootstrap, &t, &marks)?;
        Ok((marks, log))
    })
    .await??;
    let truth = Truth::build(produced, &log);
    drop(log);
    for note in &truth.notes {
        say(&format!(
            "NOTE (broker/producer, not the connector): {note}"
        ));
    }
    let ends: Vec<i64> = marks.iter().map(|m| m.1).collect();
    let timeout = Duration::from_secs(args.settle_timeout_secs);
    catchup::settle(pool, env, group, topic, &ends, timeout).await?;
    Ok((injector, truth, ends))
}

/// Faults start once the group has joined and committed something.
async fn wait_for_first_commit(
    injector: &mut Injector,
    env: &mut Env,
    monitor: &Monitor,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while monitor.committed() == 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "nothing was committed within 90 s of the start; see the replica logs"
        );
        injector.tend(env).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    say("first batches committed; faults start");
    Ok(())
}

async fn inject_faults(
    args: &Args,
    injector: &mut Injector,
    env: &mut Env,
    production: &Production,
    monitor: &Monitor,
) -> Result<()> {
    let chaos_started = Instant::now();
    let mean = Duration::from_millis(args.fault_interval_ms.max(1));
    let mut next_fault = Instant::now() + injector.gap(mean);
    let mut next_progress = Instant::now();
    loop {
        let streamed = production.is_finished()
            && chaos_started.elapsed() >= Duration::from_secs(args.duration_secs);
        if streamed && (injector.kinds().is_empty() || injector.all_kinds_done()) {
            return Ok(());
        }
        if !injector.kinds().is_empty() && Instant::now() >= next_fault {
            injector.inject(env).await?;
            next_fault = Instant::now() + injector.gap(mean);
        }
        injector.tend(env).await?;
        if Instant::now() >= next_progress {
            say(&format!(
                "produced {} of {}, committed {}, replicas running {}",
                production.sent.load(std::sync::atomic::Ordering::SeqCst),
                args.records,
                monitor.committed(),
                env.fleet.running().len()
            ));
            next_progress = Instant::now() + Duration::from_secs(5);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
