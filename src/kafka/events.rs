//! What the poll thread and the pipeline say to each other: events in fetch order one way,
//! commands the other.

use tokio::sync::oneshot;

use crate::record::{Record, TopicPartition};

/// What the poll thread tells the pipeline, in fetch order.
#[derive(Debug)]
pub enum Event {
    /// Records in poll order, and their [`Record::size`] in total.
    Records { records: Vec<Record>, bytes: usize },
    /// Newly assigned partitions with their stored next offset (`None`: never committed).
    Assigned(Vec<(TopicPartition, Option<i64>)>),
    /// These partitions are being taken away; the poll thread waits for `ack` before releasing.
    Revoked {
        partitions: Vec<TopicPartition>,
        ack: oneshot::Sender<()>,
    },
    /// A seek asked for with [`Command::Seek`] is done: later records of `tp` start at `offset`.
    Sought {
        tp: TopicPartition,
        offset: Option<i64>,
        epoch: u64,
    },
    /// librdkafka's consume positions of partitions whose position changed: past the last record
    /// taken, and past transaction markers and aborted records it skipped. Sent after every
    /// record taken before.
    Positions(Vec<(TopicPartition, i64)>),
    /// The stored offset of `tp` was outside its log and the partition now reads from `offset`
    /// (`kafka.offset_out_of_range`); the next commit may move the stored offset backwards.
    Reset { tp: TopicPartition, offset: i64 },
    /// The consumer cannot go on (for example a stored offset the broker no longer has).
    Fatal(String),
    /// A record batch of `tp` starting at `offset` cannot be read (librdkafka skips it): the
    /// pipeline writes what it holds of `tp` from before it, then stops the partition.
    Unreadable {
        tp: TopicPartition,
        offset: i64,
        reason: String,
    },
    /// As [`Event::Unreadable`], where librdkafka did not say which partition: the pipeline
    /// commits the records it holds, then fails with this reason. Nothing follows.
    Stop(String),
    /// The poll thread stopped fetching (shutdown); nothing follows.
    EndOfInput,
}

/// What the pipeline asks of the poll thread.
#[derive(Debug)]
pub enum Command {
    /// Re-read `tp` from `offset` (`None`: the reset policy); answered with [`Event::Sought`].
    Seek {
        tp: TopicPartition,
        offset: Option<i64>,
        epoch: u64,
    },
    /// Courtesy commit to Kafka of offsets already committed in Postgres, for lag tools.
    Commit(Vec<(TopicPartition, i64)>),
    /// Stop fetching a partition (stopped by a bad record) until it is reassigned.
    Pause(TopicPartition),
    /// The partition was assigned again and starts afresh: undo a [`Command::Pause`] of an
    /// earlier assignment (librdkafka keeps an application's pause across rebalances). Sent
    /// after any such pause, so a pause that crossed the rebalance is undone too.
    Resume(TopicPartition),
    /// Drain is over: leave the group and stop.
    Close,
}
