//! The poll thread: the only code that touches the consumer after start-up.
//!
//! librdkafka calls the rebalance callback from inside `poll`, and our callback blocks on Postgres
//! and on the pipeline, so polling runs on its own OS thread rather than on the async runtime.
//!
//! - `fetch`: taking records into chunks; `errors`: what a consumer error means;
//!   `backpressure`: holding and pausing while the pipeline holds too much.

mod backpressure;
mod errors;
mod fetch;

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::context::SinkContext;
use super::events::{Command, Event};
use super::fetch_queue::FetchQueue;
use super::flow::FlowControl;
use super::watch::Watch;
use crate::record::TopicPartition;
use fetch::Topics;

const HOLD_STEP: Duration = Duration::from_millis(5);
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Joins the poll thread.
pub struct PollerHandle {
    thread: JoinHandle<()>,
}

impl PollerHandle {
    /// Waits for the thread to leave the group and exit.
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("The Kafka poll thread panicked.");
        }
    }
}

/// Starts polling `consumer` until `token` is cancelled, then waits for [`Command::Close`].
pub fn spawn_poller(
    consumer: BaseConsumer<SinkContext>,
    commands: Receiver<Command>,
    flow: Arc<FlowControl>,
    token: CancellationToken,
) -> std::io::Result<PollerHandle> {
    consumer.context().set_flow(Arc::clone(&flow));
    let fetch = FetchQueue::new(&consumer).map(Arc::new);
    if fetch.is_none() {
        tracing::warn!(
            "No separate fetch queue; records are polled one by one from the consumer queue."
        );
    }
    consumer.context().set_fetch_queue(fetch.clone());
    let poller = Poller {
        consumer,
        fetch,
        idle: true,
        record_size: 8192,
        routed_at: Instant::now(),
        commands,
        flow,
        topics: Topics::default(),
        paused_at: None,
        held_since: None,
        stopped: HashSet::new(),
        watch: Watch::new(),
    };
    let thread = std::thread::Builder::new()
        .name("kafka-poll".into())
        .spawn(move || poller.run(&token))?;
    Ok(PollerHandle { thread })
}

struct Poller {
    consumer: BaseConsumer<SinkContext>,
    /// Records of routed partitions, taken in batches; dropped before the consumer.
    fetch: Option<Arc<FetchQueue>>,
    /// The last batch read found nothing: the next one waits for records.
    idle: bool,
    /// Bytes per record in the last batch read (a guess until then), to size the next read.
    record_size: usize,
    /// When the assignment was last routed to the fetch queue.
    routed_at: Instant,
    commands: Receiver<Command>,
    flow: Arc<FlowControl>,
    /// Interned topic names, so records share one allocation per topic.
    topics: Topics,
    /// The assignment generation fetching was paused at (too much buffered), if paused.
    paused_at: Option<u64>,
    /// Since when polling has been held because too much is buffered, if held.
    held_since: Option<Instant>,
    /// Partitions stopped by a bad record: they stay paused when fetching resumes.
    stopped: HashSet<TopicPartition>,
    /// Positions for the pipeline, stalled partitions, log ends of partitions not fetched.
    watch: Watch,
}

impl Poller {
    fn run(mut self, token: &CancellationToken) {
        while !token.is_cancelled() {
            if !self.serve_commands() {
                break;
            }
            if self.hold() {
                std::thread::sleep(HOLD_STEP);
                continue;
            }
            self.apply_flow_control();
            if !self.poll_chunk() {
                break;
            }
            let held = self.paused_at.is_some() || self.flow.over();
            if !self.watch.tick(&self.consumer, held, &self.stopped) {
                break;
            }
        }
        let context = Arc::clone(self.consumer.context());
        if context.send(Event::EndOfInput) {
            // Keep serving courtesy commits until the pipeline has drained.
            while let Ok(command) = self.commands.recv() {
                match command {
                    Command::Commit(offsets) => self.commit(&offsets),
                    Command::Close => break,
                    Command::Seek { .. } | Command::Pause(_) | Command::Resume(_) => {}
                }
            }
        }
        context.set_closing();
        // Queue handles go before the consumer that owns them.
        context.set_fetch_queue(None);
        self.fetch = None;
        self.consumer.unsubscribe();
        tracing::info!("Left the consumer group.");
    }

    /// Runs queued commands; false when the pipeline is gone.
    fn serve_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Seek { tp, offset, epoch }) => {
                    if !self.seek(tp, offset, epoch) {
                        return false;
                    }
                }
                Ok(Command::Commit(offsets)) => self.commit(&offsets),
                Ok(Command::Pause(tp)) => self.pause(&tp),
                Ok(Command::Resume(tp)) => self.resume_stopped(&tp),
                Ok(Command::Close) | Err(TryRecvError::Disconnected) => return false,
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn seek(&mut self, tp: TopicPartition, offset: Option<i64>, epoch: u64) -> bool {
        let target = offset.map_or_else(|| self.consumer.context().reset_offset(), Offset::Offset);
        for attempt in 1..=5 {
            match self
                .consumer
                .seek(&tp.topic, tp.partition, target, SEEK_TIMEOUT)
            {
                Ok(()) => {
                    let context = self.consumer.context();
                    context.restarted(&self.consumer, [&tp]);
                    if let Some(offset) = offset {
                        context.set_position(&tp, offset);
                    }
                    return context.send(Event::Sought { tp, offset, epoch });
                }
                Err(error) => {
                    tracing::warn!(%error, partition = %tp, attempt, "Seek failed.");
                    std::thread::sleep(Duration::from_millis(200 * attempt));
                }
            }
        }
        // The partition is most likely no longer ours; a rebalance resets its state anyway.
        tracing::error!(partition = %tp, "Giving up seeking; the partition waits for the next rebalance.");
        true
    }

    fn pause(&mut self, tp: &TopicPartition) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.topic, tp.partition);
        if let Err(error) = self.consumer.pause(&tpl) {
            tracing::warn!(%error, partition = %tp, "Cannot pause the partition; its records are dropped instead.");
        }
        self.stopped.insert(tp.clone());
    }

    /// Resumes a partition paused by [`Self::pause`] in an earlier assignment. While flow control
    /// has fetching paused, it only forgets the stop: flow control resumes the partition later.
    fn resume_stopped(&mut self, tp: &TopicPartition) {
        if !self.stopped.remove(tp) || self.paused_at.is_some() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&tp.topic, tp.partition);
        if let Err(error) = self.consumer.resume(&tpl) {
            tracing::warn!(%error, partition = %tp, "Cannot resume a partition stopped in an earlier assignment.");
        }
    }

    fn commit(&self, offsets: &[(TopicPartition, i64)]) {
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for (tp, next) in offsets {
            if let Err(error) =
                tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*next))
            {
                tracing::debug!(%error, "Skipping courtesy commit.");
            }
        }
        if let Err(error) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(%error, "Courtesy commit to Kafka failed; offsets in Postgres are unaffected.");
        }
    }
}
