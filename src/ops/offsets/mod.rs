//! The `offsets` subcommand: the offsets stored in Postgres next to the broker's logs, and a way
//! to move them.
//!
//! Guarantee: `set --execute` writes every planned partition in one transaction, or none. A
//! replica still running when an offset moves (only with `--force`) cannot commit past the
//! change: its next compare-and-set expects the old offset, is fenced and rolled back, and the
//! replica re-reads from the new offset, so no batch lands on top of the change.

mod cluster;
mod set;
mod show;
mod stored;
#[cfg(test)]
mod tests;

use std::process::ExitCode;

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;

use crate::app::connect_pool;
use crate::config::Config;
use crate::decode::convert::parse_timestamp_millis;
use crate::sink::migrate;

use cluster::Cluster;
use set::set;
use show::show;

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
