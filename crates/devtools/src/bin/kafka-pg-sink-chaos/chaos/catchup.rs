//! The end of a run: the connector must catch up with the log (every stored offset at the log
//! end) before anything is verified.

use std::time::{Duration, Instant};

use anyhow::Result;
use sqlx::PgPool;

use super::faults::Env;
use super::say;

/// Waits until every partition's stored offset is its log end, keeping replicas running.
pub async fn settle(
    pool: &PgPool,
    env: &mut Env,
    group: &str,
    topic: &str,
    ends: &[i64],
    timeout: Duration,
) -> Result<()> {
    say(&format!(
        "waiting for the stored offsets to reach the log ends {ends:?}"
    ));
    let deadline = Instant::now() + timeout;
    let mut stored = Vec::new();
    while Instant::now() < deadline {
        stored = stored_offsets(pool, group, topic, ends.len())
            .await
            .unwrap_or_default();
        if stored == ends {
            say("every stored offset is at the log end");
            return Ok(());
        }
        env.fleet.tend(&mut env.violations)?;
        if env.broker.died().is_some() {
            // Nothing can progress; the caller reports the run as inconclusive.
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    env.violations.push(format!(
        "stored offsets {stored:?} did not reach the log ends {ends:?} within {timeout:?}"
    ));
    Ok(())
}

/// Stored next offset per partition (0 where none is stored).
async fn stored_offsets(
    pool: &PgPool,
    group: &str,
    topic: &str,
    partitions: usize,
) -> Result<Vec<i64>> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM kafka_pg_sink.offsets WHERE group_id = $1 AND topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    let mut stored = vec![0; partitions];
    for (p, next) in rows {
        if let Some(slot) = stored.get_mut(p as usize) {
            *slot = next;
        }
    }
    Ok(stored)
}
