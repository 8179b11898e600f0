//! A metadata-only Kafka client: partitions, log start/end, offsets by timestamp and live group
//! members, each a blocking librdkafka call run off the async runtime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;

/// How long one broker request (metadata, watermarks, timestamps, group list) may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// A metadata-only Kafka client. It has no `group.id` on purpose: it must never join the
/// connector's group, which would rebalance the running replicas.
#[derive(Clone)]
pub(super) struct Cluster(Arc<BaseConsumer>);

impl Cluster {
    pub(super) fn connect(config: &Config) -> anyhow::Result<Self> {
        let mut client = ClientConfig::new();
        for (key, value) in &config.kafka.properties {
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", &config.kafka.brokers)
            .set_log_level(RDKafkaLogLevel::Warning);
        if !config.kafka.properties.contains_key("client.id") {
            client.set("client.id", "kafka-pg-sink-offsets");
        }
        let consumer = client.create().context("creating the Kafka client")?;
        Ok(Self(Arc::new(consumer)))
    }

    /// Runs blocking librdkafka calls off the async runtime.
    async fn call<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&BaseConsumer) -> anyhow::Result<T> + Send + 'static,
    {
        let consumer = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || f(&consumer))
            .await
            .context("broker request task failed")?
    }

    /// The topic's partitions, sorted; None when the broker does not know the topic.
    pub(super) async fn partitions(&self, topic: &str) -> anyhow::Result<Option<Vec<i32>>> {
        let topic = topic.to_owned();
        self.call(move |c| {
            let metadata = c
                .fetch_metadata(Some(&topic), BROKER_TIMEOUT)
                .with_context(|| format!("fetching the metadata of topic `{topic}`"))?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Ok(None);
            };
            match found.error().map(RDKafkaErrorCode::from) {
                None => {}
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(None),
                Some(code) => bail!("metadata of topic `{topic}`: {code}"),
            }
            let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
            partitions.sort_unstable();
            Ok(Some(partitions))
        })
        .await
    }

    /// (log start, log end) per partition.
    pub(super) async fn watermarks(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        let (topic, partitions) = (topic.to_owned(), partitions.to_vec());
        self.call(move |c| {
            partitions
                .into_iter()
                .map(|p| {
                    let marks =
                        c.fetch_watermarks(&topic, p, BROKER_TIMEOUT)
                            .with_context(|| {
                                format!("fetching the log start and end of {topic}/{p}")
                            })?;
                    Ok((p, marks))
                })
                .collect()
        })
        .await
    }

    /// Per partition, the first offset whose record timestamp is at or after `ms`; None where
    /// no record is that recent.
    pub(super) async fn offsets_at(
        &self,
        topic: &str,
        partitions: &[i32],
        ms: i64,
    ) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for p in partitions {
            list.add_partition_offset(topic, *p, Offset::Offset(ms))?;
        }
        let found = self
            .call(move |c| Ok(c.offsets_for_times(list, BROKER_TIMEOUT)?))
            .await
            .context("looking up offsets by timestamp")?;
        found
            .elements()
            .iter()
            .map(|e| {
                e.error().with_context(|| {
                    format!("offset by timestamp of {}/{}", e.topic(), e.partition())
                })?;
                match e.offset() {
                    Offset::Offset(offset) => Ok((e.partition(), Some(offset))),
                    Offset::End => Ok((e.partition(), None)),
                    other => bail!(
                        "offset by timestamp of {}/{}: unexpected {other:?}",
                        e.topic(),
                        e.partition()
                    ),
                }
            })
            .collect()
    }

    /// The live members of `group`, described for an operator.
    pub(super) async fn members(&self, group: &str) -> anyhow::Result<Vec<String>> {
        let group = group.to_owned();
        self.call(move |c| {
            let list = c.fetch_group_list(Some(&group), BROKER_TIMEOUT)?;
            Ok(list
                .groups()
                .iter()
                .filter(|g| g.name() == group)
                .flat_map(|g| g.members())
                .map(|m| {
                    format!(
                        "{} at {} (member id {})",
                        m.client_id(),
                        m.client_host().trim_start_matches('/'),
                        m.id()
                    )
                })
                .collect())
        })
        .await
    }
}
