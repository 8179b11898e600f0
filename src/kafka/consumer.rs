//! Builds the group consumer with the properties the exactly-once contract depends on.

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::context::SinkContext;
use crate::config::Config;
use crate::error::Error;

/// librdkafka properties the connector sets unless `kafka.properties` sets them.
const DEFAULTS: &[(&str, &str)] = &[
    ("client.id", "kafka-pg-sink"),
    // The prefetch queue is part of the memory bound (librdkafka's default is 64 MiB). With
    // the pipeline's own buffer behind it, 8 MiB keeps the writers fed at full speed.
    ("queued.max.messages.kbytes", "8192"),
    // When that queue is full librdkafka waits this long before fetching again (default 1 s,
    // which would leave the writers idle once the connector has caught up with the queue).
    ("fetch.queue.backoff.ms", "100"),
    // Longest a broker may hold a fetch that finds no data. Kafka answers as soon as data
    // arrives, so this costs nothing there; brokers that hold the fetch for the whole time
    // (librdkafka's mock cluster) would otherwise add up to 500 ms of latency.
    ("fetch.wait.max.ms", "100"),
    // Statistics feed the log-end and lag metrics without extra broker requests.
    ("statistics.interval.ms", "5000"),
];

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
        // Records of aborted transactions are never applied; librdkafka moves the position past
        // them and past commit/abort markers (the pipeline advances the stored offset there).
        .set("isolation.level", "read_committed")
        // Verify each record batch's checksum (the Java consumer's default; librdkafka's is off).
        // A corrupt batch then stops its partition (see the poller) instead of being skipped.
        .set("check.crcs", "true")
        // librdkafka's `debug` property asks for its debug log; otherwise warnings and up.
        .set_log_level(if config.kafka.properties.contains_key("debug") {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Warning
        });
    for (key, value) in DEFAULTS {
        if !config.kafka.properties.contains_key(*key) {
            client.set(*key, *value);
        }
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
