//! The `check` subcommand: the start-up check of the database against the configuration
//! ([`check_database`]), run on its own and printed one problem a line.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::app::connect_pool;
use crate::config::Config;
use crate::sink::check_database;

/// `check`: the configuration against the database; non-zero with a report when anything is off.
pub async fn check(config: &Config) -> anyhow::Result<ExitCode> {
    let pool = connect_pool(config, &CancellationToken::new()).await?;
    let mut problems = check_database(&pool, config).await?;
    problems.extend(crate::registry::check::check(config).await?);
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
