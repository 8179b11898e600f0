//! Liveness and readiness state, shared by the processing loop and the HTTP server.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The processing loop beats at least this often while it runs.
const STALL_AFTER: Duration = Duration::from_secs(30);

/// Flags written by the workers and read by `/healthz` and `/readyz`.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    last_beat_ms: AtomicU64,
    postgres_ok: AtomicBool,
    registry_ok: AtomicBool,
    group_joined: AtomicBool,
    stopping: AtomicBool,
    stopped_partitions: AtomicI64,
    stalled: Mutex<Vec<String>>,
}

/// What `/readyz` and `/healthz` report.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub live: bool,
    pub ready: bool,
    pub postgres: bool,
    /// False while Schema Registry lookups fail and are retried (true without a registry).
    pub schema_registry: bool,
    pub group_joined: bool,
    pub stopping: bool,
    /// Partitions stopped by a bad record under `on_error = "fail"`.
    pub stopped_partitions: i64,
    /// Partitions that are assigned and not paused, but not advancing while the broker has data
    /// past their position (or librdkafka stopped fetching them), each with why; the poll thread
    /// restarts their fetching.
    pub stalled_partitions: Vec<String>,
    pub last_loop_beat_ms_ago: u64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
            postgres_ok: AtomicBool::new(false),
            registry_ok: AtomicBool::new(true),
            group_joined: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stopped_partitions: AtomicI64::new(0),
            stalled: Mutex::new(Vec::new()),
        }
    }
}

impl Health {
    /// Called by the processing loop on every turn.
    pub fn beat(&self) {
        self.last_beat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_postgres(&self, ok: bool) {
        self.postgres_ok.store(ok, Ordering::Relaxed);
    }

    pub fn set_registry(&self, ok: bool) {
        self.registry_ok.store(ok, Ordering::Relaxed);
    }

    pub fn set_joined(&self, joined: bool) {
        self.group_joined.store(joined, Ordering::Relaxed);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn set_stopped_partitions(&self, count: i64) {
        self.stopped_partitions.store(count, Ordering::Relaxed);
    }

    /// The stalled partitions and why, as the poll thread last found them.
    pub fn set_stalled(&self, stalled: Vec<String>) {
        *self.stalled.lock().unwrap_or_else(|p| p.into_inner()) = stalled;
    }

    pub fn status(&self) -> Status {
        let now = self.started.elapsed().as_millis() as u64;
        let ago = now.saturating_sub(self.last_beat_ms.load(Ordering::Relaxed));
        let live = ago < STALL_AFTER.as_millis() as u64;
        let postgres = self.postgres_ok.load(Ordering::Relaxed);
        let group_joined = self.group_joined.load(Ordering::Relaxed);
        let schema_registry = self.registry_ok.load(Ordering::Relaxed);
        let stopping = self.stopping.load(Ordering::Relaxed);
        let stopped_partitions = self.stopped_partitions.load(Ordering::Relaxed);
        let stalled_partitions = self
            .stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Status {
            live,
            ready: live
                && postgres
                && schema_registry
                && group_joined
                && !stopping
                && stopped_partitions == 0
                && stalled_partitions.is_empty(),
            stopped_partitions,
            stalled_partitions,
            postgres,
            schema_registry,
            group_joined,
            stopping,
            last_loop_beat_ms_ago: ago,
        }
    }
}
