//! The one handle on a Kafka-protocol broker for tests and tools: the cluster named by
//! `KAFKA_BROKERS`, or librdkafka's mock cluster hosted in a child process ([`host`]) and
//! steered over its stdin ([`control`]). What works on any cluster is in [`cluster`].

pub mod cluster;
pub mod control;
pub mod host;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

pub use cluster::LogRecord;
use control::Control;

struct Mock {
    child: Child,
    log: Option<PathBuf>,
    control: Control,
}

/// A broker: real (`KAFKA_BROKERS`) or the mock host in a child process, killed on drop.
pub struct Broker {
    pub bootstrap: String,
    mock: Option<Mock>,
}

impl Broker {
    /// The cluster named by `KAFKA_BROKERS`, or a fresh mock broker (its log discarded).
    pub fn from_env() -> Result<Self> {
        match std::env::var("KAFKA_BROKERS") {
            Ok(bootstrap) if !bootstrap.trim().is_empty() => Ok(Self::external(bootstrap)),
            _ => Self::start_mock(&crate::bins::path(crate::bins::MOCK_BROKER), None),
        }
    }

    /// Starts the mock broker host `program` (testkit's `kafka-pg-sink-mock-broker`), its
    /// stderr to `log` or discarded.
    pub fn start_mock(program: &Path, log: Option<&Path>) -> Result<Self> {
        let stderr = match log {
            Some(path) => Stdio::from(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        let mut command = Command::new(program);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = crate::process::bound_to_parent(&mut command)
            .spawn()
            .with_context(|| format!("starting the mock broker {}", program.display()))?;
        let opened = child
            .stdin
            .take()
            .zip(child.stdout.take())
            .context("the mock broker's stdin and stdout")
            .and_then(|(stdin, stdout)| Control::open(stdin, stdout));
        match opened {
            Ok((control, bootstrap)) => Ok(Self {
                bootstrap,
                mock: Some(Mock {
                    child,
                    log: log.map(Path::to_owned),
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

    /// A cluster someone else runs.
    pub fn external(bootstrap: String) -> Self {
        Self {
            bootstrap,
            mock: None,
        }
    }

    /// Whether this is the mock broker (fault injection available).
    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// The mock broker's process id.
    pub fn pid(&self) -> Option<u32> {
        self.mock.as_ref().map(|m| m.child.id())
    }

    /// Sends one command to the mock broker and requires `ok`; an error on a real cluster.
    pub fn command(&mut self, command: &str) -> Result<()> {
        self.mock
            .as_mut()
            .with_context(|| format!("`{command}` needs the mock broker, not a real cluster"))?
            .control
            .send(command)
    }

    /// Creates a topic (replication factor 1) and returns once every partition is visible.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        if self.is_mock() {
            return self.command(&format!("create-topic {name} {partitions}"));
        }
        cluster::create_topic(&self.bootstrap, name, partitions)
    }

    /// (low, high) watermarks of partitions `0..partitions`.
    pub fn watermarks(&self, topic: &str, partitions: i32) -> Result<Vec<(i64, i64)>> {
        cluster::watermarks(&self.bootstrap, topic, partitions)
    }

    /// The high watermark (log end) of each partition.
    pub fn end_offsets(&self, topic: &str, partitions: i32) -> Result<Vec<i64>> {
        Ok(self
            .watermarks(topic, partitions)?
            .into_iter()
            .map(|(_, high)| high)
            .collect())
    }

    /// Every record of `topic`'s partitions `0..partitions` up to the current log end: the
    /// ground truth when the log itself may hold a producer retry twice.
    pub fn read_all(&self, topic: &str, partitions: i32) -> Result<Vec<LogRecord>> {
        cluster::read_log(&self.bootstrap, topic, &self.watermarks(topic, partitions)?)
    }

    /// Why the mock broker process is gone, if it is: its exit and the last line it logged.
    /// (librdkafka's mock cluster can abort on an assertion of its own, for example
    /// `rd_kafka_mock_cgrp_classic_member_add: Assertion '!member->resp'` when members rejoin
    /// right after a broker outage.)
    pub fn died(&mut self) -> Option<String> {
        let mock = self.mock.as_mut()?;
        let status = mock.child.try_wait().ok()??;
        let text = mock
            .log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Some(format!("exited with {status}; its last log line: {last}"))
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
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mock) = &mut self.mock {
            let _ = mock.child.kill();
            let _ = mock.child.wait();
        }
    }
}
