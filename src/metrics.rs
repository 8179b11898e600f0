//! Prometheus metrics, owned by one [`Metrics`] value (no global registry).
//!
//! Names use the `kafka_pg_sink_` prefix and base units; labels are bounded (topic, partition,
//! table, cause). Updated once per batch, never once per record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::record::TopicPartition;

const PREFIX: &str = "kafka_pg_sink";

/// End-to-end latency buckets, in seconds: fine around typical targets (100 ms to 1 s), so a
/// quantile or a "share within N ms" read from them is close to exact; coarse up to 10 minutes
/// for backlogs.
const LATENCY_BUCKETS: [f64; 20] = [
    0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Every metric the connector exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The last log end of each partition with one, so a commit updates its lag at once (the
    /// gauge vector cannot be read without creating a series).
    log_ends: Arc<Mutex<HashMap<TopicPartition, i64>>>,
    pub records_consumed: IntCounterVec,
    pub rows_written: IntCounterVec,
    pub batches_committed: IntCounterVec,
    pub batch_records: HistogramVec,
    pub commit_duration: Histogram,
    pub fenced_commits: IntCounterVec,
    pub committed_offset: IntGaugeVec,
    pub log_end_offset: IntGaugeVec,
    pub consumer_lag: IntGaugeVec,
    pub end_to_end_latency: HistogramVec,
    pub pg_pool_connections: IntGaugeVec,
    pub retries: IntCounterVec,
    pub rebalances: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub skipped_records: IntCounterVec,
    pub ignored_tombstones: IntCounterVec,
    pub stopped_partitions: IntGauge,
    pub stalled_partitions: IntGauge,
    pub stall_restarts: IntCounterVec,
    pub offset_resets: IntCounterVec,
    pub assigned_partitions: IntGauge,
    pub buffered_records: IntGauge,
    pub buffered_bytes: IntGauge,
    /// Schema Registry requests by outcome (`ok`, `not_found`, `unavailable`, `refused`).
    pub registry_requests: IntCounterVec,
    /// 1 while the registry answers, 0 while lookups are failing and being retried.
    pub registry_up: IntGauge,
    /// Schemas held by the registry client's cache.
    pub registry_schemas: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some(PREFIX.into()), None)?;
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let records_consumed = counter(
            "records_consumed_total",
            "Records received from Kafka.",
            &["topic"],
        )?;
        let rows_written = counter(
            "rows_written_total",
            "Rows written to target tables in committed transactions, after in-batch reduction by key.",
            &["table", "op"],
        )?;
        let batches_committed = counter(
            "batches_committed_total",
            "Batches committed with their offsets.",
            &["topic"],
        )?;
        let fenced_commits = counter(
            "fenced_commits_total",
            "Batches rolled back because the stored offset was not the one the batch started from.",
            &["topic"],
        )?;
        let retries = counter(
            "retries_total",
            "Batch write attempts retried after a transient error.",
            &["cause"],
        )?;
        let rebalances = counter(
            "rebalances_total",
            "Partition assignments and revocations.",
            &["kind"],
        )?;
        let dead_letters = counter(
            "dead_letters_total",
            "Records written to the dead-letter table, by the stage that rejected them.",
            &["topic", "table", "stage"],
        )?;
        let skipped_records = counter(
            "skipped_records_total",
            "Bad records skipped by on_error = \"skip\".",
            &["topic", "table", "stage"],
        )?;
        let ignored_tombstones = counter(
            "ignored_tombstones_total",
            "Tombstones skipped by tombstone = \"ignore\".",
            &["topic", "table"],
        )?;
        let offset_resets = counter(
            "offset_resets_total",
            "Offset-out-of-range answers handled: moved by offset_out_of_range (policy earliest or latest), or fetched again from a position inside the log (policy refetch).",
            &["topic", "partition", "policy"],
        )?;
        let registry_requests = counter(
            "schema_registry_requests_total",
            "Schema Registry lookups by outcome: ok, not_found (the id or subject is not there), unavailable (connect error, timeout, 5xx, 429: retried) or refused (401, 403, other 4xx: the connector stops).",
            &["outcome"],
        )?;
        let registry_up = IntGauge::new(
            "schema_registry_up",
            "1 while the Schema Registry answers; 0 while lookups fail and are retried (not ready meanwhile).",
        )?;
        registry.register(Box::new(registry_up.clone()))?;
        let registry_schemas = IntGauge::new(
            "schema_registry_cached_schemas",
            "Schemas held in the connector's cache, by registry id.",
        )?;
        registry.register(Box::new(registry_schemas.clone()))?;
        let stopped_partitions = IntGauge::new(
            "stopped_partitions",
            "Partitions stopped by a bad record under on_error = \"fail\", or at a record batch that cannot be read (not ready while > 0).",
        )?;
        registry.register(Box::new(stopped_partitions.clone()))?;
        let stalled_partitions = IntGauge::new(
            "stalled_partitions",
            "Assigned partitions not paused by the connector that do not advance while the broker has data past their position, or that librdkafka stopped fetching (not ready while > 0).",
        )?;
        registry.register(Box::new(stalled_partitions.clone()))?;
        let stall_restarts = counter(
            "stall_restarts_total",
            "Times fetching of a stalled partition was restarted from its position.",
            &["topic", "partition"],
        )?;
        let batch_records = HistogramVec::new(
            HistogramOpts::new("batch_records", "Records per committed batch.").buckets(vec![
                1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 25000.0, 50000.0,
            ]),
            &["topic"],
        )?;
        registry.register(Box::new(batch_records.clone()))?;
        let commit_duration = Histogram::with_opts(
            HistogramOpts::new(
                "commit_duration_seconds",
                "Time to write one batch and its offset in one transaction, including COMMIT.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 15)?),
        )?;
        registry.register(Box::new(commit_duration.clone()))?;
        let committed_offset = IntGaugeVec::new(
            Opts::new(
                "committed_offset",
                "Next offset to read, as committed in Postgres by this process.",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(committed_offset.clone()))?;
        let log_end_offset = IntGaugeVec::new(
            Opts::new(
                "log_end_offset",
                "Broker log end (last stable offset) of an assigned partition.",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(log_end_offset.clone()))?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "consumer_lag",
                "Records behind per assigned partition: broker log end minus the offset stored in Postgres.",
            ),
            &["topic", "partition"],
        )?;
        registry.register(Box::new(consumer_lag.clone()))?;
        let end_to_end_latency = HistogramVec::new(
            HistogramOpts::new(
                "end_to_end_latency_seconds",
                "Commit time minus record timestamp, per record, observed once per batch.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["topic"],
        )?;
        registry.register(Box::new(end_to_end_latency.clone()))?;
        let pg_pool_connections = IntGaugeVec::new(
            Opts::new(
                "pg_pool_connections",
                "Connections of the Postgres pool (offset reads, health), by state.",
            ),
            &["state"],
        )?;
        registry.register(Box::new(pg_pool_connections.clone()))?;
        let assigned_partitions = IntGauge::new(
            "assigned_partitions",
            "Partitions currently assigned to this process.",
        )?;
        registry.register(Box::new(assigned_partitions.clone()))?;
        let buffered_records = IntGauge::new(
            "buffered_records",
            "Records buffered in memory, not yet committed.",
        )?;
        registry.register(Box::new(buffered_records.clone()))?;
        let buffered_bytes = IntGauge::new(
            "buffered_bytes",
            "Bytes of keys, values and headers buffered in memory, not yet committed.",
        )?;
        registry.register(Box::new(buffered_bytes.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "Always 1; labels carry the version."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(Self {
            registry,
            log_ends: Arc::default(),
            records_consumed,
            rows_written,
            batches_committed,
            batch_records,
            commit_duration,
            fenced_commits,
            committed_offset,
            log_end_offset,
            consumer_lag,
            end_to_end_latency,
            pg_pool_connections,
            retries,
            rebalances,
            dead_letters,
            skipped_records,
            ignored_tombstones,
            stopped_partitions,
            stalled_partitions,
            stall_restarts,
            offset_resets,
            assigned_partitions,
            buffered_records,
            buffered_bytes,
            registry_requests,
            registry_up,
            registry_schemas,
        })
    }

    /// Sets the committed-offset gauge of a partition, and its lag when the log end is known.
    pub fn set_committed(&self, tp: &TopicPartition, next_offset: i64) {
        let labels = [&*tp.topic, &tp.partition.to_string()];
        self.committed_offset
            .with_label_values(&labels)
            .set(next_offset);
        let log_end = self.log_ends().get(tp).copied();
        if let Some(log_end) = log_end {
            self.consumer_lag
                .with_label_values(&labels)
                .set((log_end - next_offset).max(0));
        }
    }

    fn log_ends(&self) -> std::sync::MutexGuard<'_, HashMap<TopicPartition, i64>> {
        self.log_ends.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the broker's log end of an assigned partition (as asked of the broker) and the
    /// lag behind it.
    pub fn set_log_end(&self, tp: &TopicPartition, log_end: i64) {
        let labels = [&*tp.topic, &tp.partition.to_string()];
        self.log_ends().insert(tp.clone(), log_end);
        self.log_end_offset.with_label_values(&labels).set(log_end);
        // Before the first commit of a partition without a stored offset, this counts from 0:
        // an upper bound of the records still to read.
        let committed = self.committed_offset.with_label_values(&labels).get();
        self.consumer_lag
            .with_label_values(&labels)
            .set((log_end - committed).max(0));
    }

    /// [`Self::set_log_end`] from librdkafka's statistics, which keep the log end of the last
    /// fetch: for a partition not being fetched (paused, stopped) that is stale, so it only
    /// raises the gauge; the poll thread's own queries set it either way.
    pub fn raise_log_end(&self, tp: &TopicPartition, log_end: i64) {
        let labels = [&*tp.topic, &tp.partition.to_string()];
        let known = self.log_end_offset.with_label_values(&labels).get();
        if log_end >= known {
            self.set_log_end(tp, log_end);
        }
    }

    /// Drops per-partition series when a partition leaves this process, so replicas never
    /// report lag for partitions they do not own.
    pub fn forget_partition(&self, tp: &TopicPartition) {
        let labels = [&*tp.topic, &tp.partition.to_string()];
        let _ = self.committed_offset.remove_label_values(&labels);
        let _ = self.log_end_offset.remove_label_values(&labels);
        let _ = self.consumer_lag.remove_label_values(&labels);
        self.log_ends().remove(tp);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(%error, "Failed to encode metrics.");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_follows_commits_at_once_and_only_rises_from_statistics() {
        let metrics = Metrics::new().unwrap();
        let tp = TopicPartition::new("t", 0);
        let lag = || metrics.consumer_lag.with_label_values(&["t", "0"]).get();
        metrics.set_committed(&tp, 10);
        assert_eq!(
            metrics
                .render()
                .matches("kafka_pg_sink_consumer_lag{")
                .count(),
            0
        );
        metrics.set_log_end(&tp, 100);
        assert_eq!(lag(), 90);
        metrics.set_committed(&tp, 60);
        assert_eq!(
            lag(),
            40,
            "a commit updates the lag without waiting for statistics"
        );
        // Statistics of a partition not being fetched are stale: they never lower the log end.
        metrics.raise_log_end(&tp, 80);
        assert_eq!(
            metrics.log_end_offset.with_label_values(&["t", "0"]).get(),
            100
        );
        metrics.set_committed(&tp, 100);
        assert_eq!(lag(), 0);
        metrics.forget_partition(&tp);
        metrics.set_committed(&tp, 5);
        assert_eq!(
            metrics
                .render()
                .matches("kafka_pg_sink_consumer_lag{")
                .count(),
            0
        );
    }
}
