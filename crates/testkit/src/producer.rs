//! A librdkafka producer for tests that sends to explicit partitions and checks every delivery,
//! so a test never silently under-produces; and a paced stream on a thread of its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// Counts deliveries and failures.
#[derive(Clone, Default)]
pub struct Deliveries {
    failed: Arc<AtomicUsize>,
    delivered: Arc<AtomicUsize>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::SeqCst),
            Err(_) => self.failed.fetch_add(1, Ordering::SeqCst),
        };
    }
}

/// An idempotent producer to explicit partitions; [`TestProducer::flush`] panics unless every
/// record sent was acknowledged.
pub struct TestProducer {
    producer: ThreadedProducer<Deliveries>,
    deliveries: Deliveries,
    sent: usize,
}

impl TestProducer {
    pub fn new(bootstrap: &str) -> Self {
        Self::with_settings(bootstrap, &[])
    }

    /// A producer with these librdkafka settings added (`compression.type`, say).
    pub fn with_settings(bootstrap: &str, settings: &[(&str, &str)]) -> Self {
        let deliveries = Deliveries::default();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "2")
            .set("enable.idempotence", "true");
        for (name, value) in settings {
            config.set(*name, *value);
        }
        let producer = config
            .create_with_context(deliveries.clone())
            .expect("a producer");
        Self {
            producer,
            deliveries,
            sent: 0,
        }
    }

    /// Queues one record; `value = None` is a tombstone. Waits while the local queue is full.
    pub fn send(&mut self, topic: &str, partition: i32, key: &str, value: Option<&str>) {
        self.send_bytes(
            topic,
            partition,
            Some(key.as_bytes()),
            value.map(str::as_bytes),
        );
    }

    /// [`Self::send`] for binary keys and values (Avro, Protobuf); `key = None` is no key.
    pub fn send_bytes(
        &mut self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).partition(partition);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        self.sent += 1;
    }

    /// Waits until everything sent is acknowledged; panics on any failed delivery.
    pub fn flush(&self) {
        self.producer
            .flush(Duration::from_secs(60))
            .expect("the producer flushes within 60 s");
        assert_eq!(
            self.deliveries.failed.load(Ordering::SeqCst),
            0,
            "deliveries failed"
        );
        assert_eq!(
            self.deliveries.delivered.load(Ordering::SeqCst),
            self.sent,
            "not all deliveries acknowledged"
        );
    }
}

/// One record to produce: partition, key, value (`None` is a tombstone).
pub type Produced = (i32, String, Option<String>);

/// Produces `records` in order at about `per_sec` on a thread of its own; the thread panics
/// (and `join` reports it) if any delivery fails.
pub fn stream(
    bootstrap: &str,
    topic: &str,
    records: Vec<Produced>,
    per_sec: u64,
) -> std::thread::JoinHandle<()> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    std::thread::spawn(move || {
        let mut producer = TestProducer::new(&bootstrap);
        let started = Instant::now();
        for (i, (partition, key, value)) in records.iter().enumerate() {
            producer.send(&topic, *partition, key, value.as_deref());
            let due = Duration::from_micros((i as u64 + 1) * 1_000_000 / per_sec);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        producer.flush();
    })
}

/// One upstream transaction: its records, and whether it commits or aborts.
pub struct Transaction {
    pub records: Vec<Produced>,
    pub commit: bool,
}

/// Produces `transactions` in order with one transactional producer (a fresh
/// `transactional.id`), committing or aborting each: the log then holds control records
/// (transaction markers) that take offsets but are no records. Panics on any failure. Real
/// clusters only: librdkafka's mock broker writes no markers.
pub fn transactions(bootstrap: &str, topic: &str, transactions: &[Transaction]) {
    let timeout = Duration::from_secs(30);
    let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", crate::names::unique("kps_txn"))
        .set("linger.ms", "2")
        .create_with_context(Deliveries::default())
        .expect("a transactional producer");
    producer
        .init_transactions(timeout)
        .expect("init_transactions");
    for transaction in transactions {
        producer.begin_transaction().expect("begin_transaction");
        for (partition, key, value) in &transaction.records {
            let mut record = BaseRecord::to(topic)
                .partition(*partition)
                .key(key.as_str());
            if let Some(v) = value {
                record = record.payload(v.as_str());
            }
            producer
                .send(record)
                .map_err(|(e, _)| e)
                .expect("send in a transaction");
        }
        match transaction.commit {
            true => producer.commit_transaction(timeout).expect("commit"),
            false => producer.abort_transaction(timeout).expect("abort"),
        }
    }
}
