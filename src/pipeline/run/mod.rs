//! The run loop: events from the poll thread in, batches to the writers out, results back.
//!
//! Guarantees kept here: one partition never has two batches in flight; a batch continues from
//! the offset the previous batch of its partition committed; a record is accepted only above
//! every record already accepted for its partition, so a record fetched twice (a restart of
//! fetching, an out-of-range refetch) is buffered once; that floor moves back only where the
//! partition is (re)started: [`Event::Assigned`], [`Event::Sought`], [`Event::Reset`]; after a
//! fenced commit the partition's buffered records are dropped and it is re-read from the stored
//! offset; a revoked partition is acknowledged only when none of its batches can still commit.
//!
//! The loop (`run`, drain, abandon) is here; `events`: what the poll thread says; `results`:
//! what the writers report; `dispatch`: cutting batches for free writer slots.

mod dispatch;
mod events;
mod results;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batcher::Batcher;
use crate::error::Error;
use crate::health::Health;
use crate::kafka::{Command, Event, FlowControl};
use crate::metrics::Metrics;
use crate::record::TopicPartition;
use crate::sink::{Batch, WriteBatch};

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

    fn bump_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }
}

#[cfg(test)]
mod tests;
