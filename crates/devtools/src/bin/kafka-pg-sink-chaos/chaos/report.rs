//! The summary table: `name = value` lines, one figure each, so scripts and tests can read it.

use std::collections::BTreeMap;

use super::faults::Fault;
use super::monitor::Seen;
use super::verify::Findings;
use super::workload::Truth;

pub struct Summary<'a> {
    pub seed: u64,
    pub partitions: i32,
    pub replicas: usize,
    pub truth: &'a Truth,
    pub faults: &'a BTreeMap<Fault, u64>,
    /// Why broker faults were not injected, if they were not.
    pub broker_note: Option<&'static str>,
    pub findings: &'a Findings,
    pub seen: &'a Seen,
    pub metrics: &'a Result<String, String>,
    pub wall_secs: f64,
    pub violations: &'a [String],
}

fn line(name: &str, value: impl std::fmt::Display) {
    println!("{name:<32} = {value}");
}

impl Summary<'_> {
    pub fn print(&self) {
        let t = self.truth;
        println!("\n==================== chaos summary ====================");
        line("seed", self.seed);
        let kinds: Vec<String> = t
            .poison
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        line("records produced", t.events.len());
        line("records in the log", t.at.len());
        line("records good", t.good_records);
        line(
            "records poison",
            format!("{} ({})", t.poison_total(), kinds.join(", ")),
        );
        line(
            "partitions / replicas",
            format!("{} / {}", self.partitions, self.replicas),
        );
        for (fault, n) in self.faults {
            line(&format!("fault {}", fault.name()), n);
        }
        line("faults total", self.faults.values().sum::<u64>());
        if let Some(note) = self.broker_note {
            line("broker faults", note);
        }
        let f = self.findings;
        line("lost", f.lost.len());
        line("duplicated", f.duplicated.len());
        for (table, (expected, found)) in &f.dead_letters {
            line(
                &format!("dead letters {table}"),
                format!("{expected} expected / {found} found"),
            );
        }
        line(
            "balances (account, hour) keys",
            format!(
                "{} checked, {} mismatched",
                f.balance_keys.0, f.balance_keys.1
            ),
        );
        line(
            "offset regressions",
            format!(
                "{} ({} samples, {} while Postgres was unavailable)",
                self.seen.regressions.len(),
                self.seen.samples,
                self.seen.unavailable
            ),
        );
        match self.metrics {
            Ok(summary) => line("metrics", summary),
            Err(problem) => line("metrics", format!("DISAGREE: {problem}")),
        }
        line("log notes (broker/producer)", t.notes.len());
        line("violations", self.violations.len());
        line("wall time", format!("{:.1} s", self.wall_secs));
        line(
            "result",
            if self.violations.is_empty() {
                "PASS"
            } else {
                "FAIL"
            },
        );
    }
}
