//! Copies out of librdkafka's buffers into owned [`Record`]s, so no record the pipeline holds
//! keeps a librdkafka message alive.

use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::fetch_queue::Fetched;
use crate::record::{Record, TopicPartition};

/// Copies a message out of librdkafka's buffer; `tp` is the caller's shared topic name.
pub(super) fn from_message(message: &BorrowedMessage<'_>, tp: TopicPartition) -> Record {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Record::new(
        tp,
        message.offset(),
        message.timestamp().to_millis(),
        message.key(),
        message.payload(),
        headers,
    )
}

/// Copies a message taken from the fetch queue; `tp` is the caller's shared topic name.
pub(super) fn from_fetched(message: &Fetched, tp: TopicPartition) -> Record {
    Record::new(
        tp,
        message.offset(),
        message.timestamp_ms(),
        message.key(),
        message.payload(),
        message.headers(),
    )
}
