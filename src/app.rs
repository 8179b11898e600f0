//! Wiring: pool, migrations, metrics, HTTP, writers, the poll thread and the pipeline, under one
//! cancellation token; then an orderly drain.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Mapping, Mode};
use crate::decode::formats::Schemas;
use crate::error::{classify, Backoff, Error, ErrorClass};
use crate::health::Health;
use crate::kafka::{build_consumer, spawn_poller, FlowControl, SinkContext, StoredOffsets};
use crate::metrics::Metrics;
use crate::pipeline::{Batcher, Limits, Pipeline, Wiring};
use crate::record::TopicPartition;
use crate::registry::Registry;
use crate::sink::encode::{BinType, Decoder};
use crate::sink::{
    check_database, column_types, copies_like_inserts, migrate, MappingSql, OffsetStore, Writer,
};

/// Connection options shared by the pool and the writers.
pub(crate) fn connect_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(config.postgres.url.expose()).with_context(|| {
        format!(
            "postgres.url `{}` is not a valid connection URL",
            config.postgres.url
        )
    })?;
    Ok(options.application_name("kafka-pg-sink"))
}

/// Writer connections: the shared options plus the commit durability setting.
fn writer_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    let options = connect_options(config)?;
    Ok(if config.postgres.synchronous_commit {
        options
    } else {
        options.options([("synchronous_commit", "off")])
    })
}

/// Pings Postgres and publishes the pool's connection counts every few seconds, so readiness
/// follows the database even while no batch is being written. Logs once per change of state.
async fn watch_postgres(
    pool: PgPool,
    metrics: Metrics,
    health: Arc<Health>,
    token: CancellationToken,
) {
    let mut was_ok = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = token.cancelled() => return,
        }
        let ping = tokio::time::timeout(
            Duration::from_secs(3),
            sqlx::query("SELECT 1").execute(&pool),
        )
        .await;
        let ok = matches!(ping, Ok(Ok(_)));
        health.set_postgres(ok);
        match (was_ok, ok) {
            (true, false) => {
                tracing::warn!("Postgres is unreachable; writes are retried until it is back.")
            }
            (false, true) => tracing::info!("Postgres is reachable again."),
            _ => {}
        }
        was_ok = ok;
        let idle = pool.num_idle() as i64;
        metrics
            .pg_pool_connections
            .with_label_values(&["idle"])
            .set(idle);
        metrics
            .pg_pool_connections
            .with_label_values(&["in_use"])
            .set(i64::from(pool.size()) - idle);
    }
}

/// Opens the pool, waiting for Postgres to come up (or the token to be cancelled). Only what
/// [`classify`] calls transient is waited out (server down or starting, connection refused); a
/// wrong password, an unknown role or database stops at once with the server's reason.
pub(crate) async fn connect_pool(
    config: &Config,
    token: &CancellationToken,
) -> anyhow::Result<PgPool> {
    let options = connect_options(config)?;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(config.postgres.pool_size)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await;
        let error = match attempt {
            Ok(pool) => return Ok(pool),
            Err(error) => Error::from(error),
        };
        if token.is_cancelled() || classify(&error) != ErrorClass::Transient {
            return Err(error)
                .with_context(|| format!("connecting to Postgres at {}", config.postgres.url));
        }
        tracing::warn!(%error, url = %config.postgres.url, "Postgres is not reachable yet; retrying.");
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = token.cancelled() => {}
        }
    }
}

/// The decoder and the writers' statements for the configured mappings, with binary COPY where
/// the tables' column types allow it.
pub async fn row_plan(
    pool: &PgPool,
    config: &Config,
    schemas: Arc<Schemas>,
) -> Result<(Arc<Decoder>, Arc<[MappingSql]>), crate::error::Error> {
    let mappings: Arc<[Mapping]> = config.mappings.clone().into();
    let stages = stage_types(pool, config).await?;
    let exact: Vec<bool> = stages
        .iter()
        .map(|s| s.as_ref().is_some_and(|s| s.2))
        .collect();
    let mut direct = Vec::with_capacity(mappings.len());
    for mapping in mappings.iter() {
        direct.push(mapping.mode == Mode::Insert && copies_like_inserts(pool, mapping).await?);
    }
    let decoder = Arc::new(
        Decoder::with_binary(
            Arc::clone(&mappings),
            stages
                .iter()
                .map(|s| s.as_ref().map(|(b, _, _)| b.clone()))
                .collect(),
        )
        .with_exact_keys(&exact)
        .with_direct_inserts(&direct)
        .with_schemas(schemas),
    );
    let sql = mappings
        .iter()
        .zip(&stages)
        .enumerate()
        .map(|(i, (m, s))| MappingSql::new(m, i, s.as_ref().map(|(_, t, _)| t.as_slice())))
        .collect();
    Ok((decoder, sql))
}

/// A mapping's binary COPY plan: each column's binary type, its stage table column type (with
/// the column's collation), and whether key values are equal in the table exactly when they are
/// as written.
type StageTypes = (Vec<BinType>, Vec<String>, bool);

/// Per mapping, when its rows go as binary COPY, its [`StageTypes`]. `None` for a mapping with a
/// column binary COPY does not cover, or for every mapping with `postgres.binary_copy = false`.
async fn stage_types(
    pool: &PgPool,
    config: &Config,
) -> Result<Vec<Option<StageTypes>>, crate::error::Error> {
    let mut all = Vec::new();
    for mapping in &config.mappings {
        let types = match config.postgres.binary_copy {
            true => column_types(pool, mapping).await?,
            false => None,
        };
        let binary = types.and_then(|found| {
            let binary = found
                .types
                .iter()
                .map(|t| BinType::from_catalog(t))
                .collect::<Option<Vec<_>>>()?;
            Some((binary, found.stage, found.exact_keys))
        });
        if binary.is_none() && config.postgres.binary_copy {
            tracing::info!(table = %mapping.table, "Rows go as COPY text: a column's type has no binary encoding here.");
        }
        all.push(binary);
    }
    Ok(all)
}

/// How long writers get to report their batch once the pipeline has stopped.
const WRITERS_GRACE: Duration = Duration::from_secs(5);

/// Waits for the writers (whose queue is closed), at most [`WRITERS_GRACE`]; a writer still
/// busy then (retrying a batch the drain gave up on, or blocked on an unresponsive server) is
/// stopped: its connection is dropped and any open transaction rolls back on the server.
async fn stop_writers(writers: Vec<tokio::task::JoinHandle<()>>) {
    let deadline = tokio::time::Instant::now() + WRITERS_GRACE;
    for mut writer in writers {
        if tokio::time::timeout_at(deadline, &mut writer)
            .await
            .is_err()
        {
            tracing::warn!("A database writer did not finish in time; stopping it (its transaction rolls back).");
            writer.abort();
            let _ = writer.await;
        }
    }
}

/// Runs the connector until `token` is cancelled or a fatal error occurs.
pub async fn run(config: Config, token: CancellationToken) -> anyhow::Result<()> {
    let metrics = Metrics::new().context("creating metrics")?;
    let health = Arc::new(Health::default());
    health.beat();
    let listener = crate::http::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on http.listen = {}", config.listen))?;
    let http = tokio::spawn(crate::http::serve(
        listener,
        metrics.clone(),
        Arc::clone(&health),
        token.child_token(),
    ));

    let pool = connect_pool(&config, &token).await?;
    migrate(&pool, &config.schema)
        .await
        .context("applying migrations")?;
    let problems = check_database(&pool, &config)
        .await
        .context("checking the database")?;
    if !problems.is_empty() {
        anyhow::bail!(
            "the database does not match the configuration ({} problem(s)):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        );
    }
    health.set_postgres(true);

    let schemas = Arc::new(Schemas::default());
    let registry = match &config.schema_registry {
        Some(registry) => Some(Arc::new(Registry::new(
            registry,
            &config.mappings,
            Arc::clone(&schemas),
            metrics.clone(),
            Arc::clone(&health),
        )?)),
        None => None,
    };
    let (decoder, sql) = row_plan(&pool, &config, schemas)
        .await
        .context("reading column types")?;
    let (batches, queue) = mpsc::channel(config.postgres.writers * 2);
    let queue = Arc::new(Mutex::new(queue));
    let (results_tx, results) = mpsc::unbounded_channel();
    tokio::spawn(watch_postgres(
        pool.clone(),
        metrics.clone(),
        Arc::clone(&health),
        token.child_token(),
    ));
    if config.log.progress_interval_ms > 0 {
        tokio::spawn(crate::progress::report(
            metrics.clone(),
            Arc::clone(&health),
            Duration::from_millis(config.log.progress_interval_ms),
            token.child_token(),
        ));
    }
    let options = writer_options(&config)?;
    let mut writers = Vec::new();
    for _ in 0..config.postgres.writers {
        let writer = Writer::new(
            options.clone(),
            Arc::clone(&decoder),
            Arc::clone(&sql),
            &config.schema,
            config.kafka.group_id.clone(),
            metrics.clone(),
        )
        .with_registry(registry.clone());
        writers.push(tokio::spawn(
            writer.run(Arc::clone(&queue), results_tx.clone()),
        ));
    }
    drop(results_tx);

    let (events_tx, events) = mpsc::channel(16);
    let (commands, commands_rx) = std::sync::mpsc::channel();
    let context = SinkContext::new(
        Box::new(OffsetStore::new(
            pool.clone(),
            &config.schema,
            &config.kafka.group_id,
        )),
        tokio::runtime::Handle::current(),
        events_tx,
        config.kafka.auto_offset_reset,
        config.kafka.offset_out_of_range,
        Arc::clone(&health),
        metrics.clone(),
        token.clone(),
    );
    let consumer = build_consumer(&config, context).context("creating the Kafka consumer")?;
    let flow = Arc::new(FlowControl::new(
        config.batch.max_buffered_records,
        config.batch.max_buffered_bytes,
    ));
    let poller = spawn_poller(consumer, commands_rx, Arc::clone(&flow), token.clone())
        .context("starting the poll thread")?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        group = %config.kafka.group_id,
        mappings = config.mappings.len(),
        "kafka-pg-sink started."
    );

    let limits = Limits {
        max_records: config.batch.max_records,
        max_bytes: config.batch.max_bytes,
        max_wait: config.max_wait(),
    };
    let tick = (config.max_wait() / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
    let wiring = Wiring {
        events,
        commands,
        batches,
        results,
    };
    let pipeline = Pipeline::new(
        wiring,
        Batcher::new(limits),
        flow,
        config.postgres.writers,
        config.kafka.commit_to_kafka,
        metrics,
        Arc::clone(&health),
    );
    let result = pipeline
        .run(token.clone(), tick, config.drain_timeout())
        .await;
    health.set_stopping();
    // Whether the pipeline drained or failed, the poll thread must leave the group now.
    token.cancel();
    let _ = tokio::task::spawn_blocking(move || poller.join()).await;
    stop_writers(writers).await;
    let _ = http.await;
    pool.close().await;
    result.map_err(anyhow::Error::from)
}

/// The rebalance callback reads and stores start offsets in the sink's offset store: the one
/// place `kafka` and `sink` meet, so neither imports the other.
impl StoredOffsets for OffsetStore {
    fn load<'a>(
        &'a self,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, Result<HashMap<TopicPartition, i64>, Error>> {
        Box::pin(OffsetStore::load(self, partitions))
    }

    fn insert_starts<'a>(
        &'a self,
        starts: &'a [(TopicPartition, i64)],
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(OffsetStore::insert_starts(self, starts))
    }
}
