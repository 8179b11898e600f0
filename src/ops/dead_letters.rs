//! The `dead-letters` subcommand: list dead letters, or replay them (a dry run unless
//! `--execute`), printing a report and returning an exit status.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::replay::{self, Filter};
use crate::app::connect_pool;
use crate::config::Config;
use crate::sink::migrate;

/// `dead-letters list`.
pub async fn list_dead_letters(config: &Config, filter: &Filter) -> anyhow::Result<ExitCode> {
    let pool = connect_pool(config, &CancellationToken::new()).await?;
    migrate(&pool, &config.schema).await?;
    let rows = replay::list(&pool, config, filter).await?;
    println!(
        "{:>8}  {:<32} {:>9} {:>12}  {:<24} {:<8}  {:<8} error",
        "id", "topic", "partition", "offset", "table", "stage", "replayed"
    );
    for d in &rows {
        println!(
            "{:>8}  {:<32} {:>9} {:>12}  {:<24} {:<8}  {:<8} {}",
            d.id,
            d.topic,
            d.partition,
            d.offset,
            d.target_table,
            d.stage,
            if d.replayed_at.is_some() { "yes" } else { "no" },
            d.error
        );
    }
    println!("{} dead letter(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// `dead-letters replay`: dry run unless `execute`.
pub async fn replay_dead_letters(
    config: &Config,
    filter: &Filter,
    execute: bool,
) -> anyhow::Result<ExitCode> {
    let pool = connect_pool(config, &CancellationToken::new()).await?;
    migrate(&pool, &config.schema).await?;
    let report = replay::replay(&pool, config, filter, !execute).await?;
    let verb = if execute {
        "replayed"
    } else {
        "would replay (dry run; add --execute)"
    };
    println!(
        "{verb}: {} dead letter(s) {:?}",
        report.replayed.len(),
        report.replayed
    );
    for (id, reason) in &report.failed {
        println!("still failing: {id}: {reason}");
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
