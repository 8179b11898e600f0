//! The owned record and its partition, shared by every stage from the poll thread to the
//! database: they hold no librdkafka buffer (the copy out of librdkafka is in `kafka`).

use std::fmt;
use std::sync::Arc;

/// A topic and partition; the topic name is shared, not copied per record.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Debug for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// One Kafka record, owned, detached from librdkafka's buffers. Key and value share one
/// allocation (one `malloc` and one `free` per record on the hot path, not two).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub tp: TopicPartition,
    pub offset: i64,
    /// Milliseconds since the Unix epoch, when the broker or producer set one.
    pub timestamp_ms: Option<i64>,
    /// The key's bytes, then the value's.
    bytes: Box<[u8]>,
    /// Length of the key at the start of `bytes`; `None` when the record has no key.
    key_len: Option<usize>,
    /// False for a tombstone (no value).
    has_value: bool,
    /// Headers in order; a header may have no value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// A record from its parts (copied); a `None` value is a tombstone.
    pub fn new(
        tp: TopicPartition,
        offset: i64,
        timestamp_ms: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Vec<(String, Option<Vec<u8>>)>,
    ) -> Self {
        let (k, v) = (key.unwrap_or_default(), value.unwrap_or_default());
        let mut bytes = Vec::with_capacity(k.len() + v.len());
        bytes.extend_from_slice(k);
        bytes.extend_from_slice(v);
        Self {
            tp,
            offset,
            timestamp_ms,
            bytes: bytes.into_boxed_slice(),
            key_len: key.map(<[u8]>::len),
            has_value: value.is_some(),
            headers,
        }
    }

    pub fn key(&self) -> Option<&[u8]> {
        self.key_len.map(|n| &self.bytes[..n])
    }

    /// `None` for a tombstone.
    pub fn value(&self) -> Option<&[u8]> {
        self.has_value
            .then(|| &self.bytes[self.key_len.unwrap_or(0)..])
    }

    /// Bytes this record holds in memory, for the `max_bytes` limit.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        self.bytes.len() + headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_keep_their_absence_and_their_bytes() {
        let tp = TopicPartition::new("t", 0);
        for (key, value) in [
            (None, None),
            (Some(&b""[..]), None),
            (None, Some(&b""[..])),
            (Some(&b"k"[..]), Some(&b"{\"a\":1}"[..])),
            (None, Some(&b"v"[..])),
            (Some(&b"key"[..]), None),
        ] {
            let r = Record::new(tp.clone(), 1, None, key, value, Vec::new());
            assert_eq!((r.key(), r.value()), (key, value));
            assert_eq!(
                r.size(),
                key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)
            );
        }
    }
}
