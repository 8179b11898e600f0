//! The batch writer: one dedicated connection, one transaction per batch.
//!
//! Guarantee: a batch's rows and its partition's new offset commit together or not at all, and
//! only if the stored offset still equals the offset the batch starts from (compare-and-set).
//! A writer whose expectation is stale writes nothing and reports [`Outcome::Fenced`]. Every
//! mapping fed by the batch's topic is written in that one transaction, so a record fanned out to
//! several tables is applied to all of them or to none. Records a mapping cannot apply go to the
//! dead-letter table in that same transaction (or are skipped, per the mapping's `on_error`);
//! under `on_error = "fail"` the records before the bad one commit and the partition stops there.

mod batch;
mod queue;
mod retry;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::apply::{apply_batch, diagnose, Written};
use super::dead_letters::{self, DeadLetterSql};
use super::encode::{Decoded, Decoder};
use super::offsets::{compare_and_set, load_one, OffsetSql};
use super::sql::MappingSql;
use crate::config::{Mode, OnError};
use crate::decode::Rejected;
use crate::error::{classify, is_key_affected_twice, Error, ErrorClass};
use crate::metrics::Metrics;
use crate::registry::Registry;
pub use batch::{Batch, Outcome, WriteBatch};
use retry::{backoff, retry_cause};

/// Writes batches taken from a shared queue.
pub struct Writer {
    connect: PgConnectOptions,
    decoder: Arc<Decoder>,
    sql: Arc<[MappingSql]>,
    offsets: OffsetSql,
    dead_letters: DeadLetterSql,
    group: String,
    metrics: Metrics,
    /// Fetches the schemas of registry formats before a batch is decoded.
    registry: Option<Arc<Registry>>,
    conn: Option<PgConnection>,
    /// True while the database is failing, so the problem is logged once, not once per retry.
    degraded: bool,
}

/// Why one attempt did not commit.
enum AttemptError {
    /// Postgres rejected these records' rows; write the batch again without them.
    Rows(Vec<Rejected>),
    /// Rows sent sorted held one key twice in the table's eyes: write the batch again through
    /// `DISTINCT ON`, which merges keys as the table does.
    Unsort(Error),
    /// Postgres refused rows copied straight into a table: write the batch again through the
    /// stage, where rejected rows are isolated (and a column type changed since start-up is
    /// cast, as `INSERT … SELECT` does, instead of failing binary COPY).
    Unstage(Error),
    Db(Error),
}

impl From<Error> for AttemptError {
    fn from(error: Error) -> Self {
        Self::Db(error)
    }
}

impl From<sqlx::Error> for AttemptError {
    fn from(error: sqlx::Error) -> Self {
        Self::Db(error.into())
    }
}

/// A decoded batch and the records set aside so far.
struct Work {
    decoded: Decoded,
    /// Rejected by Postgres in earlier attempts, `(mapping, record)`.
    excluded: HashSet<(usize, usize)>,
    rejected_by_db: Vec<Rejected>,
    /// Never send this batch's rows sorted ([`AttemptError::Unsort`]).
    unsorted: bool,
    /// Never copy this batch's rows straight into a table ([`AttemptError::Unstage`]).
    staged: bool,
}

impl Work {
    /// Takes a new decoding of the batch, unsorted and staged if the batch must be.
    fn set_decoded(&mut self, mut decoded: Decoded) {
        for table in &mut decoded.tables {
            table.sorted &= !self.unsorted;
            table.direct &= !self.staged;
        }
        self.decoded = decoded;
    }

    fn rejected(&self) -> impl Iterator<Item = &Rejected> {
        self.decoded.rejected.iter().chain(&self.rejected_by_db)
    }
}

impl Writer {
    pub fn new(
        connect: PgConnectOptions,
        decoder: Arc<Decoder>,
        sql: Arc<[MappingSql]>,
        schema: &crate::ident::Ident,
        group: String,
        metrics: Metrics,
    ) -> Self {
        Self {
            connect,
            decoder,
            sql,
            offsets: OffsetSql::new(schema),
            dead_letters: DeadLetterSql::new(schema),
            group,
            metrics,
            registry: None,
            conn: None,
            degraded: false,
        }
    }

    /// Fetches the registry schemas each batch needs before decoding it.
    pub fn with_registry(mut self, registry: Option<Arc<Registry>>) -> Self {
        self.registry = registry;
        self
    }

    /// Writes one batch, retrying transient errors until it commits, is fenced or is cancelled.
    pub async fn write(&mut self, batch: &Batch) -> Outcome {
        match prepare(self.registry.as_deref(), &self.decoder, batch).await {
            Ok(decoded) => self.write_decoded(batch, decoded).await,
            Err(outcome) => outcome,
        }
    }

    /// [`Self::write`] for a batch already decoded.
    async fn write_decoded(&mut self, batch: &Batch, decoded: Decoded) -> Outcome {
        let Some(next_offset) = batch.next_offset() else {
            return Outcome::Aborted;
        };
        let mut work = Work {
            decoded,
            excluded: HashSet::new(),
            rejected_by_db: Vec::new(),
            unsorted: false,
            staged: false,
        };
        let mut backoff = backoff();
        let mut uncertain = false;
        loop {
            if let Some((at, error)) = self.failing_record(batch, &work) {
                return self.write_prefix(batch, at, error).await;
            }
            if batch.cancel.load(Ordering::SeqCst) {
                return Outcome::Aborted;
            }
            match self.attempt(batch, &work, next_offset).await {
                // An earlier attempt's COMMIT may have succeeded before its connection broke.
                Ok(Outcome::Fenced { stored }) if uncertain && stored == Some(next_offset) => {
                    tracing::info!(partition = %batch.tp, next_offset, "The commit whose outcome was unknown had succeeded.");
                    self.metrics.set_committed(&batch.tp, next_offset);
                    return self.recovered(Outcome::Committed { next_offset });
                }
                Ok(Outcome::Fenced { stored }) => {
                    self.metrics
                        .fenced_commits
                        .with_label_values(&[&*batch.tp.topic])
                        .inc();
                    tracing::info!(partition = %batch.tp, expected = ?batch.expected, ?stored, "Batch fenced: another writer moved the offset.");
                    // Lag is measured from what is stored, whoever stored it.
                    if let Some(stored) = stored {
                        self.metrics.set_committed(&batch.tp, stored);
                    }
                    return self.recovered(Outcome::Fenced { stored });
                }
                Ok(outcome) => return self.recovered(outcome),
                Err(AttemptError::Rows(rows)) => {
                    for r in rows {
                        tracing::warn!(partition = %batch.tp, offset = batch.records[r.record].offset, error = %r.error, "Postgres rejected a record; isolating it.");
                        work.excluded.insert((r.mapping, r.record));
                        work.rejected_by_db.push(r);
                    }
                    work.set_decoded(self.decoder.decode(&batch.records, &work.excluded));
                }
                Err(AttemptError::Unstage(error)) => {
                    tracing::warn!(%error, partition = %batch.tp, "Postgres refused rows copied straight into the table; writing the batch again through the stage.");
                    work.staged = true;
                    let decoded = std::mem::take(&mut work.decoded);
                    work.set_decoded(decoded);
                }
                Err(AttemptError::Unsort(error)) => {
                    tracing::warn!(%error, partition = %batch.tp, "Two keys taken as different are one in the table; writing the batch again through DISTINCT ON.");
                    work.unsorted = true;
                    let decoded = std::mem::take(&mut work.decoded);
                    work.set_decoded(decoded);
                }
                Err(AttemptError::Db(error)) if classify(&error) == ErrorClass::Transient => {
                    self.conn = None;
                    uncertain = true;
                    self.metrics
                        .retries
                        .with_label_values(&[retry_cause(&error)])
                        .inc();
                    if !self.degraded {
                        tracing::warn!(%error, partition = %batch.tp, "Database write failed; retrying with backoff.");
                        self.degraded = true;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(AttemptError::Db(error)) => return Outcome::Failed(error),
            }
        }
    }

    /// `on_error = "fail"` met the record at index `at`: the records before it are written (their
    /// own batch, decoded afresh), and the partition stops at the bad record.
    async fn write_prefix(&mut self, batch: &Batch, at: usize, error: Error) -> Outcome {
        if at == 0 {
            return Outcome::Stopped {
                next_offset: None,
                error,
            };
        }
        let prefix = Batch {
            tp: batch.tp.clone(),
            expected: batch.expected,
            rewind: batch.rewind,
            records: batch.records[..at].to_vec(),
            advance_to: None,
            epoch: batch.epoch,
            cancel: Arc::clone(&batch.cancel),
        };
        match Box::pin(self.write(&prefix)).await {
            Outcome::Committed { next_offset } => Outcome::Stopped {
                next_offset: Some(next_offset),
                error,
            },
            // A bad record earlier in the prefix (rejected by Postgres) stops it sooner.
            other => other,
        }
    }

    /// The first rejected record whose mapping says `on_error = "fail"`: its index in the batch,
    /// and the error.
    fn failing_record(&self, batch: &Batch, work: &Work) -> Option<(usize, Error)> {
        let mappings = self.decoder.mappings();
        let r = work
            .rejected()
            .filter(|r| mappings[r.mapping].on_error == OnError::Fail)
            .min_by_key(|r| r.record)?;
        let record = &batch.records[r.record];
        let error = Error::BadRecord {
            topic: record.tp.topic.to_string(),
            partition: record.tp.partition,
            offset: record.offset,
            reason: format!(
                "{} ({} stage, table {})",
                r.error,
                r.stage.as_str(),
                mappings[r.mapping].table
            ),
        };
        Some((r.record, error))
    }

    fn recovered(&mut self, outcome: Outcome) -> Outcome {
        if std::mem::take(&mut self.degraded) {
            tracing::info!("Database writes recovered.");
        }
        outcome
    }

    async fn attempt(
        &mut self,
        batch: &Batch,
        work: &Work,
        next_offset: i64,
    ) -> Result<Outcome, AttemptError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let started = Instant::now();
        let mut tx = conn.begin().await?;
        // The offset row is locked first: a concurrent writer of the same partition waits here
        // and then sees the new value, so at most one of them can commit.
        if !compare_and_set(
            &mut tx,
            &self.offsets,
            &self.group,
            &batch.tp,
            batch.expected,
            next_offset,
            batch.rewind,
        )
        .await?
        {
            tx.rollback().await?;
            let stored = load_one(&mut conn, &self.offsets, &self.group, &batch.tp).await?;
            self.conn = Some(conn);
            return Ok(Outcome::Fenced { stored });
        }
        if batch.records.is_empty() {
            // Offsets only: nothing else to write.
            tx.commit().await?;
            self.conn = Some(conn);
            self.metrics.set_committed(&batch.tp, next_offset);
            return Ok(Outcome::Committed { next_offset });
        }
        let written = match apply_batch(&mut tx, &self.sql, &work.decoded).await {
            Ok(written) => written,
            Err(error)
                if is_key_affected_twice(&error)
                    && work.decoded.tables.iter().any(|t| t.sorted) =>
            {
                tx.rollback().await?;
                self.conn = Some(conn);
                return Err(AttemptError::Unsort(error));
            }
            Err(error)
                if classify(&error) == ErrorClass::BadRecord
                    && work.decoded.tables.iter().any(|t| t.direct) =>
            {
                tx.rollback().await?;
                self.conn = Some(conn);
                return Err(AttemptError::Unstage(error));
            }
            Err(error) if classify(&error) == ErrorClass::BadRecord => {
                tx.rollback().await?;
                let rows = diagnose(&mut conn, &self.sql, &work.decoded).await?;
                self.conn = Some(conn);
                return Err(if rows.is_empty() {
                    AttemptError::Db(error)
                } else {
                    AttemptError::Rows(rows)
                });
            }
            Err(error) => return Err(error.into()),
        };
        for r in work
            .rejected()
            .filter(|r| self.decoder.mappings()[r.mapping].on_error == OnError::DeadLetter)
        {
            let table = self.decoder.mappings()[r.mapping].table.to_string();
            let record = &batch.records[r.record];
            dead_letters::insert(
                &mut tx,
                &self.dead_letters,
                &self.group,
                record,
                &table,
                r.stage,
                &r.error,
            )
            .await?;
        }
        tx.commit().await?;
        self.conn = Some(conn);
        self.observe(batch, work, next_offset, started.elapsed(), &written);
        Ok(Outcome::Committed { next_offset })
    }

    fn observe(
        &self,
        batch: &Batch,
        work: &Work,
        next_offset: i64,
        took: Duration,
        written: &Written,
    ) {
        let topic = &*batch.tp.topic;
        let mappings = self.decoder.mappings();
        self.metrics.commit_duration.observe(took.as_secs_f64());
        self.metrics
            .batches_committed
            .with_label_values(&[topic])
            .inc();
        self.metrics
            .batch_records
            .with_label_values(&[topic])
            .observe(batch.records.len() as f64);
        self.metrics.set_committed(&batch.tp, next_offset);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let latency = self
            .metrics
            .end_to_end_latency
            .with_label_values(&[topic])
            .local();
        for record in &batch.records {
            if let Some(ts) = record.timestamp_ms {
                latency.observe((now_ms - ts).max(0) as f64 / 1000.0);
            }
        }
        latency.flush();
        for &(mapping, rows, deleted) in written {
            let m = &mappings[mapping];
            let table = m.table.to_string();
            let op = match m.mode {
                Mode::Upsert | Mode::Cdc => "upsert",
                Mode::Insert => "insert",
                Mode::Accumulate => "accumulate",
            };
            self.metrics
                .rows_written
                .with_label_values(&[&table, op])
                .inc_by(rows);
            if deleted > 0 {
                self.metrics
                    .rows_written
                    .with_label_values(&[&table, "delete"])
                    .inc_by(deleted);
            }
        }
        for t in &work.decoded.tables {
            if t.ignored > 0 {
                let table = mappings[t.mapping].table.to_string();
                self.metrics
                    .ignored_tombstones
                    .with_label_values(&[topic, &table])
                    .inc_by(t.ignored as u64);
            }
        }
        for r in work.rejected() {
            let m = &mappings[r.mapping];
            let table = m.table.to_string();
            let counter = match m.on_error {
                OnError::DeadLetter => &self.metrics.dead_letters,
                OnError::Skip => &self.metrics.skipped_records,
                OnError::Fail => continue,
            };
            counter
                .with_label_values(&[topic, &table, r.stage.as_str()])
                .inc();
            if m.on_error == OnError::Skip {
                tracing::warn!(partition = %batch.tp, offset = batch.records[r.record].offset, error = %r.error, table = %table, "Skipped a bad record.");
            }
        }
    }

    /// Opens the writer's connection and its stage tables.
    async fn connect(&self) -> Result<PgConnection, Error> {
        let mut conn = PgConnection::connect_with(&self.connect).await?;
        for (sql, mapping) in self.sql.iter().zip(self.decoder.mappings()) {
            for statement in [&sql.create_stage, &sql.create_delete_stage] {
                if let Err(error) = sqlx::query(statement).execute(&mut conn).await {
                    let error = Error::from(error);
                    if classify(&error) == ErrorClass::Transient {
                        return Err(error);
                    }
                    return Err(Error::Fatal(format!(
                        "cannot prepare writes to table {} ({error}); the table and its columns must exist \
                         (the connector never creates user tables; `kafka-pg-sink check` lists what is missing)",
                        mapping.table
                    )));
                }
            }
        }
        Ok(conn)
    }
}

/// A batch decoded, once the registry schemas it needs are fetched; the outcome instead when the
/// batch was cancelled while the registry was unavailable, or the registry refused.
async fn prepare(
    registry: Option<&Registry>,
    decoder: &Decoder,
    batch: &Batch,
) -> Result<Decoded, Outcome> {
    if let Some(registry) = registry {
        match registry.ensure(&batch.records, &batch.cancel).await {
            Ok(true) => {}
            Ok(false) => return Err(Outcome::Aborted),
            Err(error) => return Err(Outcome::Failed(error)),
        }
    }
    Ok(decoder.decode(&batch.records, &HashSet::new()))
}
