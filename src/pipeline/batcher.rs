//! Per-partition buffers and the decision of when one becomes a batch. Pure: no IO, no clock of
//! its own (callers pass `now`), so its properties are tested directly.
//!
//! Guarantees: records of a partition leave in the order they came in; every record pushed leaves
//! exactly once (in a batch, or by an explicit drop); a batch never exceeds `max_records` and
//! exceeds `max_bytes` only when one record alone is larger.

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::record::{Record, TopicPartition};

/// A due partition whose oldest record has waited this many `max_wait`s is written before fuller
/// ones: the bound on how long a light partition can wait behind heavy ones while every writer is
/// busy (1 s at the default `max_wait` of 100 ms).
pub const STARVE_AFTER_WAITS: u32 = 10;

/// When a partition's buffer is flushed.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub max_wait: Duration,
}

/// One partition's buffered records, as the runs they arrived in: a run is moved in whole and
/// records are copied once, into their batch (a single `Vec` was copied again at every batch
/// cut, for all the records behind it).
#[derive(Debug, Default)]
struct Buffer {
    runs: VecDeque<Vec<Record>>,
    len: usize,
    bytes: usize,
    /// Arrival times, oldest first, as (records that arrived then, time): the front is when the
    /// oldest buffered record arrived, also after part of the buffer left in a batch.
    arrivals: VecDeque<(usize, Instant)>,
}

impl Buffer {
    fn since(&self) -> Option<Instant> {
        self.arrivals.front().map(|&(_, at)| at)
    }

    fn arrived(&mut self, records: usize, now: Instant) {
        match self.arrivals.back_mut() {
            Some((n, at)) if *at == now => *n += records,
            _ => self.arrivals.push_back((records, now)),
        }
    }

    /// The first `records` records left.
    fn left(&mut self, mut records: usize) {
        while records > 0 {
            let Some(front) = self.arrivals.front_mut() else {
                return;
            };
            if front.0 > records {
                front.0 -= records;
                return;
            }
            records -= front.0;
            self.arrivals.pop_front();
        }
    }
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

    /// Whether records of `tp` are buffered.
    pub fn holds(&self, tp: &TopicPartition) -> bool {
        self.buffers.get(tp).is_some_and(|b| b.len > 0)
    }

    /// Buffers records of one partition, in offset order.
    pub fn push_run(&mut self, tp: TopicPartition, records: Vec<Record>, now: Instant) {
        if records.is_empty() {
            return;
        }
        let buffer = self.buffers.entry(tp).or_default();
        buffer.arrived(records.len(), now);
        let bytes = records.iter().map(Record::size).sum::<usize>();
        buffer.bytes += bytes;
        buffer.len += records.len();
        self.total_bytes += bytes;
        self.total += records.len();
        buffer.runs.push_back(records);
    }

    /// One record (the run loop pushes whole runs; the tests think in records).
    #[cfg(test)]
    pub fn push(&mut self, record: Record, now: Instant) {
        self.push_run(record.tp.clone(), vec![record], now);
    }

    /// Up to `slots` batches (one per free writer slot) for partitions that are due. Due means full
    /// (`max_records` or `max_bytes`), or its oldest record waited `max_wait`, or any records at
    /// all when `flush` is set (draining, or memory pressure). `busy` partitions (a batch in
    /// flight, seeking...) are skipped.
    ///
    /// Order: a partition whose oldest record has waited `STARVE_AFTER_WAITS` × `max_wait` goes
    /// first, oldest first, so a light partition is never starved by heavy ones that are always
    /// full; then the fullest buffer, so that under a backlog writers take full batches (fewer,
    /// larger transactions, and the partition furthest behind catches up instead of finishing
    /// alone at the end); equal sizes go oldest first.
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
        let starving = limits.max_wait.saturating_mul(STARVE_AFTER_WAITS);
        // (not starving, fewer records first reversed, oldest record): sorts into the order above.
        let mut due: Vec<(bool, Reverse<usize>, Instant, &TopicPartition)> = Vec::new();
        for (tp, buffer) in &self.buffers {
            let Some(since) = buffer.since().filter(|_| buffer.len > 0) else {
                continue;
            };
            let waited = now.duration_since(since);
            let full = buffer.len >= limits.max_records || buffer.bytes >= limits.max_bytes;
            if (full || flush || waited >= limits.max_wait) && !busy(tp) {
                let key = if waited >= starving {
                    (false, Reverse(0), since, tp)
                } else {
                    (true, Reverse(buffer.len), since, tp)
                };
                due.push(key);
            }
        }
        due.sort_unstable();
        let chosen: Vec<TopicPartition> = due
            .into_iter()
            .take(slots)
            .map(|(_, _, _, tp)| tp.clone())
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
        self.total -= buffer.len;
        self.total_bytes -= buffer.bytes;
        buffer.len
    }
}

/// Takes the longest prefix within the limits (at least one record).
fn split_front(buffer: &mut Buffer, limits: Limits) -> Vec<Record> {
    let mut count = 0;
    let mut bytes = 0;
    for record in buffer.runs.iter().flatten() {
        if count == limits.max_records || (count > 0 && bytes + record.size() > limits.max_bytes) {
            break;
        }
        count += 1;
        bytes += record.size();
    }
    let mut batch: Vec<Record> = Vec::new();
    let mut need = count;
    while need > 0 {
        let Some(front) = buffer.runs.front_mut() else {
            break;
        };
        if front.len() > need {
            batch.extend(front.drain(..need));
            break;
        }
        let run = buffer.runs.pop_front().unwrap_or_default();
        need -= run.len();
        if batch.is_empty() {
            batch = run;
            batch.reserve(need);
        } else {
            batch.extend(run);
        }
    }
    buffer.len -= count;
    buffer.bytes -= bytes;
    // What stays behind keeps its own arrival time: not held back, and not older than it is.
    buffer.left(count);
    batch
}

/// Splits a chunk into its runs of one partition, in order. Each record moves at most once (the
/// runs are cut off the end), and the first run keeps the chunk's allocation unless that would
/// hold much more memory than it uses.
pub fn runs(mut records: Vec<Record>) -> Vec<Vec<Record>> {
    let mut runs = Vec::new();
    while let Some(last) = records.last() {
        let tp = &last.tp;
        match records.iter().rposition(|r| r.tp != *tp) {
            Some(before) => runs.push(records.split_off(before + 1)),
            None => {
                if records.len() < records.capacity() / 4 {
                    records.shrink_to_fit();
                }
                runs.push(std::mem::take(&mut records));
            }
        }
    }
    runs.reverse();
    runs
}

#[cfg(test)]
mod tests;
