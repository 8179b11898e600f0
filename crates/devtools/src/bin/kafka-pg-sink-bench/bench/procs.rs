//! Child processes and `/proc` readings.
//!
//! Guarantee: every child (mock broker, connector) dies with the benchmark. A [`Child`] guard
//! kills and reaps its process on drop (normal returns, errors, panics); a SIGINT/SIGTERM to the
//! benchmark kills every registered child before exiting; and each child is spawned with
//! `PR_SET_PDEATHSIG = SIGKILL`, so even a `kill -9` of the benchmark takes its children along.
//! Linux sends that signal when the *thread* that spawned the child ends, so children are only
//! spawned from the main thread or a runtime worker (both live as long as the run), never from
//! `spawn_blocking` threads, which are reaped when idle.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

mod sys {
    use std::ffi::{c_int, c_long, c_ulong};
    extern "C" {
        pub fn prctl(option: c_int, ...) -> c_int;
        pub fn kill(pid: c_int, sig: c_int) -> c_int;
        pub fn sysconf(name: c_int) -> c_long;
    }
    pub const PR_SET_PDEATHSIG: c_int = 1;
    pub const SIGKILL: c_ulong = 9;
    pub const SC_CLK_TCK: c_int = 2;
}

pub const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A running child process, killed and reaped on drop.
pub struct Child {
    inner: std::process::Child,
}

/// Spawns `command` as a registered child that cannot outlive the benchmark.
pub fn spawn(command: &mut Command, name: &str) -> Result<Child> {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            sys::prctl(sys::PR_SET_PDEATHSIG, sys::SIGKILL);
            Ok(())
        });
    }
    let inner = command
        .spawn()
        .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
    lock().push(inner.id());
    Ok(Child { inner })
}

fn lock() -> std::sync::MutexGuard<'static, Vec<u32>> {
    CHILDREN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sends `signal` to one process by id.
pub fn signal(pid: u32, signal: i32) -> bool {
    // SAFETY: plain syscall wrapper.
    unsafe { sys::kill(pid as i32, signal) == 0 }
}

/// SIGKILLs every registered child (from the signal handler, before exiting).
pub fn kill_all() {
    for pid in lock().drain(..) {
        signal(pid, SIGKILL);
    }
}

impl Child {
    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.inner.try_wait().ok().flatten();
        if status.is_some() {
            // Reaped: its pid may be reused, so it must not be signalled any more.
            self.unregister();
        }
        status
    }

    fn unregister(&self) {
        let pid = self.pid();
        lock().retain(|p| *p != pid);
    }

    /// Sends SIGTERM and waits up to `timeout`; SIGKILL after that. None if it had to be killed.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        signal(self.pid(), SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        None
    }

    fn kill(&mut self) {
        let _ = self.inner.kill();
        let _ = self.inner.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
        self.unregister();
    }
}

/// Clock ticks per second for `/proc/<pid>/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: plain libc call.
    let ticks = unsafe { sys::sysconf(sys::SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// A process's parent pid and user + system CPU seconds.
fn stat(pid: &str) -> Option<(u32, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    // Fields after the comm start with field 3 (state); ppid is field 4, utime and stime are
    // fields 14 and 15.
    let rest: Vec<&str> = text[close + 2..].split_whitespace().collect();
    let ppid: u32 = rest.get(1)?.parse().ok()?;
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some((ppid, (utime + stime) / ticks_per_second()))
}

/// CPU seconds used by one process so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    stat(&pid.to_string()).map(|(_, s)| s)
}

/// The parent of a process.
pub fn parent(pid: u32) -> Option<u32> {
    stat(&pid.to_string()).map(|(ppid, _)| ppid)
}

/// The command name of a process.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

/// CPU seconds used by this process so far.
pub fn own_cpu_seconds() -> f64 {
    stat("self").map_or(0.0, |(_, s)| s)
}

/// CPU seconds of a Postgres server so far: its postmaster and every live child (backends,
/// checkpointer, WAL writer, autovacuum). 0 when the server is not on this machine.
pub fn postgres_cpu_seconds(postmaster: Option<u32>) -> f64 {
    let Some(postmaster) = postmaster else {
        return 0.0;
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|pid| Some((pid.parse::<u32>().ok()?, stat(&pid)?)))
        .filter(|(pid, (ppid, _))| *pid == postmaster || *ppid == postmaster)
        .map(|(_, (_, s))| s)
        .sum()
}

/// (busy, total) CPU seconds of the whole machine since boot, from `/proc/stat`.
pub fn machine_cpu_seconds() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: f64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    let t = ticks_per_second();
    ((total - idle) / t, total / t)
}

/// Peak resident set size (`VmHWM`) of a process, in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The three load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Opens `path` for a child's output.
pub fn log_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))
}
