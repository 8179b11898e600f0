//! A fresh database per test on the server of `DATABASE_URL`, so tests run in parallel without
//! seeing each other's tables, and dropped when the handle goes, also when the test panics.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::names::unique;

/// The server URL from `DATABASE_URL`, or the local default.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` with its database replaced by `db` (query parameters kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{db}{query}", &base[..path_start])
}

/// A fresh database on the test server; dropped by [`TestDb::drop_db`] or, at the latest, when
/// the handle is dropped (a failing test unwinds through it).
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    dropped: bool,
}

impl TestDb {
    /// A fresh database on the server of `DATABASE_URL`.
    pub async fn create() -> Self {
        Self::create_on(&server_url()).await
    }

    /// A fresh database on the server at `server` (a URL of any database on it).
    pub async fn create_on(server: &str) -> Self {
        let name = unique("kps_test");
        let mut admin = PgConnection::connect(server).await.unwrap_or_else(|e| {
            panic!("cannot reach Postgres at {server} (set DATABASE_URL): {e}")
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_database(server, &name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connecting to {name}: {e}"));
        Self {
            name,
            url,
            pool,
            dropped: false,
        }
    }

    /// Runs `sql` (any number of statements); panics with the statement on error.
    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// One integer (NULL is 0).
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, Option<i64>>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or(0)
    }

    /// One text value (NULL is empty).
    pub async fn scalar_text(&self, sql: &str) -> String {
        sqlx::query_scalar::<_, Option<String>>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_default()
    }

    /// Stored next offsets per partition for `group` and `topic` (none before migration).
    pub async fn stored_offsets(&self, group: &str, topic: &str) -> Vec<(i32, i64)> {
        sqlx::query_as(
            "SELECT partition, next_offset FROM kafka_pg_sink.offsets \
             WHERE group_id = $1 AND topic = $2 ORDER BY 1",
        )
        .bind(group)
        .bind(topic)
        .fetch_all(&self.pool)
        .await
        .unwrap_or_default()
    }

    /// Drops the database now.
    pub async fn drop_db(mut self) {
        self.pool.close().await;
        drop_database(&self.url, &self.name).await;
        self.dropped = true;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.dropped {
            let (url, name) = (self.url.clone(), self.name.clone());
            block_on_own_thread(move || async move { drop_database(&url, &name).await });
        }
    }
}

/// A login role for a test (cluster-wide, unlike a database), dropped when the handle drops.
/// Declare it before the [`TestDb`] whose objects it comes to own: locals drop in reverse
/// order, so the database, and with it those objects, goes first.
pub struct TestRole {
    pub name: String,
}

impl TestRole {
    /// `CREATE ROLE <unique> LOGIN` on the server of `DATABASE_URL`.
    pub async fn create(prefix: &str) -> Self {
        let name = unique(prefix);
        admin_exec(&format!("CREATE ROLE {name} LOGIN")).await;
        Self { name }
    }

    /// `url` with this role as its user (no password: the test server trusts loopback).
    pub fn url_for(&self, url: &str) -> String {
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{}@{host}", self.name)
            }
            None => url.to_owned(),
        }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let statement = format!("DROP ROLE IF EXISTS {}", self.name);
        block_on_own_thread(move || async move { admin_exec(&statement).await });
    }
}

/// Runs `sql` on the server's `postgres` database; panics with the statement on error.
async fn admin_exec(sql: &str) {
    let server = with_database(&server_url(), "postgres");
    let mut admin = PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot reach Postgres at {server}: {e}"));
    sqlx::raw_sql(sql)
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Runs `work` to completion from a `Drop`, which may run inside the test's runtime and so
/// cannot block on a future there: on a thread with a runtime of its own.
fn block_on_own_thread<F, Fut>(work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(runtime) = runtime {
            runtime.block_on(work());
        }
    })
    .join();
}

/// `DROP DATABASE … WITH (FORCE)`: connections still open (a connector under test, the pool of a
/// panicking test) are ended by the server.
async fn drop_database(url: &str, name: &str) {
    let server = with_database(url, "postgres");
    if let Ok(mut admin) = PgConnection::connect(&server).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut admin)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gets_another_database_and_keeps_its_parameters() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
        assert_eq!(with_database("postgres://h:1/a/b", "x"), "postgres://h:1/x");
    }
}
