//! Flow control between the pipeline and the poll thread: taking records from librdkafka stops
//! while too many records or bytes are buffered, so memory stays bounded during a long database
//! outage while the consumer keeps polling (and so keeps its group membership and serves
//! rebalances).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Records and their bytes (keys, values, headers).
#[derive(Debug, Default)]
struct Amount {
    records: AtomicUsize,
    bytes: AtomicUsize,
}

/// Shared between the pipeline (which reports) and the poll thread (which holds or pauses).
#[derive(Debug)]
pub struct FlowControl {
    /// Sent by the poll thread, not yet received by the pipeline.
    in_channel: Amount,
    /// Held in the pipeline's buffers.
    buffered: Amount,
    high_records: usize,
    high_bytes: usize,
}

impl FlowControl {
    /// The limits are `batch.max_buffered_records` and `batch.max_buffered_bytes`.
    pub fn new(high_records: usize, high_bytes: usize) -> Self {
        Self {
            in_channel: Amount::default(),
            buffered: Amount::default(),
            high_records: high_records.max(1),
            high_bytes: high_bytes.max(1),
        }
    }

    /// Called by the poll thread before it sends `records` holding `bytes`.
    pub fn sent(&self, records: usize, bytes: usize) {
        self.in_channel
            .records
            .fetch_add(records, Ordering::Relaxed);
        self.in_channel.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Called by the pipeline when it receives what [`FlowControl::sent`] announced.
    pub fn received(&self, records: usize, bytes: usize) {
        self.in_channel
            .records
            .fetch_sub(records, Ordering::Relaxed);
        self.in_channel.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Called by the pipeline after every turn.
    pub fn set_buffered(&self, records: usize, bytes: usize) {
        self.buffered.records.store(records, Ordering::Relaxed);
        self.buffered.bytes.store(bytes, Ordering::Relaxed);
    }

    /// Total (records, bytes).
    fn total(&self) -> (usize, usize) {
        let load = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        (
            load(&self.in_channel.records) + load(&self.buffered.records),
            load(&self.in_channel.bytes) + load(&self.buffered.bytes),
        )
    }

    /// At or above `1/divisor` of either limit.
    fn at(&self, divisor: usize) -> bool {
        let (records, bytes) = self.total();
        records >= self.high_records / divisor || bytes >= self.high_bytes / divisor
    }

    /// Taking records from librdkafka should stop.
    pub fn over(&self) -> bool {
        self.at(1)
    }

    /// Half a limit is buffered: the pipeline writes what it has instead of waiting for full
    /// batches.
    pub fn pressure(&self) -> bool {
        self.at(2)
    }

    /// Fetching may start again after a pause (hysteresis: half of both limits).
    pub fn drained(&self) -> bool {
        let (records, bytes) = self.total();
        records <= self.high_records / 2 && bytes <= self.high_bytes / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_limit_stops_and_both_must_drain() {
        let flow = FlowControl::new(100, 1000);
        flow.sent(10, 999);
        assert!(!flow.over() && flow.pressure() && !flow.drained());
        flow.sent(0, 1);
        assert!(flow.over(), "the byte limit alone stops taking records");
        flow.received(10, 1000);
        flow.set_buffered(100, 10);
        assert!(flow.over(), "the record limit alone stops taking records");
        flow.set_buffered(50, 500);
        assert!(!flow.over() && flow.pressure() && flow.drained());
        flow.set_buffered(20, 501);
        assert!(!flow.drained() && flow.pressure());
        flow.set_buffered(0, 0);
        assert!(!flow.pressure() && flow.drained());
    }
}
