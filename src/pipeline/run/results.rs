//! Results from the writers: a committed batch moves its partition's stored offset; a fenced one
//! drops what is buffered and re-reads from the stored offset; a bad record stops its partition
//! under `on_error = "fail"`; a revoked partition is released once no batch of it can commit.

use super::{PartitionState, Pipeline};
use crate::error::{classify, Error, ErrorClass};
use crate::kafka::Command;
use crate::record::TopicPartition;
use crate::sink::{Outcome, WriteBatch};

impl Pipeline {
    pub(super) fn on_result(&mut self, result: WriteBatch) -> Result<(), Error> {
        let WriteBatch {
            tp,
            epoch,
            records,
            outcome,
        } = result;
        // Every batch sent reports back exactly once, whatever became of its partition.
        self.batches_out = self.batches_out.saturating_sub(1);
        let Some(state) = self.partitions.get_mut(&tp) else {
            return Ok(());
        };
        if state
            .in_flight
            .as_ref()
            .is_some_and(|(e, _, _)| *e == epoch)
        {
            state.in_flight = None;
        }
        if state.revoked {
            if let Some(old) = self.partitions.remove(&tp) {
                self.forget(&old);
            }
            self.release_revoked(&tp);
            return match outcome {
                Outcome::Failed(error) if classify(&error) != ErrorClass::BadRecord => Err(error),
                _ => Ok(()),
            };
        }
        if state.epoch != epoch {
            return Ok(());
        }
        match outcome {
            Outcome::Committed { next_offset } => {
                state.expected = Some(next_offset);
                state.floor = state.floor.max(Some(next_offset));
                state.rewind_to = None;
                if self.commit_to_kafka {
                    let _ = self
                        .wiring
                        .commands
                        .send(Command::Commit(vec![(tp, next_offset)]));
                }
            }
            Outcome::Fenced { stored } => {
                let epoch = self.bump_epoch();
                let dropped = self.batcher.drop_partition(&tp);
                if let Some(state) = self.partitions.get_mut(&tp) {
                    state.epoch = epoch;
                    state.seeking = true;
                    state.expected = stored;
                    state.rewind_to = None;
                }
                tracing::info!(partition = %tp, ?stored, dropped = dropped + records, "Seeking to the stored offset after a fenced commit.");
                let _ = self.wiring.commands.send(Command::Seek {
                    tp,
                    offset: stored,
                    epoch,
                });
            }
            Outcome::Aborted => {}
            Outcome::Stopped { next_offset, error } => {
                if let Some(next_offset) = next_offset {
                    state.expected = Some(next_offset);
                    state.rewind_to = None;
                    if self.commit_to_kafka {
                        let _ = self
                            .wiring
                            .commands
                            .send(Command::Commit(vec![(tp.clone(), next_offset)]));
                    }
                }
                self.stop_partition(tp, &error)
            }
            Outcome::Failed(error) if classify(&error) == ErrorClass::BadRecord => {
                self.stop_partition(tp, &error)
            }
            Outcome::Failed(error) => return Err(error),
        }
        Ok(())
    }

    /// `on_error = "fail"`: the partition stops before the bad record; the others go on.
    pub(super) fn stop_partition(&mut self, tp: TopicPartition, error: &Error) {
        self.batcher.drop_partition(&tp);
        if let Some(state) = self.partitions.get_mut(&tp) {
            let newly = !state.is_stopped();
            state.stopped = true;
            if newly {
                self.count_stopped(1);
            }
        }
        tracing::error!(partition = %tp, %error, "Partition stopped by a bad record (on_error = \"fail\"); fix the data or the mapping and restart.");
        let _ = self.wiring.commands.send(Command::Pause(tp));
    }

    /// An unreadable record batch of `tp` at `offset`: records from there on are dropped (they
    /// come after it, in queue order), those buffered before it are still written, and fetching
    /// the partition stops. It counts as stopped until it is assigned again, which reads from
    /// the stored offset and so meets the batch again unless the data or the offset changed.
    pub(super) fn fence_partition(&mut self, tp: TopicPartition, offset: i64, reason: &str) {
        let Some(state) = self.partitions.get_mut(&tp) else {
            tracing::warn!(partition = %tp, %reason, "Unreadable batch of a partition not being read; ignored.");
            return;
        };
        let newly = !state.is_stopped();
        state.fence = Some(state.fence.map_or(offset, |f| f.min(offset)));
        if newly {
            self.count_stopped(1);
        }
        tracing::error!(partition = %tp, offset, %reason, "Partition stopped at an unreadable record batch.");
        let _ = self.wiring.commands.send(Command::Pause(tp));
    }

    pub(super) fn count_stopped(&self, delta: i64) {
        self.metrics.stopped_partitions.add(delta);
        self.health
            .set_stopped_partitions(self.metrics.stopped_partitions.get());
    }

    /// Bookkeeping when a partition's state goes away.
    pub(super) fn forget(&self, old: &PartitionState) {
        if old.is_stopped() {
            self.count_stopped(-1);
        }
    }

    pub(super) fn release_revoked(&mut self, tp: &TopicPartition) {
        for (waiting, _) in &mut self.pending_revokes {
            waiting.remove(tp);
        }
        let (done, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending_revokes)
            .into_iter()
            .partition(|(w, _)| w.is_empty());
        self.pending_revokes = pending;
        for (_, ack) in done {
            let _ = ack.send(());
        }
    }
}
