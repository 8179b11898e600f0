//! Stored offsets outside a partition's log: found and handled by `kafka.offset_out_of_range`.
//!
//! The consumer runs with `auto.offset.reset=error`, so librdkafka never jumps on its own: it
//! reports an error, and this module finds which partitions are out of range (their next offset
//! is below the log start or above the log end) and fails or moves them, loudly.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::context::SinkContext;
use super::events::Event;
use crate::config::OutOfRange;
use crate::record::TopicPartition;

const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// Applies the policy to the partitions whose position is outside their log; a partition the
/// error named (`at`) that is inside its log is fetched again from its position, as is every
/// assigned partition when the error named none and none is outside: librdkafka stops fetching a
/// partition after such an error, and a broker can answer out-of-range for an offset it has
/// (a transient answer, a new leader after an unclean election). False when the consumer must
/// stop.
pub fn handle(consumer: &BaseConsumer<SinkContext>, at: Option<&TopicPartition>) -> bool {
    let context = consumer.context();
    let mut found = Vec::new();
    let mut inside = Vec::new();
    for (tp, position) in context.positions() {
        if at.is_some_and(|at| *at != tp) {
            continue;
        }
        match consumer.fetch_watermarks(&tp.topic, tp.partition, WATERMARK_TIMEOUT) {
            Ok((low, high)) if position < low || position > high => {
                found.push((tp, position, low, high))
            }
            Ok(_) => inside.push((tp, position)),
            Err(error) => {
                tracing::warn!(%error, partition = %tp, "Cannot read the partition's log bounds; fetching it again from its position.");
                inside.push((tp, position));
            }
        }
    }
    if at.is_some() && found.is_empty() && inside.is_empty() {
        // Not a partition with a known position (assigned without a stored offset): the reset
        // policy's position is where it starts.
        tracing::warn!(partition = ?at, "Offset out of range for a partition with no known position; it restarts from the reset policy.");
    }
    for (tp, position) in inside {
        tracing::warn!(partition = %tp, position, "The broker answered offset out of range for a position inside the log; fetching again from it.");
        context
            .metrics()
            .offset_resets
            .with_label_values(&[&*tp.topic, &tp.partition.to_string(), "refetch"])
            .inc();
        if let Err(error) = restart_at(consumer, &tp, position) {
            tracing::warn!(%error, partition = %tp, "Cannot restart fetching; the stall check retries.");
        }
    }
    if found.is_empty() {
        return true;
    }
    let policy = context.out_of_range();
    if policy == OutOfRange::Fail {
        let list: Vec<String> = found
            .iter()
            .map(|(tp, pos, low, high)| {
                format!("{tp} stored offset {pos} is outside the log [{low}, {high}]")
            })
            .collect();
        context.send(Event::Fatal(format!(
            "{}. Retention removed the data or the topic was recreated. Nothing was skipped; set \
             kafka.offset_out_of_range = \"earliest\" or \"latest\", or move the offset with `kafka-pg-sink offsets set`.",
            list.join("; ")
        )));
        return false;
    }
    for (tp, position, low, high) in found {
        let target = if policy == OutOfRange::Earliest {
            low
        } else {
            high
        };
        let label = if policy == OutOfRange::Earliest {
            "earliest"
        } else {
            "latest"
        };
        tracing::error!(
            partition = %tp, stored_offset = position, log_start = low, log_end = high, new_offset = target,
            "Stored offset is outside the partition's log; moving to the {label} offset as configured. Records between are not applied."
        );
        context
            .metrics()
            .offset_resets
            .with_label_values(&[&*tp.topic, &tp.partition.to_string(), label])
            .inc();
        if let Err(error) = restart_at(consumer, &tp, target) {
            tracing::warn!(%error, partition = %tp, "Cannot move the partition; retrying on the next error.");
            continue;
        }
        context.set_position(&tp, target);
        if !context.send(Event::Reset {
            tp: TopicPartition::new(&*tp.topic, tp.partition),
            offset: target,
        }) {
            return false;
        }
    }
    true
}

/// Points a partition in librdkafka's error state at `offset`. A plain seek is refused in that
/// state, so the partition is assigned again: alone with the cooperative protocol, or with the
/// whole assignment (the others at their known positions) with the eager one.
pub(super) fn restart_at(
    consumer: &BaseConsumer<SinkContext>,
    tp: &TopicPartition,
    offset: i64,
) -> KafkaResult<()> {
    if consumer
        .seek(
            &tp.topic,
            tp.partition,
            Offset::Offset(offset),
            WATERMARK_TIMEOUT,
        )
        .is_ok()
    {
        consumer.context().restarted(consumer, [tp]);
        return Ok(());
    }
    let mut one = TopicPartitionList::new();
    one.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset))?;
    if matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    ) {
        consumer.incremental_unassign(&one)?;
        consumer.context().restarted(consumer, [tp]);
        consumer.context().route(consumer, &one);
        return consumer.incremental_assign(&one);
    }
    let known: std::collections::HashMap<TopicPartition, i64> =
        consumer.context().positions().into_iter().collect();
    let mut all = TopicPartitionList::new();
    for e in consumer.assignment()?.elements() {
        let this = TopicPartition::new(e.topic(), e.partition());
        let start = if &this == tp {
            Offset::Offset(offset)
        } else {
            known
                .get(&this)
                .map_or_else(|| consumer.context().reset_offset(), |&o| Offset::Offset(o))
        };
        all.add_partition_offset(e.topic(), e.partition(), start)?;
    }
    consumer.context().route(consumer, &all);
    let restarted: Vec<TopicPartition> = all
        .elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect();
    consumer.context().restarted(consumer, &restarted);
    consumer.assign(&all)
}
