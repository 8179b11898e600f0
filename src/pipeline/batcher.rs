//! Per-partition buffers and the decision of when one becomes a batch. Pure: no IO, no clock of
//! its own (callers pass `now`), so its properties are tested directly.
//!
//! Guarantees: records of a partition leave in the order they came in; every record pushed leaves
//! exactly once (in a batch, or by an explicit drop); a batch never exceeds `max_records` and
//! exceeds `max_bytes` only when one record alone is larger.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::kafka::{Record, TopicPartition};

/// When a partition's buffer is flushed.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub max_wait: Duration,
}

#[derive(Debug, Default)]
struct Buffer {
    records: Vec<Record>,
    bytes: usize,
    /// When the oldest buffered record arrived.
    since: Option<Instant>,
}

/// Buffers records per partition.
#[derive(Debug)]
pub struct Batcher {
    limits: Limits,
    buffers: HashMap<TopicPartition, Buffer>,
    total: usize,
    total_bytes: usize,
}

impl Batcher {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buffers: HashMap::new(),
            total: 0,
            total_bytes: 0,
        }
    }

    /// Records buffered across all partitions.
    pub fn len(&self) -> usize {
        self.total
    }

    /// Bytes of the records buffered across all partitions ([`Record::size`]).
    pub fn bytes(&self) -> usize {
        self.total_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Buffers records of one partition, in offset order.
    pub fn push_run(&mut self, tp: TopicPartition, records: Vec<Record>, now: Instant) {
        if records.is_empty() {
            return;
        }
        let buffer = self.buffers.entry(tp).or_default();
        buffer.since.get_or_insert(now);
        let bytes = records.iter().map(Record::size).sum::<usize>();
        buffer.bytes += bytes;
        self.total_bytes += bytes;
        self.total += records.len();
        if buffer.records.is_empty() {
            buffer.records = records;
        } else {
            buffer.records.extend(records);
        }
    }

    pub fn push(&mut self, record: Record, now: Instant) {
        let buffer = self.buffers.entry(record.tp.clone()).or_default();
        buffer.since.get_or_insert(now);
        buffer.bytes += record.size();
        self.total_bytes += record.size();
        buffer.records.push(record);
        self.total += 1;
    }

    /// Up to `slots` batches (one per free writer) for partitions that are due, most urgent
    /// first: full buffers, then the longest waiting. Due means full (`max_records` or
    /// `max_bytes`), or its oldest record waited `max_wait`, or any records at all when `flush`
    /// is set (draining, or memory pressure). `busy` partitions (a batch in flight, seeking...)
    /// are skipped.
    ///
    /// Cutting batches only when a writer can take them is what keeps batches large under load:
    /// a buffer keeps growing while every writer is busy instead of waiting, cut small, in a queue.
    pub fn take_ready(
        &mut self,
        now: Instant,
        flush: bool,
        slots: usize,
        busy: impl Fn(&TopicPartition) -> bool,
    ) -> Vec<(TopicPartition, Vec<Record>)> {
        if slots == 0 {
            return Vec::new();
        }
        let limits = self.limits;
        let mut due: Vec<(bool, Instant, &TopicPartition)> = Vec::new();
        for (tp, buffer) in &self.buffers {
            let Some(since) = buffer.since.filter(|_| !buffer.records.is_empty()) else {
                continue;
            };
            let full =
                buffer.records.len() >= limits.max_records || buffer.bytes >= limits.max_bytes;
            if (full || flush || now.duration_since(since) >= limits.max_wait) && !busy(tp) {
                due.push((!full, since, tp));
            }
        }
        due.sort_unstable_by_key(|&(not_full, since, _)| (not_full, since));
        let chosen: Vec<TopicPartition> = due
            .into_iter()
            .take(slots)
            .map(|(_, _, tp)| tp.clone())
            .collect();
        let mut ready = Vec::with_capacity(chosen.len());
        for tp in chosen {
            if let Some(buffer) = self.buffers.get_mut(&tp) {
                let before = buffer.bytes;
                let batch = split_front(buffer, limits);
                self.total -= batch.len();
                self.total_bytes -= before - buffer.bytes;
                ready.push((tp, batch));
            }
        }
        ready
    }

    /// Forgets a partition's buffer (revoked or fenced); returns how many records were dropped.
    pub fn drop_partition(&mut self, tp: &TopicPartition) -> usize {
        let Some(buffer) = self.buffers.remove(tp) else {
            return 0;
        };
        self.total -= buffer.records.len();
        self.total_bytes -= buffer.bytes;
        buffer.records.len()
    }
}

/// Takes the longest prefix within the limits (at least one record).
fn split_front(buffer: &mut Buffer, limits: Limits) -> Vec<Record> {
    let mut count = 0;
    let mut bytes = 0;
    for record in &buffer.records {
        if count == limits.max_records || (count > 0 && bytes + record.size() > limits.max_bytes) {
            break;
        }
        count += 1;
        bytes += record.size();
    }
    let rest = buffer.records.split_off(count);
    let batch = std::mem::replace(&mut buffer.records, rest);
    buffer.bytes -= bytes;
    // What stays behind keeps its original arrival time, so it is not held back further.
    if buffer.records.is_empty() {
        buffer.since = None;
    }
    batch
}

#[cfg(test)]
mod tests;
