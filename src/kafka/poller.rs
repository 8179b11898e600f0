//! The poll thread: the only code that touches the consumer after start-up.
//!
//! librdkafka calls the rebalance callback from inside `poll`, and our callback blocks on Postgres
//! and on the pipeline, so polling runs on its own OS thread rather than on the async runtime.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::context::SinkContext;
use super::events::{Command, Event};
use super::fetch_queue::{FetchQueue, REROUTE_EVERY};
use super::flow::FlowControl;
use super::record;
use super::watch::Watch;
use crate::record::TopicPartition;

/// Records gathered from consecutive polls before they are sent as one chunk, and the bytes
/// that end a chunk early (large records): the flow control's overshoot is about one chunk (batch
/// reads are sized by the recent record size, so a read can pass `CHUNK_BYTES` only when record
/// sizes jump).
const CHUNK: usize = 2048;
const CHUNK_BYTES: usize = 1024 * 1024;
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Over the buffer limit, polling stops for up to this long before fetching is paused.
const HOLD_MAX: Duration = Duration::from_secs(1);
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

    /// Serves the consumer queue, then takes records from the fetch queue in batch reads until
    /// a chunk is full or nothing is left, and sends them as one chunk; false when the pipeline
    /// is gone.
    fn poll_chunk(&mut self) -> bool {
        let Some(fetch) = self.fetch.clone() else {
            return self.poll_consumer_queue(POLL_TIMEOUT) && self.consumer.context().flush();
        };
        if !self.poll_consumer_queue(Duration::ZERO) {
            return false;
        }
        self.reroute_if_due();
        let mut wait = if self.idle {
            POLL_TIMEOUT
        } else {
            Duration::ZERO
        };
        // Records are gathered here and handed to the context in one step (one lock per
        // chunk, not per record); before an error is handled, so events keep their order.
        let (mut records, mut gathered) = (Vec::with_capacity(CHUNK), 0);
        // Counted from what the consumer queue may already have added to the chunk.
        let (mut go_on, mut chunk) = (true, self.consumer.context().pending());
        loop {
            // As many records as should still fit under CHUNK_BYTES at the recent record size,
            // so that large records do not overshoot the memory bound by a whole batch read.
            let before = chunk;
            let room = CHUNK_BYTES.saturating_sub(chunk.1) / self.record_size.max(1);
            let max = room.clamp(1, CHUNK.saturating_sub(chunk.0).max(1));
            let taken = fetch.take(wait, max, |message| match message {
                // After a fatal error the rest of the read is dropped: the consumer stops.
                _ if !go_on => {}
                Ok(message) => {
                    let tp = TopicPartition {
                        topic: self.topics.intern_bytes(message.topic()),
                        partition: message.partition(),
                    };
                    let record = record::from_fetched(message, tp);
                    let size = record.size();
                    gathered += size;
                    chunk = (chunk.0 + 1, chunk.1 + size);
                    records.push(record);
                }
                Err((error, message)) => {
                    let context = self.consumer.context();
                    context.push_all(&mut records, std::mem::take(&mut gathered));
                    let at = ErrorAt {
                        tp: TopicPartition {
                            topic: self.topics.intern_bytes(message.topic()),
                            partition: message.partition(),
                        },
                        offset: message.offset(),
                        detail: message.error_detail(),
                    };
                    go_on = self.on_error(&error, Some(at));
                }
            });
            if chunk.0 > before.0 {
                self.record_size = (chunk.1 - before.1) / (chunk.0 - before.0);
            }
            self.idle = taken == 0 && chunk.0 == 0;
            if taken == 0 || !go_on || chunk.0 >= CHUNK || chunk.1 >= CHUNK_BYTES {
                break;
            }
            wait = Duration::ZERO;
        }
        let context = self.consumer.context();
        context.push_all(&mut records, gathered);
        go_on && context.flush()
    }

    /// Routes the whole assignment to the fetch queue again every [`REROUTE_EVERY`]: a
    /// partition whose route librdkafka cleared when it restarted it delivers again.
    fn reroute_if_due(&mut self) {
        if self.routed_at.elapsed() < REROUTE_EVERY {
            return;
        }
        self.routed_at = Instant::now();
        if let Ok(assignment) = self.consumer.assignment() {
            self.consumer.context().route(&self.consumer, &assignment);
        }
    }

    /// Polls the consumer queue (events, and records of partitions not routed to the fetch
    /// queue) until it is empty or a chunk is full, waiting up to `wait` for the first event;
    /// false when the consumer must stop.
    fn poll_consumer_queue(&mut self, wait: Duration) -> bool {
        let mut timeout = wait;
        loop {
            match self.consumer.poll(timeout) {
                None => return true,
                Some(Ok(message)) => {
                    let topic = self.topics.intern(message.topic());
                    let record = record::from_message(
                        &message,
                        TopicPartition {
                            topic,
                            partition: message.partition(),
                        },
                    );
                    let (records, bytes) = self.consumer.context().push(record);
                    if records >= CHUNK || bytes >= CHUNK_BYTES {
                        return true;
                    }
                }
                Some(Err(error)) => {
                    if !self.on_error(&error, None) {
                        return false;
                    }
                }
            }
            timeout = Duration::ZERO;
        }
    }

    /// Handles a consumer error (`at`: where, when librdkafka says); false when the consumer
    /// must stop.
    fn on_error(&mut self, error: &KafkaError, at: Option<ErrorAt>) -> bool {
        if let Some(at) = &at {
            // librdkafka's batch read moves the consume position past an error's offset as if a
            // record were there (its record path checks the error, the batch path does not): the
            // partition's position is not trusted again until a record arrives.
            self.consumer.context().restarted(&self.consumer, [&at.tp]);
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
            return super::out_of_range::handle(&self.consumer, at.as_ref().map(|at| &at.tp));
        }
        let detail = at.as_ref().map(|at| at.detail.as_str());
        if let Some(fatal) = fatal_reason(error, detail) {
            self.consumer.context().send(Event::Fatal(fatal));
            return false;
        }
        if let Some(reason) = unreadable_batch(error, detail) {
            let context = self.consumer.context();
            return match at {
                // Only this partition stops; the pipeline drops what comes after the batch.
                // (librdkafka 2.12 misreads the rest of a fetch after a checksum failure and
                // reports more errors with nonsense offsets: the pipeline keeps the lowest.)
                Some(ErrorAt { tp, offset, .. }) => {
                    context.send(Event::Unreadable { tp, offset, reason });
                    true
                }
                _ => {
                    context.send(Event::Stop(reason));
                    false
                }
            };
        }
        tracing::warn!(%error, detail, "Kafka consumer error; librdkafka retries by itself.");
        true
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

    /// Whether to skip polling for now: the buffer is full and has been for less than
    /// [`HOLD_MAX`]. Not polling leaves records in librdkafka's own queue (bounded by
    /// `queued.max.messages.kbytes`, after which it stops fetching by itself), ready the moment
    /// the writers make room. Pausing instead would throw that queue away, and librdkafka takes
    /// up to a second to fetch again after a resume: under a steady backlog that idles the
    /// writers. Pausing is for buffers that stay full (a database outage), where the consumer
    /// must go on polling to serve the group. A single hold lasts at most [`HOLD_MAX`], but with
    /// a database that is slow rather than stopped, holds keep alternating with polls, and a
    /// rebalance event queued behind librdkafka's prefetched records waits until those have
    /// been taken at the writers' pace (exactly-once is unaffected; rebalances are slower).
    fn hold(&mut self) -> bool {
        if self.paused_at.is_some() || !self.flow.over() {
            self.held_since = None;
            return false;
        }
        let since = *self.held_since.get_or_insert_with(Instant::now);
        since.elapsed() < HOLD_MAX
    }

    /// Pauses every assigned partition while the pipeline holds too much, resumes (all but the
    /// stopped ones) once it has drained to half; re-pauses after a new assignment.
    fn apply_flow_control(&mut self) {
        let generation = self.consumer.context().generation();
        let over = self.flow.over();
        let pause = match self.paused_at {
            None => over,
            Some(at) => at != generation && !self.flow.drained(),
        };
        if pause {
            if let Ok(assignment) = self.consumer.assignment() {
                match self.consumer.pause(&assignment) {
                    Ok(()) if self.paused_at.is_none() => {
                        tracing::info!("Too many records buffered; fetching paused until the database catches up.")
                    }
                    Ok(()) => {}
                    Err(error) => tracing::warn!(%error, "Cannot pause fetching."),
                }
            }
            self.paused_at = Some(generation);
        } else if self.paused_at.is_some() && self.flow.drained() {
            self.paused_at = None;
            let Ok(assignment) = self.consumer.assignment() else {
                return;
            };
            let mut resume = TopicPartitionList::new();
            for e in assignment.elements() {
                if !self
                    .stopped
                    .contains(&TopicPartition::new(e.topic(), e.partition()))
                {
                    resume.add_partition(e.topic(), e.partition());
                }
            }
            match self.consumer.resume(&resume) {
                Ok(()) => tracing::info!("Fetching resumed."),
                Err(error) => tracing::warn!(%error, "Cannot resume fetching."),
            }
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

/// Topic names shared by the records of a topic; consecutive messages nearly always come from
/// the same topic, so the last one is compared before the map is hashed.
#[derive(Default)]
struct Topics {
    last: Option<Arc<str>>,
    all: HashMap<String, Arc<str>>,
}

impl Topics {
    /// As [`Self::intern`], from the name's bytes: the UTF-8 check runs only for a new name.
    fn intern_bytes(&mut self, topic: &[u8]) -> Arc<str> {
        match &self.last {
            Some(last) if last.as_bytes() == topic => Arc::clone(last),
            _ => self.intern(&String::from_utf8_lossy(topic)),
        }
    }

    fn intern(&mut self, topic: &str) -> Arc<str> {
        if let Some(last) = self.last.as_ref().filter(|last| &***last == topic) {
            return Arc::clone(last);
        }
        let shared = match self.all.get(topic) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared: Arc<str> = Arc::from(topic);
                self.all.insert(topic.to_owned(), Arc::clone(&shared));
                shared
            }
        };
        self.last = Some(Arc::clone(&shared));
        shared
    }
}

/// Where a per-partition consumer error happened, as librdkafka reports it.
struct ErrorAt {
    tp: TopicPartition,
    offset: i64,
    /// Partition, offset and librdkafka's text, for messages.
    detail: String,
}

/// The errors a consumer cannot recover from, with what the operator should do.
fn fatal_reason(error: &KafkaError, detail: Option<&str>) -> Option<String> {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::Fatal) => Some(format!(
            "fatal Kafka client error: {error}{}",
            detail.map_or_else(String::new, |d| format!(" ({d})"))
        )),
        _ => None,
    }
}

/// A record batch that fails its checksum (`check.crcs`) or cannot be decompressed: librdkafka
/// reports it once, then skips it and goes on with the records after it. Going on would commit
/// offsets past records that never reached Postgres, so the partition stops there instead: what
/// was read before the batch is written (the stored offset ends at or before it), nothing after.
fn unreadable_batch(error: &KafkaError, detail: Option<&str>) -> Option<String> {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::BadMessage
            | RDKafkaErrorCode::BadCompression
            | RDKafkaErrorCode::NotImplemented,
        ) => Some(format!(
            "a record batch cannot be read: {error}{}. librdkafka would skip it; the partition \
             stops here instead, so that none of its records is lost: the stored offset stays at \
             or before the batch. Check the topic's data; to skip the batch deliberately, stop \
             the connector and move the stored offset past it with `kafka-pg-sink offsets set`.",
            detail.map_or_else(String::new, |d| format!(" ({d})"))
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumption(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageConsumption(code)
    }

    #[test]
    fn only_batches_librdkafka_skips_stop_a_partition_and_the_message_says_where() {
        for code in [
            RDKafkaErrorCode::BadMessage,
            RDKafkaErrorCode::BadCompression,
            RDKafkaErrorCode::NotImplemented,
        ] {
            let reason = unreadable_batch(&consumption(code), Some("t/3 at offset 200: why"))
                .unwrap_or_else(|| panic!("{code:?} must stop the partition"));
            assert!(reason.contains("t/3 at offset 200: why"), "{reason}");
            assert!(reason.contains("offsets set"), "{reason}");
            assert!(fatal_reason(&consumption(code), None).is_none());
        }
        // Transient errors are retried by librdkafka and skip nothing.
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(
                unreadable_batch(&consumption(code), None).is_none(),
                "{code:?}"
            );
            assert!(fatal_reason(&consumption(code), None).is_none(), "{code:?}");
        }
        assert!(fatal_reason(&consumption(RDKafkaErrorCode::Fatal), None).is_some());
    }
}
