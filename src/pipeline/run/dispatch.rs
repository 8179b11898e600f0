//! Cutting batches for free writer slots: one batch in flight per partition, continuing from
//! the offset the previous one committed; offsets-only batches move a stored offset past
//! transaction markers.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{Pipeline, BATCHES_PER_WRITER};
use crate::error::Error;
use crate::record::{Record, TopicPartition};
use crate::sink::Batch;

impl Pipeline {
    /// Cuts batches for free writer slots and sends them.
    pub(super) async fn dispatch(&mut self, drain: bool) -> Result<(), Error> {
        let partitions = &self.partitions;
        // Under memory pressure (half the buffer limit) a free writer takes whatever is buffered:
        // waiting for full batches could stall when the limit is below partitions x max_records.
        let flush_all = drain || self.flow.pressure();
        let slots = (BATCHES_PER_WRITER * self.writers).saturating_sub(self.batches_out);
        let ready = self
            .batcher
            .take_ready(std::time::Instant::now(), flush_all, slots, |tp| {
                partitions
                    .get(tp)
                    .is_none_or(|s| s.in_flight.is_some() || s.seeking || s.revoked || s.stopped)
            });
        self.metrics.buffered_records.set(self.batcher.len() as i64);
        self.metrics.buffered_bytes.set(self.batcher.bytes() as i64);
        self.flow
            .set_buffered(self.batcher.len(), self.batcher.bytes());
        let mut batches = Vec::with_capacity(ready.len());
        for (tp, records) in ready {
            batches.extend(self.cut(tp, records, None));
        }
        // Offsets-only batches (transaction markers) take what slots are left.
        let free = slots.saturating_sub(batches.len());
        let advances: Vec<(TopicPartition, i64)> = self
            .partitions
            .iter()
            .filter(|(tp, s)| {
                // Cheapest test first: most partitions have no position past their offset.
                s.position > s.expected
                    && s.in_flight.is_none()
                    && !s.seeking
                    && !s.revoked
                    && !s.is_stopped()
                    && s.rewind_to.is_none()
                    && s.expected.is_some()
                    && s.floor == s.expected
                    && !self.batcher.holds(tp)
            })
            .filter_map(|(tp, s)| match (s.position, s.expected) {
                (Some(to), Some(stored)) if to > stored => Some((tp.clone(), to)),
                _ => None,
            })
            .take(free)
            .collect();
        for (tp, to) in advances {
            tracing::debug!(partition = %tp, position = to, "Moving the stored offset past transaction markers or aborted records.");
            batches.extend(self.cut(tp, Vec::new(), Some(to)));
        }
        for batch in batches {
            self.batches_out += 1;
            if self.wiring.batches.send(batch).await.is_err() {
                return Err(Error::Fatal("all database writers stopped".into()));
            }
        }
        Ok(())
    }

    /// A batch of `tp`, now in flight: its records, or none and the offset to move to.
    fn cut(
        &mut self,
        tp: TopicPartition,
        records: Vec<Record>,
        advance_to: Option<i64>,
    ) -> Option<Batch> {
        let state = self.partitions.get_mut(&tp)?;
        let cancel = Arc::new(AtomicBool::new(false));
        state.in_flight = Some((state.epoch, Arc::clone(&cancel), records.len()));
        Some(Batch {
            tp,
            expected: state.expected,
            rewind: state.rewind_to.is_some(),
            records,
            advance_to,
            epoch: state.epoch,
            cancel,
        })
    }
}
