//! The workload: deterministic payment events (a few of them poison), produced at a steady rate
//! by an idempotent producer that records where each one landed. The ground truth every check
//! compares with is computed here, from what was produced, never from the connector's tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use testkit::broker::LogRecord;
use testkit::rng::mix;

/// 2026-01-01T00:00:00Z: event times start on an hour boundary.
const BASE_MS: i64 = 1_767_225_600_000;
/// Event times spread over this many hours, so the hourly windows matter.
const HOURS: u64 = 6;
const HOUR_MS: i64 = 3_600_000;

/// What a record is, which decides what each mapping must do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Good,
    /// Not JSON at all.
    InvalidJson,
    /// `"amount": "abc"`: does not convert to numeric.
    NotANumber,
    /// No `account`: a required field (a key column of `balances`) is missing.
    MissingAccount,
    /// A large negative amount: every table's `CHECK (amount >= 0)` / `(total >= 0)` rejects it,
    /// even added to the largest possible balance.
    Negative,
}

impl Kind {
    pub const POISON: [Kind; 4] = [
        Kind::InvalidJson,
        Kind::NotANumber,
        Kind::MissingAccount,
        Kind::Negative,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Good => "good",
            Kind::InvalidJson => "invalid-json",
            Kind::NotANumber => "not-a-number",
            Kind::MissingAccount => "missing-account",
            Kind::Negative => "negative-amount",
        }
    }

    /// The dead-letter stage the connector documents for this kind of bad record.
    pub fn stage(self) -> &'static str {
        match self {
            Kind::Good => "-",
            Kind::InvalidJson | Kind::MissingAccount => "decode",
            Kind::NotANumber => "convert",
            Kind::Negative => "database",
        }
    }
}

/// One payment event, all derived from its id.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: u64,
    pub partition: i32,
    pub kind: Kind,
    pub account: String,
    pub cents: i64,
    pub ts_ms: i64,
}

impl Event {
    /// `poison_bp`: poison records per 10,000.
    pub fn new(id: u64, partitions: i32, poison_bp: u64) -> Self {
        let kind = if mix(id) % 10_000 < poison_bp {
            Kind::POISON[(mix(id ^ 0x5EED) % 4) as usize]
        } else {
            Kind::Good
        };
        Self {
            id,
            partition: (id % partitions as u64) as i32,
            kind,
            account: format!("acct-{}", id % 37),
            cents: (id * 7919 % 100_000) as i64,
            ts_ms: BASE_MS + (mix(id * 3) % HOURS) as i64 * HOUR_MS + (id as i64 * 7919) % HOUR_MS,
        }
    }

    pub fn hour_ms(&self) -> i64 {
        self.ts_ms - self.ts_ms.rem_euclid(HOUR_MS)
    }

    pub fn payload(&self) -> String {
        let (id, account, ts) = (self.id, &self.account, self.ts_ms);
        let amount = format!("{}.{:02}", self.cents / 100, self.cents % 100);
        match self.kind {
            Kind::Good => {
                format!(r#"{{"id":{id},"account":"{account}","amount":"{amount}","ts":{ts}}}"#)
            }
            Kind::InvalidJson => format!(r#"{{"id":{id},"account":"{account}","amount":"#),
            Kind::NotANumber => {
                format!(r#"{{"id":{id},"account":"{account}","amount":"abc","ts":{ts}}}"#)
            }
            Kind::MissingAccount => format!(r#"{{"id":{id},"amount":"{amount}","ts":{ts}}}"#),
            Kind::Negative => {
                format!(r#"{{"id":{id},"account":"{account}","amount":"-99999999.99","ts":{ts}}}"#)
            }
        }
    }
}

/// Where each delivered record landed: (partition, offset) by id.
#[derive(Clone, Default)]
struct Deliveries {
    landed: Arc<Mutex<HashMap<u64, (i32, i64)>>>,
    failed: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;
    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        match result {
            Ok(m) => {
                if let Ok(mut landed) = self.landed.lock() {
                    landed.insert(id as u64, (m.partition(), m.offset()));
                }
            }
            Err((error, _)) => {
                if let Ok(mut failed) = self.failed.lock() {
                    failed.push(format!("record id {id}: {error}"));
                }
            }
        }
    }
}

/// A producer thread's handle and its progress.
pub struct Production {
    pub sent: Arc<AtomicU64>,
    handle: JoinHandle<Result<Produced>>,
}

/// What the producer sent and where the broker said each record landed.
pub struct Produced {
    pub events: Vec<Event>,
    /// (partition, offset) acknowledged for each id.
    pub acked: HashMap<u64, (i32, i64)>,
}

impl Production {
    /// Produces ids `1..=records` at about `rate` per second in a background thread.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        records: u64,
        rate: u64,
        partitions: i32,
        poison_bp: u64,
    ) -> Result<Self> {
        let deliveries = Deliveries::default();
        let producer: ThreadedProducer<Deliveries> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create_with_context(deliveries.clone())?;
        let sent = Arc::new(AtomicU64::new(0));
        let (topic, progress) = (topic.to_owned(), sent.clone());
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut events = Vec::with_capacity(records as usize);
            for id in 1..=records {
                let event = Event::new(id, partitions, poison_bp);
                send(&producer, &topic, &event)?;
                events.push(event);
                progress.store(id, Ordering::SeqCst);
                let due = Duration::from_micros(id * 1_000_000 / rate.max(1));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            producer.flush(Duration::from_secs(300))?;
            let failed = deliveries
                .failed
                .lock()
                .map(|f| f.clone())
                .unwrap_or_default();
            if let Some(first) = failed.first() {
                bail!("{} deliveries failed, first: {first}", failed.len());
            }
            let acked = deliveries
                .landed
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            Ok(Produced { events, acked })
        });
        Ok(Self { sent, handle })
    }

    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    pub fn join(self) -> Result<Produced> {
        match self.handle.join() {
            Ok(produced) => produced,
            Err(_) => bail!("the producer thread panicked"),
        }
    }
}

fn send(producer: &ThreadedProducer<Deliveries>, topic: &str, event: &Event) -> Result<()> {
    let (key, payload) = (event.id.to_string(), event.payload());
    let mut record = BaseRecord::with_opaque_to(topic, event.id as usize)
        .partition(event.partition)
        .key(&key)
        .payload(&payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((error, returned)) => {
                if !matches!(
                    error.rdkafka_error_code(),
                    Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                ) {
                    bail!("producing record id {}: {error}", event.id);
                }
                record = returned;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// What the tables must hold. The input of the connector is the broker's log, read back after
/// the run: normally exactly what was produced, but an idempotent producer retrying through
/// broker outages can still leave a record twice in the mock broker's log, and the connector
/// must then apply each copy (a different offset). Such differences between what was produced
/// and what the log holds are `notes` (broker or producer), not connector violations.
pub struct Truth {
    /// Produced events by id (index `id - 1`).
    pub events: Vec<Event>,
    /// Event id at each log position.
    pub at: HashMap<(i32, i64), u64>,
    /// Log positions of each id (more than one if the log holds copies).
    pub positions: BTreeMap<u64, Vec<(i32, i64)>>,
    /// Good records in the log (copies counted) and their amounts.
    pub good_records: u64,
    pub good_cents: i64,
    /// Poison records in the log by kind (copies counted).
    pub poison: BTreeMap<Kind, u64>,
    /// (account, hour start in epoch ms) -> (total cents, events), good log records only.
    pub balances: BTreeMap<(String, i64), (i64, i64)>,
    pub notes: Vec<String>,
}

impl Truth {
    pub fn build(produced: Produced, log: &[LogRecord]) -> Self {
        let Produced { events, acked } = produced;
        let mut truth = Truth {
            events,
            at: HashMap::new(),
            positions: BTreeMap::new(),
            good_records: 0,
            good_cents: 0,
            poison: BTreeMap::new(),
            balances: BTreeMap::new(),
            notes: Vec::new(),
        };
        let mut foreign = Vec::new();
        for r in log {
            let id = r
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok()?.parse().ok());
            let Some(event) = id.and_then(|id| truth.event(id)).cloned() else {
                foreign.push(format!("{}/{}", r.partition, r.offset));
                continue;
            };
            if r.value.as_deref() != Some(event.payload().as_bytes()) {
                foreign.push(format!("{}/{} (key {})", r.partition, r.offset, event.id));
                continue;
            }
            truth.at.insert((r.partition, r.offset), event.id);
            truth
                .positions
                .entry(event.id)
                .or_default()
                .push((r.partition, r.offset));
            truth.count(&event);
        }
        if let Some(first) = foreign.first() {
            truth.notes.push(format!(
                "{} log records were not produced by this run, first at {first}",
                foreign.len()
            ));
        }
        truth.compare_with_producer(&acked);
        truth
    }

    fn count(&mut self, event: &Event) {
        if event.kind == Kind::Good {
            self.good_records += 1;
            self.good_cents += event.cents;
            let entry = self
                .balances
                .entry((event.account.clone(), event.hour_ms()))
                .or_default();
            entry.0 += event.cents;
            entry.1 += 1;
        } else {
            *self.poison.entry(event.kind).or_default() += 1;
        }
    }

    /// Notes every record missing from the log, held more than once, or not where acked.
    fn compare_with_producer(&mut self, acked: &HashMap<u64, (i32, i64)>) {
        let (mut missing, mut copies, mut elsewhere) = (vec![], vec![], vec![]);
        for e in &self.events {
            let at = self
                .positions
                .get(&e.id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            match at {
                [] => missing.push(e.id),
                [_, _, ..] => copies.push(e.id),
                [one] if acked.get(&e.id) != Some(one) => elsewhere.push(e.id),
                [_] => {}
            }
        }
        let lists = [
            (missing, "missing from the broker log (retention or broker): the connector cannot apply them"),
            (copies, "held more than once in the broker log (producer retry through an outage): each copy must be applied"),
            (elsewhere, "in the log at another position than acknowledged to the producer"),
        ];
        for (ids, what) in lists {
            if let Some(&first) = ids.first() {
                self.notes.push(format!(
                    "{} records {what}; first: {}",
                    ids.len(),
                    self.describe(first)
                ));
            }
        }
    }

    pub fn event(&self, id: u64) -> Option<&Event> {
        self.events.get(id.checked_sub(1)? as usize)
    }

    /// Distinct good ids in the log.
    pub fn good_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.positions
            .keys()
            .copied()
            .filter(|&id| self.event(id).is_some_and(|e| e.kind == Kind::Good))
    }

    /// Log copies of `id`.
    pub fn copies(&self, id: u64) -> usize {
        self.positions.get(&id).map_or(0, Vec::len)
    }

    /// "id 42 (partition 3, offset 7, good)" — how every violation names a record.
    pub fn describe(&self, id: u64) -> String {
        let kind = self.event(id).map_or("never produced", |e| e.kind.name());
        let at: Vec<String> = self
            .positions
            .get(&id)
            .map(|v| {
                v.iter()
                    .map(|(p, o)| format!("partition {p}, offset {o}"))
                    .collect()
            })
            .unwrap_or_default();
        match at.as_slice() {
            [] => format!("id {id} (not in the log, {kind})"),
            _ => format!("id {id} ({}, {kind})", at.join("; ")),
        }
    }

    pub fn poison_total(&self) -> u64 {
        self.poison.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &Event, offset: i64) -> LogRecord {
        LogRecord {
            partition: event.partition,
            offset,
            key: Some(event.id.to_string().into_bytes()),
            value: Some(event.payload().into_bytes()),
        }
    }

    #[test]
    fn a_copy_in_the_log_is_a_note_and_counts_as_input() {
        let events: Vec<Event> = (1..=4).map(|id| Event::new(id, 1, 0)).collect();
        let acked = (1..=4).map(|id| (id, (0, id as i64 - 1))).collect();
        let mut log: Vec<LogRecord> = events
            .iter()
            .enumerate()
            .map(|(i, e)| record(e, i as i64))
            .collect();
        log.push(record(&events[2], 4));
        let truth = Truth::build(Produced { events, acked }, &log);
        assert_eq!(truth.notes.len(), 1, "{:?}", truth.notes);
        assert!(truth.notes[0].contains("held more than once"));
        assert!(truth.notes[0].contains("id 3 (partition 0, offset 2; partition 0, offset 4"));
        assert_eq!((truth.good_records, truth.copies(3)), (5, 2));
        assert_eq!(truth.balances.values().map(|b| b.1).sum::<i64>(), 5);
        assert_eq!(truth.good_ids().count(), 4);
    }

    #[test]
    fn poison_kinds_are_deterministic_and_all_occur() {
        let kinds: std::collections::BTreeSet<Kind> =
            (1..=5000).map(|id| Event::new(id, 12, 100).kind).collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        assert_eq!(
            Event::new(77, 12, 100).payload(),
            Event::new(77, 12, 100).payload()
        );
    }
}
