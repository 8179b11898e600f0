//! The `offsets` subcommand: the offsets stored in Postgres next to the broker's logs, and a way
//! to move them.
//!
//! Guarantee: `set --execute` writes every planned partition in one transaction, or none. A
//! replica still running when an offset moves (only with `--force`) cannot commit past the
//! change: its next compare-and-set expects the old offset, is fenced and rolled back, and the
//! replica re-reads from the new offset, so no batch lands on top of the change.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::app::connect_pool;
use crate::config::{Config, OffsetReset};
use crate::convert::{format_timestamp_millis, parse_timestamp_millis};
use crate::sink::migrate;

/// How long one broker request (metadata, watermarks, timestamps, group list) may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// `offsets` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum OffsetsCommand {
    /// Show stored offsets with the broker's log start/end and the lag per partition.
    Show {
        /// Only this topic (default: every mapped topic).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Set or reset stored offsets (dry run unless --execute).
    Set(SetArgs),
}

/// `offsets set`: exactly one target.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
pub struct SetArgs {
    /// The topic whose offsets to set.
    #[arg(long)]
    pub topic: String,
    /// One partition; all partitions of the topic when omitted.
    #[arg(long)]
    pub partition: Option<i32>,
    /// The log start (the oldest record the broker still has).
    #[arg(long, group = "target")]
    pub to_earliest: bool,
    /// The log end (skip everything not yet applied).
    #[arg(long, group = "target")]
    pub to_latest: bool,
    /// This offset; it must lie between the log start and end unless --force.
    #[arg(long, group = "target")]
    pub to_offset: Option<i64>,
    /// RFC 3339 timestamp: the first offset whose record timestamp is at or after it.
    #[arg(long, group = "target")]
    pub to_timestamp: Option<String>,
    /// Apply the change (otherwise only print the plan).
    #[arg(long)]
    pub execute: bool,
    /// Proceed even while the consumer group has live members.
    #[arg(long)]
    pub force: bool,
}

/// Where `set` moves each partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    /// Epoch milliseconds.
    Timestamp(i64),
}

impl SetArgs {
    fn target(&self) -> anyhow::Result<Target> {
        Ok(match (&self.to_offset, &self.to_timestamp) {
            (Some(offset), _) if *offset < 0 => {
                bail!("--to-offset must be 0 or more, not {offset}")
            }
            (Some(offset), _) => Target::Offset(*offset),
            (_, Some(text)) => Target::Timestamp(
                parse_timestamp_millis(text)
                    .map_err(|e| anyhow::anyhow!("--to-timestamp `{text}`: {e}"))?,
            ),
            _ if self.to_latest => Target::Latest,
            _ => Target::Earliest,
        })
    }
}

/// Runs an `offsets` subcommand.
pub async fn run(config: &Config, command: OffsetsCommand) -> anyhow::Result<ExitCode> {
    let pool = connect_pool(config, &CancellationToken::new()).await?;
    migrate(&pool, &config.schema)
        .await
        .context("applying migrations")?;
    let cluster = Cluster::connect(config)?;
    match command {
        OffsetsCommand::Show { topic } => show(config, &pool, &cluster, topic).await,
        OffsetsCommand::Set(args) => set(config, &pool, &cluster, &args).await,
    }
}

/// A metadata-only Kafka client. It has no `group.id` on purpose: it must never join the
/// connector's group, which would rebalance the running replicas.
#[derive(Clone)]
struct Cluster(Arc<BaseConsumer>);

impl Cluster {
    fn connect(config: &Config) -> anyhow::Result<Self> {
        let mut client = ClientConfig::new();
        for (key, value) in &config.kafka.properties {
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", &config.kafka.brokers)
            .set_log_level(RDKafkaLogLevel::Warning);
        if !config.kafka.properties.contains_key("client.id") {
            client.set("client.id", "kafka-pg-sink-offsets");
        }
        let consumer = client.create().context("creating the Kafka client")?;
        Ok(Self(Arc::new(consumer)))
    }

    /// Runs blocking librdkafka calls off the async runtime.
    async fn call<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&BaseConsumer) -> anyhow::Result<T> + Send + 'static,
    {
        let consumer = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || f(&consumer))
            .await
            .context("broker request task failed")?
    }

    /// The topic's partitions, sorted; None when the broker does not know the topic.
    async fn partitions(&self, topic: &str) -> anyhow::Result<Option<Vec<i32>>> {
        let topic = topic.to_owned();
        self.call(move |c| {
            let metadata = c
                .fetch_metadata(Some(&topic), BROKER_TIMEOUT)
                .with_context(|| format!("fetching the metadata of topic `{topic}`"))?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Ok(None);
            };
            match found.error().map(RDKafkaErrorCode::from) {
                None => {}
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Ok(None),
                Some(code) => bail!("metadata of topic `{topic}`: {code}"),
            }
            let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
            partitions.sort_unstable();
            Ok(Some(partitions))
        })
        .await
    }

    /// (log start, log end) per partition.
    async fn watermarks(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<BTreeMap<i32, (i64, i64)>> {
        let (topic, partitions) = (topic.to_owned(), partitions.to_vec());
        self.call(move |c| {
            partitions
                .into_iter()
                .map(|p| {
                    let marks =
                        c.fetch_watermarks(&topic, p, BROKER_TIMEOUT)
                            .with_context(|| {
                                format!("fetching the log start and end of {topic}/{p}")
                            })?;
                    Ok((p, marks))
                })
                .collect()
        })
        .await
    }

    /// Per partition, the first offset whose record timestamp is at or after `ms`; None where
    /// no record is that recent.
    async fn offsets_at(
        &self,
        topic: &str,
        partitions: &[i32],
        ms: i64,
    ) -> anyhow::Result<BTreeMap<i32, Option<i64>>> {
        let mut list = TopicPartitionList::new();
        for p in partitions {
            list.add_partition_offset(topic, *p, Offset::Offset(ms))?;
        }
        let found = self
            .call(move |c| Ok(c.offsets_for_times(list, BROKER_TIMEOUT)?))
            .await
            .context("looking up offsets by timestamp")?;
        found
            .elements()
            .iter()
            .map(|e| {
                e.error().with_context(|| {
                    format!("offset by timestamp of {}/{}", e.topic(), e.partition())
                })?;
                match e.offset() {
                    Offset::Offset(offset) => Ok((e.partition(), Some(offset))),
                    Offset::End => Ok((e.partition(), None)),
                    other => bail!(
                        "offset by timestamp of {}/{}: unexpected {other:?}",
                        e.topic(),
                        e.partition()
                    ),
                }
            })
            .collect()
    }

    /// The live members of `group`, described for an operator.
    async fn members(&self, group: &str) -> anyhow::Result<Vec<String>> {
        let group = group.to_owned();
        self.call(move |c| {
            let list = c.fetch_group_list(Some(&group), BROKER_TIMEOUT)?;
            Ok(list
                .groups()
                .iter()
                .filter(|g| g.name() == group)
                .flat_map(|g| g.members())
                .map(|m| {
                    format!(
                        "{} at {} (member id {})",
                        m.client_id(),
                        m.client_host().trim_start_matches('/'),
                        m.id()
                    )
                })
                .collect())
        })
        .await
    }
}

/// One stored offsets row.
#[derive(Clone, Copy, Debug)]
struct Stored {
    next_offset: i64,
    /// `updated_at` in epoch milliseconds.
    updated_ms: i64,
}

fn offsets_table(config: &Config) -> String {
    format!("{}.\"offsets\"", config.schema.quoted())
}

async fn load_stored(
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

/// `offsets show` columns, and which are right-aligned.
const COLUMNS: [&str; 8] = [
    "topic",
    "partition",
    "stored",
    "log start",
    "log end",
    "lag",
    "updated at",
    "",
];
const RIGHT_ALIGNED: [bool; 8] = [false, true, true, true, true, true, false, false];

/// `offsets show`.
async fn show(
    config: &Config,
    pool: &PgPool,
    cluster: &Cluster,
    topic: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut rows = vec![COLUMNS.map(String::from).to_vec()];
    for topic in topic.map_or_else(|| config.topics(), |t| vec![t]) {
        let stored = load_stored(pool, config, &topic).await?;
        let partitions = cluster.partitions(&topic).await?.unwrap_or_default();
        let marks = cluster.watermarks(&topic, &partitions).await?;
        // Stored rows of partitions the broker does not have are shown too, flagged.
        let orphans = stored.keys().filter(|p| !marks.contains_key(p));
        for p in partitions.iter().chain(orphans) {
            rows.push(show_row(&topic, *p, stored.get(p), marks.get(p).copied()));
        }
        if partitions.is_empty() {
            let mut row = vec!["-".to_string(); COLUMNS.len()];
            (row[0], row[7]) = (topic, "WARNING: topic not on the broker".into());
            rows.push(row);
        }
    }
    println!("consumer group `{}`", config.kafka.group_id);
    print!("{}", render(&rows, &RIGHT_ALIGNED));
    if rows.iter().any(|r| r[5].ends_with('*')) {
        let start = match config.kafka.auto_offset_reset {
            OffsetReset::Earliest => "start",
            OffsetReset::Latest => "end",
        };
        println!(
            "* no stored offset: lag counted from the log start; the connector starts such a \
             partition at the log {start} (kafka.auto_offset_reset)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A `show` line; `marks` is None for a stored partition the broker does not have.
fn show_row(
    topic: &str,
    partition: i32,
    stored: Option<&Stored>,
    marks: Option<(i64, i64)>,
) -> Vec<String> {
    let dash = || "-".to_string();
    let (lag, warning) = match marks {
        None => (dash(), "WARNING: partition not on the broker"),
        Some((low, high)) => match stored.map(|s| s.next_offset) {
            None => (format!("{}*", high - low), ""),
            Some(s) if s < low => (
                (high - s).to_string(),
                "WARNING: below log start (records lost to retention)",
            ),
            Some(s) if s > high => (
                (high - s).to_string(),
                "WARNING: beyond log end (topic recreated?)",
            ),
            Some(s) => ((high - s).to_string(), ""),
        },
    };
    vec![
        topic.to_owned(),
        partition.to_string(),
        stored.map_or_else(dash, |s| s.next_offset.to_string()),
        marks.map_or_else(dash, |m| m.0.to_string()),
        marks.map_or_else(dash, |m| m.1.to_string()),
        lag,
        stored.map_or_else(dash, |s| format_timestamp_millis(s.updated_ms)),
        warning.to_owned(),
    ]
}

/// Rows as aligned columns (two spaces apart), `right[i]` right-aligning column `i`.
fn render(rows: &[Vec<String>], right: &[bool]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| match right.get(i) {
                Some(true) => format!("{c:>w$}", w = widths[i]),
                _ => format!("{c:<w$}", w = widths[i]),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One partition of a `set` plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Planned {
    partition: i32,
    low: i64,
    high: i64,
    old: Option<i64>,
    new: i64,
}

/// `offsets set`.
async fn set(
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
fn outside_the_log(topic: &str, plan: &[Planned]) -> Vec<String> {
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
fn resolve(target: Target, low: i64, high: i64, found: Option<i64>) -> i64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: OffsetsCommand,
    }

    fn parse(args: &[&str]) -> Result<OffsetsCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("offsets").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    #[test]
    fn set_takes_exactly_one_target() {
        Cli::command().debug_assert();
        assert!(parse(&["set", "--topic", "t"]).is_err());
        assert!(parse(&["set", "--topic", "t", "--to-earliest", "--to-latest"]).is_err());
        let Ok(OffsetsCommand::Set(args)) = parse(&["set", "--topic", "t", "--to-offset", "7"])
        else {
            panic!("parses");
        };
        assert_eq!(args.target().unwrap(), Target::Offset(7));
        let Ok(OffsetsCommand::Set(args)) = parse(&[
            "set",
            "--topic",
            "t",
            "--to-timestamp",
            "1970-01-01T00:00:01Z",
        ]) else {
            panic!("parses");
        };
        assert_eq!(args.target().unwrap(), Target::Timestamp(1000));
        let Ok(OffsetsCommand::Set(args)) =
            parse(&["set", "--topic", "t", "--to-timestamp", "yesterday"])
        else {
            panic!("parses");
        };
        assert!(args.target().is_err());
    }

    #[test]
    fn targets_resolve_against_the_watermarks() {
        assert_eq!(resolve(Target::Earliest, 3, 9, None), 3);
        assert_eq!(resolve(Target::Latest, 3, 9, None), 9);
        assert_eq!(resolve(Target::Offset(5), 3, 9, None), 5);
        assert_eq!(resolve(Target::Timestamp(0), 3, 9, Some(4)), 4);
        assert_eq!(
            resolve(Target::Timestamp(0), 3, 9, None),
            9,
            "nothing that recent: log end"
        );
        let p = |partition, new| Planned {
            partition,
            low: 3,
            high: 9,
            old: None,
            new,
        };
        let plan = [p(0, 3), p(1, 9), p(2, 2), p(3, 10)];
        assert_eq!(
            outside_the_log("t", &plan),
            [
                "t/2: 2 is outside the log, 3..=9",
                "t/3: 10 is outside the log, 3..=9"
            ]
        );
    }

    #[test]
    fn show_rows_compute_lag_and_flag_offsets_outside_the_log() {
        let stored = |next_offset| Stored {
            next_offset,
            updated_ms: 0,
        };
        let row = show_row("t", 1, Some(&stored(7)), Some((2, 10)));
        assert_eq!(row[..6], ["t", "1", "7", "2", "10", "3"]);
        assert_eq!(row[6], "1970-01-01T00:00:00.000Z");
        assert_eq!(row[7], "");
        assert_eq!(show_row("t", 1, None, Some((2, 10)))[5], "8*");
        assert!(show_row("t", 1, Some(&stored(1)), Some((2, 10)))[7].contains("retention"));
        assert!(show_row("t", 1, Some(&stored(11)), Some((2, 10)))[7].contains("beyond log end"));
        assert!(show_row("t", 1, Some(&stored(11)), None)[7].contains("not on the broker"));
    }

    #[test]
    fn render_aligns_columns() {
        let rows = vec![
            vec!["topic".to_string(), "lag".into(), "".into()],
            vec!["a".to_string(), "12345".into(), "".into()],
        ];
        assert_eq!(
            render(&rows, &[false, true, false]),
            "topic    lag\na      12345\n"
        );
    }
}
