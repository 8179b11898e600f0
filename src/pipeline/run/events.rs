//! Events from the poll thread: records are buffered above each partition's floor, and
//! assignments, seeks, resets, revocations and stops change what the pipeline knows of a
//! partition.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use tokio::sync::oneshot;

use super::{PartitionState, Pipeline};
use crate::error::Error;
use crate::kafka::{Command, Event};
use crate::pipeline::batcher;
use crate::record::{Record, TopicPartition};

impl Pipeline {
    pub(super) fn on_event(&mut self, event: Option<Event>) -> Result<(), Error> {
        match event {
            Some(Event::Records { records, bytes }) => {
                self.flow.received(records.len(), bytes);
                self.on_records(records);
            }
            Some(Event::Assigned(assigned)) => {
                for (tp, stored) in assigned {
                    self.batcher.drop_partition(&tp);
                    let epoch = self.bump_epoch();
                    let state = PartitionState {
                        expected: stored,
                        floor: stored,
                        position: None,
                        epoch,
                        in_flight: None,
                        seeking: false,
                        revoked: false,
                        stopped: false,
                        fence: None,
                        rewind_to: None,
                    };
                    // After any pause this partition's earlier state may have sent.
                    let _ = self.wiring.commands.send(Command::Resume(tp.clone()));
                    if let Some(old) = self.partitions.insert(tp, state) {
                        self.forget(&old);
                    }
                }
            }
            Some(Event::Revoked { partitions, ack }) => self.on_revoked(partitions, ack),
            Some(Event::Positions(positions)) => self.on_positions(positions),
            Some(Event::Sought { tp, offset, epoch }) => {
                if let Some(state) = self
                    .partitions
                    .get_mut(&tp)
                    .filter(|s| s.epoch == epoch && s.seeking)
                {
                    state.seeking = false;
                    state.expected = offset;
                    state.floor = offset;
                    state.position = None;
                    tracing::info!(partition = %tp, ?offset, "Re-reading partition from its stored offset.");
                }
            }
            Some(Event::Reset { tp, offset }) => {
                let epoch = self.bump_epoch();
                self.batcher.drop_partition(&tp);
                if let Some(state) = self.partitions.get_mut(&tp) {
                    state.rewind_to = Some(offset);
                    state.floor = Some(offset);
                    state.position = None;
                    state.epoch = epoch;
                    state.seeking = false;
                }
            }
            Some(Event::Fatal(reason)) => return Err(Error::Fatal(reason)),
            Some(Event::Unreadable { tp, offset, reason }) => {
                self.fence_partition(tp, offset, &reason)
            }
            Some(Event::Stop(reason)) => {
                tracing::error!(%reason, "Stopping: committing the records read before.");
                self.stopped = Some(reason);
                self.input_done = true;
            }
            Some(Event::EndOfInput) | None => self.input_done = true,
        }
        Ok(())
    }

    /// Buffers records that continue their partition; drops stale ones (before the expected
    /// offset, or of a partition that is seeking, revoked or stopped). Works per run of records
    /// of one partition, so the per-record cost is a comparison, not a lookup.
    pub(super) fn on_records(&mut self, records: Vec<Record>) {
        let now = std::time::Instant::now();
        for mut run in batcher::runs(records) {
            let Some(tp) = run.first().map(|r| r.tp.clone()) else {
                continue;
            };
            self.metrics
                .records_consumed
                .with_label_values(&[&*tp.topic])
                .inc_by(run.len() as u64);
            let (from, fence) = match self.partitions.get(&tp) {
                Some(s) if !s.seeking && !s.revoked && !s.stopped => (s.floor, s.fence),
                _ => {
                    tracing::debug!(partition = %tp, records = run.len(), "Dropping records of a partition not being read.");
                    continue;
                }
            };
            // Strictly increasing from the floor: a run can hold a record fetched twice too.
            let mut floor = from.unwrap_or(i64::MIN);
            let in_order = run.iter().all(|r| {
                let ok = r.offset >= floor;
                floor = r.offset + 1;
                ok
            });
            if !in_order {
                let mut floor = from.unwrap_or(i64::MIN);
                let before = run.len();
                run.retain(|r| {
                    let keep = r.offset >= floor;
                    if keep {
                        floor = r.offset + 1;
                    }
                    keep
                });
                tracing::debug!(partition = %tp, dropped = before - run.len(), "Dropping records below the partition's floor (before the stored offset, or fetched twice).");
            }
            if let Some(fence) = fence {
                run.retain(|r| r.offset < fence);
            }
            if let (Some(last), Some(state)) = (run.last(), self.partitions.get_mut(&tp)) {
                state.floor = Some(last.offset + 1);
            }
            self.batcher.push_run(tp, run, now);
        }
    }

    /// Keeps librdkafka's positions; [`Self::dispatch`] moves a settled partition's stored
    /// offset there (see `PartitionState::position`), so lag reaches 0 on transactional topics.
    /// Positions come after every record taken before them, and after the event of any
    /// (re)start, so a position never describes an earlier start.
    pub(super) fn on_positions(&mut self, positions: Vec<(TopicPartition, i64)>) {
        for (tp, position) in positions {
            if let Some(state) = self.partitions.get_mut(&tp) {
                state.position = state.position.max(Some(position));
            }
        }
    }

    pub(super) fn on_revoked(&mut self, partitions: Vec<TopicPartition>, ack: oneshot::Sender<()>) {
        let mut waiting = HashSet::new();
        for tp in partitions {
            self.batcher.drop_partition(&tp);
            match self.partitions.get_mut(&tp) {
                Some(state) if state.in_flight.is_some() => {
                    if let Some((_, cancel, _)) = &state.in_flight {
                        cancel.store(true, Ordering::SeqCst);
                    }
                    state.revoked = true;
                    waiting.insert(tp);
                }
                _ => {
                    if let Some(old) = self.partitions.remove(&tp) {
                        self.forget(&old);
                    }
                }
            }
        }
        if waiting.is_empty() {
            let _ = ack.send(());
        } else {
            self.pending_revokes.push((waiting, ack));
        }
    }
}
