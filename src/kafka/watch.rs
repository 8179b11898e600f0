//! Watching the assigned partitions from the poll thread: librdkafka's consume positions go to the
//! pipeline (so a partition that ends in transaction markers or aborted records gets its stored
//! offset moved past them), stalled partitions are found and restarted, and the log end of
//! partitions that are not being fetched (paused, stopped) is read from the broker so that lag
//! stays true in every state.
//!
//! Invariant: a position is sent only after every record taken before it (the context flushes
//! first), from the poll thread, in the same order as seeks and assignments; only once a record
//! of the partition has been taken since its last (re)start or per-partition error, or the
//! position has moved since then (librdkafka can still report the position of an earlier start,
//! and its batch read moves the position past an error's offset as if a record were there: seen
//! in the chaos suite as one record skipped after a fetch timeout); and never past the log end
//! the broker last reported. So the pipeline never sees a position that runs ahead of the records
//! it was given, other than by records librdkafka skips on purpose (transaction markers, aborted
//! records). What this leaves out: a restarted partition whose first marker takes librdkafka to
//! exactly the position it reported before the restart keeps that lag until its next record.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Offset;

use super::context::{Seen, SinkContext};
use super::events::Event;
use crate::record::TopicPartition;

/// How often librdkafka's positions are read and sent when they changed.
const POSITIONS_EVERY: Duration = Duration::from_secs(1);
/// How often partitions are checked for stalls.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a partition may be without progress, with evidence that it should progress, before
/// it counts as stalled: several statistics intervals, and well past librdkafka's own retries.
pub const STALL_AFTER: Duration = Duration::from_secs(30);
/// How often the log end of partitions that are not being fetched is asked of the broker, and
/// how many partitions at most per round (each answer is waited for on the poll thread).
const LOG_END_EVERY: Duration = Duration::from_secs(15);
const LOG_END_PER_ROUND: usize = 32;
const LOG_END_TIMEOUT: Duration = Duration::from_secs(2);

/// A partition's progress as last checked.
#[derive(Clone, Copy, Debug)]
struct Progress {
    position: i64,
    since: Instant,
}

/// The watch's state, owned by the poll thread.
pub struct Watch {
    stall_after: Duration,
    sent: HashMap<TopicPartition, i64>,
    progress: HashMap<TopicPartition, Progress>,
    positions_at: Instant,
    checked_at: Instant,
    log_end_at: Instant,
    /// Round-robin start among the partitions whose log end is asked for.
    log_end_next: usize,
}

/// Why a partition counts as stalled, if it does: assigned, not paused by the connector, its
/// position unchanged for `stall_after`, and either librdkafka is not fetching it or the broker
/// has records past the position.
pub fn stall_reason(
    position: i64,
    unchanged_for: Duration,
    stall_after: Duration,
    seen: Option<Seen>,
) -> Option<String> {
    let seen = seen?;
    if unchanged_for < stall_after {
        return None;
    }
    if !seen.fetching {
        return Some(format!(
            "not fetched by librdkafka for {}s at offset {position}",
            unchanged_for.as_secs()
        ));
    }
    (seen.log_end > position).then(|| {
        format!(
            "no progress for {}s at offset {position} while the log ends at {}",
            unchanged_for.as_secs(),
            seen.log_end
        )
    })
}

impl Watch {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            stall_after: STALL_AFTER,
            sent: HashMap::new(),
            progress: HashMap::new(),
            positions_at: now,
            checked_at: now,
            log_end_at: now,
            log_end_next: 0,
        }
    }

    /// Runs what is due. `held`: the connector itself holds fetching (flow control); `stopped`:
    /// partitions paused by the connector. False when the pipeline is gone.
    pub fn tick(
        &mut self,
        consumer: &BaseConsumer<SinkContext>,
        held: bool,
        stopped: &HashSet<TopicPartition>,
    ) -> bool {
        let librdkafka = if self.positions_at.elapsed() >= POSITIONS_EVERY {
            self.positions_at = Instant::now();
            let positions = app_positions(consumer);
            if !self.send_changed(consumer.context(), &positions) {
                return false;
            }
            Some(positions)
        } else {
            None
        };
        if self.checked_at.elapsed() >= CHECK_EVERY {
            self.checked_at = Instant::now();
            let positions = librdkafka.unwrap_or_else(|| app_positions(consumer));
            self.check_stalls(consumer, &positions, held, stopped);
        }
        if self.log_end_at.elapsed() >= LOG_END_EVERY {
            self.log_end_at = Instant::now();
            self.refresh_log_ends(consumer, held, stopped);
        }
        true
    }

    /// Sends the positions that changed since they were last sent.
    fn send_changed(
        &mut self,
        context: &SinkContext,
        positions: &HashMap<TopicPartition, i64>,
    ) -> bool {
        self.sent.retain(|tp, _| positions.contains_key(tp));
        let changed: Vec<(TopicPartition, i64)> = positions
            .iter()
            .filter(|(tp, at)| {
                self.sent.get(*tp) != Some(*at)
                    && context.trusts(tp, **at)
                    // Never past the log end the broker last reported (a position from nowhere).
                    && context.seen(tp).is_some_and(|seen| **at <= seen.log_end)
            })
            .map(|(tp, at)| (tp.clone(), *at))
            .collect();
        if changed.is_empty() {
            return true;
        }
        for (tp, at) in &changed {
            self.sent.insert(tp.clone(), *at);
        }
        context.send(Event::Positions(changed))
    }

    fn check_stalls(
        &mut self,
        consumer: &BaseConsumer<SinkContext>,
        librdkafka: &HashMap<TopicPartition, i64>,
        held: bool,
        stopped: &HashSet<TopicPartition>,
    ) {
        let context = consumer.context();
        let taken = context.positions();
        let now = Instant::now();
        self.progress
            .retain(|tp, _| taken.iter().any(|(t, _)| t == tp));
        let mut stalled = Vec::new();
        for (tp, next) in taken {
            // librdkafka's position also moves past transaction markers; ours only past records.
            let position = librdkafka.get(&tp).copied().unwrap_or(next).max(next);
            let progress = self.progress.entry(tp.clone()).or_insert(Progress {
                position,
                since: now,
            });
            if progress.position != position || held || stopped.contains(&tp) {
                *progress = Progress {
                    position,
                    since: now,
                };
                continue;
            }
            let unchanged = now.duration_since(progress.since);
            if let Some(reason) =
                stall_reason(position, unchanged, self.stall_after, context.seen(&tp))
            {
                tracing::error!(partition = %tp, %reason, "Partition stalled; restarting its fetching from offset {next}.");
                context
                    .metrics()
                    .stall_restarts
                    .with_label_values(&[&*tp.topic, &tp.partition.to_string()])
                    .inc();
                if let Err(error) = super::out_of_range::restart_at(consumer, &tp, next) {
                    tracing::warn!(%error, partition = %tp, "Cannot restart the partition's fetching; retrying at the next check.");
                }
                // Checked again a whole window later.
                progress.since = now;
                stalled.push(format!("{tp}: {reason}"));
            }
        }
        context
            .metrics()
            .stalled_partitions
            .set(stalled.len() as i64);
        context.set_stalled(stalled);
    }

    /// Statistics stop describing a partition's log end while it is not fetched (paused by
    /// flow control, stopped by a bad record): ask the broker, a bounded number per round.
    fn refresh_log_ends(
        &mut self,
        consumer: &BaseConsumer<SinkContext>,
        held: bool,
        stopped: &HashSet<TopicPartition>,
    ) {
        let context = consumer.context();
        let mut idle: Vec<TopicPartition> = context
            .positions()
            .into_iter()
            .map(|(tp, _)| tp)
            .filter(|tp| {
                held || stopped.contains(tp) || context.seen(tp).is_some_and(|s| !s.fetching)
            })
            .collect();
        if idle.is_empty() {
            return;
        }
        idle.sort_unstable_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let start = self.log_end_next % idle.len();
        let round = idle.len().min(LOG_END_PER_ROUND);
        self.log_end_next = start + round;
        for tp in idle.iter().cycle().skip(start).take(round) {
            match consumer.fetch_watermarks(&tp.topic, tp.partition, LOG_END_TIMEOUT) {
                Ok((_, high)) if high >= 0 => context.metrics().set_log_end(tp, high),
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, partition = %tp, "Cannot read the log end of a partition not being fetched.")
                }
            }
        }
    }
}

/// librdkafka's consume positions of the assigned partitions that have one.
fn app_positions(consumer: &BaseConsumer<SinkContext>) -> HashMap<TopicPartition, i64> {
    let Ok(list) = consumer.position() else {
        return HashMap::new();
    };
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(at) if at >= 0 => {
                Some((TopicPartition::new(e.topic(), e.partition()), at))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(30);

    #[test]
    fn a_partition_is_stalled_only_after_the_window_and_with_evidence() {
        let fetching = |log_end| {
            Some(Seen {
                fetching: true,
                log_end,
            })
        };
        let not_fetching = Some(Seen {
            fetching: false,
            log_end: 100,
        });
        let long = Duration::from_secs(31);
        // Caught up and fetched: idle, not stalled, however long.
        assert_eq!(stall_reason(100, long, AFTER, fetching(100)), None);
        // Behind, but not for long enough.
        assert_eq!(
            stall_reason(50, Duration::from_secs(29), AFTER, fetching(100)),
            None
        );
        // Behind for the whole window.
        let reason = stall_reason(50, long, AFTER, fetching(100)).unwrap();
        assert!(
            reason.contains("offset 50") && reason.contains("ends at 100"),
            "{reason}"
        );
        // librdkafka stopped fetching (out-of-range with auto.offset.reset=error): stalled even
        // when the last known log end says it is caught up, since that log end is stale.
        let reason = stall_reason(100, long, AFTER, not_fetching).unwrap();
        assert!(reason.contains("not fetched"), "{reason}");
        // No statistics yet: nothing to go on.
        assert_eq!(stall_reason(50, long, AFTER, None), None);
    }
}
