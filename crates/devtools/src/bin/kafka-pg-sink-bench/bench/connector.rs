//! The connector under test: its config file (production defaults, only the mapping, URLs, group
//! and HTTP port set) and its process.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Result;

use super::infra::redact;
use super::procs::{self, Child};

/// The keys the benchmark sets; everything else is the connector's built-in default.
pub struct Settings<'a> {
    pub brokers: &'a str,
    pub group: &'a str,
    pub postgres_url: &'a str,
    pub http: &'a str,
    /// `kafka.properties`: empty unless `--kafka-property` was given (an experiment).
    pub kafka_properties: &'a [(String, String)],
    /// The `[[mappings]]` table.
    pub mapping: &'a str,
}

/// The config file's text; `redacted` hides the Postgres password (for printing).
pub fn config_text(s: &Settings<'_>, redacted: bool) -> String {
    let url = if redacted {
        redact(s.postgres_url)
    } else {
        s.postgres_url.to_owned()
    };
    let properties = if s.kafka_properties.is_empty() {
        String::new()
    } else {
        let pairs: Vec<String> = s
            .kafka_properties
            .iter()
            .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
            .collect();
        format!("properties = {{ {} }}\n", pairs.join(", "))
    };
    format!(
        "# Written by kafka-pg-sink-bench. Production defaults for every key not set here\n\
         # (batch, writers, pool, flow control, kafka.properties).\n\
         [kafka]\nbrokers = {}\ngroup_id = {}\n{properties}\n[postgres]\nurl = {}\n\n[http]\nlisten = {}\n\n{}",
        quote(s.brokers),
        quote(s.group),
        quote(&url),
        quote(s.http),
        s.mapping
    )
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
pub fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

pub struct Connector {
    child: Child,
    pub log: PathBuf,
}

impl Connector {
    /// Runs `sink --config <config>` with its logs in `log`. `KAFKA_PG_SINK_*` variables of this
    /// environment are removed so the file is the whole configuration, except `env` (the
    /// `--connector-env` overrides of an experiment).
    pub fn start(sink: &Path, config: &Path, log: &Path, env: &[(String, String)]) -> Result<Self> {
        let output = procs::log_file(log)?;
        let mut command = Command::new(sink);
        command
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KAFKA_PG_SINK") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let child = procs::spawn(&mut command, "kafka-pg-sink")?;
        Ok(Self {
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.exited()
    }

    /// SIGTERM, then up to `timeout` for the drain; None if it had to be killed.
    pub async fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.terminate(timeout).await
    }
}
