//! Back-pressure on the poll thread: while the pipeline holds too much, polling first holds off
//! (records wait in librdkafka's bounded queue), then, if the buffer stays full, every assigned
//! partition is paused while polling goes on, so the consumer stays in its group.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;

use super::Poller;
use crate::record::TopicPartition;

/// Over the buffer limit, polling stops for up to this long before fetching is paused.
const HOLD_MAX: Duration = Duration::from_secs(1);

impl Poller {
    /// Whether to skip polling for now: the buffer is full and has been for less than
    /// [`HOLD_MAX`]. Not polling leaves records in librdkafka's own queue (bounded by
    /// `queued.max.messages.kbytes`, after which it stops fetching by itself), ready the moment
    /// the writers make room. Pausing instead would throw that queue away, and librdkafka takes
    /// up to a second to fetch again after a resume: under a steady backlog that idles the
    /// writers. Pausing is for buffers that stay full (a database outage), where the consumer
    /// must go on polling to serve the group. A single hold lasts at most [`HOLD_MAX`], but with
    /// a database that is slow rather than stopped, holds keep alternating with polls, and a
    /// rebalance event queued behind librdkafka's prefetched records waits until those have
    /// been taken at the writers' pace (exactly-once is unaffected; rebalances are slower).
    pub(super) fn hold(&mut self) -> bool {
        if self.paused_at.is_some() || !self.flow.over() {
            self.held_since = None;
            return false;
        }
        let since = *self.held_since.get_or_insert_with(Instant::now);
        since.elapsed() < HOLD_MAX
    }

    /// Pauses every assigned partition while the pipeline holds too much, resumes (all but the
    /// stopped ones) once it has drained to half; re-pauses after a new assignment.
    pub(super) fn apply_flow_control(&mut self) {
        let generation = self.consumer.context().generation();
        let over = self.flow.over();
        let pause = match self.paused_at {
            None => over,
            Some(at) => at != generation && !self.flow.drained(),
        };
        if pause {
            if let Ok(assignment) = self.consumer.assignment() {
                match self.consumer.pause(&assignment) {
                    Ok(()) if self.paused_at.is_none() => {
                        tracing::info!("Too many records buffered; fetching paused until the database catches up.")
                    }
                    Ok(()) => {}
                    Err(error) => tracing::warn!(%error, "Cannot pause fetching."),
                }
            }
            self.paused_at = Some(generation);
        } else if self.paused_at.is_some() && self.flow.drained() {
            self.paused_at = None;
            let Ok(assignment) = self.consumer.assignment() else {
                return;
            };
            let mut resume = TopicPartitionList::new();
            for e in assignment.elements() {
                if !self
                    .stopped
                    .contains(&TopicPartition::new(e.topic(), e.partition()))
                {
                    resume.add_partition(e.topic(), e.partition());
                }
            }
            match self.consumer.resume(&resume) {
                Ok(()) => tracing::info!("Fetching resumed."),
                Err(error) => tracing::warn!(%error, "Cannot resume fetching."),
            }
        }
    }
}
