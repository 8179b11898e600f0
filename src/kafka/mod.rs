//! Kafka: consumer construction, rebalance handling driven by offsets stored in Postgres, and the
//! poll thread that turns librdkafka messages into owned [`Record`]s for the pipeline.

mod consumer;
mod context;
mod fetch_queue;
mod flow;
mod out_of_range;
mod poller;
mod record;
mod watch;

pub use consumer::build_consumer;
pub use context::{Command, Event, SinkContext};
pub use flow::FlowControl;
pub use poller::{spawn_poller, PollerHandle};
pub use record::{Record, TopicPartition};
