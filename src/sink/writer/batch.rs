//! What goes into a writer and what comes back: a partition's batch, the outcome of writing it,
//! and that outcome as reported to the pipeline.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::error::Error;
use crate::record::{Record, TopicPartition};

/// One partition's records, in offset order, to be written in one transaction.
#[derive(Debug)]
pub struct Batch {
    pub tp: TopicPartition,
    /// Stored offset this batch continues from; `None` when the partition has none yet.
    pub expected: Option<i64>,
    /// The partition was reset by `offset_out_of_range`: the new offset may be below `expected`.
    pub rewind: bool,
    pub records: Vec<Record>,
    /// Offsets only (no records): the stored offset moves from `expected` to here, past
    /// transaction markers and aborted records that librdkafka consumed without a record.
    pub advance_to: Option<i64>,
    /// The partition's state generation when the batch was cut; stale results are ignored.
    pub epoch: u64,
    /// Set when the partition is revoked: stop retrying and report [`Outcome::Aborted`].
    pub cancel: Arc<AtomicBool>,
}

impl Batch {
    /// The stored offset once this batch commits; `None` for a batch with nothing to write.
    pub fn next_offset(&self) -> Option<i64> {
        match self.records.last() {
            Some(last) => Some(last.offset + 1),
            None => self.advance_to,
        }
    }
}

/// What happened to a batch.
#[derive(Debug)]
pub enum Outcome {
    Committed {
        next_offset: i64,
    },
    /// Nothing was written: the stored offset is not the one the batch started from.
    Fenced {
        stored: Option<i64>,
    },
    /// Given up because the partition was revoked; nothing was written by this attempt.
    Aborted,
    /// Nothing was written. A [`Error::BadRecord`] stops only this partition (`on_error = "fail"`);
    /// anything else stops the process.
    Failed(Error),
    /// A record of a mapping with `on_error = "fail"` cannot be applied: the records before it
    /// were committed (the stored offset is now `next_offset`, the bad record's offset; `None`
    /// when it was the batch's first) and the partition stops there.
    Stopped {
        next_offset: Option<i64>,
        error: Error,
    },
}

/// A batch's outcome, sent back to the pipeline.
#[derive(Debug)]
pub struct WriteBatch {
    pub tp: TopicPartition,
    pub epoch: u64,
    pub records: usize,
    pub outcome: Outcome,
}
