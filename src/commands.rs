//! The operator subcommands other than `run`: they print a report and return an exit status.

use std::process::ExitCode;

use crate::app::connect_pool;
use crate::config::Config;
use crate::sink::replay::{self, Filter};
use crate::sink::{check_database, migrate};
use tokio_util::sync::CancellationToken;

/// `check`: the configuration against the database; non-zero with a report when anything is off.
pub async fn check(config: &Config) -> anyhow::Result<ExitCode> {
    let pool = connect_pool(config, &CancellationToken::new()).await?;
    let problems = check_database(&pool, config).await?;
    if problems.is_empty() {
        println!(
            "ok: {} mapping(s) can run against this database",
            config.mappings.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} problem(s):", problems.len());
    for p in &problems {
        println!("  - {p}");
    }
    Ok(ExitCode::FAILURE)
}

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
