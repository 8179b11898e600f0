//! The run loop: events from the poll thread in, batches to the writers out, results back.
//!
//! Guarantees kept here: one partition never has two batches in flight; a batch continues from
//! the offset the previous batch of its partition committed; a record is accepted only above
//! every record already accepted for its partition, so a record fetched twice (a restart of
//! fetching, an out-of-range refetch) is buffered once; that floor moves back only where the
//! partition is (re)started: [`Event::Assigned`], [`Event::Sought`], [`Event::Reset`]; after a
//! fenced commit the partition's buffered records are dropped and it is re-read from the stored
//! offset; a revoked partition is acknowledged only when none of its batches can still commit.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batcher::{self, Batcher};
use crate::error::{classify, Error, ErrorClass};
use crate::health::Health;
use crate::kafka::{Command, Event, FlowControl};
use crate::metrics::Metrics;
use crate::record::{Record, TopicPartition};
use crate::sink::{Batch, Outcome, WriteBatch};

/// Batches out per writer: the one in the database and the next, decoded meanwhile.
const BATCHES_PER_WRITER: usize = 2;

/// What the pipeline knows about one assigned partition.
#[derive(Debug)]
struct PartitionState {
    /// Stored next offset the next batch continues from (`None`: nothing stored yet).
    expected: Option<i64>,
    /// Lowest offset the next record may have: past the last record accepted, or where the
    /// partition was (re)started (`None`: not known yet, any offset).
    floor: Option<i64>,
    /// Bumped whenever the partition's position is reset; results of older batches are ignored.
    epoch: u64,
    /// The batch in flight: its epoch, its cancel flag and its record count.
    in_flight: Option<(u64, Arc<AtomicBool>, usize)>,
    /// Waiting for a seek to take effect: records until then are stale.
    seeking: bool,
    /// Revoked while a batch was in flight; removed when that batch reports back.
    revoked: bool,
    /// Stopped by a bad record under `on_error = "fail"`: nothing more is written for it.
    stopped: bool,
    /// A record batch starting here cannot be read (librdkafka skips it): records from this
    /// offset on are dropped, those buffered before it are still written.
    fence: Option<i64>,
    /// librdkafka's last consume position since the partition's last (re)start. When it is past
    /// the stored offset while every record accepted is committed and none is buffered, only
    /// transaction markers or aborted records lie between: an offsets-only batch moves there.
    position: Option<i64>,
    /// After an out-of-range reset: records start here (possibly below `expected`), and the next
    /// commit may move the stored offset backwards, still only from exactly `expected`.
    rewind_to: Option<i64>,
}

impl PartitionState {
    /// Stopped by a bad record or at an unreadable batch (counted in `stopped_partitions`).
    fn is_stopped(&self) -> bool {
        self.stopped || self.fence.is_some()
    }
}

/// Channels the pipeline is wired to.
pub struct Wiring {
    pub events: mpsc::Receiver<Event>,
    pub commands: std::sync::mpsc::Sender<Command>,
    pub batches: mpsc::Sender<Batch>,
    pub results: mpsc::UnboundedReceiver<WriteBatch>,
}

/// The run loop's state.
pub struct Pipeline {
    wiring: Wiring,
    batcher: Batcher,
    partitions: HashMap<TopicPartition, PartitionState>,
    pending_revokes: Vec<(HashSet<TopicPartition>, oneshot::Sender<()>)>,
    next_epoch: u64,
    flow: Arc<FlowControl>,
    /// Writer tasks, and the batches sent to them and not yet reported back: batches are cut
    /// only while fewer than [`BATCHES_PER_WRITER`] per writer are out.
    writers: usize,
    batches_out: usize,
    commit_to_kafka: bool,
    input_done: bool,
    /// Why the input stopped early ([`Event::Stop`]): reported once what came before is committed.
    stopped: Option<String>,
    metrics: Metrics,
    health: Arc<Health>,
}

impl Pipeline {
    pub fn new(
        wiring: Wiring,
        batcher: Batcher,
        flow: Arc<FlowControl>,
        writers: usize,
        commit_to_kafka: bool,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> Self {
        Self {
            wiring,
            batcher,
            partitions: HashMap::new(),
            pending_revokes: Vec::new(),
            next_epoch: 0,
            flow,
            writers: writers.max(1),
            batches_out: 0,
            commit_to_kafka,
            input_done: false,
            stopped: None,
            metrics,
            health,
        }
    }

    /// Runs until `token` is cancelled (then drains within `drain_timeout`) or a fatal error.
    pub async fn run(
        mut self,
        token: CancellationToken,
        tick: Duration,
        drain_timeout: Duration,
    ) -> Result<(), Error> {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !token.is_cancelled() && !self.input_done {
            self.health.beat();
            tokio::select! {
                biased;
                Some(result) = self.wiring.results.recv() => self.on_result(result)?,
                // Events are always read (rebalances must flow); the poll thread pauses fetching
                // when the flow control says too much is buffered.
                event = self.wiring.events.recv() => self.on_event(event)?,
                _ = ticker.tick() => {}
                _ = token.cancelled() => {}
            }
            self.dispatch(false).await?;
        }
        self.drain(drain_timeout).await?;
        match self.stopped.take() {
            Some(reason) => Err(Error::Fatal(reason)),
            None => Ok(()),
        }
    }

    /// Flushes everything buffered and waits for the writers, up to `timeout`. Past it, the
    /// batches still in flight are cancelled (a writer retrying one gives up; one that is inside
    /// a transaction loses its connection when the app stops it, so nothing partial commits) and
    /// the drain fails, saying what was left uncommitted: it is read again on the next start.
    async fn drain(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        tracing::info!(buffered = self.batcher.len(), "Draining buffered records.");
        let mut result = Ok(());
        loop {
            self.health.beat();
            self.dispatch(true).await?;
            let in_flight = self.partitions.values().any(|s| s.in_flight.is_some());
            if self.input_done && self.batcher.is_empty() && !in_flight {
                break;
            }
            tokio::select! {
                Some(result) = self.wiring.results.recv() => self.on_result(result)?,
                event = self.wiring.events.recv(), if !self.input_done => self.on_event(event)?,
                _ = tokio::time::sleep_until(deadline) => {
                    result = self.abandon(timeout);
                    break;
                }
            }
        }
        let _ = self.wiring.commands.send(Command::Close);
        result
    }

    /// The drain timed out: cancels what is in flight and reports what is not committed.
    fn abandon(&mut self, timeout: Duration) -> Result<(), Error> {
        let mut in_flight = (0, 0);
        for state in self.partitions.values() {
            if let Some((_, cancel, records)) = &state.in_flight {
                cancel.store(true, Ordering::SeqCst);
                in_flight = (in_flight.0 + 1, in_flight.1 + records);
            }
        }
        let buffered = self.batcher.len();
        if buffered == 0 && in_flight.0 == 0 {
            return Ok(());
        }
        tracing::error!(
            buffered,
            in_flight_batches = in_flight.0,
            in_flight_records = in_flight.1,
            "Drain timeout reached: abandoning uncommitted work."
        );
        Err(Error::Fatal(format!(
            "shutdown.drain_timeout_ms ({} ms) passed with {} records buffered and {} batches \
             ({} records) not known to be committed; each batch commits whole or not at all \
             with its offset, and what did not commit is read again on the next start",
            timeout.as_millis(),
            buffered,
            in_flight.0,
            in_flight.1
        )))
    }

    fn on_event(&mut self, event: Option<Event>) -> Result<(), Error> {
        match event {
            Some(Event::Records { records, bytes }) => {
                self.flow.received(records.len(), bytes);
                self.on_records(records);
            }
            Some(Event::Assigned(assigned)) => {
                for (tp, stored) in assigned {
                    self.batcher.drop_partition(&tp);
                    let epoch = self.bump_epoch();
                    let state = PartitionState {
                        expected: stored,
                        floor: stored,
                        position: None,
                        epoch,
                        in_flight: None,
                        seeking: false,
                        revoked: false,
                        stopped: false,
                        fence: None,
                        rewind_to: None,
                    };
                    // After any pause this partition's earlier state may have sent.
                    let _ = self.wiring.commands.send(Command::Resume(tp.clone()));
                    if let Some(old) = self.partitions.insert(tp, state) {
                        self.forget(&old);
                    }
                }
            }
            Some(Event::Revoked { partitions, ack }) => self.on_revoked(partitions, ack),
            Some(Event::Positions(positions)) => self.on_positions(positions),
            Some(Event::Sought { tp, offset, epoch }) => {
                if let Some(state) = self
                    .partitions
                    .get_mut(&tp)
                    .filter(|s| s.epoch == epoch && s.seeking)
                {
                    state.seeking = false;
                    state.expected = offset;
                    state.floor = offset;
                    state.position = None;
                    tracing::info!(partition = %tp, ?offset, "Re-reading partition from its stored offset.");
                }
            }
            Some(Event::Reset { tp, offset }) => {
                let epoch = self.bump_epoch();
                self.batcher.drop_partition(&tp);
                if let Some(state) = self.partitions.get_mut(&tp) {
                    state.rewind_to = Some(offset);
                    state.floor = Some(offset);
                    state.position = None;
                    state.epoch = epoch;
                    state.seeking = false;
                }
            }
            Some(Event::Fatal(reason)) => return Err(Error::Fatal(reason)),
            Some(Event::Unreadable { tp, offset, reason }) => {
                self.fence_partition(tp, offset, &reason)
            }
            Some(Event::Stop(reason)) => {
                tracing::error!(%reason, "Stopping: committing the records read before.");
                self.stopped = Some(reason);
                self.input_done = true;
            }
            Some(Event::EndOfInput) | None => self.input_done = true,
        }
        Ok(())
    }

    /// Buffers records that continue their partition; drops stale ones (before the expected
    /// offset, or of a partition that is seeking, revoked or stopped). Works per run of records
    /// of one partition, so the per-record cost is a comparison, not a lookup.
    fn on_records(&mut self, records: Vec<Record>) {
        let now = std::time::Instant::now();
        for mut run in batcher::runs(records) {
            let Some(tp) = run.first().map(|r| r.tp.clone()) else {
                continue;
            };
            self.metrics
                .records_consumed
                .with_label_values(&[&*tp.topic])
                .inc_by(run.len() as u64);
            let (from, fence) = match self.partitions.get(&tp) {
                Some(s) if !s.seeking && !s.revoked && !s.stopped => (s.floor, s.fence),
                _ => {
                    tracing::debug!(partition = %tp, records = run.len(), "Dropping records of a partition not being read.");
                    continue;
                }
            };
            // Strictly increasing from the floor: a run can hold a record fetched twice too.
            let mut floor = from.unwrap_or(i64::MIN);
            let in_order = run.iter().all(|r| {
                let ok = r.offset >= floor;
                floor = r.offset + 1;
                ok
            });
            if !in_order {
                let mut floor = from.unwrap_or(i64::MIN);
                let before = run.len();
                run.retain(|r| {
                    let keep = r.offset >= floor;
                    if keep {
                        floor = r.offset + 1;
                    }
                    keep
                });
                tracing::debug!(partition = %tp, dropped = before - run.len(), "Dropping records below the partition's floor (before the stored offset, or fetched twice).");
            }
            if let Some(fence) = fence {
                run.retain(|r| r.offset < fence);
            }
            if let (Some(last), Some(state)) = (run.last(), self.partitions.get_mut(&tp)) {
                state.floor = Some(last.offset + 1);
            }
            self.batcher.push_run(tp, run, now);
        }
    }

    /// Keeps librdkafka's positions; [`Self::dispatch`] moves a settled partition's stored
    /// offset there (see `PartitionState::position`), so lag reaches 0 on transactional topics.
    /// Positions come after every record taken before them, and after the event of any
    /// (re)start, so a position never describes an earlier start.
    fn on_positions(&mut self, positions: Vec<(TopicPartition, i64)>) {
        for (tp, position) in positions {
            if let Some(state) = self.partitions.get_mut(&tp) {
                state.position = state.position.max(Some(position));
            }
        }
    }

    fn on_revoked(&mut self, partitions: Vec<TopicPartition>, ack: oneshot::Sender<()>) {
        let mut waiting = HashSet::new();
        for tp in partitions {
            self.batcher.drop_partition(&tp);
            match self.partitions.get_mut(&tp) {
                Some(state) if state.in_flight.is_some() => {
                    if let Some((_, cancel, _)) = &state.in_flight {
                        cancel.store(true, Ordering::SeqCst);
                    }
                    state.revoked = true;
                    waiting.insert(tp);
                }
                _ => {
                    if let Some(old) = self.partitions.remove(&tp) {
                        self.forget(&old);
                    }
                }
            }
        }
        if waiting.is_empty() {
            let _ = ack.send(());
        } else {
            self.pending_revokes.push((waiting, ack));
        }
    }

    fn on_result(&mut self, result: WriteBatch) -> Result<(), Error> {
        let WriteBatch {
            tp,
            epoch,
            records,
            outcome,
        } = result;
        // Every batch sent reports back exactly once, whatever became of its partition.
        self.batches_out = self.batches_out.saturating_sub(1);
        let Some(state) = self.partitions.get_mut(&tp) else {
            return Ok(());
        };
        if state
            .in_flight
            .as_ref()
            .is_some_and(|(e, _, _)| *e == epoch)
        {
            state.in_flight = None;
        }
        if state.revoked {
            if let Some(old) = self.partitions.remove(&tp) {
                self.forget(&old);
            }
            self.release_revoked(&tp);
            return match outcome {
                Outcome::Failed(error) if classify(&error) != ErrorClass::BadRecord => Err(error),
                _ => Ok(()),
            };
        }
        if state.epoch != epoch {
            return Ok(());
        }
        match outcome {
            Outcome::Committed { next_offset } => {
                state.expected = Some(next_offset);
                state.floor = state.floor.max(Some(next_offset));
                state.rewind_to = None;
                if self.commit_to_kafka {
                    let _ = self
                        .wiring
                        .commands
                        .send(Command::Commit(vec![(tp, next_offset)]));
                }
            }
            Outcome::Fenced { stored } => {
                let epoch = self.bump_epoch();
                let dropped = self.batcher.drop_partition(&tp);
                if let Some(state) = self.partitions.get_mut(&tp) {
                    state.epoch = epoch;
                    state.seeking = true;
                    state.expected = stored;
                    state.rewind_to = None;
                }
                tracing::info!(partition = %tp, ?stored, dropped = dropped + records, "Seeking to the stored offset after a fenced commit.");
                let _ = self.wiring.commands.send(Command::Seek {
                    tp,
                    offset: stored,
                    epoch,
                });
            }
            Outcome::Aborted => {}
            Outcome::Stopped { next_offset, error } => {
                if let Some(next_offset) = next_offset {
                    state.expected = Some(next_offset);
                    state.rewind_to = None;
                    if self.commit_to_kafka {
                        let _ = self
                            .wiring
                            .commands
                            .send(Command::Commit(vec![(tp.clone(), next_offset)]));
                    }
                }
                self.stop_partition(tp, &error)
            }
            Outcome::Failed(error) if classify(&error) == ErrorClass::BadRecord => {
                self.stop_partition(tp, &error)
            }
            Outcome::Failed(error) => return Err(error),
        }
        Ok(())
    }

    /// `on_error = "fail"`: the partition stops before the bad record; the others go on.
    fn stop_partition(&mut self, tp: TopicPartition, error: &Error) {
        self.batcher.drop_partition(&tp);
        if let Some(state) = self.partitions.get_mut(&tp) {
            let newly = !state.is_stopped();
            state.stopped = true;
            if newly {
                self.count_stopped(1);
            }
        }
        tracing::error!(partition = %tp, %error, "Partition stopped by a bad record (on_error = \"fail\"); fix the data or the mapping and restart.");
        let _ = self.wiring.commands.send(Command::Pause(tp));
    }

    /// An unreadable record batch of `tp` at `offset`: records from there on are dropped (they
    /// come after it, in queue order), those buffered before it are still written, and fetching
    /// the partition stops. It counts as stopped until it is assigned again, which reads from
    /// the stored offset and so meets the batch again unless the data or the offset changed.
    fn fence_partition(&mut self, tp: TopicPartition, offset: i64, reason: &str) {
        let Some(state) = self.partitions.get_mut(&tp) else {
            tracing::warn!(partition = %tp, %reason, "Unreadable batch of a partition not being read; ignored.");
            return;
        };
        let newly = !state.is_stopped();
        state.fence = Some(state.fence.map_or(offset, |f| f.min(offset)));
        if newly {
            self.count_stopped(1);
        }
        tracing::error!(partition = %tp, offset, %reason, "Partition stopped at an unreadable record batch.");
        let _ = self.wiring.commands.send(Command::Pause(tp));
    }

    fn count_stopped(&self, delta: i64) {
        self.metrics.stopped_partitions.add(delta);
        self.health
            .set_stopped_partitions(self.metrics.stopped_partitions.get());
    }

    /// Bookkeeping when a partition's state goes away.
    fn forget(&self, old: &PartitionState) {
        if old.is_stopped() {
            self.count_stopped(-1);
        }
    }

    fn release_revoked(&mut self, tp: &TopicPartition) {
        for (waiting, _) in &mut self.pending_revokes {
            waiting.remove(tp);
        }
        let (done, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_revokes)
            .into_iter()
            .partition(|(w, _)| w.is_empty());
        self.pending_revokes = pending;
        for (_, ack) in done {
            let _ = ack.send(());
        }
    }

    /// Cuts batches for free writer slots and sends them.
    async fn dispatch(&mut self, drain: bool) -> Result<(), Error> {
        let partitions = &self.partitions;
        // Under memory pressure (half the buffer limit) a free writer takes whatever is buffered:
        // waiting for full batches could stall when the limit is below partitions x max_records.
        let flush_all = drain || self.flow.pressure();
        let slots = (BATCHES_PER_WRITER * self.writers).saturating_sub(self.batches_out);
        let ready = self
            .batcher
            .take_ready(std::time::Instant::now(), flush_all, slots, |tp| {
                partitions
                    .get(tp)
                    .is_none_or(|s| s.in_flight.is_some() || s.seeking || s.revoked || s.stopped)
            });
        self.metrics.buffered_records.set(self.batcher.len() as i64);
        self.metrics.buffered_bytes.set(self.batcher.bytes() as i64);
        self.flow
            .set_buffered(self.batcher.len(), self.batcher.bytes());
        let mut batches = Vec::with_capacity(ready.len());
        for (tp, records) in ready {
            batches.extend(self.cut(tp, records, None));
        }
        // Offsets-only batches (transaction markers) take what slots are left.
        let free = slots.saturating_sub(batches.len());
        let advances: Vec<(TopicPartition, i64)> = self
            .partitions
            .iter()
            .filter(|(tp, s)| {
                // Cheapest test first: most partitions have no position past their offset.
                s.position > s.expected
                    && s.in_flight.is_none()
                    && !s.seeking
                    && !s.revoked
                    && !s.is_stopped()
                    && s.rewind_to.is_none()
                    && s.expected.is_some()
                    && s.floor == s.expected
                    && !self.batcher.holds(tp)
            })
            .filter_map(|(tp, s)| match (s.position, s.expected) {
                (Some(to), Some(stored)) if to > stored => Some((tp.clone(), to)),
                _ => None,
            })
            .take(free)
            .collect();
        for (tp, to) in advances {
            tracing::debug!(partition = %tp, position = to, "Moving the stored offset past transaction markers or aborted records.");
            batches.extend(self.cut(tp, Vec::new(), Some(to)));
        }
        for batch in batches {
            self.batches_out += 1;
            if self.wiring.batches.send(batch).await.is_err() {
                return Err(Error::Fatal("all database writers stopped".into()));
            }
        }
        Ok(())
    }

    /// A batch of `tp`, now in flight: its records, or none and the offset to move to.
    fn cut(
        &mut self,
        tp: TopicPartition,
        records: Vec<Record>,
        advance_to: Option<i64>,
    ) -> Option<Batch> {
        let state = self.partitions.get_mut(&tp)?;
        let cancel = Arc::new(AtomicBool::new(false));
        state.in_flight = Some((state.epoch, Arc::clone(&cancel), records.len()));
        Some(Batch {
            tp,
            expected: state.expected,
            rewind: state.rewind_to.is_some(),
            records,
            advance_to,
            epoch: state.epoch,
            cancel,
        })
    }

    fn bump_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }
}

#[cfg(test)]
mod tests;
