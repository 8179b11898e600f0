//! Talking to a Kafka-protocol broker for the bench and chaos runners: the devkit's mock cluster
//! (`kafka-pg-sink-devkit broker`, which prints `BOOTSTRAP=host:port` and then answers one
//! command per line on stdin with `ok` or an error), or a real cluster for topic creation and
//! watermarks. Each runner owns the broker process its own way; this is only what they share.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// The command that starts the mock broker: stdin and stdout piped, stderr to `log`.
pub fn command(devkit: &Path, log: std::fs::File) -> Command {
    let mut command = Command::new(devkit);
    command
        .arg("broker")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log);
    command
}

/// The mock broker's command channel.
pub struct Control {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Control {
    /// Reads the broker's first line; returns the channel and the bootstrap address.
    pub fn open(stdin: ChildStdin, stdout: ChildStdout) -> Result<(Self, String)> {
        let mut control = Self {
            stdin,
            stdout: BufReader::new(stdout),
        };
        let line = control.read_line()?;
        let bootstrap = line
            .strip_prefix("BOOTSTRAP=")
            .with_context(|| format!("the mock broker printed `{line}`"))?
            .to_owned();
        Ok((control, bootstrap))
    }

    /// Sends one command and requires `ok`.
    pub fn send(&mut self, command: &str) -> Result<()> {
        writeln!(self.stdin, "{command}")?;
        self.stdin.flush()?;
        let answer = self.read_line()?;
        if answer != "ok" {
            bail!("mock broker: `{command}` answered `{answer}`");
        }
        Ok(())
    }

    fn read_line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line.trim().to_owned())
    }
}

/// Creates a topic on a real cluster (replication factor 1).
pub async fn create_topic_on_cluster(bootstrap: &str, name: &str, partitions: i32) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for result in admin.create_topics([&topic], &AdminOptions::new()).await? {
        result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic}: {code}"))?;
    }
    // Creation is asynchronous on a real cluster: wait until every partition is visible.
    let client = watermark_client(bootstrap)?;
    for _ in 0..150 {
        let visible = client
            .fetch_metadata(Some(name), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .map(|t| t.partitions().len())
            });
        if visible == Some(partitions as usize) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("topic {name} not visible with {partitions} partitions after 30 s")
}

/// A client for watermark queries (no group).
pub fn watermark_client(bootstrap: &str) -> Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?)
}

/// (low, high) watermarks of partitions `0..partitions`.
pub fn watermarks(client: &BaseConsumer, topic: &str, partitions: i32) -> Result<Vec<(i64, i64)>> {
    (0..partitions)
        .map(|p| {
            client
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .with_context(|| format!("watermarks of {topic}/{p}"))
        })
        .collect()
}
