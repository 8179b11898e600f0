//! Listing and replaying dead letters (the `dead-letters` subcommand).
//!
//! Guarantee: a dead letter is applied at most once, ever. Its rows and its `replayed_at` mark
//! commit in one transaction that holds the dead letter's row lock, so two replays running at once
//! or a replay that dies midway can neither apply it twice nor mark it without applying it. A
//! dead letter that still fails stays pending, untouched. Replaying never moves stored offsets:
//! the records were already accounted for when they became dead letters.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use sqlx::{Connection, PgConnection, PgPool};

use crate::config::{Config, Mapping};
use crate::decode::formats::Schemas;
use crate::error::{classify, Error, ErrorClass};
use crate::ident::Ident;
use crate::metrics::Metrics;
use crate::record::{Record, TopicPartition};
use crate::registry::Registry;
use crate::sink::encode::Decoder;
use crate::sink::{apply_batch, describe, headers_from_json, MappingSql};

/// One row of the dead-letter table.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub target_table: String,
    pub stage: String,
    pub error: String,
    pub created_at: String,
    pub replayed_at: Option<String>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// Which dead letters to list or replay.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub topic: Option<String>,
    /// `schema.table` as stored in `target_table`.
    pub table: Option<String>,
    /// Only these ids (all matching ones when empty).
    pub ids: Vec<i64>,
    /// Include dead letters already replayed (listing only; replay never repeats one).
    pub include_replayed: bool,
    /// At most this many (no limit when zero or negative).
    pub limit: i64,
}

/// What a replay did.
#[derive(Clone, Debug, Default)]
pub struct ReplayReport {
    /// Applied to their table and marked replayed, each exactly once.
    pub replayed: Vec<i64>,
    /// Still failing, with the reason; left pending.
    pub failed: Vec<(i64, String)>,
}

/// Lists dead letters of the configured group, oldest first.
pub async fn list(
    pool: &PgPool,
    config: &Config,
    filter: &Filter,
) -> Result<Vec<DeadLetter>, Error> {
    // Fixed text, every filter a bind parameter: a NULL or empty parameter disables its condition.
    let sql = format!(
        "SELECT id, topic, partition, \"offset\", target_table, stage, error, \
         created_at::text AS created_at, replayed_at::text AS replayed_at, \
         record_key AS key, record_value AS value \
         FROM {} \
         WHERE group_id = $1 AND ($2::text IS NULL OR topic = $2) \
         AND ($3::text IS NULL OR target_table = $3) \
         AND (cardinality($4::bigint[]) = 0 OR id = ANY($4)) \
         AND ($5 OR replayed_at IS NULL) \
         ORDER BY id LIMIT $6",
        dead_letters_table(&config.schema)
    );
    Ok(sqlx::query_as::<_, DeadLetter>(&sql)
        .bind(&config.kafka.group_id)
        .bind(filter.topic.as_deref())
        .bind(filter.table.as_deref())
        .bind(&filter.ids)
        .bind(filter.include_replayed)
        .bind((filter.limit > 0).then_some(filter.limit))
        .fetch_all(pool)
        .await?)
}

/// Re-decodes pending dead letters with the current mappings and applies them; with `dry_run`,
/// only reports what would happen.
pub async fn replay(
    pool: &PgPool,
    config: &Config,
    filter: &Filter,
    dry_run: bool,
) -> Result<ReplayReport, Error> {
    let pending = Filter {
        include_replayed: false,
        ..filter.clone()
    };
    let candidates = list(pool, config, &pending).await?;
    let mut report = ReplayReport::default();
    if candidates.is_empty() {
        return Ok(report);
    }
    let options = crate::app::connect_options(config)
        .map_err(|e| Error::Fatal(format!("cannot replay dead letters: {e:#}")))?;
    // One connection of its own: the stage tables are per-connection temporary tables.
    let mut conn = PgConnection::connect_with(&options).await?;
    let mut replayer = Replayer::new(config, dry_run)?;
    for d in &candidates {
        match replayer.one(&mut conn, d.id).await? {
            Done::Applied => report.replayed.push(d.id),
            Done::Gone => {
                tracing::debug!(id = d.id, "Dead letter replayed by someone else; skipped.")
            }
            Done::Failed(reason) => report.failed.push((d.id, reason)),
        }
    }
    // Best effort: everything that matters is committed or rolled back already.
    let _ = conn.close().await;
    tracing::info!(
        replayed = report.replayed.len(),
        failed = report.failed.len(),
        dry_run,
        "Dead-letter replay finished."
    );
    Ok(report)
}

/// What happened to one dead letter.
enum Done {
    /// Applied and marked (or, in a dry run, would be).
    Applied,
    /// Already replayed when its lock was granted.
    Gone,
    Failed(String),
}

/// A configured mapping, ready to apply one record.
struct Plan {
    mapping: Mapping,
    /// Over this mapping alone, so its stage tables are `kps_stage_0` and `kps_delete_0`.
    decoder: Decoder,
    sql: [MappingSql; 1],
}

struct Replayer {
    plans: Vec<Plan>,
    lock: String,
    mark: String,
    dry_run: bool,
    /// Fetches the schemas of registry formats, into every plan's decoder.
    registry: Option<Registry>,
    /// The plan whose stage tables exist on the connection as of its last commit. Every plan
    /// uses the same stage names, so another plan must drop and recreate them; a rolled-back
    /// transaction undoes that, which is why this only changes on commit.
    staged: Option<usize>,
}

/// The locked dead letter: what is needed to rebuild its record.
#[derive(sqlx::FromRow)]
struct Stored {
    topic: String,
    partition: i32,
    offset: i64,
    target_table: String,
    record_key: Option<Vec<u8>>,
    record_value: Option<Vec<u8>>,
    headers: String,
    timestamp_ms: Option<i64>,
}

impl Replayer {
    fn new(config: &Config, dry_run: bool) -> Result<Self, Error> {
        let schemas = Arc::new(Schemas::default());
        let plans = config
            .mappings
            .iter()
            .map(|m| Plan {
                mapping: m.clone(),
                decoder: Decoder::new(Arc::from(vec![m.clone()]))
                    .with_schemas(Arc::clone(&schemas)),
                sql: [MappingSql::new(m, 0, None)],
            })
            .collect();
        let registry = match &config.schema_registry {
            Some(registry) => Some(Registry::new(
                registry,
                &config.mappings,
                schemas,
                Metrics::new().map_err(|e| Error::Fatal(e.to_string()))?,
                Arc::default(),
            )?),
            None => None,
        };
        let table = dead_letters_table(&config.schema);
        Ok(Self {
            plans,
            lock: format!(
                "SELECT topic, partition, \"offset\", target_table, record_key, record_value, \
                 headers::text AS headers, \
                 floor(extract(epoch FROM record_timestamp) * 1000)::bigint AS timestamp_ms \
                 FROM {table} WHERE id = $1 AND replayed_at IS NULL FOR UPDATE"
            ),
            mark: format!("UPDATE {table} SET replayed_at = now() WHERE id = $1"),
            dry_run,
            registry,
            staged: None,
        })
    }

    /// Replays dead letter `id` in its own transaction.
    async fn one(&mut self, conn: &mut PgConnection, id: i64) -> Result<Done, Error> {
        let mut tx = conn.begin().await?;
        // Under READ COMMITTED a waiter re-checks `replayed_at IS NULL` once the lock is granted,
        // so a concurrent replay that committed first makes this return no row.
        let stored: Option<Stored> = sqlx::query_as(&self.lock)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(stored) = stored else {
            tx.rollback().await?;
            return Ok(Done::Gone);
        };
        let Some(plan) = self.plans.iter().position(|p| {
            p.mapping.topic == stored.topic && p.mapping.table.to_string() == stored.target_table
        }) else {
            tx.rollback().await?;
            return Ok(Done::Failed(format!(
                "no mapping for topic {} → table {} in the current configuration",
                stored.topic, stored.target_table
            )));
        };
        if let Some(reason) = self.apply(&mut tx, plan, &stored).await? {
            tx.rollback().await?;
            return Ok(Done::Failed(reason));
        }
        if self.dry_run {
            tx.rollback().await?;
            return Ok(Done::Applied);
        }
        sqlx::query(&self.mark).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        self.staged = Some(plan);
        tracing::debug!(id, topic = %stored.topic, offset = stored.offset, table = %stored.target_table, "Replayed a dead letter.");
        Ok(Done::Applied)
    }

    /// Decodes and writes the record inside `tx`; `Some(reason)` when it still cannot be applied
    /// (the caller rolls back).
    async fn apply(
        &self,
        tx: &mut PgConnection,
        plan: usize,
        stored: &Stored,
    ) -> Result<Option<String>, Error> {
        let Plan {
            mapping,
            decoder,
            sql,
        } = &self.plans[plan];
        if let Some(reason) = self.stage(tx, plan).await? {
            return Ok(Some(reason));
        }
        let record = match stored.record() {
            Ok(record) => record,
            Err(reason) => return Ok(Some(reason)),
        };
        let record = std::slice::from_ref(&record);
        if let Some(registry) = &self.registry {
            // Waits out an unavailable registry; stops on an answer that needs a human.
            registry.ensure(record, &AtomicBool::new(false)).await?;
        }
        let decoded = decoder.decode(record, &HashSet::new());
        if let Some(r) = decoded.rejected.first() {
            return Ok(Some(format!("{} ({} stage)", r.error, r.stage.as_str())));
        }
        match apply_batch(tx, sql, &decoded).await {
            Ok(_) => Ok(None),
            Err(error) if classify(&error) == ErrorClass::BadRecord => Ok(Some(format!(
                "{} (database stage, table {})",
                describe(&error),
                mapping.table
            ))),
            Err(error) => Err(error),
        }
    }

    /// Makes the connection's stage tables those of `plan`, inside the transaction.
    async fn stage(&self, tx: &mut PgConnection, plan: usize) -> Result<Option<String>, Error> {
        if self.staged == Some(plan) {
            return Ok(None);
        }
        let Plan { mapping, sql, .. } = &self.plans[plan];
        let [sql] = sql;
        for statement in [
            "DROP TABLE IF EXISTS pg_temp.kps_stage_0, pg_temp.kps_delete_0",
            &sql.create_stage,
            &sql.create_delete_stage,
        ] {
            if let Err(error) = sqlx::query(statement).execute(&mut *tx).await {
                let error = Error::from(error);
                if classify(&error) == ErrorClass::Transient {
                    return Err(error);
                }
                return Ok(Some(format!(
                    "cannot prepare writes to table {} ({}); the table and its columns must exist",
                    mapping.table,
                    describe(&error)
                )));
            }
        }
        Ok(None)
    }
}

impl Stored {
    /// The record as it was consumed, header bytes included (dead letters written before
    /// headers were stored losslessly give back their text, with invalid bytes replaced).
    fn record(&self) -> Result<Record, String> {
        let headers = headers_from_json(&self.headers)?;
        Ok(Record::new(
            TopicPartition::new(self.topic.as_str(), self.partition),
            self.offset,
            self.timestamp_ms,
            self.record_key.as_deref(),
            self.record_value.as_deref(),
            headers,
        ))
    }
}

fn dead_letters_table(schema: &Ident) -> String {
    format!("{}.\"dead_letters\"", schema.quoted())
}
