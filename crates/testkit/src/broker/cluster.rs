//! What works on any Kafka cluster, real or mock: creating a topic and waiting until it is
//! visible, watermarks, reading a topic back, and committing a group's offsets in Kafka.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::names::unique;

/// Creates a topic (replication factor 1) and waits until every partition is visible: creation
/// is asynchronous on a real cluster. Runs on a thread of its own with its own runtime, because
/// callers may be inside an async runtime, which cannot block on another one.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    let (bootstrap, topic) = (bootstrap.to_owned(), name.to_owned());
    std::thread::spawn(move || create_and_wait(&bootstrap, &topic, partitions))
        .join()
        .map_err(|_| anyhow::anyhow!("creating topic {name} panicked"))?
}

fn create_and_wait(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in runtime.block_on(admin.create_topics([&topic], &options))? {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating topic {topic}: {code}"))?;
    }
    let client = plain_client(bootstrap)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let visible = client
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .map(|t| t.partitions().iter().filter(|p| p.leader() >= 0).count())
            });
        if visible == Some(partitions as usize) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("topic {name} not visible with {partitions} led partitions after 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A consumer without a group, for metadata and repeated watermark queries.
pub fn plain_client(bootstrap: &str) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

/// (low, high) watermarks of partitions `0..partitions`.
pub fn watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<(i64, i64)>> {
    watermarks_with(&plain_client(bootstrap)?, topic, partitions)
}

/// [`watermarks`] through an existing `client` (see [`plain_client`]).
pub fn watermarks_with(
    client: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> Result<Vec<(i64, i64)>> {
    (0..partitions)
        .map(|p| {
            client
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("watermarks of {topic}/{p}"))
        })
        .collect()
}

/// One record as the broker holds it.
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl LogRecord {
    /// The key as text (lossy), for assertions.
    pub fn key_text(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }
}

/// Reads partition `p` from `marks[p].0` up to `marks[p].1` (exclusive), without joining a
/// group. On a real cluster the range may hold transaction markers, which take offsets but are
/// not records, so the read ends at each partition's high mark, not at a record count.
pub fn read_log(bootstrap: &str, topic: &str, marks: &[(i64, i64)]) -> Result<Vec<LogRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("kps-reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, &(low, _)) in marks.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(low))?;
    }
    consumer.assign(&tpl)?;
    let total: i64 = marks.iter().map(|(low, high)| high - low).sum();
    let mut records = Vec::with_capacity(total.max(0) as usize);
    let mut done: Vec<bool> = marks.iter().map(|(low, high)| low >= high).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.iter().any(|d| !d) {
        if Instant::now() > deadline {
            bail!(
                "read {} records of {topic} within 120 s; partitions not done: {:?}",
                records.len(),
                done.iter()
                    .enumerate()
                    .filter(|(_, d)| !**d)
                    .map(|(p, _)| p)
                    .collect::<Vec<_>>()
            );
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let (partition, next) = match message {
            Ok(m) => {
                let high = marks.get(m.partition() as usize).map_or(0, |m| m.1);
                if m.offset() < high {
                    records.push(LogRecord {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        value: m.payload().map(<[u8]>::to_vec),
                    });
                }
                (m.partition(), m.offset() + 1)
            }
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                (p, marks.get(p as usize).map_or(0, |m| m.1))
            }
            Err(error) => return Err(error).context("reading the log back"),
        };
        if let (Some(flag), Some(&(_, high))) = (
            done.get_mut(partition as usize),
            marks.get(partition as usize),
        ) {
            *flag |= next >= high;
        }
    }
    Ok(records)
}

/// Commits `offsets[p]` for partition `p` of `topic` in Kafka for `group`, as a member of the
/// group (brokers refuse offset commits from non-members while the group has members), and
/// checks they were stored.
pub fn commit_group_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    offsets: &[i64],
) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()?;
    consumer.subscribe(&[topic])?;
    // A real broker holds a new group's first join for group.initial.rebalance.delay.ms (3 s
    // by default), so allow for that and more.
    let deadline = Instant::now() + Duration::from_secs(45);
    while consumer.assignment()?.count() < offsets.len() {
        if Instant::now() > deadline {
            bail!(
                "could not join group {group} with {} partitions",
                offsets.len()
            );
        }
        // Errors while joining are expected (a coordinator may still be elected); they only
        // matter if the join never completes, which the deadline reports.
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(*o))?;
    }
    consumer.commit(&tpl, CommitMode::Sync)?;
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
    for (p, o) in offsets.iter().enumerate() {
        let stored = committed
            .find_partition(topic, p as i32)
            .map(|e| e.offset());
        if stored != Some(Offset::Offset(*o)) {
            bail!("committed {o} for {topic}/{p} in group {group}, the broker has {stored:?}");
        }
    }
    consumer.unsubscribe();
    Ok(())
}
