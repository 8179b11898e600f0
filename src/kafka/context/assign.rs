//! Rebalances: assigned partitions start at the offsets stored with the rows (a partition with
//! none starts where `auto_offset_reset` says, resolved and stored first); revoked partitions are
//! released only after the pipeline has dropped or finished their work.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, RebalanceProtocol};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

use super::SinkContext;
use crate::config::OffsetReset;
use crate::error::{classify, Backoff, Error, ErrorClass};
use crate::kafka::events::Event;
use crate::record::TopicPartition;

/// Longest wait for a partition's log bounds at assignment.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`SinkContext::with_retries`] does, as logged, and its `retries_total` cause.
const READ_OFFSETS: (&str, &str) = ("read the stored offsets", "offsets_read");
const STORE_STARTS: (&str, &str) = ("store the start offsets", "offsets_store");

impl SinkContext {
    /// Runs `op` against the offset store, retrying with backoff while it fails with an error
    /// [`classify`] calls transient (named in the log and the retry metric); `Err`
    /// with the reason for any other error, `Ok(None)` on shutdown.
    fn with_retries<T, F, Fut>(
        &self,
        (what, cause): (&str, &str),
        mut op: F,
    ) -> Result<Option<T>, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        loop {
            match self.runtime.block_on(op()) {
                Ok(value) => return Ok(Some(value)),
                Err(_) if self.token.is_cancelled() => return Ok(None),
                Err(error) if classify(&error) == ErrorClass::Transient => {
                    tracing::warn!(%error, "Cannot {what} of assigned partitions; retrying.");
                    self.metrics.retries.with_label_values(&[cause]).inc();
                    std::thread::sleep(backoff.next_delay());
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Where partitions with no stored offset start: the log start or end as `auto_offset_reset`
    /// says, resolved now and stored (insert-if-absent, so a replica that stored first wins), so
    /// that a restart, after a crash before the first commit, resumes there and not at a later
    /// log end. Partitions whose log bounds cannot be read keep `None` (the reset policy).
    fn store_starts(
        &self,
        consumer: &BaseConsumer<Self>,
        stored: &mut HashMap<TopicPartition, i64>,
        partitions: &[TopicPartition],
    ) -> Result<(), Error> {
        let mut starts = Vec::new();
        for tp in partitions.iter().filter(|tp| !stored.contains_key(*tp)) {
            match consumer.fetch_watermarks(&tp.topic, tp.partition, WATERMARK_TIMEOUT) {
                Ok((low, high)) => starts.push((
                    tp.clone(),
                    match self.reset {
                        OffsetReset::Earliest => low,
                        OffsetReset::Latest => high,
                    },
                )),
                Err(error) => {
                    tracing::warn!(%error, partition = %tp, "Cannot read the partition's log bounds; it starts from auto_offset_reset without storing where.")
                }
            }
        }
        if starts.is_empty() {
            return Ok(());
        }
        if self
            .with_retries(STORE_STARTS, || self.store.insert_starts(&starts))?
            .is_none()
        {
            return Ok(());
        }
        let fresh: Vec<TopicPartition> = starts.into_iter().map(|(tp, _)| tp).collect();
        if let Some(found) = self.with_retries(READ_OFFSETS, || self.store.load(&fresh))? {
            for (tp, start) in found {
                tracing::info!(partition = %tp, start, "No stored offset: starting at the {:?} offset, stored.", self.reset);
                stored.insert(tp, start);
            }
        }
        Ok(())
    }

    pub(super) fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let partitions: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        let Some(stored) = self.load_starts(consumer, &partitions) else {
            return;
        };
        let mut assigned = Vec::with_capacity(partitions.len());
        for tp in partitions {
            let start = stored.get(&tp).copied();
            self.start_partition(tpl, &tp, start);
            assigned.push((tp, start));
        }
        self.restarted(consumer, assigned.iter().map(|(tp, _)| tp));
        self.metrics.rebalances.with_label_values(&["assign"]).inc();
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.metrics.assigned_partitions.add(assigned.len() as i64);
        self.health.set_joined(true);
        if !self.send(Event::Assigned(assigned)) {
            return;
        }
        self.route(consumer, tpl);
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
            _ => consumer.assign(tpl),
        };
        if let Err(error) = result {
            tracing::error!(%error, "Failed to assign partitions.");
        }
    }

    /// The stored next offset of each assigned partition, with the start positions of those that
    /// had none stored first. None (after a fatal event, or while shutting down) when the
    /// partitions must not be consumed.
    fn load_starts(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &[TopicPartition],
    ) -> Option<HashMap<TopicPartition, i64>> {
        let loaded = self
            .with_retries(READ_OFFSETS, || self.store.load(partitions))
            .and_then(|stored| match stored {
                Some(mut stored) => self
                    .store_starts(consumer, &mut stored, partitions)
                    .map(|()| Some(stored)),
                None => Ok(None),
            });
        match loaded {
            Ok(Some(stored)) => Some(stored),
            Ok(None) => {
                tracing::warn!(
                    "Shutting down during assignment; not consuming the new partitions."
                );
                None
            }
            Err(error) => {
                self.send(Event::Fatal(format!(
                    "cannot read or store the offsets of the assigned partitions: {error}"
                )));
                None
            }
        }
    }

    /// Sets `tp` to start at its stored offset (`start`; the reset policy without one) and
    /// records it as assigned, with its position and committed-offset gauge.
    fn start_partition(
        &self,
        tpl: &mut TopicPartitionList,
        tp: &TopicPartition,
        start: Option<i64>,
    ) {
        let offset = start.map_or(self.reset_offset(), Offset::Offset);
        if let Err(error) = tpl.set_partition_offset(&tp.topic, tp.partition, offset) {
            tracing::error!(%error, partition = %tp, "Cannot set start offset.");
        }
        tracing::info!(partition = %tp, stored_offset = ?start, "Partition assigned.");
        self.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tp.clone());
        let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
        match start {
            Some(stored) => {
                self.metrics.set_committed(tp, stored);
                positions.insert(tp.clone(), stored);
            }
            None => {
                positions.remove(tp);
            }
        }
    }

    pub(super) fn on_revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let partitions: Vec<TopicPartition> = tpl
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        tracing::info!(
            count = partitions.len(),
            lost = consumer.assignment_lost(),
            "Partitions revoked."
        );
        self.metrics.rebalances.with_label_values(&["revoke"]).inc();
        self.metrics
            .assigned_partitions
            .sub(partitions.len() as i64);
        {
            let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
            let mut positions = self.positions.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
            for tp in &partitions {
                assigned.remove(tp);
                positions.remove(tp);
                seen.remove(tp);
                fresh.remove(tp);
            }
        }
        let forget = partitions.clone();
        if !self.closing.load(Ordering::SeqCst) {
            let (ack, done) = oneshot::channel();
            if self.send(Event::Revoked { partitions, ack }) {
                // The pipeline acknowledges once no batch of these partitions can still commit.
                let _ = done.blocking_recv();
            }
        }
        // After the acknowledgement, so a batch finishing meanwhile cannot bring a series back.
        for tp in &forget {
            self.metrics.forget_partition(tp);
        }
        let result = match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
            _ => consumer.unassign(),
        };
        if let Err(error) = result {
            tracing::error!(%error, "Failed to unassign partitions.");
        }
    }
}
