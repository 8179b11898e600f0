//! A throwaway PostgreSQL server owned by one test, so the test can stop and start it: the
//! chaos runner's cluster (`src/bin/shared/pg_server.rs`), removed when the test is done.

#[path = "../../src/bin/shared/pg_server.rs"]
mod cluster;

pub struct PgServer(cluster::PgServer);

impl PgServer {
    /// Creates and starts a cluster; panics with the reason if the local tools are missing.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(super::unique("kps_pg"));
        let server = cluster::PgServer::start(&dir)
            .unwrap_or_else(|e| panic!("starting a throwaway PostgreSQL in {dir:?}: {e:#}"));
        Self(server.remove_on_drop(&dir))
    }

    pub fn url(&self) -> String {
        self.0.url("postgres")
    }

    /// `pg_ctl stop -m immediate`: like a crash, no shutdown checkpoint.
    pub fn stop_immediate(&self) {
        self.0.stop_immediate().expect("pg_ctl stop -m immediate");
    }

    pub fn start_again(&self) {
        self.0.start_again().expect("pg_ctl start");
    }
}
