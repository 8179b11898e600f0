//! Rebalance handling: partitions start at the offsets stored in Postgres, and revoked partitions
//! are released only after the pipeline has dropped or finished their work.
//!
//! The context also owns the poll thread's pending chunk of records, so that every event it sends
//! is preceded on the channel by every record fetched before it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::fetch_queue::FetchQueue;
use super::flow::FlowControl;
use super::stored::StoredOffsets;
use crate::config::{OffsetReset, OutOfRange};
use crate::error::{classify, Backoff, Error, ErrorClass};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::record::{Record, TopicPartition};

/// Longest wait for a partition's log bounds at assignment.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`SinkContext::with_retries`] does, as logged, and its `retries_total` cause.
const READ_OFFSETS: (&str, &str) = ("read the stored offsets", "offsets_read");
const STORE_STARTS: (&str, &str) = ("store the start offsets", "offsets_store");

/// What the poll thread tells the pipeline, in fetch order.
#[derive(Debug)]
pub enum Event {
    /// Records in poll order, and their [`Record::size`] in total.
    Records { records: Vec<Record>, bytes: usize },
    /// Newly assigned partitions with their stored next offset (`None`: never committed).
    Assigned(Vec<(TopicPartition, Option<i64>)>),
    /// These partitions are being taken away; the poll thread waits for `ack` before releasing.
    Revoked {
        partitions: Vec<TopicPartition>,
        ack: oneshot::Sender<()>,
    },
    /// A seek asked for with [`Command::Seek`] is done: later records of `tp` start at `offset`.
    Sought {
        tp: TopicPartition,
        offset: Option<i64>,
        epoch: u64,
    },
    /// librdkafka's consume positions of partitions whose position changed: past the last record
    /// taken, and past transaction markers and aborted records it skipped. Sent after every
    /// record taken before.
    Positions(Vec<(TopicPartition, i64)>),
    /// The stored offset of `tp` was outside its log and the partition now reads from `offset`
    /// (`kafka.offset_out_of_range`); the next commit may move the stored offset backwards.
    Reset { tp: TopicPartition, offset: i64 },
    /// The consumer cannot go on (for example a stored offset the broker no longer has).
    Fatal(String),
    /// A record batch of `tp` starting at `offset` cannot be read (librdkafka skips it): the
    /// pipeline writes what it holds of `tp` from before it, then stops the partition.
    Unreadable {
        tp: TopicPartition,
        offset: i64,
        reason: String,
    },
    /// As [`Event::Unreadable`], where librdkafka did not say which partition: the pipeline
    /// commits the records it holds, then fails with this reason. Nothing follows.
    Stop(String),
    /// The poll thread stopped fetching (shutdown); nothing follows.
    EndOfInput,
}

/// What the pipeline asks of the poll thread.
#[derive(Debug)]
pub enum Command {
    /// Re-read `tp` from `offset` (`None`: the reset policy); answered with [`Event::Sought`].
    Seek {
        tp: TopicPartition,
        offset: Option<i64>,
        epoch: u64,
    },
    /// Courtesy commit to Kafka of offsets already committed in Postgres, for lag tools.
    Commit(Vec<(TopicPartition, i64)>),
    /// Stop fetching a partition (stopped by a bad record) until it is reassigned.
    Pause(TopicPartition),
    /// The partition was assigned again and starts afresh: undo a [`Command::Pause`] of an
    /// earlier assignment (librdkafka keeps an application's pause across rebalances). Sent
    /// after any such pause, so a pause that crossed the rebalance is undone too.
    Resume(TopicPartition),
    /// Drain is over: leave the group and stop.
    Close,
}

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

/// Records polled but not yet sent, and their [`Record::size`] in total.
#[derive(Default)]
struct Chunk {
    records: Vec<Record>,
    bytes: usize,
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

    /// Adds a fetched record to the chunk that [`Self::flush`] sends; returns the chunk's
    /// records and bytes so far.
    pub fn push(&self, record: Record) -> (usize, usize) {
        self.took(std::slice::from_ref(&record));
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.bytes += record.size();
        pending.records.push(record);
        (pending.records.len(), pending.bytes)
    }

    /// Moves the positions of the partitions of `records` (in poll order) past them: a position
    /// is where librdkafka must fetch next for nothing taken to be fetched twice, so it counts
    /// every record the poll thread has taken, sent or not.
    fn took(&self, records: &[Record]) {
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        for (i, record) in records.iter().enumerate() {
            // One update per run of the same partition: its last record.
            if records.get(i + 1).is_none_or(|next| next.tp != record.tp) {
                positions.insert(record.tp.clone(), record.offset + 1);
                if !fresh.is_empty() {
                    fresh.remove(&record.tp);
                }
            }
        }
    }

    /// Marks partitions as (re)started: see `fresh`.
    /// Call it before librdkafka can consume from the new start (or, for an error, right after
    /// the read that carried it), so the snapshot is the position to distrust.
    pub fn restarted<'a>(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) {
        let marked: Vec<(TopicPartition, Option<i64>)> = partitions
            .into_iter()
            .map(|tp| (tp.clone(), app_position(consumer, tp)))
            .collect();
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        fresh.extend(marked);
    }

    /// Whether librdkafka's consume position `position` of `tp` describes what was consumed
    /// since its last (re)start or error: a record has been taken since, or the position moved.
    pub fn trusts(&self, tp: &TopicPartition, position: i64) -> bool {
        match self.fresh.lock().unwrap_or_else(|p| p.into_inner()).get(tp) {
            None => true,
            Some(marked) => *marked != Some(position),
        }
    }

    /// Records and bytes of the chunk so far.
    pub fn pending(&self) -> (usize, usize) {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        (pending.records.len(), pending.bytes)
    }

    /// [`Self::push`] for records already gathered by the caller (`bytes` is their
    /// [`Record::size`] total), under one lock; leaves `records` empty.
    pub fn push_all(&self, records: &mut Vec<Record>, bytes: usize) {
        if records.is_empty() {
            return;
        }
        self.took(records);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.bytes += bytes;
        if pending.records.is_empty() {
            std::mem::swap(&mut pending.records, records);
        } else {
            pending.records.append(records);
        }
    }

    /// Sends the pending chunk; false when the pipeline is gone.
    pub fn flush(&self) -> bool {
        let Chunk {
            records: chunk,
            bytes,
        } = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if chunk.is_empty() {
            return true;
        }
        if let Some(flow) = self.flow.get() {
            flow.sent(chunk.len(), bytes);
        }
        self.events
            .blocking_send(Event::Records {
                records: chunk,
                bytes,
            })
            .is_ok()
    }

    /// Connects the flow control that counts records in the channel (set once, by the poller).
    pub fn set_flow(&self, flow: Arc<FlowControl>) {
        let _ = self.flow.set(flow);
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

    /// Records where a partition will read next (after a seek).
    pub fn set_position(&self, tp: &TopicPartition, offset: i64) {
        self.positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tp.clone(), offset);
    }

    /// What the last statistics said of `tp`, if it is assigned.
    pub fn seen(&self, tp: &TopicPartition) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tp)
            .copied()
    }

    /// Known next offsets of the assigned partitions.
    pub fn positions(&self) -> Vec<(TopicPartition, i64)> {
        let positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        positions.iter().map(|(tp, o)| (tp.clone(), *o)).collect()
    }

    /// Sends an event after every record fetched before it; false when the pipeline is gone.
    pub fn send(&self, event: Event) -> bool {
        self.flush() && self.events.blocking_send(event).is_ok()
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

    /// Runs `op` against the offset store, retrying with backoff while it fails with an error
    /// [`classify`] calls transient (named in the log and the retry metric); `Err`
    /// with the reason for any other error, `Ok(None)` on shutdown.
    fn with_retries<T, F, Fut>(
        &self,
        (what, cause): (&str, &str),
        mut op: F,
    ) -> Result<Option<T>, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match self.runtime.block_on(op()) {
                Ok(value) => return Ok(Some(value)),
                Err(_) if self.token.is_cancelled() => return Ok(None),
                Err(error) if classify(&error) == ErrorClass::Transient => {
                    tracing::warn!(%error, "Cannot {what} of assigned partitions; retrying.");
                    self.metrics.retries.with_label_values(&[cause]).inc();
                    std::thread::sleep(backoff.next_delay());
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Where partitions with no stored offset start: the log start or end as `auto_offset_reset`
    /// says, resolved now and stored (insert-if-absent, so a replica that stored first wins), so
    /// that a restart, after a crash before the first commit, resumes there and not at a later
    /// log end. Partitions whose log bounds cannot be read keep `None` (the reset policy).
    fn store_starts(
        &self,
        consumer: &BaseConsumer<Self>,
        stored: &mut HashMap<TopicPartition, i64>,
        partitions: &[TopicPartition],
    ) -> Result<(), Error> {
        let mut starts = Vec::new();
        for tp in partitions.iter().filter(|tp| !stored.contains_key(*tp)) {
            match consumer.fetch_watermarks(&tp.topic, tp.partition, WATERMARK_TIMEOUT) {
                Ok((low, high)) => starts.push((
                    tp.clone(),
                    match self.reset {
                        OffsetReset::Earliest => low,
                        OffsetReset::Latest => high,
                    },
                )),
                Err(error) => {
                    tracing::warn!(%error, partition = %tp, "Cannot read the partition's log bounds; it starts from auto_offset_reset without storing where.")
                }
            }
        }
        if starts.is_empty() {
            return Ok(());
        }
        if self
            .with_retries(STORE_STARTS, || self.store.insert_starts(&starts))?
            .is_none()
        {
            return Ok(());
        }
        let fresh: Vec<TopicPartition> = starts.into_iter().map(|(tp, _)| tp).collect();
        if let Some(found) = self.with_retries(READ_OFFSETS, || self.store.load(&fresh))? {
            for (tp, start) in found {
                tracing::info!(partition = %tp, start, "No stored offset: starting at the {:?} offset, stored.", self.reset);
                stored.insert(tp, start);
            }
        }
        Ok(())
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        let loaded = self
            .with_retries(READ_OFFSETS, || self.store.load(&partitions))
            .and_then(|stored| match stored {
                Some(mut stored) => self
                    .store_starts(consumer, &mut stored, &partitions)
                    .map(|()| Some(stored)),
                None => Ok(None),
            });
        let stored = match loaded {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                tracing::warn!(
                    "Shutting down during assignment; not consuming the new partitions."
                );
                return;
            }
            Err(error) => {
                self.send(Event::Fatal(format!(
                    "cannot read or store the offsets of the assigned partitions: {error}"
                )));
                return;
            }
        };
        let mut assigned = Vec::with_capacity(partitions.len());
        for tp in partitions {
            let start = stored.get(&tp).copied();
            let offset = start.map_or(self.reset_offset(), Offset::Offset);
            if let Err(error) = tpl.set_partition_offset(&tp.topic, tp.partition, offset) {
                tracing::error!(%error, partition = %tp, "Cannot set start offset.");
            }
            tracing::info!(partition = %tp, stored_offset = ?start, "Partition assigned.");
            self.assigned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(tp.clone());
            let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
            match start {
                Some(stored) => {
                    self.metrics.set_committed(&tp, stored);
                    positions.insert(tp.clone(), stored);
                }
                None => {
                    positions.remove(&tp);
                }
            }
            drop(positions);
            assigned.push((tp, start));
        }
        self.restarted(consumer, assigned.iter().map(|(tp, _)| tp));
        self.metrics.rebalances.with_label_values(&["assign"]).inc();
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.metrics.assigned_partitions.add(assigned.len() as i64);
        self.health.set_joined(true);
        if !self.send(Event::Assigned(assigned)) {
            return;
        }
        self.route(consumer, tpl);
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        if let Err(error) = result {
            tracing::error!(%error, "Failed to assign partitions.");
        }
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        tracing::info!(
            count = partitions.len(),
            lost = consumer.assignment_lost(),
            "Partitions revoked."
        );
        self.metrics.rebalances.with_label_values(&["revoke"]).inc();
        self.metrics
            .assigned_partitions
            .sub(partitions.len() as i64);
        {
            let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
            let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
            for tp in &partitions {
                assigned.remove(tp);
                positions.remove(tp);
                seen.remove(tp);
                fresh.remove(tp);
            }
        }
        let forget = partitions.clone();
        if !self.closing.load(Ordering::SeqCst) {
            let (ack, done) = oneshot::channel();
            if self.send(Event::Revoked { partitions, ack }) {
                // The pipeline acknowledges once no batch of these partitions can still commit.
                let _ = done.blocking_recv();
            }
        }
        // After the acknowledgement, so a batch finishing meanwhile cannot bring a series back.
        for tp in &forget {
            self.metrics.forget_partition(tp);
        }
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(error) = result {
            tracing::error!(%error, "Failed to unassign partitions.");
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

/// librdkafka's consume position of `tp` (past the last message it handed out), for any
/// partition it knows, assigned or not; `None` when it has none.
fn app_position(consumer: &BaseConsumer<SinkContext>, tp: &TopicPartition) -> Option<i64> {
    let mut list = TopicPartitionList::new();
    list.add_partition(&tp.topic, tp.partition);
    // SAFETY: a live client handle and a list owned here; librdkafka fills in the offsets.
    let err =
        unsafe { rdkafka::bindings::rd_kafka_position(consumer.client().native_ptr(), list.ptr()) };
    if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return None;
    }
    match list.elements().first()?.offset() {
        Offset::Offset(at) if at >= 0 => Some(at),
        _ => None,
    }
}
