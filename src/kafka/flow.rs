//! Flow control between the pipeline and the poll thread: fetching pauses while too many
//! records are buffered, and resumes below half of that, so memory stays bounded during a long
//! database outage while the consumer keeps polling (and so keeps its group membership and
//! serves rebalances).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Shared between the pipeline (which reports) and the poll thread (which pauses).
#[derive(Debug)]
pub struct FlowControl {
    /// Records sent by the poll thread that the pipeline has not received yet.
    in_channel: AtomicUsize,
    /// Records the pipeline holds in its buffers.
    buffered: AtomicUsize,
    high: usize,
}

impl FlowControl {
    /// `high` is `batch.max_buffered_records`.
    pub fn new(high: usize) -> Self {
        Self {
            in_channel: AtomicUsize::new(0),
            buffered: AtomicUsize::new(0),
            high: high.max(1),
        }
    }

    /// Called by the poll thread before it sends `records`.
    pub fn sent(&self, records: usize) {
        self.in_channel.fetch_add(records, Ordering::Relaxed);
    }

    /// Called by the pipeline when it receives `records`.
    pub fn received(&self, records: usize) {
        self.in_channel.fetch_sub(records, Ordering::Relaxed);
    }

    fn total(&self) -> usize {
        self.in_channel.load(Ordering::Relaxed) + self.buffered.load(Ordering::Relaxed)
    }

    /// Called by the pipeline after every turn.
    pub fn set_buffered(&self, records: usize) {
        self.buffered.store(records, Ordering::Relaxed);
    }

    /// Fetching should stop.
    pub fn over(&self) -> bool {
        self.total() >= self.high
    }

    /// Half the limit is buffered: the pipeline writes what it has instead of waiting for full
    /// batches.
    pub fn pressure(&self) -> bool {
        self.total() >= self.high / 2
    }

    /// Fetching may start again (hysteresis: half the limit).
    pub fn drained(&self) -> bool {
        self.total() <= self.high / 2
    }
}
