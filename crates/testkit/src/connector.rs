//! The connector binary as a process: its config file, start, `kill -9`, signals, its HTTP port.
//! Tests see it only from the outside, as an operator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::db::TestDb;
use crate::names::{free_port, TempFile};
use crate::prom;
use crate::rng::Rng;

/// The connector binary.
pub fn binary() -> PathBuf {
    crate::bins::path(crate::bins::CONNECTOR)
}

/// Writes a config: `kafka`, `postgres` and `http` sections filled in, then `rest` (batch
/// settings and mappings). Returns the file and the HTTP address.
pub fn sink_config(broker: &Broker, db: &TestDb, group: &str, rest: &str) -> (TempFile, String) {
    let http = format!("127.0.0.1:{}", free_port());
    let text = format!(
        r#"
[kafka]
brokers = "{}"
group_id = "{group}"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

[postgres]
url = "{}"

[http]
listen = "{http}"

{rest}
"#,
        broker.bootstrap, db.url
    );
    let file = TempFile::new("kps_config", "toml");
    std::fs::write(&file.0, text).expect("write the config file");
    (file, http)
}

/// Runs the binary with `config` until it exits (or `timeout`); returns (exit code, stderr).
pub fn run_until_exit(config: &TempFile, timeout: Duration) -> (Option<i32>, String) {
    let log = TempFile::new("kps_stderr", "log");
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&config.0)
        .stderr(std::fs::File::create(&log.0).expect("create the log file"))
        .spawn()
        .expect("start kafka-pg-sink");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for kafka-pg-sink") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(&log.0).unwrap_or_default())
}

/// A running connector, killed on drop.
pub struct Sink {
    child: Child,
    pub http: String,
    _config: TempFile,
}

impl Sink {
    /// Starts the connector on `db` with group `group` and `rest` of the config.
    pub fn start(broker: &Broker, db: &TestDb, group: &str, rest: &str) -> Self {
        let (config, http) = sink_config(broker, db, group, rest);
        Self::start_with(config, http)
    }

    /// As [`Sink::start_with`], with stderr (the log, at info level) written to `log`.
    pub fn start_logged(config: TempFile, http: String, log: &Path) -> Self {
        let stderr = std::fs::File::create(log).expect("create the log file");
        Self::spawn(config, http, "info".into(), stderr.into())
    }

    /// Starts the connector with a config file written by [`sink_config`]. Its log goes to the
    /// test's stderr when `KPS_TEST_LOG` is set (at `RUST_LOG`, default info).
    pub fn start_with(config: TempFile, http: String) -> Self {
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let stderr = match std::env::var("KPS_TEST_LOG").is_ok() {
            true => Stdio::inherit(),
            false => Stdio::null(),
        };
        Self::spawn(config, http, level, stderr)
    }

    fn spawn(config: TempFile, http: String, level: String, stderr: Stdio) -> Self {
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&config.0)
            .env("RUST_LOG", level)
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = crate::process::bound_to_parent(&mut command)
            .spawn()
            .expect("start kafka-pg-sink");
        Self {
            child,
            http,
            _config: config,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no drain, no goodbye.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (e.g. "TERM") and waits up to `timeout` for the exit status.
    pub fn signal_and_wait(mut self, signal: &str, timeout: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {}", self.pid());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for kafka-pg-sink") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kafka-pg-sink did not exit within {timeout:?} after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for kafka-pg-sink")
    }

    /// GETs a path on the HTTP port: (status, body), or None while it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        prom::http_get(&self.http, path)
    }

    /// One sample from `/metrics`, summed over the label sets whose text contains
    /// `label_filter`; None while the port does not answer or the metric is absent.
    pub fn metric(&self, name: &str, label_filter: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        prom::sum_matching(&body, name, label_filter)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the connector, waits until `progress` grows, kills it with SIGKILL at a random moment
/// (seeded, see [`Rng::for_test`]), and repeats until `stream` is finished and at least `min_kills` kills happened.
/// Returns how many kills landed before `progress` reached `total`.
#[allow(clippy::too_many_arguments)]
pub async fn kill_repeatedly<F, Fut>(
    broker: &Broker,
    db: &TestDb,
    group: &str,
    rest: &str,
    stream: &std::thread::JoinHandle<()>,
    min_kills: usize,
    total: i64,
    mut progress: F,
) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let mut rng = Rng::for_test("kill timing");
    let (mut kills, mut mid_stream) = (0, 0);
    while !stream.is_finished() || kills < min_kills {
        let before = progress().await;
        let sink = Sink::start(broker, db, group, rest);
        let deadline = Instant::now() + Duration::from_secs(40);
        while progress().await <= before && before < total {
            assert!(
                Instant::now() < deadline,
                "the restarted connector never made progress"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(0, 1200))).await;
        sink.kill9();
        kills += 1;
        let now = progress().await;
        eprintln!("kill -9 #{kills}: progress {now} of {total}");
        if now < total {
            mid_stream += 1;
        }
    }
    mid_stream
}
