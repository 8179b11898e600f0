//! Where each assigned partition reads next, and whether librdkafka's own consume position can
//! be trusted for it: the positions the poll thread has taken, restarts, and the statistics'
//! view of each partition.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{Seen, SinkContext};
use crate::record::{Record, TopicPartition};

impl SinkContext {
    /// Moves the positions of the partitions of `records` (in poll order) past them: a position
    /// is where librdkafka must fetch next for nothing taken to be fetched twice, so it counts
    /// every record the poll thread has taken, sent or not.
    pub(super) fn took(&self, records: &[Record]) {
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        for (i, record) in records.iter().enumerate() {
            // One update per run of the same partition: its last record.
            if records.get(i + 1).is_none_or(|next| next.tp != record.tp) {
                positions.insert(record.tp.clone(), record.offset + 1);
                if !fresh.is_empty() {
                    fresh.remove(&record.tp);
                }
            }
        }
    }

    /// Marks partitions as (re)started: see `fresh`.
    /// Call it before librdkafka can consume from the new start (or, for an error, right after
    /// the read that carried it), so the snapshot is the position to distrust.
    pub fn restarted<'a>(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) {
        let marked: Vec<(TopicPartition, Option<i64>)> = partitions
            .into_iter()
            .map(|tp| (tp.clone(), app_position(consumer, tp)))
            .collect();
        let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        fresh.extend(marked);
    }

    /// Whether librdkafka's consume position `position` of `tp` describes what was consumed
    /// since its last (re)start or error: a record has been taken since, or the position moved.
    pub fn trusts(&self, tp: &TopicPartition, position: i64) -> bool {
        match self.fresh.lock().unwrap_or_else(|p| p.into_inner()).get(tp) {
            None => true,
            Some(marked) => *marked != Some(position),
        }
    }

    /// Records where a partition will read next (after a seek).
    pub fn set_position(&self, tp: &TopicPartition, offset: i64) {
        self.positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tp.clone(), offset);
    }

    /// What the last statistics said of `tp`, if it is assigned.
    pub fn seen(&self, tp: &TopicPartition) -> Option<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tp)
            .copied()
    }

    /// Known next offsets of the assigned partitions.
    pub fn positions(&self) -> Vec<(TopicPartition, i64)> {
        let positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        positions.iter().map(|(tp, o)| (tp.clone(), *o)).collect()
    }
}

/// librdkafka's consume position of `tp` (past the last message it handed out), for any
/// partition it knows, assigned or not; `None` when it has none.
fn app_position(consumer: &BaseConsumer<SinkContext>, tp: &TopicPartition) -> Option<i64> {
    let mut list = TopicPartitionList::new();
    list.add_partition(&tp.topic, tp.partition);
    // SAFETY: a live client handle and a list owned here; librdkafka fills in the offsets.
    let err =
        unsafe { rdkafka::bindings::rd_kafka_position(consumer.client().native_ptr(), list.ptr()) };
    if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return None;
    }
    match list.elements().first()?.offset() {
        Offset::Offset(at) if at >= 0 => Some(at),
        _ => None,
    }
}
