//! Watching the connector while it works: its committed offsets (from Postgres, every 50 ms;
//! the producer's pacing reads them), when its first and last batch of a phase committed,
//! whether it was ever starved by the producer, its peak RSS and whether it is still alive; and
//! a retention check that the broker never dropped data the connector had not committed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rdkafka::consumer::BaseConsumer;
use sqlx::PgPool;

use super::connector::Connector;
use super::infra::watermarks;
use super::procs;
use super::produce::Shared;

pub const POLL: Duration = Duration::from_millis(50);
const RETENTION_POLL: Duration = Duration::from_millis(250);
/// A phase fails when committed offsets do not move for this long.
const STALL: Duration = Duration::from_secs(120);

/// Stored next offsets of `group` on `topic`, by partition; none while the connector has not
/// created its offsets table yet. `table_seen` remembers that it exists: until then each call
/// checks first, so that polling a database the connector is still setting up leaves no
/// "relation does not exist" errors in the server's log.
pub async fn committed(
    pool: &PgPool,
    group: &str,
    topic: &str,
    table_seen: &AtomicBool,
) -> Result<Vec<(i32, i64)>> {
    if !table_seen.load(Ordering::Relaxed) {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('kafka_pg_sink.offsets') IS NOT NULL")
                .fetch_one(pool)
                .await?;
        if !exists {
            return Ok(Vec::new());
        }
        table_seen.store(true, Ordering::Relaxed);
    }
    Ok(sqlx::query_as(
        "SELECT partition, next_offset FROM kafka_pg_sink.offsets WHERE group_id = $1 AND topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await?)
}

/// CPU seconds used so far by each party, and by the whole machine.
#[derive(Clone, Copy, Debug)]
pub struct CpuSnapshot {
    at: Instant,
    connector: f64,
    postgres: f64,
    broker: f64,
    bench: f64,
    machine_busy: f64,
    machine_total: f64,
}

/// CPU used between two snapshots.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CpuUse {
    pub wall_s: f64,
    pub connector_s: f64,
    pub postgres_s: f64,
    pub broker_s: f64,
    pub bench_s: f64,
    pub machine_busy_s: f64,
    /// Busy CPU not used by any of the above: other processes on the machine.
    pub other_s: f64,
    /// Wall time times the number of CPUs.
    pub machine_capacity_s: f64,
}

impl CpuSnapshot {
    pub fn take(connector: u32, broker: Option<u32>, postmaster: Option<u32>) -> Self {
        let (machine_busy, machine_total) = procs::machine_cpu_seconds();
        Self {
            at: Instant::now(),
            connector: procs::cpu_seconds(connector).unwrap_or(0.0),
            postgres: procs::postgres_cpu_seconds(postmaster),
            broker: broker.and_then(procs::cpu_seconds).unwrap_or(0.0),
            bench: procs::own_cpu_seconds(),
            machine_busy,
            machine_total,
        }
    }

    pub fn since(&self, earlier: &CpuSnapshot) -> CpuUse {
        let mut used = CpuUse {
            wall_s: self.at.duration_since(earlier.at).as_secs_f64(),
            connector_s: self.connector - earlier.connector,
            postgres_s: self.postgres - earlier.postgres,
            broker_s: self.broker - earlier.broker,
            bench_s: self.bench - earlier.bench,
            machine_busy_s: self.machine_busy - earlier.machine_busy,
            other_s: 0.0,
            machine_capacity_s: self.machine_total - earlier.machine_total,
        };
        used.other_s = (used.machine_busy_s
            - used.connector_s
            - used.postgres_s
            - used.broker_s
            - used.bench_s)
            .max(0.0);
        used
    }
}

/// The backlog phase per partition: when each one is done, and starvation.
///
/// Starvation: a partition that still had records to produce but fewer than `min_ahead`
/// acknowledged records beyond its committed offset, at two polls in a row (one poll is the
/// normal moment between a commit and the producer's refill).
pub struct Partitions {
    /// Per partition, the value of `sent` (and the committed offset) once the phase is done.
    pub totals: Vec<i64>,
    /// Starvation threshold; `None` when the producer is not paced.
    pub min_ahead: Option<i64>,
}

/// What one phase looked like from outside.
#[derive(Clone, Debug)]
pub struct PhaseStats {
    /// When the first batch of the phase was seen committed, and the committed total then.
    pub first: Option<(Instant, i64)>,
    pub last: Instant,
    pub first_cpu: Option<CpuSnapshot>,
    pub last_cpu: CpuSnapshot,
    /// Polls after the first commit of the phase.
    pub polls: u64,
    pub starved_polls: u64,
    pub starved_partitions: BTreeSet<usize>,
    /// Per partition, when its last record of the phase was committed (backlog phase only).
    pub partition_done: Vec<Option<Instant>>,
    pub peak_rss_bytes: u64,
}

pub struct Watch<'a> {
    pub pool: &'a PgPool,
    pub group: &'a str,
    pub topic: &'a str,
    pub shared: &'a Arc<Shared>,
    pub connector: &'a mut Connector,
    pub broker_pid: Option<u32>,
    pub postmaster: Option<u32>,
}

impl Watch<'_> {
    /// Polls until the committed total reaches `target`.
    pub async fn follow(
        &mut self,
        target: i64,
        partitions: Option<&Partitions>,
    ) -> Result<PhaseStats> {
        let start_total = self.refresh().await.unwrap_or(0);
        let (mut total, mut last_error) = (start_total, None);
        let mut low = vec![false; self.shared.committed.len()];
        let mut stats = PhaseStats {
            first: None,
            last: Instant::now(),
            first_cpu: None,
            last_cpu: self.cpu(),
            polls: 0,
            starved_polls: 0,
            starved_partitions: BTreeSet::new(),
            partition_done: vec![None; partitions.map_or(0, |p| p.totals.len())],
            peak_rss_bytes: 0,
        };
        let mut moved = Instant::now();
        // The last poll that saw nothing of the phase committed: the start instead, when the
        // first commit seen already completes the phase (tiny runs), which leaves no window.
        let mut before = (Instant::now(), self.cpu());
        while total < target {
            tokio::time::sleep(POLL).await;
            self.check_alive()?;
            match self.refresh().await {
                Ok(now) if now > total => (total, moved) = (now, Instant::now()),
                Ok(_) => {}
                Err(error) => last_error = Some(error),
            }
            if stats.first.is_none() && total > start_total {
                if total >= target {
                    stats.first = Some((before.0, start_total));
                    stats.first_cpu = Some(before.1);
                } else {
                    stats.first = Some((Instant::now(), total));
                    stats.first_cpu = Some(self.cpu());
                }
            } else if stats.first.is_none() {
                before = (Instant::now(), self.cpu());
            }
            // Starvation only counts once the connector is consuming (the group is joined).
            if stats.first.is_some() {
                stats.polls += 1;
                if let Some(s) = partitions {
                    self.note_done(s, &mut stats);
                    if let Some(min_ahead) = s.min_ahead {
                        self.check_starved(&s.totals, min_ahead, &mut low, &mut stats);
                    }
                }
            }
            let rss = procs::peak_rss_bytes(self.connector.pid()).unwrap_or(0);
            stats.peak_rss_bytes = stats.peak_rss_bytes.max(rss);
            if moved.elapsed() > STALL {
                bail!(
                    "no progress for {STALL:?}: {total} of {target} records committed (last query error: {last_error:?})"
                );
            }
        }
        stats.last = Instant::now();
        stats.last_cpu = self.cpu();
        Ok(stats)
    }

    fn cpu(&self) -> CpuSnapshot {
        CpuSnapshot::take(self.connector.pid(), self.broker_pid, self.postmaster)
    }

    /// Reads the stored offsets into `shared.committed`; returns their total.
    async fn refresh(&self) -> Result<i64> {
        for (p, offset) in committed(
            self.pool,
            self.group,
            self.topic,
            &self.shared.offsets_table,
        )
        .await?
        {
            if let Some(c) = self.shared.committed.get(p as usize) {
                c.fetch_max(offset, Ordering::SeqCst);
            }
        }
        Ok(self
            .shared
            .committed
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .sum())
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.connector.exited() {
            bail!(
                "the connector exited ({status}) before it caught up; log: {}",
                self.connector.log.display()
            );
        }
        if let Some(error) = self.shared.error() {
            bail!("the producer failed: {error}");
        }
        Ok(())
    }

    fn note_done(&self, s: &Partitions, stats: &mut PhaseStats) {
        for (p, done) in stats.partition_done.iter_mut().enumerate() {
            if done.is_none() && self.shared.committed(p) >= s.totals[p] {
                *done = Some(Instant::now());
            }
        }
    }

    fn check_starved(
        &self,
        totals: &[i64],
        min_ahead: i64,
        low: &mut [bool],
        stats: &mut PhaseStats,
    ) {
        let mut starved = false;
        for (p, was_low) in low.iter_mut().enumerate() {
            let left = self.shared.sent(p) < totals[p];
            // Sent, not acknowledged: at most one linger interval apart.
            let ahead = self.shared.sent(p) - self.shared.committed(p);
            let is_low = left && ahead < min_ahead;
            if is_low && *was_low {
                starved = true;
                stats.starved_partitions.insert(p);
            }
            *was_low = is_low;
        }
        stats.starved_polls += u64::from(starved);
    }
}

/// Checks every 250 ms that no partition's log start (low watermark) is above the offset the
/// connector has committed: if it is, the broker dropped records the connector still needed.
/// Low watermarks are read before the offsets, so a reported violation is certain.
pub fn spawn_retention_check(
    client: Arc<BaseConsumer>,
    pool: PgPool,
    group: String,
    topic: String,
    partitions: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut violations: Vec<String> = Vec::new();
        let mut seen = BTreeSet::new();
        let table_seen = AtomicBool::new(false);
        while !stop.load(Ordering::SeqCst) {
            let (c, t) = (client.clone(), topic.clone());
            let lows = tokio::task::spawn_blocking(move || watermarks(&c, &t, partitions)).await;
            let Ok(Ok(lows)) = lows else {
                violations.push(format!("could not read watermarks: {lows:?}"));
                break;
            };
            let Ok(stored) = committed(&pool, &group, &topic, &table_seen).await else {
                continue;
            };
            for (p, (low, _)) in lows.iter().enumerate() {
                let done = stored
                    .iter()
                    .find(|(q, _)| *q as usize == p)
                    .map_or(0, |(_, o)| *o);
                if *low > done && seen.insert(p) {
                    violations.push(format!(
                        "partition {p}: the broker's log starts at {low} but the connector had committed only {done}: retention dropped {} records it had not applied",
                        low - done
                    ));
                }
            }
            tokio::time::sleep(RETENTION_POLL).await;
        }
        violations
    })
}
