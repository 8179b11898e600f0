//! Results: per-mode figures, the summary table on stdout and the same as JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::ceiling::Ceiling;
use super::infra::ServerInfo;
use super::mode::Mode;
use super::monitor::{CpuUse, PhaseStats};
use super::produce::Produced;
use super::prom::Histogram;

/// One mode's figures. Rates and CPU cover the backlog, from its first committed batch to its
/// last; the latency phase has its own section.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ModeResult {
    pub mode: Mode,
    pub records: u64,
    pub records_per_s: f64,
    /// Seconds from the first committed batch to the last.
    pub measured_s: f64,
    /// Per partition, sorted: seconds from the first commit until its last record was committed.
    /// A wide spread means partitions were drained unevenly and the end ran on fewer writers.
    pub partition_done_s: Vec<f64>,
    /// Against the ceiling of the same work (`Mode::ceiling_work`).
    pub ratio_to_ceiling: Option<f64>,
    /// Against the two-connection ceiling measured just before this mode (the run's first for
    /// the first mode), just after it, and the mean of those two.
    pub ratio_to_ceiling_before: Option<f64>,
    pub ratio_to_ceiling_after: Option<f64>,
    pub ratio_to_ceiling_bracket: Option<f64>,
    pub commit_p50_ms: Option<f64>,
    pub commit_p99_ms: Option<f64>,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    pub peak_rss_mb: f64,
    /// Connector CPU seconds while the backlog was being committed.
    pub cpu_s: f64,
    /// Connector CPU seconds over its whole life (start, group join, both phases).
    pub connector_cpu_total_s: f64,
    /// Who used the machine's CPU during the backlog.
    pub cpu: CpuUse,
    pub batches: u64,
    pub mean_batch_records: f64,
    /// Sum of commit durations over (writers x measured seconds): how busy the connector's
    /// database writers were. Low values mean it waited for input, not for Postgres.
    pub writer_utilization: f64,
    /// Times the connector paused fetching because too many records were buffered
    /// (`batch.max_buffered_records`), counted in its info log over the whole mode.
    pub fetch_pauses: u64,
    /// Batches the backlog needs at the connector's default `batch.max_records` (10,000).
    pub full_batches_needed: u64,
    /// Cumulative batch counts by size (`batch_records` histogram: upper bound, batches).
    pub batch_size_buckets: Vec<(String, f64)>,
    /// Transactions retried after a transient error, by cause (deadlocks show up here).
    pub retries: Vec<(String, f64)>,
    pub fenced_commits: f64,
    pub producer: Produced,
    /// The producer was paced against the committed offsets (mock broker).
    pub paced: bool,
    pub polls: u64,
    /// Polls at which some partition was starved (see `monitor::Starvation`).
    pub starved_polls: u64,
    pub starved_partitions: Vec<usize>,
    pub starved: bool,
    pub latency: Option<LatencyPhase>,
    pub exit_status: String,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LatencyPhase {
    pub records: u64,
    pub offered: Produced,
    pub e2e_observations: u64,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    /// Share of records committed within 500 ms of their timestamp (a bucket bound: exact).
    pub e2e_within_500ms: Option<f64>,
    pub commit_p50_ms: Option<f64>,
    pub commit_p99_ms: Option<f64>,
    pub connector_cpu_s: f64,
    pub postgres_cpu_s: f64,
}

fn ms(h: &Histogram, q: f64) -> Option<f64> {
    h.quantile(q).map(|s| s * 1000.0)
}

impl ModeResult {
    /// Adds the latency phase: histogram differences between the two scrapes.
    pub fn add_latency(
        &mut self,
        before: &str,
        after: &str,
        offered: Produced,
        stats: &PhaseStats,
    ) {
        let diff =
            |name: &str| Histogram::parse(after, name).minus(&Histogram::parse(before, name));
        let e2e = diff("kafka_pg_sink_end_to_end_latency_seconds");
        let commits = diff("kafka_pg_sink_commit_duration_seconds");
        let cpu = stats
            .last_cpu
            .since(stats.first_cpu.as_ref().unwrap_or(&stats.last_cpu));
        self.e2e_p50_ms = ms(&e2e, 0.5);
        self.e2e_p99_ms = ms(&e2e, 0.99);
        self.latency = Some(LatencyPhase {
            records: offered.records,
            offered,
            e2e_observations: e2e.count() as u64,
            e2e_p50_ms: self.e2e_p50_ms,
            e2e_p99_ms: self.e2e_p99_ms,
            e2e_within_500ms: e2e.share_within(0.5),
            commit_p50_ms: ms(&commits, 0.5),
            commit_p99_ms: ms(&commits, 0.99),
            connector_cpu_s: cpu.connector_s,
            postgres_cpu_s: cpu.postgres_s,
        });
    }

    /// Whether the producer kept the connector busy, in words.
    fn starvation(&self) -> String {
        if !self.paced {
            "not paced (backlog produced first)".to_owned()
        } else if !self.starved {
            "the connector was never starved by the producer".to_owned()
        } else {
            format!(
                "STARVED: at {} of {} polls a partition with records still to produce was under the minimum lead (partitions {:?})",
                self.starved_polls, self.polls, self.starved_partitions
            )
        }
    }

    /// How evenly the partitions were drained, in words.
    fn spread(&self) -> String {
        let d = &self.partition_done_s;
        match (d.first(), d.len().checked_sub(2).map(|i| d[i]), d.last()) {
            (Some(first), Some(second_last), Some(last)) => format!(
                "partitions done from {first:.2} to {last:.2} s, the last one alone for {:.2} s",
                last - second_last
            ),
            _ => "partition completion not tracked".to_owned(),
        }
    }

    pub fn backlog_line(&self) -> String {
        let c = &self.cpu;
        let retries: f64 = self.retries.iter().map(|(_, n)| n).sum();
        let retries = if retries > 0.0 {
            format!("; RETRIED {retries} transactions {:?}", self.retries)
        } else {
            String::new()
        };
        format!(
            "{}: {} records committed at {:.0} records/s ({:.2} s from first to last batch); \
             {} batches of {:.0} records on average ({} at 10,000 each would do), writers busy {:.0}% \
             of the time, fetching paused {} times by flow control; commit p50/p99 {} / {} ms{retries}; CPU s: connector {:.1}, postgres {:.1}, broker {:.1}, \
             bench {:.1}, other processes {:.1}, machine busy {:.1} of {:.1}; producer {:.0} records/s \
             overall, {:.0} records/s when not held back by pacing; {}; {}",
            self.mode.name(),
            self.records,
            self.records_per_s,
            self.measured_s,
            self.batches,
            self.mean_batch_records,
            self.full_batches_needed,
            self.writer_utilization * 100.0,
            self.fetch_pauses,
            opt(self.commit_p50_ms),
            opt(self.commit_p99_ms),
            c.connector_s,
            c.postgres_s,
            c.broker_s,
            c.bench_s,
            c.other_s,
            c.machine_busy_s,
            c.machine_capacity_s,
            self.producer.records_per_s,
            self.producer.own_records_per_s,
            self.spread(),
            self.starvation()
        )
    }

    pub fn latency_line(&self) -> String {
        let Some(l) = &self.latency else {
            return format!("{}: no latency phase", self.mode.name());
        };
        format!(
            "{}: latency phase: {} records offered at {:.0} records/s (window waits {:.2} s); \
             end-to-end p50/p99 {} / {} ms over {} records ({} within 500 ms); \
             commit p50/p99 {} / {} ms",
            self.mode.name(),
            l.records,
            l.offered.records_per_s,
            l.offered.blocked_s,
            opt(l.e2e_p50_ms),
            opt(l.e2e_p99_ms),
            l.e2e_observations,
            l.e2e_within_500ms
                .map_or_else(|| "-".into(), |s| format!("{:.2} %", s * 100.0)),
            opt(l.commit_p50_ms),
            opt(l.commit_p99_ms)
        )
    }
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub load_average_before: String,
    pub load_average_after: String,
    pub postgres: ServerInfo,
}

#[derive(serde::Serialize)]
pub struct Report {
    pub started_at: String,
    pub settings: serde_json::Value,
    pub machine: Machine,
    /// One per kind of work the modes do (see `Mode::ceiling_work`).
    pub ceilings: Vec<Ceiling>,
    pub modes: Vec<ModeResult>,
    pub ok: bool,
    pub problems: Vec<String>,
}

impl Report {
    pub fn print(&self) {
        println!("\n{:=^130}", " kafka-pg-sink benchmark ");
        println!(
            "{:<32} {:>9} {:>11} {:>8} {:>19} {:>19} {:>9} {:>7}",
            "mode",
            "records",
            "records/s",
            "vs ceil",
            "commit p50/p99 ms",
            "e2e p50/p99 ms",
            "RSS MB",
            "CPU s"
        );
        for c in &self.ceilings {
            for l in c.loads.iter().chain(&c.again) {
                let work = c.work.name();
                let name = match &l.after_mode {
                    Some(mode) => format!("{work} ceiling after {mode}"),
                    None => format!("{work} ceiling {}conn", l.connections),
                };
                println!(
                    "{name:<32} {:>9} {:>11.0} {:>8} {:>19} {:>19} {:>9} {:>7}",
                    l.rows, l.rows_per_s, "-", "-", "-", "-", "-"
                );
            }
        }
        for m in &self.modes {
            println!(
                "{:<32} {:>9} {:>11.0} {:>8} {:>19} {:>19} {:>9.0} {:>7.1}",
                m.mode.name(),
                m.records,
                m.records_per_s,
                m.ratio_to_ceiling.map_or("-".into(), |r| format!("{r:.2}")),
                format!("{} / {}", opt(m.commit_p50_ms), opt(m.commit_p99_ms)),
                format!("{} / {}", opt(m.e2e_p50_ms), opt(m.e2e_p99_ms)),
                m.peak_rss_mb,
                m.cpu_s
            );
        }
        let bracketed: Vec<String> = self
            .modes
            .iter()
            .filter_map(|m| {
                Some(format!(
                    "{} {:.2} / {:.2} / {:.2}",
                    m.mode.name(),
                    m.ratio_to_ceiling_before?,
                    m.ratio_to_ceiling_after?,
                    m.ratio_to_ceiling_bracket?
                ))
            })
            .collect();
        if !bracketed.is_empty() {
            println!(
                "vs the two-connection ceiling just before / just after each mode / their mean: {}",
                bracketed.join(", ")
            );
        }
        let mc = &self.machine;
        println!(
            "machine: nproc {}, load average before {} / after {}; PostgreSQL {}, synchronous_commit = {}, fsync = {}, shared_buffers = {}, max_wal_size = {}",
            mc.nproc, mc.load_average_before, mc.load_average_after, mc.postgres.version,
            mc.postgres.synchronous_commit, mc.postgres.fsync, mc.postgres.shared_buffers, mc.postgres.max_wal_size
        );
        if self.ok {
            println!("verification: every table, offset and retention check passed");
        } else {
            println!("VERIFICATION FAILED:");
            for p in &self.problems {
                println!("  - {p}");
            }
        }
    }

    /// Writes `<dir>/<stamp>.json`.
    pub fn write(&self, dir: &Path, stamp: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{stamp}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}
