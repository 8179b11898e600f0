//! Producers: the backlog, paced against the mock broker's retention, and the fixed-rate stream
//! of the latency phase.
//!
//! The mock broker keeps at most 5 MiB per partition and drops older data, so against it the
//! backlog producer never lets a partition run more than `window` records ahead of the offset
//! the connector has committed (read by the monitor from Postgres every 50 ms). Partitions are
//! paced independently: a key always maps to one partition, so only the order within a partition
//! matters. Every delivery is checked: librdkafka reports failed deliveries only (a report per
//! record would cost the shared cores a callback per record), `flush` waits until nothing is left
//! in flight, and the verification compares each partition's log end with the records sent.

use std::ffi::{c_void, CString};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use rdkafka::bindings as rdsys;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;

use super::wire;
use super::workload::{value_json, Rec, Workload};

/// The producer's librdkafka settings (everything else is librdkafka's default).
pub const SETTINGS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("acks", "all"),
    ("enable.idempotence", "true"),
    ("delivery.report.only.error", "true"),
];

/// Records sent to one partition per turn, so partitions are interleaved.
const CHUNK: i64 = 1_000;

/// State shared by the producer thread, its delivery callback and the monitor.
pub struct Shared {
    /// Next offset per partition as stored by the connector in Postgres (refreshed by the monitor).
    pub committed: Vec<AtomicI64>,
    /// Records handed to librdkafka per partition: the next offset it will get (fresh topic).
    pub sent: Vec<AtomicI64>,
    pub failed: AtomicU64,
    /// Why the producer stopped early, if it did.
    pub error: Mutex<Option<String>>,
    pub stop: AtomicBool,
    /// Whether the connector's offsets table has been seen to exist (see `monitor::committed`).
    pub offsets_table: AtomicBool,
}

fn counters(n: usize) -> Vec<AtomicI64> {
    (0..n).map(|_| AtomicI64::new(0)).collect()
}

impl Shared {
    pub fn new(partitions: usize) -> Arc<Self> {
        Arc::new(Self {
            committed: counters(partitions),
            sent: counters(partitions),
            failed: AtomicU64::new(0),
            error: Mutex::new(None),
            stop: AtomicBool::new(false),
            offsets_table: AtomicBool::new(false),
        })
    }

    pub fn sent(&self, p: usize) -> i64 {
        self.sent[p].load(Ordering::SeqCst)
    }

    pub fn committed(&self, p: usize) -> i64 {
        self.committed[p].load(Ordering::SeqCst)
    }

    /// Records partition `p` may still take before it is `window` ahead of the committed offset.
    fn room(&self, p: usize, window: i64) -> i64 {
        window.saturating_sub(self.sent(p) - self.committed(p))
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|e| e.clone())
    }

    fn fail(&self, message: String) {
        if let Ok(mut e) = self.error.lock() {
            e.get_or_insert(message);
        }
    }
}

#[derive(Clone)]
struct Deliveries(Arc<Shared>);

impl ClientContext for Deliveries {}

/// Called for failed deliveries only (`delivery.report.only.error`).
impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            self.0.failed.fetch_add(1, Ordering::SeqCst);
            self.0.fail(format!(
                "delivery to partition {} failed: {error}",
                message.partition()
            ));
        }
    }
}

/// What one producer run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Produced {
    pub records: u64,
    /// From the first send to the last.
    pub seconds: f64,
    pub records_per_s: f64,
    /// From the last send until every record was acknowledged.
    pub ack_wait_s: f64,
    /// Time spent waiting because the pacing window was full.
    pub blocked_s: f64,
    /// Rate while not waiting for the window: what the producer could do on its own.
    pub own_records_per_s: f64,
}

/// librdkafka's handle of the topic, resolved once: the classic produce call takes it instead of
/// a name that would be looked up (and copied into a C string) for every record.
struct TopicHandle(NonNull<rdsys::rd_kafka_topic_t>);

impl TopicHandle {
    fn new(producer: &ThreadedProducer<Deliveries>, topic: &str) -> Result<Self> {
        let name = CString::new(topic)?;
        // SAFETY: the client pointer is valid while `producer` lives, and the handle is dropped
        // before it (field order in `Sender`); a null configuration means the defaults.
        let rkt = unsafe {
            rdsys::rd_kafka_topic_new(
                producer.client().native_ptr(),
                name.as_ptr(),
                ptr::null_mut(),
            )
        };
        NonNull::new(rkt)
            .map(Self)
            .ok_or_else(|| anyhow!("librdkafka could not create a handle for topic {topic}"))
    }
}

impl Drop for TopicHandle {
    fn drop(&mut self) {
        // SAFETY: created by `rd_kafka_topic_new`, destroyed once, before its client.
        unsafe { rdsys::rd_kafka_topic_destroy(self.0.as_ptr()) }
    }
}

/// How a [`Sender`] reaches the broker.
enum Transport {
    /// librdkafka's producer: a real cluster, and the fixed-rate phase.
    Librdkafka {
        /// Declared before `producer`, so it is dropped first.
        handle: TopicHandle,
        producer: ThreadedProducer<Deliveries>,
    },
    /// Produce requests written directly ([`wire`]): the paced backlog on the mock broker.
    Wire(wire::Producer),
}

struct Sender {
    transport: Transport,
    topic: String,
    shared: Arc<Shared>,
    key: String,
    value: String,
    records: u64,
    started: Instant,
    last: Instant,
    blocked: Duration,
}

impl Sender {
    fn new(
        bootstrap: &str,
        topic: &str,
        shared: &Arc<Shared>,
        compression: wire::Compression,
    ) -> Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("compression.type", compression.name());
        for (key, value) in SETTINGS {
            config.set(*key, *value);
        }
        let producer: ThreadedProducer<Deliveries> =
            config.create_with_context(Deliveries(shared.clone()))?;
        let handle = TopicHandle::new(&producer, topic)?;
        Ok(Self::with(
            Transport::Librdkafka { handle, producer },
            topic,
            shared,
        ))
    }

    /// A sender that writes Produce requests itself (single-broker mock only).
    fn wire(
        bootstrap: &str,
        topic: &str,
        shared: &Arc<Shared>,
        compression: wire::Compression,
    ) -> Result<Self> {
        let producer = wire::Producer::connect(bootstrap, topic)?.compressed(compression);
        Ok(Self::with(Transport::Wire(producer), topic, shared))
    }

    fn with(transport: Transport, topic: &str, shared: &Arc<Shared>) -> Self {
        Self {
            transport,
            topic: topic.to_owned(),
            shared: shared.clone(),
            key: String::new(),
            value: String::new(),
            records: 0,
            started: Instant::now(),
            last: Instant::now(),
            blocked: Duration::ZERO,
        }
    }

    fn send(&mut self, rec: &Rec) -> Result<()> {
        let (mut key, mut value) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.value),
        );
        key.clear();
        key.push_str(itoa::Buffer::new().format(rec.id));
        value.clear();
        value_json(rec, &mut value);
        let sent = self.send_text(i32::from(rec.partition), &key, &value);
        (self.key, self.value) = (key, value);
        sent?;
        self.sent(usize::from(rec.partition), 1);
        Ok(())
    }

    /// Hands one record to librdkafka; the caller publishes it with [`Self::sent`].
    fn send_text(&mut self, partition: i32, key: &str, value: &str) -> Result<()> {
        if self.records == 0 {
            self.started = Instant::now();
        }
        let Transport::Librdkafka { producer, .. } = &self.transport else {
            bail!("one record at a time goes through librdkafka only");
        };
        let mut record = BaseRecord::to(&self.topic)
            .partition(partition)
            .key(key)
            .payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => bail!("producing to {}: {error}", self.topic),
            }
        }
        self.records += 1;
        Ok(())
    }

    /// Hands one record to librdkafka without copying it (the pre-rendered backlog: this saves
    /// the producer a copy, an allocation and a topic lookup per record on the shared cores).
    ///
    /// # Safety
    /// `key` and `value` must stay alive and unchanged until every record is delivered or the
    /// producer is destroyed: librdkafka reads them from there, on its own threads.
    unsafe fn send_borrowed(&mut self, partition: i32, key: &[u8], value: &[u8]) -> Result<()> {
        let Transport::Librdkafka { handle, .. } = &self.transport else {
            bail!("one record at a time goes through librdkafka only");
        };
        if self.records == 0 {
            self.started = Instant::now();
        }
        loop {
            // Flags 0: librdkafka neither copies nor frees the buffers. Null opaque: the delivery
            // context's opaque is `()`.
            let rc = rdsys::rd_kafka_produce(
                handle.0.as_ptr(),
                partition,
                0,
                value.as_ptr().cast_mut().cast::<c_void>(),
                value.len(),
                key.as_ptr().cast::<c_void>(),
                key.len(),
                ptr::null_mut(),
            );
            if rc == 0 {
                break;
            }
            match rdsys::rd_kafka_last_error() {
                rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                code => bail!(
                    "producing to {}: {}",
                    self.topic,
                    rdkafka::error::RDKafkaErrorCode::from(code)
                ),
            }
        }
        self.records += 1;
        Ok(())
    }

    /// Hands records `range` of partition `p` of the rendered backlog to the broker.
    fn send_rendered(
        &mut self,
        rendered: &Rendered,
        p: usize,
        range: std::ops::Range<usize>,
    ) -> Result<()> {
        if self.records == 0 {
            self.started = Instant::now();
        }
        let n = range.len();
        if let Transport::Wire(producer) = &mut self.transport {
            let records = range.map(|j| {
                let (key, value) = rendered.get(p, j);
                (key.as_bytes(), value.as_bytes())
            });
            producer.send(p as i32, records)?;
            self.records += n as u64;
            return Ok(());
        }
        for j in range {
            let (key, value) = rendered.get(p, j);
            // SAFETY: the backlog producer borrows `rendered` for its whole run, and flushes
            // (`finish`) or destroys (drop) this producer before it returns.
            unsafe { self.send_borrowed(p as i32, key.as_bytes(), value.as_bytes())? };
        }
        Ok(())
    }

    /// Publishes `n` records just handed to librdkafka for `partition` (pacing reads them).
    fn sent(&mut self, partition: usize, n: usize) {
        self.shared.sent[partition].fetch_add(n as i64, Ordering::SeqCst);
        self.last = Instant::now();
    }

    /// Fails once the mode is over (the connector failed, or the benchmark is stopping).
    fn check_stop(&self) -> Result<()> {
        if self.shared.stop.load(Ordering::SeqCst) {
            bail!("producer stopped");
        }
        Ok(())
    }

    /// Waits while the window is full.
    fn wait(&mut self) -> Result<()> {
        self.check_stop()?;
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        self.blocked += t.elapsed();
        Ok(())
    }

    /// Flushes (nothing left in flight) and checks that no delivery failed.
    fn finish(self) -> Result<Produced> {
        match self.transport {
            Transport::Librdkafka { producer, .. } => producer.flush(Duration::from_secs(120))?,
            Transport::Wire(producer) => producer.finish(Duration::from_secs(120))?,
        }
        let seconds = self.last.duration_since(self.started).as_secs_f64();
        let ack_wait_s = self.last.elapsed().as_secs_f64();
        let failed = self.shared.failed.load(Ordering::SeqCst);
        ensure!(
            failed == 0,
            "{failed} deliveries failed: {:?}",
            self.shared.error()
        );
        let blocked_s = self.blocked.as_secs_f64();
        Ok(Produced {
            records: self.records,
            seconds,
            records_per_s: self.records as f64 / seconds.max(1e-9),
            ack_wait_s,
            blocked_s,
            own_records_per_s: self.records as f64 / (seconds - blocked_s).max(1e-9),
        })
    }
}

/// The backlog's keys and values as the producer sends them, rendered before the connector
/// starts: the paced producer has to run beside the connector (the mock broker's retention), and
/// formatting ~200 bytes per record there would take CPU from the cores being measured. Its
/// batching and sending still run beside it. Takes about the backlog's size in memory,
/// laid out per partition in sending order, so the producer reads it sequentially (read in
/// record order, every record was a cache miss: 10 % of the producer's CPU in perf).
pub struct Rendered {
    partitions: Vec<RenderedPartition>,
}

struct RenderedPartition {
    text: String,
    /// Per record, in the partition's order: end of its key, end of its value.
    ends: Vec<(usize, usize)>,
}

impl Rendered {
    pub fn backlog(work: &Workload) -> Self {
        let partitions = work
            .backlog_by_partition
            .iter()
            .map(|list| {
                let mut text = String::with_capacity(list.len() * 220);
                let mut ends = Vec::with_capacity(list.len());
                for &i in list {
                    let rec = &work.records[i as usize];
                    text.push_str(itoa::Buffer::new().format(rec.id));
                    let key_end = text.len();
                    value_json(rec, &mut text);
                    ends.push((key_end, text.len()));
                }
                RenderedPartition { text, ends }
            })
            .collect();
        Self { partitions }
    }

    /// Key and value of the `j`-th backlog record of partition `p`.
    fn get(&self, p: usize, j: usize) -> (&str, &str) {
        let part = &self.partitions[p];
        let start = if j == 0 { 0 } else { part.ends[j - 1].1 };
        let (key_end, end) = part.ends[j];
        (&part.text[start..key_end], &part.text[key_end..end])
    }
}

/// How the backlog reaches the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Librdkafka(wire::Compression),
    /// Produce requests written directly: only for a single-broker cluster (the mock).
    Wire(wire::Compression),
}

/// Produces the backlog, each partition at most `window` records ahead of its committed offset.
pub fn backlog(
    bootstrap: &str,
    topic: &str,
    work: &Workload,
    rendered: &Rendered,
    shared: &Arc<Shared>,
    window: i64,
    via: Via,
) -> Result<Produced> {
    let mut sender = match via {
        Via::Librdkafka(compression) => Sender::new(bootstrap, topic, shared, compression)?,
        Via::Wire(compression) => Sender::wire(bootstrap, topic, shared, compression)?,
    };
    let mut next = vec![0usize; work.partitions];
    loop {
        sender.check_stop()?;
        let (mut sent_any, mut left) = (false, false);
        for (p, list) in work.backlog_by_partition.iter().enumerate() {
            let rest = &list[next[p]..];
            left |= !rest.is_empty();
            let n = shared
                .room(p, window)
                .clamp(0, CHUNK)
                .min(rest.len() as i64) as usize;
            if n > 0 {
                sender.send_rendered(rendered, p, next[p]..next[p] + n)?;
                sender.sent(p, n);
            }
            next[p] += n;
            sent_any |= n > 0;
        }
        if !left {
            break;
        }
        if !sent_any {
            sender.wait()?;
        }
    }
    sender.finish()
}

/// Produces the records after the backlog at `rate` per second, still within the window.
pub fn fixed_rate(
    bootstrap: &str,
    topic: &str,
    work: &Workload,
    shared: &Arc<Shared>,
    window: i64,
    rate: u64,
    compression: wire::Compression,
) -> Result<Produced> {
    let records = &work.records[work.backlog..];
    let mut sender = Sender::new(bootstrap, topic, shared, compression)?;
    let started = Instant::now();
    let mut i = 0;
    while i < records.len() {
        sender.check_stop()?;
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(records.len());
        while i < due && shared.room(records[i].partition as usize, window) > 0 {
            sender.send(&records[i])?;
            i += 1;
        }
        if i < due {
            sender.wait()?;
        } else {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    sender.finish()
}

/// Runs `produce` on its own thread; a failure is also left in `shared` for the monitor.
pub fn spawn<F>(shared: &Arc<Shared>, produce: F) -> std::thread::JoinHandle<Result<Produced>>
where
    F: FnOnce() -> Result<Produced> + Send + 'static,
{
    let shared = shared.clone();
    std::thread::spawn(move || {
        let result = produce();
        if let Err(error) = &result {
            shared.fail(format!("{error:#}"));
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_backlog_holds_each_record_as_the_producer_would_send_it() {
        let work = Workload::generate(500, 20, 3, 0.3, 4);
        let rendered = Rendered::backlog(&work);
        let mut seen = 0;
        for (p, list) in work.backlog_by_partition.iter().enumerate() {
            assert_eq!(rendered.partitions[p].ends.len(), list.len());
            for (j, &i) in list.iter().enumerate() {
                let rec = &work.records[i as usize];
                assert_eq!(usize::from(rec.partition), p);
                let mut value = String::new();
                value_json(rec, &mut value);
                assert_eq!(
                    rendered.get(p, j),
                    (rec.id.to_string().as_str(), value.as_str())
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 500);
    }
}
