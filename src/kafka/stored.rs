//! Where assigned partitions resume: the offsets committed together with the rows. The consumer
//! does not know where they are kept; `app` wires in the sink's offset store.

use std::collections::HashMap;

use futures_util::future::BoxFuture;

use crate::error::Error;
use crate::record::TopicPartition;

/// The stored next offsets the rebalance callback reads on assignment, and stores for
/// partitions that have none.
pub trait StoredOffsets: Send + Sync {
    /// Stored next offsets for these partitions; absent means never committed.
    fn load<'a>(
        &'a self,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, Result<HashMap<TopicPartition, i64>, Error>>;

    /// Stores where partitions without a stored offset start, unless a row appeared meanwhile
    /// (another replica stored or committed first: its row stays).
    fn insert_starts<'a>(
        &'a self,
        starts: &'a [(TopicPartition, i64)],
    ) -> BoxFuture<'a, Result<(), Error>>;
}
