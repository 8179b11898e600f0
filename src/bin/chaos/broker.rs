//! The broker: the devkit's mock cluster in its own process (so it survives connector crashes
//! and takes fault commands on stdin), or a real cluster named by `KAFKA_BROKERS`.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::mock_broker::{self, Control};

struct Mock {
    child: Child,
    log: std::path::PathBuf,
    control: Control,
}

pub struct Broker {
    pub bootstrap: String,
    mock: Option<Mock>,
}

impl Broker {
    /// Starts `devkit broker`, its stderr to `log`.
    pub fn start_mock(devkit: &Path, log: &Path) -> Result<Self> {
        let mut child = mock_broker::command(devkit, std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting the mock broker {}", devkit.display()))?;
        let pipes = child.stdin.take().zip(child.stdout.take());
        let opened = pipes
            .context("broker stdin and stdout")
            .and_then(|(stdin, stdout)| Control::open(stdin, stdout));
        match opened {
            Ok((control, bootstrap)) => Ok(Self {
                bootstrap,
                mock: Some(Mock {
                    child,
                    log: log.to_owned(),
                    control,
                }),
            }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    pub fn external(bootstrap: String) -> Self {
        Self {
            bootstrap,
            mock: None,
        }
    }

    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// [`Broker::died`], waiting up to `wait` for a dying process to be gone.
    pub async fn died_within(&mut self, wait: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let death = self.died();
            if death.is_some() || !self.is_mock() || std::time::Instant::now() >= deadline {
                return death;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Why the mock broker process is gone, if it is: its exit and the last line it logged.
    /// (librdkafka's mock cluster can abort on an assertion of its own, for example
    /// `rd_kafka_mock_cgrp_classic_member_add: Assertion '!member->resp'` when members rejoin
    /// right after a broker outage.)
    pub fn died(&mut self) -> Option<String> {
        let mock = self.mock.as_mut()?;
        let status = mock.child.try_wait().ok()??;
        let text = std::fs::read_to_string(&mock.log).unwrap_or_default();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Some(format!("exited with {status}; its last log line: {last}"))
    }

    /// Sends one command to the mock broker and requires `ok`.
    pub fn command(&mut self, command: &str) -> Result<()> {
        self.mock
            .as_mut()
            .context("broker commands need the mock broker")?
            .control
            .send(command)
    }

    pub async fn create_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        if self.is_mock() {
            return self.command(&format!("create-topic {name} {partitions}"));
        }
        mock_broker::create_topic_on_cluster(&self.bootstrap, name, partitions).await
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mock) = &mut self.mock {
            let _ = mock.child.kill();
            let _ = mock.child.wait();
        }
    }
}

/// (low, high) watermarks of every partition, read by a throwaway consumer.
pub fn watermarks(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<(i64, i64)>> {
    mock_broker::watermarks(
        &mock_broker::watermark_client(bootstrap)?,
        topic,
        partitions,
    )
}

/// One record as the broker holds it.
pub struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Reads every partition from its low to its high watermark (`marks`), without a group.
pub fn read_log(bootstrap: &str, topic: &str, marks: &[(i64, i64)]) -> Result<Vec<LogRecord>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kps-chaos-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, &(low, _)) in marks.iter().enumerate() {
        tpl.add_partition_offset(topic, p as i32, Offset::Offset(low))?;
    }
    consumer.assign(&tpl)?;
    let total: i64 = marks.iter().map(|(low, high)| high - low).sum();
    let mut records = Vec::with_capacity(total as usize);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while (records.len() as i64) < total {
        if std::time::Instant::now() > deadline {
            bail!("read {} of {total} log records within 120 s", records.len());
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = message.context("reading the log back")?;
        let high = marks.get(m.partition() as usize).map_or(0, |m| m.1);
        if m.offset() < high {
            records.push(LogRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
            });
        }
    }
    Ok(records)
}
