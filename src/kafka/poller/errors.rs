//! Consumer errors: which stop the consumer (fatal), which stop one partition (a record batch
//! librdkafka would skip), which are offsets out of range, and which librdkafka retries itself.

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::Poller;
use crate::kafka::events::Event;
use crate::record::TopicPartition;

/// Where a per-partition consumer error happened, as librdkafka reports it.
pub(super) struct ErrorAt {
    pub(super) tp: TopicPartition,
    pub(super) offset: i64,
    /// Partition, offset and librdkafka's text, for messages.
    pub(super) detail: String,
}

impl Poller {
    /// Handles a consumer error (`at`: where, when librdkafka says); false when the consumer
    /// must stop.
    pub(super) fn on_error(&mut self, error: &KafkaError, at: Option<ErrorAt>) -> bool {
        if let Some(at) = &at {
            // librdkafka's batch read moves the consume position past an error's offset as if a
            // record were there (its record path checks the error, the batch path does not): the
            // partition's position is not trusted again until a record arrives.
            self.consumer.context().restarted(&self.consumer, [&at.tp]);
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) {
            return crate::kafka::out_of_range::handle(
                &self.consumer,
                at.as_ref().map(|at| &at.tp),
            );
        }
        let detail = at.as_ref().map(|at| at.detail.as_str());
        if let Some(fatal) = fatal_reason(error, detail) {
            self.consumer.context().send(Event::Fatal(fatal));
            return false;
        }
        if let Some(reason) = unreadable_batch(error, detail) {
            let context = self.consumer.context();
            return match at {
                // Only this partition stops; the pipeline drops what comes after the batch.
                // (librdkafka 2.12 misreads the rest of a fetch after a checksum failure and
                // reports more errors with nonsense offsets: the pipeline keeps the lowest.)
                Some(ErrorAt { tp, offset, .. }) => {
                    context.send(Event::Unreadable { tp, offset, reason });
                    true
                }
                _ => {
                    context.send(Event::Stop(reason));
                    false
                }
            };
        }
        tracing::warn!(%error, detail, "Kafka consumer error; librdkafka retries by itself.");
        true
    }
}

/// The errors a consumer cannot recover from, with what the operator should do.
fn fatal_reason(error: &KafkaError, detail: Option<&str>) -> Option<String> {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::Fatal) => Some(format!(
            "fatal Kafka client error: {error}{}",
            detail.map_or_else(String::new, |d| format!(" ({d})"))
        )),
        _ => None,
    }
}

/// A record batch that fails its checksum (`check.crcs`) or cannot be decompressed: librdkafka
/// reports it once, then skips it and goes on with the records after it. Going on would commit
/// offsets past records that never reached Postgres, so the partition stops there instead: what
/// was read before the batch is written (the stored offset ends at or before it), nothing after.
fn unreadable_batch(error: &KafkaError, detail: Option<&str>) -> Option<String> {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::BadMessage
            | RDKafkaErrorCode::BadCompression
            | RDKafkaErrorCode::NotImplemented,
        ) => Some(format!(
            "a record batch cannot be read: {error}{}. librdkafka would skip it; the partition \
             stops here instead, so that none of its records is lost: the stored offset stays at \
             or before the batch. Check the topic's data; to skip the batch deliberately, stop \
             the connector and move the stored offset past it with `kafka-pg-sink offsets set`.",
            detail.map_or_else(String::new, |d| format!(" ({d})"))
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consumption(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::MessageConsumption(code)
    }

    #[test]
    fn only_batches_librdkafka_skips_stop_a_partition_and_the_message_says_where() {
        for code in [
            RDKafkaErrorCode::BadMessage,
            RDKafkaErrorCode::BadCompression,
            RDKafkaErrorCode::NotImplemented,
        ] {
            let reason = unreadable_batch(&consumption(code), Some("t/3 at offset 200: why"))
                .unwrap_or_else(|| panic!("{code:?} must stop the partition"));
            assert!(reason.contains("t/3 at offset 200: why"), "{reason}");
            assert!(reason.contains("offsets set"), "{reason}");
            assert!(fatal_reason(&consumption(code), None).is_none());
        }
        // Transient errors are retried by librdkafka and skip nothing.
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(
                unreadable_batch(&consumption(code), None).is_none(),
                "{code:?}"
            );
            assert!(fatal_reason(&consumption(code), None).is_none(), "{code:?}");
        }
        assert!(fatal_reason(&consumption(RDKafkaErrorCode::Fatal), None).is_some());
    }
}
