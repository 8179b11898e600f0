//! Start-up checks of the database against the configuration (also the `check` subcommand).
//!
//! Guarantee: every mismatch the writer would otherwise meet on its first batch (a missing table
//! or column, a column an explicit conversion cannot feed, no arbiter index for `ON CONFLICT`, a
//! `NOT NULL` column nobody fills, missing own tables) is reported before anything is consumed,
//! all at once, one line each, naming the mapping and the change to make. Only the catalog is
//! read, and names reach it as bind parameters.
//!
//! - `catalog`: the reads (a table's columns, unique indexes, triggers) and the column types the
//!   writers plan with.
//! - `rules`: what a table must be for a mapping, pure and unit-tested.

mod catalog;
mod rules;

use sqlx::PgPool;

use crate::config::Config;
use crate::error::Error;
use crate::ident::Ident;
pub use catalog::{column_types, copies_like_inserts};
use catalog::{find_table, Table};

/// The connector's own tables (see migrations/), in `postgres.schema`.
const OWN_TABLES: &[&str] = &["offsets", "dead_letters"];

/// Checks every mapped table and the connector's own tables; returns every problem found, each
/// saying what to change. An empty list means the configuration can run against this database.
/// Err only when the catalog cannot be read.
pub async fn check_database(pool: &PgPool, config: &Config) -> Result<Vec<String>, Error> {
    let mut problems = own_tables(pool, &config.schema).await?;
    for (i, mapping) in config.mappings.iter().enumerate() {
        let context = format!(
            "mappings[{i}] (topic {} → {})",
            mapping.topic, mapping.table
        );
        let found = match find_table(pool, &mapping.table).await? {
            Ok(oid) => rules::check_mapping(mapping, &Table::load(pool, oid).await?),
            // The other checks would only repeat that the table is missing.
            Err(missing) => vec![missing],
        };
        problems.extend(found.into_iter().map(|p| format!("{context}: {p}")));
    }
    Ok(problems)
}

async fn own_tables(pool: &PgPool, schema: &Ident) -> Result<Vec<String>, Error> {
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p')",
    )
    .bind(schema.as_str())
    .bind(OWN_TABLES)
    .fetch_all(pool)
    .await?;
    Ok(OWN_TABLES
        .iter()
        .filter(|t| !found.iter().any(|f| f == *t))
        .map(|t| {
            format!(
                "postgres.schema: the connector's table {schema}.{t} does not exist; \
                 run `kafka-pg-sink migrate` (or start the connector, which migrates first)"
            )
        })
        .collect())
}
