//! Taking records: batch reads from the fetch queue and polls of the consumer queue (which also
//! serves rebalances and errors), gathered into chunks sized to bound the memory in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;

use super::errors::ErrorAt;
use super::Poller;
use crate::kafka::fetch_queue::REROUTE_EVERY;
use crate::kafka::record;
use crate::record::TopicPartition;

/// Records gathered from consecutive polls before they are sent as one chunk, and the bytes
/// that end a chunk early (large records): the flow control's overshoot is about one chunk (batch
/// reads are sized by the recent record size, so a read can pass `CHUNK_BYTES` only when record
/// sizes jump).
const CHUNK: usize = 2048;
const CHUNK_BYTES: usize = 1024 * 1024;
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

impl Poller {
    /// Serves the consumer queue, then takes records from the fetch queue in batch reads until
    /// a chunk is full or nothing is left, and sends them as one chunk; false when the pipeline
    /// is gone.
    pub(super) fn poll_chunk(&mut self) -> bool {
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
}

/// Topic names shared by the records of a topic; consecutive messages nearly always come from
/// the same topic, so the last one is compared before the map is hashed.
#[derive(Default)]
pub(super) struct Topics {
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
