//! The offset store: where each partition resumes, and the compare-and-set that fences writers.
//!
//! Guarantee: the stored offset of a partition only moves forward, and only inside the
//! transaction that writes the rows of the records before it (or, with no row in between, past
//! transaction markers and aborted records). A partition's first row is where it starts, stored
//! at its first assignment only if no row exists; an out-of-range reset is the one move back.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool, Row};

use crate::error::Error;
use crate::ident::Ident;
use crate::record::TopicPartition;

/// SQL for the offsets table, built once from the configured schema.
#[derive(Clone, Debug)]
pub struct OffsetSql {
    /// CAS: `$1 group, $2 topic, $3 partition, $4 new, $5 expected`; one row affected or fenced.
    pub advance: String,
    /// Like `advance` without the forward-only condition, for an out-of-range reset.
    pub rewind: String,
    /// First commit of a partition: `$1..$4`; one row inserted, or fenced if a row appeared.
    pub insert_first: String,
    /// `$1 group, $2 topic, $3 partition` → `next_offset`.
    pub select_one: String,
    /// `$1 group, $2 topics[]` → `topic, partition, next_offset`.
    pub select_topics: String,
}

impl OffsetSql {
    pub fn new(schema: &Ident) -> Self {
        let table = format!("{}.\"offsets\"", schema.quoted());
        Self {
            advance: format!(
                "UPDATE {table} SET next_offset = $4, updated_at = now() \
                 WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset = $5 AND $4 > $5"
            ),
            rewind: format!(
                "UPDATE {table} SET next_offset = $4, updated_at = now() \
                 WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset = $5"
            ),
            insert_first: format!(
                "INSERT INTO {table} (group_id, topic, partition, next_offset) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (group_id, topic, partition) DO NOTHING"
            ),
            select_one: format!(
                "SELECT next_offset FROM {table} WHERE group_id = $1 AND topic = $2 AND partition = $3"
            ),
            select_topics: format!(
                "SELECT topic, partition, next_offset FROM {table} WHERE group_id = $1 AND topic = ANY($2)"
            ),
        }
    }
}

/// Reads stored offsets for a consumer group.
#[derive(Clone, Debug)]
pub struct OffsetStore {
    pool: PgPool,
    group: String,
    sql: OffsetSql,
}

impl OffsetStore {
    pub fn new(pool: PgPool, schema: &Ident, group: &str) -> Self {
        Self {
            pool,
            group: group.to_owned(),
            sql: OffsetSql::new(schema),
        }
    }

    /// Stored next offsets for these partitions; absent means never committed.
    pub async fn load(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>, Error> {
        let mut topics: Vec<&str> = partitions.iter().map(|tp| &*tp.topic).collect();
        topics.sort_unstable();
        topics.dedup();
        let rows = sqlx::query(&self.sql.select_topics)
            .bind(&self.group)
            .bind(&topics)
            .fetch_all(&self.pool)
            .await?;
        let mut found = HashMap::new();
        for row in rows {
            let tp = TopicPartition::new(row.try_get::<String, _>(0)?, row.try_get(1)?);
            if partitions.contains(&tp) {
                found.insert(tp, row.try_get::<i64, _>(2)?);
            }
        }
        Ok(found)
    }
}

impl OffsetStore {
    /// Stores where partitions without a stored offset start, unless a row appeared meanwhile
    /// (another replica stored or committed first: its row stays).
    pub async fn insert_starts(&self, starts: &[(TopicPartition, i64)]) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        for (tp, start) in starts {
            sqlx::query(&self.sql.insert_first)
                .bind(&self.group)
                .bind(&*tp.topic)
                .bind(tp.partition)
                .bind(start)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The stored next offset of one partition, read on `conn`.
pub async fn load_one(
    conn: &mut PgConnection,
    sql: &OffsetSql,
    group: &str,
    tp: &TopicPartition,
) -> Result<Option<i64>, Error> {
    let row = sqlx::query(&sql.select_one)
        .bind(group)
        .bind(&*tp.topic)
        .bind(tp.partition)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => Some(row.try_get(0)?),
        None => None,
    })
}

/// Advances the partition's offset from `expected` to `next` inside the caller's transaction
/// (backwards only with `rewind`, after an out-of-range reset). Returns false when the stored
/// value is not `expected` (another writer moved it): the caller must roll back.
pub async fn compare_and_set(
    tx: &mut PgConnection,
    sql: &OffsetSql,
    group: &str,
    tp: &TopicPartition,
    expected: Option<i64>,
    next: i64,
    rewind: bool,
) -> Result<bool, Error> {
    let query = match expected {
        Some(expected) => sqlx::query(if rewind { &sql.rewind } else { &sql.advance })
            .bind(group)
            .bind(&*tp.topic)
            .bind(tp.partition)
            .bind(next)
            .bind(expected),
        None => sqlx::query(&sql.insert_first)
            .bind(group)
            .bind(&*tp.topic)
            .bind(tp.partition)
            .bind(next),
    };
    Ok(query.execute(tx).await?.rows_affected() == 1)
}
