//! The batch writer: one dedicated connection, one transaction per batch.
//!
//! Guarantee: a batch's rows and its partition's new offset commit together or not at all, and
//! only if the stored offset still equals the offset the batch starts from (compare-and-set).
//! A writer whose expectation is stale writes nothing and reports [`Outcome::Fenced`].

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::{mpsc, Mutex};

use super::offsets::{compare_and_set, load_one, OffsetSql};
use super::sql::MappingSql;
use crate::error::{classify, Error, ErrorClass};
use crate::kafka::{Record, TopicPartition};
use crate::metrics::Metrics;
use crate::pipeline::{Decoder, TableRows};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One partition's records, in offset order, to be written in one transaction.
#[derive(Debug)]
pub struct Batch {
    pub tp: TopicPartition,
    /// Stored offset this batch continues from; `None` when the partition has none yet.
    pub expected: Option<i64>,
    pub records: Vec<Record>,
    /// The partition's state generation when the batch was cut; stale results are ignored.
    pub epoch: u64,
    /// Set when the partition is revoked: stop retrying and report [`Outcome::Aborted`].
    pub cancel: Arc<AtomicBool>,
}

/// What happened to a batch.
#[derive(Debug)]
pub enum Outcome {
    Committed {
        next_offset: i64,
    },
    /// Nothing was written: the stored offset is not the one the batch started from.
    Fenced {
        stored: Option<i64>,
    },
    /// Given up because the partition was revoked; nothing was written by this attempt.
    Aborted,
    Failed(Error),
}

/// A batch's outcome, sent back to the pipeline.
#[derive(Debug)]
pub struct WriteBatch {
    pub tp: TopicPartition,
    pub epoch: u64,
    pub records: usize,
    pub outcome: Outcome,
}

/// Writes batches taken from a shared queue.
pub struct Writer {
    connect: PgConnectOptions,
    decoder: Arc<Decoder>,
    sql: Arc<[MappingSql]>,
    offsets: OffsetSql,
    group: String,
    metrics: Metrics,
    conn: Option<PgConnection>,
    /// True while the database is failing, so the problem is logged once, not once per retry.
    degraded: bool,
}

impl Writer {
    pub fn new(
        connect: PgConnectOptions,
        decoder: Arc<Decoder>,
        sql: Arc<[MappingSql]>,
        offsets: OffsetSql,
        group: String,
        metrics: Metrics,
    ) -> Self {
        Self {
            connect,
            decoder,
            sql,
            offsets,
            group,
            metrics,
            conn: None,
            degraded: false,
        }
    }

    /// Takes batches until the queue closes or the pipeline stops listening.
    pub async fn run(
        mut self,
        queue: Arc<Mutex<mpsc::Receiver<Batch>>>,
        results: mpsc::UnboundedSender<WriteBatch>,
    ) {
        loop {
            let batch = queue.lock().await.recv().await;
            let Some(batch) = batch else { break };
            let outcome = self.write(&batch).await;
            let result = WriteBatch {
                tp: batch.tp,
                epoch: batch.epoch,
                records: batch.records.len(),
                outcome,
            };
            if results.send(result).is_err() {
                break;
            }
        }
    }

    /// Writes one batch, retrying transient errors until it commits, is fenced or is cancelled.
    pub async fn write(&mut self, batch: &Batch) -> Outcome {
        let Some(last) = batch.records.last() else {
            return Outcome::Aborted;
        };
        let next_offset = last.offset + 1;
        let tables = match self.decoder.decode(&batch.records) {
            Ok(tables) => tables,
            Err(error) => return Outcome::Failed(error),
        };
        let mut delay = Duration::from_millis(50);
        let mut uncertain = false;
        loop {
            if batch.cancel.load(Ordering::SeqCst) {
                return Outcome::Aborted;
            }
            match self.attempt(batch, &tables, next_offset).await {
                // An earlier attempt's COMMIT may have succeeded before its connection broke.
                Ok(Outcome::Fenced { stored }) if uncertain && stored == Some(next_offset) => {
                    return self.recovered(Outcome::Committed { next_offset })
                }
                Ok(outcome) => return self.recovered(outcome),
                Err(error) if classify(&error) == ErrorClass::Transient => {
                    self.conn = None;
                    uncertain = true;
                    let cause = retry_cause(&error);
                    self.metrics.retries.with_label_values(&[cause]).inc();
                    if !self.degraded {
                        tracing::warn!(%error, partition = %batch.tp, "Database write failed; retrying with backoff.");
                        self.degraded = true;
                    }
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
                Err(error) => return Outcome::Failed(error),
            }
        }
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
        tables: &[TableRows],
        next_offset: i64,
    ) -> Result<Outcome, Error> {
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
        )
        .await?
        {
            tx.rollback().await?;
            let stored = load_one(&mut conn, &self.offsets, &self.group, &batch.tp).await?;
            self.conn = Some(conn);
            self.metrics
                .fenced_commits
                .with_label_values(&[&*batch.tp.topic])
                .inc();
            tracing::info!(partition = %batch.tp, expected = ?batch.expected, ?stored, "Batch fenced: another writer moved the offset.");
            return Ok(Outcome::Fenced { stored });
        }
        let mut written = Vec::with_capacity(tables.len());
        for rows in tables {
            let sql = &self.sql[rows.mapping];
            let mut upserted = 0;
            let mut deleted = 0;
            if rows.delete_rows > 0 {
                copy(&mut tx, &sql.copy_deletes, &rows.deletes).await?;
                deleted = sqlx::query(&sql.delete)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            if rows.upsert_rows > 0 {
                copy(&mut tx, &sql.copy_upserts, &rows.upserts).await?;
                upserted = sqlx::query(&sql.upsert)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            written.push((rows.mapping, upserted, deleted));
        }
        tx.commit().await?;
        self.conn = Some(conn);
        self.observe(batch, next_offset, started.elapsed(), &written);
        Ok(Outcome::Committed { next_offset })
    }

    fn observe(
        &self,
        batch: &Batch,
        next_offset: i64,
        took: Duration,
        written: &[(usize, u64, u64)],
    ) {
        let topic = &*batch.tp.topic;
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
        for &(mapping, upserted, deleted) in written {
            let table = self.decoder.mappings()[mapping].table.to_string();
            self.metrics
                .rows_written
                .with_label_values(&[&table, "upsert"])
                .inc_by(upserted);
            self.metrics
                .rows_written
                .with_label_values(&[&table, "delete"])
                .inc_by(deleted);
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
                         (the connector never creates user tables)",
                        mapping.table
                    )));
                }
            }
        }
        Ok(conn)
    }
}

async fn copy(conn: &mut PgConnection, statement: &str, data: &[u8]) -> Result<(), Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    if let Err(error) = copy.send(data).await {
        // Abort explicitly so the connection is left in a known state.
        let _ = copy.abort(error.to_string()).await;
        return Err(error.into());
    }
    copy.finish().await?;
    Ok(())
}

fn retry_cause(error: &Error) -> &'static str {
    match error {
        Error::Database(sqlx::Error::Database(db)) => match db.code().as_deref() {
            Some("40001") => "serialization_failure",
            Some("40P01") => "deadlock",
            Some(code) if code.starts_with("57P") => "server_shutdown",
            _ => "database",
        },
        Error::Database(_) => "connection",
        _ => "other",
    }
}

/// Full jitter between half and the whole delay.
fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let half = delay / 2;
    half + Duration::from_nanos(random % (half.as_nanos().max(1) as u64))
}
