//! Start-up checks of the database against the configuration (also the `check` subcommand).
//! (Being written.)

use sqlx::PgPool;

use crate::config::Config;
use crate::error::Error;

/// Checks every mapped table and the connector's own tables; returns every problem found, each
/// saying what to change. An empty list means the configuration can run against this database.
pub async fn check_database(_pool: &PgPool, _config: &Config) -> Result<Vec<String>, Error> {
    Ok(Vec::new())
}
