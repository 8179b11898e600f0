//! The one-line progress summary a person reads in the log while the connector runs
//! (`log.progress_interval_ms`): records/s since the last line, total lag, bad records so far,
//! stopped and stalled partitions. Read from the metrics, so it says what `/metrics` says.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::core::Collector;
use tokio_util::sync::CancellationToken;

use crate::health::Health;
use crate::metrics::Metrics;

/// The figures of one line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub records_per_sec: f64,
    /// `None` until the broker's statistics gave a log end.
    pub lag: Option<u64>,
    pub dead_letters: u64,
    pub skipped: u64,
    pub stopped: i64,
    pub stalled: usize,
}

impl Progress {
    /// The line as logged.
    pub fn line(&self) -> String {
        let lag = match self.lag {
            Some(lag) => format!("lag {lag} records"),
            None => "lag not known yet".to_owned(),
        };
        format!(
            "progress: {:.0} records/s, {lag}, {} dead letters, {} skipped, {} stopped and {} stalled partitions",
            self.records_per_sec, self.dead_letters, self.skipped, self.stopped, self.stalled
        )
    }
}

/// Logs a line every `interval` until `token` is cancelled.
pub async fn report(
    metrics: Metrics,
    health: Arc<Health>,
    interval: Duration,
    token: CancellationToken,
) {
    let mut last = (Instant::now(), sum(&metrics.records_consumed));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = token.cancelled() => return,
        }
        let consumed = sum(&metrics.records_consumed);
        let now = Instant::now();
        let seconds = now.duration_since(last.0).as_secs_f64().max(f64::EPSILON);
        let status = health.status();
        let progress = Progress {
            records_per_sec: consumed.saturating_sub(last.1) as f64 / seconds,
            lag: (series(&metrics.consumer_lag) > 0).then(|| sum(&metrics.consumer_lag)),
            dead_letters: sum(&metrics.dead_letters),
            skipped: sum(&metrics.skipped_records),
            stopped: status.stopped_partitions,
            stalled: status.stalled_partitions.len(),
        };
        last = (now, consumed);
        tracing::info!("{}", progress.line());
    }
}

/// How many series a family has.
fn series(collector: &impl Collector) -> usize {
    collector
        .collect()
        .iter()
        .map(|family| family.get_metric().len())
        .sum()
}

/// The sum of every series of a counter or gauge family.
fn sum(collector: &impl Collector) -> u64 {
    collector
        .collect()
        .iter()
        .flat_map(|family| {
            let counter = family.get_field_type() == prometheus::proto::MetricType::COUNTER;
            family.get_metric().iter().map(move |m| match counter {
                true => m.get_counter().get_value(),
                false => m.get_gauge().get_value(),
            })
        })
        .sum::<f64>()
        .max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_series_and_reads_as_a_sentence() {
        let metrics = Metrics::new().unwrap();
        metrics.records_consumed.with_label_values(&["a"]).inc_by(5);
        metrics.records_consumed.with_label_values(&["b"]).inc_by(7);
        metrics.consumer_lag.with_label_values(&["a", "0"]).set(3);
        metrics.consumer_lag.with_label_values(&["a", "1"]).set(4);
        assert_eq!(sum(&metrics.records_consumed), 12);
        assert_eq!(sum(&metrics.consumer_lag), 7);
        assert_eq!(series(&metrics.consumer_lag), 2);
        assert_eq!(series(&metrics.stall_restarts), 0);
        let mut progress = Progress {
            records_per_sec: 1234.4,
            lag: Some(7),
            dead_letters: 2,
            skipped: 0,
            stopped: 1,
            stalled: 0,
        };
        assert_eq!(
            progress.line(),
            "progress: 1234 records/s, lag 7 records, 2 dead letters, 0 skipped, 1 stopped and 0 stalled partitions"
        );
        progress.lag = None;
        assert!(progress.line().contains(", lag not known yet, "));
    }
}
