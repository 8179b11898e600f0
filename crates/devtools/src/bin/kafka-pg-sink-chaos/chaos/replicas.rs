//! Connector replicas: the real `kafka-pg-sink` binary, one config and one log file per start,
//! killed on drop so no replica outlives the runner.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Everything a replica's config is made of.
pub struct Spec {
    pub sink: PathBuf,
    /// Config and log files go here.
    pub dir: PathBuf,
    pub bootstrap: String,
    pub db_url: String,
    pub group: String,
    pub topic: String,
    pub max_records: usize,
    pub max_wait_ms: u64,
}

impl Spec {
    /// The connector config: three mappings of one topic, every one dead-lettering bad records.
    fn config(&self, http: &str) -> String {
        let Spec {
            bootstrap,
            db_url,
            group,
            topic,
            max_records,
            max_wait_ms,
            ..
        } = self;
        format!(
            r#"[kafka]
brokers = "{bootstrap}"
group_id = "{group}"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

[postgres]
url = "{db_url}"

[batch]
max_records = {max_records}
max_wait_ms = {max_wait_ms}

[http]
listen = "{http}"

[shutdown]
drain_timeout_ms = 10000

[[mappings]]
topic = "{topic}"
table = "payments_latest"
mode = "upsert"
key = ["id"]
required = ["account", "amount"]
columns = {{ id = "value.id", account = "value.account", amount = "value.amount", ts = "value.ts" }}
types = {{ id = "bigint", amount = "numeric", ts = "timestamptz" }}
on_error = "dead_letter"

[[mappings]]
topic = "{topic}"
table = "payments_log"
mode = "insert"
required = ["account", "amount"]
columns = {{ id = "value.id", account = "value.account", amount = "value.amount", src_partition = "kafka.partition", src_offset = "kafka.offset" }}
types = {{ id = "bigint", amount = "numeric" }}
on_error = "dead_letter"

[[mappings]]
topic = "{topic}"
table = "balances"
mode = "accumulate"
key = ["account"]
required = ["total"]
columns = {{ account = "value.account", total = "value.amount" }}
types = {{ total = "numeric" }}
accumulate = {{ total = "add", events = "count" }}
window = {{ column = "hour", source = "value.ts", size = "1h" }}
on_error = "dead_letter"
"#
        )
    }
}

/// One running connector process.
pub struct Replica {
    /// Which slot of the fleet it fills, and how many times that slot was started before.
    pub slot: usize,
    pub generation: usize,
    pub http: String,
    pub log: PathBuf,
    child: Child,
}

impl Replica {
    pub fn start(spec: &Spec, slot: usize, generation: usize) -> Result<Self> {
        let http = format!("127.0.0.1:{}", testkit::names::try_free_port()?);
        let name = format!("replica-{slot}-{generation}");
        let config = spec.dir.join(format!("{name}.toml"));
        std::fs::write(&config, spec.config(&http))?;
        let log = spec.dir.join(format!("{name}.log"));
        let child = Command::new(&spec.sink)
            .arg("--config")
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", spec.sink.display()))?;
        Ok(Self {
            slot,
            generation,
            http,
            log,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> String {
        format!(
            "replica {}.{} (pid {})",
            self.slot,
            self.generation,
            self.pid()
        )
    }

    /// `kill -9`: no drain, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&self) -> Result<()> {
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?
            .success();
        anyhow::ensure!(ok, "kill -TERM {} failed", self.pid());
        Ok(())
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to end.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// The `/metrics` text, or None while it does not answer.
    pub async fn metrics(&self) -> Option<String> {
        let addr = self.http.clone();
        tokio::task::spawn_blocking(move || testkit::prom::http_get(&addr, "/metrics"))
            .await
            .ok()
            .flatten()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}
