//! The offsets stored in Postgres for the connector's consumer group, read per topic.

use std::collections::BTreeMap;

use anyhow::Context as _;
use sqlx::{PgPool, Row};

use crate::config::Config;

/// One stored offsets row.
#[derive(Clone, Copy, Debug)]
pub(super) struct Stored {
    pub(super) next_offset: i64,
    /// `updated_at` in epoch milliseconds.
    pub(super) updated_ms: i64,
}

pub(super) fn offsets_table(config: &Config) -> String {
    format!("{}.\"offsets\"", config.schema.quoted())
}

pub(super) async fn load_stored(
    pool: &PgPool,
    config: &Config,
    topic: &str,
) -> anyhow::Result<BTreeMap<i32, Stored>> {
    let sql = format!(
        "SELECT partition, next_offset, (extract(epoch FROM updated_at) * 1000)::bigint \
         FROM {} WHERE group_id = $1 AND topic = $2",
        offsets_table(config)
    );
    let rows = sqlx::query(&sql)
        .bind(&config.kafka.group_id)
        .bind(topic)
        .fetch_all(pool)
        .await
        .context("reading stored offsets")?;
    rows.iter()
        .map(|r| {
            let stored = Stored {
                next_offset: r.try_get(1)?,
                updated_ms: r.try_get(2)?,
            };
            Ok((r.try_get(0)?, stored))
        })
        .collect()
}
