//! The `migrate` subcommand: apply the connector's own migrations and stop (the connector also
//! applies them at start-up).

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::app::connect_pool;
use crate::config::Config;
use crate::sink;

/// Applies the connector's migrations (the `migrate` subcommand).
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let pool = connect_pool(config, &CancellationToken::new()).await?;
    sink::migrate(&pool, &config.schema)
        .await
        .context("applying migrations")?;
    tracing::info!(schema = %config.schema, "Migrations applied.");
    Ok(())
}
