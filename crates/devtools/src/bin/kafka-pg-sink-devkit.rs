//! Development helpers for the quickstart, the tests and the benchmark (not needed in production).
//!
//! - `broker`: librdkafka's mock cluster in its own process, for the quickstart's demo: the
//!   test kit's mock broker host (`testkit::broker::host`: `BOOTSTRAP=` on stdout, commands on
//!   stdin). It runs until killed.
//! - `produce`: sends sample payment events to a topic on any broker (`--brokers` or
//!   `KAFKA_BROKERS`).

use std::time::Duration;

use clap::{Parser, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

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
        Command::Broker { topics } => testkit::broker::host::serve(&topics),
        Command::Produce {
            brokers,
            topic,
            count,
            first_id,
        } => produce(&brokers, &topic, count, first_id),
    }
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
