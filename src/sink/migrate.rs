//! The connector's own tables, applied by sqlx's migrator into the configured schema.

use sqlx::migrate::Migrator;
use sqlx::PgPool;

use crate::error::Error;
use crate::ident::Ident;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// An arbitrary constant: replicas starting together take turns creating the schema.
const LOCK_KEY: i64 = 0x006b_7073_5f6d_6967;

/// Creates `schema` if needed and applies pending migrations inside it.
pub async fn migrate(pool: &PgPool, schema: &Ident) -> Result<(), Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    let result = async {
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted()))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("SET search_path TO {}", schema.quoted()))
            .execute(&mut *conn)
            .await?;
        MIGRATOR.run(&mut *conn).await?;
        sqlx::query("RESET search_path").execute(&mut *conn).await?;
        Ok::<(), Error>(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    result
}
