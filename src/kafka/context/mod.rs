//! The consumer context: the state librdkafka's callbacks and the poll thread share.
//!
//! Guarantees: partitions start at the offsets stored in Postgres, and revoked partitions are
//! released only after the pipeline has dropped or finished their work (`assign`); every event
//! the context sends is preceded on the channel by every record fetched before it (`outbox`).
//!
//! - `assign`: the rebalance callbacks.
//! - `outbox`: the chunk of records taken and not yet sent, and the events sent after them.
//! - `positions`: where each partition reads next, and when librdkafka's position is trusted.

mod assign;
mod outbox;
mod positions;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::events::Event;
use super::fetch_queue::FetchQueue;
use super::flow::FlowControl;
use super::stored::StoredOffsets;
use crate::config::{OffsetReset, OutOfRange};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::record::TopicPartition;
use outbox::Chunk;

/// The consumer context: rebalance callbacks and librdkafka logs.
pub struct SinkContext {
    store: Box<dyn StoredOffsets>,
    runtime: Handle,
    events: mpsc::Sender<Event>,
    pending: Mutex<Chunk>,
    /// Next offset to fetch per assigned partition (start offset, then past the last record the
    /// poll thread took, whether or not it has been sent yet): where a partition restarts after
    /// an out-of-range error or a stall, and how one is told to be out of range.
    positions: Mutex<HashMap<TopicPartition, i64>>,
    /// Partitions assigned to this process: statistics about any other partition are stale.
    assigned: Mutex<HashSet<TopicPartition>>,
    /// What librdkafka's last statistics said of each assigned partition.
    seen: Mutex<HashMap<TopicPartition, Seen>>,
    /// Partitions (re)started (assigned, sought, restarted) or with a per-partition error from
    /// which no record has been taken since: librdkafka's consume position may describe an
    /// earlier start or an error's offset, so it is not trusted until a record arrives.
    /// Each with librdkafka's consume position when it was marked: a position that differs from
    /// it was reached after the mark, and is trusted even before a record arrives.
    fresh: Mutex<HashMap<TopicPartition, Option<i64>>>,
    reset: OffsetReset,
    out_of_range: OutOfRange,
    health: Arc<Health>,
    metrics: Metrics,
    token: CancellationToken,
    /// Set while the consumer closes: the pipeline is gone and must not be waited for.
    closing: AtomicBool,
    /// Bumped on every assignment, so the poll thread re-applies a pause to new partitions.
    generation: AtomicU64,
    flow: std::sync::OnceLock<Arc<FlowControl>>,
    /// Where assigned partitions send their records (set by the poll thread, and taken back
    /// before the consumer is dropped); `None`: records come on the consumer queue.
    fetch_queue: Mutex<Option<Arc<FetchQueue>>>,
}

/// One assigned partition as librdkafka's statistics last described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// librdkafka is fetching it (`fetch_state` "active"); after an out-of-range error with
    /// `auto.offset.reset=error` it is "none" and nothing is fetched until a seek or assign.
    pub fetching: bool,
    /// The broker's log end (last stable offset where reported), as of the last fetch; -1 when
    /// not known yet.
    pub log_end: i64,
}

impl SinkContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Box<dyn StoredOffsets>,
        runtime: Handle,
        events: mpsc::Sender<Event>,
        reset: OffsetReset,
        out_of_range: OutOfRange,
        health: Arc<Health>,
        metrics: Metrics,
        token: CancellationToken,
    ) -> Self {
        Self {
            store,
            runtime,
            events,
            pending: Mutex::new(Chunk::default()),
            positions: Mutex::new(HashMap::new()),
            assigned: Mutex::new(HashSet::new()),
            seen: Mutex::new(HashMap::new()),
            fresh: Mutex::new(HashMap::new()),
            reset,
            out_of_range,
            health,
            metrics,
            token,
            closing: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            flow: std::sync::OnceLock::new(),
            fetch_queue: Mutex::new(None),
        }
    }

    /// Sets (or, with `None`, takes back) the queue that assigned partitions are routed to.
    pub fn set_fetch_queue(&self, queue: Option<Arc<FetchQueue>>) {
        *self.fetch_queue.lock().unwrap_or_else(|p| p.into_inner()) = queue;
    }

    /// Routes partitions to the fetch queue: newly assigned ones before they start fetching,
    /// and the whole assignment again from time to time (see `FetchQueue`).
    pub fn route(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let queue = self.fetch_queue.lock().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = queue.as_ref() else {
            return;
        };
        for e in tpl.elements() {
            if !queue.route(consumer, e.topic(), e.partition()) {
                tracing::debug!(topic = e.topic(), partition = e.partition(), "Partition not routed to the fetch queue; its records come on the consumer queue.");
            }
        }
    }

    /// Changes whenever partitions are assigned.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn set_closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    pub fn out_of_range(&self) -> OutOfRange {
        self.out_of_range
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Publishes the stalled partitions (with why) for `/readyz`.
    pub fn set_stalled(&self, stalled: Vec<String>) {
        self.health.set_stalled(stalled);
    }

    pub fn reset_offset(&self) -> Offset {
        match self.reset {
            OffsetReset::Earliest => Offset::Beginning,
            OffsetReset::Latest => Offset::End,
        }
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error.");
    }

    /// librdkafka's periodic statistics carry each partition's log end without extra requests.
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in &statistics.topics {
            for (id, p) in &topic.partitions {
                if *id < 0 || !p.desired {
                    continue;
                }
                let log_end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                let tp = TopicPartition::new(name.as_str(), *id);
                let mine = self
                    .assigned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&tp);
                if !mine {
                    continue;
                }
                if log_end >= 0 {
                    self.metrics.raise_log_end(&tp, log_end);
                }
                let seen = Seen {
                    fetching: p.fetch_state == "active",
                    log_end,
                };
                self.seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(tp, seen);
            }
        }
    }
}

impl ConsumerContext for SinkContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(consumer, tpl),
            other => {
                tracing::error!(error = ?other, "Rebalance failed; dropping the assignment.");
                self.on_revoke(consumer, tpl);
            }
        }
    }
}
