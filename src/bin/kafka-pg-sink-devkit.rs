//! Development helpers for the quickstart, the tests and the benchmark (not needed in production).
//!
//! - `broker`: hosts librdkafka's mock cluster (a Kafka-protocol broker over TCP on 127.0.0.1)
//!   in its own process, so the connector can be killed and restarted against the same data.
//!   Prints `BOOTSTRAP=<host:port>`, then takes commands on stdin, one per line:
//!   `create-topic <name> <partitions>`, `broker-down`, `broker-up` (data is kept), and for
//!   fault injection `request-errors <api> <count> <error-code>` (the next `count` requests of
//!   that API, a name such as `Fetch`, `OffsetCommit`, `Heartbeat`, `JoinGroup` or its number,
//!   fail with the Kafka error code, e.g. 6 NOT_LEADER_OR_FOLLOWER, 7 REQUEST_TIMED_OUT,
//!   15 COORDINATOR_NOT_AVAILABLE, 27 REBALANCE_IN_PROGRESS), `clear-request-errors <api>`
//!   and `rtt <ms>` (round-trip delay added by the broker; `rtt 0` removes it). Each answers
//!   `ok` or `error: ...`. It runs until killed.
//! - `produce`: sends sample payment events to a topic on any broker (`--brokers` or
//!   `KAFKA_BROKERS`).

use std::io::{BufRead, Write};
use std::time::Duration;

use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

#[derive(Parser)]
#[command(about = "kafka-pg-sink development helpers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a mock Kafka cluster until killed.
    Broker {
        /// Topics to create at start, as `name:partitions`.
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
    /// Produce sample payment events: {"id", "account", "amount", "ts"}, keyed by id.
    Produce {
        #[arg(long, env = "KAFKA_BROKERS")]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Ids are `first_id .. first_id + count`.
        #[arg(long, default_value_t = 1)]
        first_id: u64,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Cli::parse().command {
        Command::Broker { topics } => broker(&topics),
        Command::Produce {
            brokers,
            topic,
            count,
            first_id,
        } => produce(&brokers, &topic, count, first_id),
    }
}

fn broker(topics: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = MockCluster::new(1)?;
    for spec in topics {
        let (name, partitions) = spec
            .split_once(':')
            .ok_or("--topic takes name:partitions")?;
        cluster.create_topic(name, partitions.parse()?, 1)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "BOOTSTRAP={}", cluster.bootstrap_servers())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let result = match words.as_slice() {
            ["create-topic", name, partitions] => match partitions.parse() {
                Ok(n) => cluster.create_topic(name, n, 1).map_err(|e| e.to_string()),
                Err(_) => Err(format!("`{partitions}` is not a partition count")),
            },
            ["broker-down"] => cluster.broker_down(-1).map_err(|e| e.to_string()),
            ["broker-up"] => cluster.broker_up(-1).map_err(|e| e.to_string()),
            ["request-errors", api, count, code] => request_errors(&cluster, api, count, code),
            ["clear-request-errors", api] => {
                api_key(api).map(|key| cluster.clear_request_errors(key))
            }
            ["rtt", ms] => match ms.parse() {
                Ok(ms) => cluster
                    .broker_round_trip_time(1, Duration::from_millis(ms))
                    .map_err(|e| e.to_string()),
                Err(_) => Err(format!("`{ms}` is not a number of milliseconds")),
            },
            [] => continue,
            _ => Err(format!("unknown command `{line}`")),
        };
        match result {
            Ok(()) => writeln!(out, "ok")?,
            Err(error) => writeln!(out, "error: {error}")?,
        }
        out.flush()?;
    }
    // stdin closed: keep serving until killed.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Makes the next `count` requests of `api` fail with Kafka error `code`.
fn request_errors(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    api: &str,
    count: &str,
    code: &str,
) -> Result<(), String> {
    let key = api_key(api)?;
    let count: usize = count
        .parse()
        .map_err(|_| format!("`{count}` is not a count"))?;
    let error = code
        .parse::<i32>()
        .ok()
        .and_then(|c| RDKafkaRespErr::try_from(c).ok())
        .ok_or_else(|| format!("`{code}` is not a Kafka error code"))?;
    cluster.request_errors(key, &vec![error; count]);
    Ok(())
}

/// A protocol API by name (`Fetch`) or number (`1`); only the ones a consumer group uses.
fn api_key(name: &str) -> Result<RDKafkaApiKey, String> {
    use RDKafkaApiKey::*;
    let known = [
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        InitProducerId,
    ];
    known
        .into_iter()
        .find(|key| {
            format!("{key:?}").eq_ignore_ascii_case(name) || (*key as i16).to_string() == name
        })
        .ok_or_else(|| format!("unknown or unsupported API `{name}`"))
}

fn produce(
    brokers: &str,
    topic: &str,
    count: u64,
    first_id: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()?;
    let mut total_cents: u64 = 0;
    for id in first_id..first_id + count {
        let cents = id * 37 % 10_000;
        total_cents += cents;
        let key = id.to_string();
        let value = format!(
            r#"{{"id":{id},"account":"acct-{}","amount":"{}.{:02}","ts":"2026-11-26T12:00:00Z"}}"#,
            id % 10,
            cents / 100,
            cents % 100
        );
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((error, returned)) => {
                    if !matches!(
                        error.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        return Err(error.into());
                    }
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30))?;
    println!(
        "produced {count} records to {topic}; amounts total {}.{:02}",
        total_cents / 100,
        total_cents % 100
    );
    Ok(())
}
