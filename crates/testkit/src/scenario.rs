//! The set-up every end-to-end test repeats, in one place: a broker (mock or `KAFKA_BROKERS`), a
//! fresh database with the test's DDL, a fresh topic, and a unique group.
//!
//! ```no_run
//! # async fn example() {
//! use testkit::fixtures::{payments_mapping, PAYMENTS_DDL};
//! use testkit::scenario::Scenario;
//!
//! let s = Scenario::new().ddl(PAYMENTS_DDL).partitions(4).build().await;
//! let mut producer = s.producer();
//! let sink = s.sink(&payments_mapping(&s.topic));
//! # }
//! ```

use std::thread::JoinHandle;

use crate::broker::Broker;
use crate::connector::{sink_config, Sink};
use crate::db::TestDb;
use crate::names::{unique, TempFile};
use crate::producer::{self, Produced, TestProducer};

/// What [`Scenario::build`] makes.
#[derive(Default)]
pub struct Scenario {
    ddl: Vec<String>,
    partitions: Option<i32>,
    topic_prefix: Option<String>,
}

/// A built scenario: everything is dropped (broker killed, database dropped) with it.
pub struct Built {
    pub broker: Broker,
    pub db: TestDb,
    pub topic: String,
    pub partitions: i32,
    pub group: String,
}

impl Scenario {
    pub fn new() -> Self {
        Self::default()
    }

    /// SQL run on the fresh database (tables, triggers) before anything starts.
    pub fn ddl(mut self, sql: &str) -> Self {
        self.ddl.push(sql.to_owned());
        self
    }

    /// The topic's partition count (default 1).
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// The topic name's prefix (default `kps_topic`); a unique suffix is added.
    pub fn topic(mut self, prefix: &str) -> Self {
        self.topic_prefix = Some(prefix.to_owned());
        self
    }

    pub async fn build(self) -> Built {
        let mut broker = Broker::from_env().expect("a broker");
        let db = TestDb::create().await;
        for sql in &self.ddl {
            db.exec(sql).await;
        }
        let topic = unique(self.topic_prefix.as_deref().unwrap_or("kps_topic"));
        let partitions = self.partitions.unwrap_or(1);
        broker
            .create_topic(&topic, partitions)
            .unwrap_or_else(|e| panic!("creating topic {topic}: {e:#}"));
        Built {
            broker,
            db,
            topic,
            partitions,
            group: unique("kps_group"),
        }
    }
}

impl Built {
    /// A producer to this scenario's broker.
    pub fn producer(&self) -> TestProducer {
        TestProducer::new(&self.broker.bootstrap)
    }

    /// Produces `records` to the topic at about `per_sec` on a thread of its own.
    pub fn stream(&self, records: Vec<Produced>, per_sec: u64) -> JoinHandle<()> {
        producer::stream(&self.broker.bootstrap, &self.topic, records, per_sec)
    }

    /// A config file for the connector in this scenario's group, and its HTTP address.
    pub fn config(&self, rest: &str) -> (TempFile, String) {
        sink_config(&self.broker, &self.db, &self.group, rest)
    }

    /// Starts the connector in this scenario's group with `rest` of the config.
    pub fn sink(&self, rest: &str) -> Sink {
        Sink::start(&self.broker, &self.db, &self.group, rest)
    }

    /// The stored next offset of each partition of the topic for the group.
    pub async fn stored_offsets(&self) -> Vec<(i32, i64)> {
        self.db.stored_offsets(&self.group, &self.topic).await
    }
}
