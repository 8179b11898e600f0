//! Kafka: consumer construction, rebalance handling driven by offsets stored in Postgres, and the
//! poll thread that turns librdkafka messages into owned [`crate::record::Record`]s for the
//! pipeline.
//!
//! - `consumer`: the librdkafka properties the guarantees depend on.
//! - `context`: the consumer context: rebalances (`assign`: start offsets read, or resolved and
//!   stored), the outbox of records taken and events (`outbox`), and the positions the poll
//!   thread has taken (`positions`).
//! - `events`: what the poll thread and the pipeline say to each other.
//! - `poller`: the poll thread; `fetch_queue`: batch reads of routed partitions; `flow`: the
//!   memory bound between poll thread and pipeline.
//! - `out_of_range`: offset-out-of-range answers (policy, or a refetch from the position).
//! - `watch`: consume positions for the pipeline, stalled partitions, log ends of partitions
//!   not being fetched.
//! - `stored`: the stored offsets assignment reads, as a trait the sink's store is wired into.
//! - `record`: the copy out of librdkafka's buffers into owned [`crate::record::Record`]s.

mod consumer;
mod context;
mod events;
mod fetch_queue;
mod flow;
mod out_of_range;
mod poller;
mod record;
mod stored;
mod watch;

pub use consumer::build_consumer;
pub use context::SinkContext;
pub use events::{Command, Event};
pub use flow::FlowControl;
pub use poller::spawn_poller;
pub use stored::StoredOffsets;
