//! A throwaway PostgreSQL server owned by one test, so the test can stop and start it.

use std::path::PathBuf;
use std::process::Command;

/// A private cluster on a free loopback port, removed on drop.
pub struct PgServer {
    pub port: u16,
    data: PathBuf,
    pg_ctl: PathBuf,
    /// initdb and postgres refuse to run as root: run them as this user instead.
    run_as: Option<String>,
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
    /// Creates and starts a cluster; panics with the reason if the local tools are missing.
    pub fn start() -> Self {
        let initdb = find_bin("initdb")
            .expect("initdb is needed for this test (scripts/ensure-postgres.sh installs it)");
        let pg_ctl = initdb.with_file_name("pg_ctl");
        let pg_ctl = if pg_ctl.exists() {
            pg_ctl
        } else {
            find_bin("pg_ctl").expect("pg_ctl")
        };
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
        let run_as = is_root.then(|| "postgres".to_owned());
        let data = std::env::temp_dir().join(super::unique("kps_pg"));
        std::fs::create_dir_all(&data).unwrap();
        let server = Self {
            port: super::free_port(),
            data,
            pg_ctl,
            run_as,
        };
        if let Some(user) = &server.run_as {
            assert!(Command::new("chown")
                .arg(user)
                .arg(&server.data)
                .status()
                .unwrap()
                .success());
        }
        server.run(
            &initdb,
            &[
                "-D",
                server.data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        server.start_again();
        server
    }

    fn run(&self, bin: &std::path::Path, args: &[&str]) {
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let out = command.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{bin:?} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m immediate`: like a crash, no shutdown checkpoint.
    pub fn stop_immediate(&self) {
        self.run(
            &self.pg_ctl,
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k /tmp -c fsync=off",
            self.port
        );
        let log = self.data.join("server.log");
        self.run(
            &self.pg_ctl,
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_owned();
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&self.pg_ctl);
                c
            }
            None => Command::new(&self.pg_ctl),
        };
        let _ = command
            .args(["-D", &data, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
