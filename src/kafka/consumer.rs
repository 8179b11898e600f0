//! Builds the group consumer with the properties the exactly-once contract depends on.

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::context::SinkContext;
use crate::config::Config;
use crate::error::Error;

/// Creates the consumer and subscribes it to every mapped topic.
///
/// Offsets are never committed automatically and never read from Kafka: the rebalance handler
/// assigns each partition at the offset stored in Postgres. `auto.offset.reset=error` makes a
/// stored offset that the broker no longer has (retention, recreated topic) a loud error rather
/// than a silent jump.
pub fn build_consumer(
    config: &Config,
    context: SinkContext,
) -> Result<BaseConsumer<SinkContext>, Error> {
    let mut client = ClientConfig::new();
    // User properties first, so that the connector's own settings below always win; validation
    // already refuses the owned keys, this order is a second line of defence.
    for (key, value) in &config.kafka.properties {
        client.set(key, value);
    }
    client
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("group.id", &config.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        .set_log_level(RDKafkaLogLevel::Warning);
    if !config.kafka.properties.contains_key("client.id") {
        client.set("client.id", "kafka-pg-sink");
    }
    // librdkafka's prefetch queue is part of the memory bound (its default is 64 MiB).
    if !config
        .kafka
        .properties
        .contains_key("queued.max.messages.kbytes")
    {
        client.set("queued.max.messages.kbytes", "16384");
    }
    // Statistics feed the log-end and lag metrics without extra broker requests.
    if !config
        .kafka
        .properties
        .contains_key("statistics.interval.ms")
    {
        client.set("statistics.interval.ms", "5000");
    }
    if let Some(id) = config.group_instance_id() {
        client.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<SinkContext> = client.create_with_context(context)?;
    let topics = config.topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}
