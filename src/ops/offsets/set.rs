//! `offsets set`: plans new offsets for a topic's partitions, prints the plan, refuses while the
//! group has live members (unless `--force`), and writes the plan in one transaction.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use sqlx::{PgPool, Row};

use super::cluster::Cluster;
use super::stored::{load_stored, offsets_table};
use super::{SetArgs, Target};
use crate::config::Config;

/// One partition of a `set` plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Planned {
    pub(super) partition: i32,
    pub(super) low: i64,
    pub(super) high: i64,
    pub(super) old: Option<i64>,
    pub(super) new: i64,
}

/// `offsets set`.
pub(super) async fn set(
    config: &Config,
    pool: &PgPool,
    cluster: &Cluster,
    args: &SetArgs,
) -> anyhow::Result<ExitCode> {
    let (group, topic) = (&config.kafka.group_id, &args.topic);
    let plan = plan(config, pool, cluster, args, args.target()?).await?;
    println!("plan for consumer group `{group}`:");
    print_offsets(
        "  ",
        topic,
        plan.iter().map(|p| (p.partition, p.old, p.new)),
    );
    let outside = outside_the_log(topic, &plan);
    if !outside.is_empty() {
        if !args.force {
            eprintln!(
                "refused: {}; pass --force to set it anyway",
                outside.join("; ")
            );
            return Ok(ExitCode::FAILURE);
        }
        println!("--force: {}", outside.join("; "));
    }
    let refusal = group_refusal(cluster, group).await;
    if !args.execute {
        if let Some(refusal) = refusal {
            println!("note: --execute would be refused without --force: {refusal}");
        }
        println!("dry run: nothing changed; add --execute to apply");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(refusal) = refusal {
        if !args.force {
            eprintln!("refused: {refusal}. {FORCE_HINT}");
            return Ok(ExitCode::FAILURE);
        }
        println!("--force: proceeding although {refusal}");
    }
    let replaced = write(pool, config, topic, &plan).await?;
    print_offsets(
        "set ",
        topic,
        plan.iter()
            .map(|p| (p.partition, replaced.get(&p.partition).copied(), p.new)),
    );
    println!(
        "done: {} partition(s) of `{topic}` set in one transaction",
        plan.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `topic/partition: old -> new` lines.
fn print_offsets(
    prefix: &str,
    topic: &str,
    changes: impl Iterator<Item = (i32, Option<i64>, i64)>,
) {
    for (partition, old, new) in changes {
        let unchanged = if old == Some(new) { " (unchanged)" } else { "" };
        let old = old.map_or_else(|| "-".into(), |o| o.to_string());
        println!("{prefix}{topic}/{partition}: {old} -> {new}{unchanged}");
    }
}

/// A line per planned offset that lies outside its partition's log.
pub(super) fn outside_the_log(topic: &str, plan: &[Planned]) -> Vec<String> {
    plan.iter()
        .filter(|p| !(p.low..=p.high).contains(&p.new))
        .map(|p| {
            format!(
                "{topic}/{}: {} is outside the log, {}..={}",
                p.partition, p.new, p.low, p.high
            )
        })
        .collect()
}

/// Why `set --execute` must not go ahead without `--force`, if it must not.
async fn group_refusal(cluster: &Cluster, group: &str) -> Option<String> {
    match cluster.members(group).await {
        Ok(members) if members.is_empty() => None,
        Ok(members) => Some(format!(
            "consumer group `{group}` has {} live member(s): {}",
            members.len(),
            members.join(", ")
        )),
        // Fail safe: a broker that cannot list the group (ACLs, or one without ListGroups and
        // DescribeGroups such as librdkafka's mock cluster) might have members.
        Err(error) => Some(format!(
            "cannot tell whether consumer group `{group}` has live members ({error})"
        )),
    }
}

/// Why `--force` is safe, for the refusal message.
const FORCE_HINT: &str = "Stop every replica first (one killed without SIGTERM, or any with \
     kafka.group_instance_id set, stays a member until its session times out), or pass --force: \
     a replica still running is then fenced at its next commit (its compare-and-set expects the \
     old offset, so its transaction rolls back) and re-reads from the new offset, so nothing is \
     applied twice.";

/// The target offset of every selected partition.
async fn plan(
    config: &Config,
    pool: &PgPool,
    cluster: &Cluster,
    args: &SetArgs,
    target: Target,
) -> anyhow::Result<Vec<Planned>> {
    let topic = &args.topic;
    let Some(mut partitions) = cluster.partitions(topic).await? else {
        bail!("topic `{topic}` does not exist on the broker");
    };
    if let Some(p) = args.partition {
        if !partitions.contains(&p) {
            bail!(
                "topic `{topic}` has no partition {p} (it has {})",
                partitions.len()
            );
        }
        partitions = vec![p];
    }
    let marks = cluster.watermarks(topic, &partitions).await?;
    let stored = load_stored(pool, config, topic).await?;
    let at_time = match target {
        Target::Timestamp(ms) => cluster.offsets_at(topic, &partitions, ms).await?,
        _ => BTreeMap::new(),
    };
    Ok(marks
        .iter()
        .map(|(&partition, &(low, high))| Planned {
            partition,
            low,
            high,
            old: stored.get(&partition).map(|s| s.next_offset),
            new: resolve(
                target,
                low,
                high,
                at_time.get(&partition).copied().flatten(),
            ),
        })
        .collect())
}

/// `found` is the offset looked up by timestamp, None when no record is that recent.
pub(super) fn resolve(target: Target, low: i64, high: i64, found: Option<i64>) -> i64 {
    match target {
        Target::Earliest => low,
        Target::Latest => high,
        Target::Offset(offset) => offset,
        Target::Timestamp(_) => found.unwrap_or(high),
    }
}

/// Writes the plan in one transaction; returns the offsets it replaced.
async fn write(
    pool: &PgPool,
    config: &Config,
    topic: &str,
    plan: &[Planned],
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let table = offsets_table(config);
    let partitions: Vec<i32> = plan.iter().map(|p| p.partition).collect();
    let offsets: Vec<i64> = plan.iter().map(|p| p.new).collect();
    let mut tx = pool.begin().await?;
    // Locking first makes the replaced values exact; a replica committing meanwhile waits for
    // this transaction and is then fenced.
    let replaced = sqlx::query(&format!(
        "SELECT partition, next_offset FROM {table} \
         WHERE group_id = $1 AND topic = $2 AND partition = ANY($3) ORDER BY partition FOR UPDATE"
    ))
    .bind(&config.kafka.group_id)
    .bind(topic)
    .bind(&partitions)
    .fetch_all(&mut *tx)
    .await
    .context("locking stored offsets")?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<Result<BTreeMap<i32, i64>, sqlx::Error>>()?;
    sqlx::query(&format!(
        "INSERT INTO {table} (group_id, topic, partition, next_offset) \
         SELECT $1, $2, p, o FROM unnest($3::integer[], $4::bigint[]) AS u(p, o) \
         ON CONFLICT (group_id, topic, partition) \
         DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()"
    ))
    .bind(&config.kafka.group_id)
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .execute(&mut *tx)
    .await
    .context("writing offsets")?;
    tx.commit().await.context("committing offsets")?;
    Ok(replaced)
}
