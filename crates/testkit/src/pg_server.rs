//! A throwaway PostgreSQL cluster owned by its user (the chaos runner, a test), so it can crash
//! it (`pg_ctl stop -m immediate`) and start it again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sqlx::{Connection, PgConnection};

/// A private cluster on a free loopback port; stopped on drop. Its directory stays for a
/// post-mortem unless [`PgServer::remove_on_drop`] was called.
pub struct PgServer {
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    pg_ctl: PathBuf,
    /// initdb and postgres refuse to run as root: run them as this user instead.
    run_as: Option<String>,
    /// Removed on drop, if set.
    remove: Option<PathBuf>,
}

fn find_bin(name: &str) -> Option<PathBuf> {
    if let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
    {
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !path.is_empty() {
            return Some(PathBuf::from(path));
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

impl PgServer {
    /// For a test: a cluster in a fresh temporary directory, removed on drop. Panics with the
    /// reason if it cannot start (for example, the PostgreSQL server tools are not installed).
    pub fn for_test() -> Self {
        let dir = std::env::temp_dir().join(crate::names::unique("kps_pg"));
        Self::start(&dir)
            .unwrap_or_else(|e| panic!("starting a throwaway PostgreSQL in {dir:?}: {e:#}"))
            .remove_on_drop(&dir)
    }

    /// Creates a cluster under `dir/pgdata` (server log `dir/postgres.log`) and starts it.
    pub fn start(dir: &Path) -> Result<Self> {
        let initdb = find_bin("initdb").context("initdb not found (install PostgreSQL)")?;
        let pg_ctl = match initdb.with_file_name("pg_ctl") {
            p if p.exists() => p,
            _ => find_bin("pg_ctl").context("pg_ctl not found")?,
        };
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false);
        let server = Self {
            port: std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
            data: dir.join("pgdata"),
            log: dir.join("postgres.log"),
            pg_ctl,
            run_as: is_root.then(|| "postgres".to_owned()),
            remove: None,
        };
        std::fs::create_dir_all(&server.data)?;
        if let Some(user) = &server.run_as {
            // The log is written by the server process.
            std::fs::write(&server.log, "")?;
            for path in [&server.data, &server.log] {
                let ok = Command::new("chown")
                    .arg(user)
                    .arg(path)
                    .status()?
                    .success();
                if !ok {
                    bail!("chown {user} {}", path.display());
                }
            }
        }
        let data = server.data_str()?;
        server.run(
            &initdb,
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        )?;
        server.start_again()?;
        Ok(server)
    }

    /// Removes `dir` (the one given to [`PgServer::start`]) when the server is dropped. (The
    /// integration tests use this; the chaos runner keeps its run directory on failure.)
    pub fn remove_on_drop(mut self, dir: &Path) -> Self {
        self.remove = Some(dir.to_owned());
        self
    }

    fn data_str(&self) -> Result<String> {
        Ok(self
            .data
            .to_str()
            .context("non-UTF-8 temp path")?
            .to_owned())
    }

    fn command(&self, bin: &Path) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(bin);
                c
            }
            None => Command::new(bin),
        }
    }

    fn run(&self, bin: &Path, args: &[&str]) -> Result<()> {
        let out = self
            .command(bin)
            .args(args)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "{} {args:?}: {}",
                bin.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// A URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name`.
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let mut admin = PgConnection::connect(&self.url("postgres")).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await?;
        Ok(())
    }

    /// `pg_ctl stop -m immediate`: like a crash, no shutdown checkpoint.
    pub fn stop_immediate(&self) -> Result<()> {
        let data = self.data_str()?;
        self.run(
            &self.pg_ctl,
            &["-D", &data, "-m", "immediate", "-w", "stop"],
        )
    }

    pub fn start_again(&self) -> Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k /tmp -c fsync=off",
            self.port
        );
        let (data, log) = (self.data_str()?, self.log.to_str().context("log path")?);
        self.run(
            &self.pg_ctl,
            &["-D", &data, "-l", log, "-o", &options, "-w", "start"],
        )
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Ok(data) = self.data_str() {
            let _ = self
                .command(&self.pg_ctl)
                .args(["-D", &data, "-m", "immediate", "-w", "stop"])
                .output();
        }
        if let Some(dir) = &self.remove {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
