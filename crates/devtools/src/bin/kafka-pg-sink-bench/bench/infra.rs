//! The infrastructure the benchmark runs against: a Kafka-protocol broker (the test kit's mock
//! broker host in its own process, or a real cluster from `KAFKA_BROKERS`) and a PostgreSQL server
//! (`DATABASE_URL`) on which every phase gets a fresh database.

use anyhow::{Context, Result};
use rdkafka::consumer::BaseConsumer;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use testkit::broker::cluster;
use testkit::db::with_database;

use super::procs;

pub use testkit::broker::Broker;

/// A consumer for repeated watermark queries (no group).
pub fn watermark_client(broker: &Broker) -> Result<BaseConsumer> {
    cluster::plain_client(&broker.bootstrap)
}

/// (low, high) watermarks of every partition.
pub fn watermarks(
    client: &BaseConsumer,
    topic: &str,
    partitions: usize,
) -> Result<Vec<(i64, i64)>> {
    cluster::watermarks_with(client, topic, i32::try_from(partitions)?)
}

/// The Postgres server: an admin connection URL and fresh databases on it.
pub struct Server {
    pub url: String,
    /// The postmaster's pid when the server runs on this machine (for its CPU use).
    pub postmaster: Option<u32>,
}

/// Facts about the server, printed and recorded with the results.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServerInfo {
    pub version: String,
    pub synchronous_commit: String,
    pub fsync: String,
    pub shared_buffers: String,
    pub max_wal_size: String,
}

impl Server {
    pub async fn connect(url: &str) -> Result<Self> {
        let mut server = Self {
            url: url.to_owned(),
            postmaster: None,
        };
        let mut conn = server.admin().await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        // Only if our backend is a local `postgres` process whose parent is one too.
        let is_postgres = |pid: u32| procs::comm(pid).is_some_and(|c| c == "postgres");
        server.postmaster = Some(backend as u32)
            .filter(|&b| is_postgres(b))
            .and_then(procs::parent)
            .filter(|&p| is_postgres(p));
        Ok(server)
    }

    pub async fn info(&self) -> Result<ServerInfo> {
        let mut conn = self.admin().await?;
        Ok(ServerInfo {
            version: show(&mut conn, "server_version").await?,
            synchronous_commit: show(&mut conn, "synchronous_commit").await?,
            fsync: show(&mut conn, "fsync").await?,
            shared_buffers: show(&mut conn, "shared_buffers").await?,
            max_wal_size: show(&mut conn, "max_wal_size").await?,
        })
    }

    async fn admin(&self) -> Result<PgConnection> {
        PgConnection::connect(&self.url).await.with_context(|| {
            format!(
                "connecting to Postgres at {} (set DATABASE_URL)",
                redact(&self.url)
            )
        })
    }

    /// Creates database `name` (dropping a leftover of that name) and returns its URL.
    pub async fn create_db(&self, name: &str) -> Result<Database> {
        let mut admin = self.admin().await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let url = with_database(&self.url, name);
        let pool = PgPoolOptions::new()
            .max_connections(3)
            .connect(&url)
            .await
            .with_context(|| format!("connecting to {name}"))?;
        Ok(Database {
            name: name.to_owned(),
            url,
            pool,
        })
    }

    pub async fn drop_db(&self, db: Database) {
        db.pool.close().await;
        if let Ok(mut admin) = self.admin().await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name);
            if let Err(error) = sqlx::query(&sql).execute(&mut admin).await {
                eprintln!("warning: {sql}: {error}");
            }
        }
    }

    /// Drops every database whose name starts with `prefix_` (after an interrupted run).
    pub async fn drop_run_databases(&self, prefix: &str) {
        let Ok(mut admin) = self.admin().await else {
            return;
        };
        let names: Vec<String> =
            sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
                .bind(format!("{prefix}_"))
                .fetch_all(&mut admin)
                .await
                .unwrap_or_default();
        for name in names {
            let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
            if sqlx::query(&sql).execute(&mut admin).await.is_ok() {
                println!("dropped database {name}");
            }
        }
    }

    /// Flushes dirty buffers so one phase's writes are not paid for by the next. Best effort
    /// (needs superuser or pg_checkpoint); returns whether it ran.
    pub async fn checkpoint(&self) -> bool {
        match self.admin().await {
            Ok(mut conn) => sqlx::query("CHECKPOINT").execute(&mut conn).await.is_ok(),
            Err(_) => false,
        }
    }
}

async fn show(conn: &mut PgConnection, setting: &str) -> Result<String> {
    sqlx::query_scalar::<_, String>(&format!("SHOW {setting}"))
        .fetch_one(conn)
        .await
        .with_context(|| format!("SHOW {setting}"))
}

/// A fresh database of this run.
pub struct Database {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl Database {
    pub async fn exec(&self, sql: &str) -> Result<()> {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .with_context(|| format!("in {}: {sql}", self.name))?;
        Ok(())
    }
}

/// `url` with any password replaced by `***`, for printing.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_hide_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
