//! The set of connector replicas: slots that are started, killed, stopped and restarted, and a
//! watch for replicas that exit on their own (a connector must not die from a fault).

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::replicas::{Replica, Spec};
use super::say;

struct Slot {
    replica: Option<Replica>,
    /// Starts of this slot so far (names the log file of each start).
    generation: usize,
    /// When a stopped replica comes back.
    restart_at: Option<Instant>,
    /// Scaled down: never restarted.
    retired: bool,
}

pub struct Fleet {
    spec: Spec,
    slots: Vec<Slot>,
    /// Replicas the scenario runs (`--replicas`); slots past it are scale-up extras.
    base: usize,
}

impl Fleet {
    pub fn new(spec: Spec, base: usize) -> Self {
        Self {
            spec,
            slots: Vec::new(),
            base,
        }
    }

    pub fn start_all(&mut self) -> Result<()> {
        for _ in 0..self.base {
            self.add()?;
        }
        Ok(())
    }

    /// Starts a replica in a new slot; returns the slot.
    pub fn add(&mut self) -> Result<usize> {
        self.slots.push(Slot {
            replica: None,
            generation: 0,
            restart_at: None,
            retired: false,
        });
        let slot = self.slots.len() - 1;
        self.start(slot)?;
        Ok(slot)
    }

    fn start(&mut self, slot: usize) -> Result<()> {
        let s = &mut self.slots[slot];
        let replica = Replica::start(&self.spec, slot, s.generation)?;
        say(&format!("started {}", replica.name()));
        s.generation += 1;
        s.restart_at = None;
        s.replica = Some(replica);
        Ok(())
    }

    /// Slots with a live process.
    pub fn running(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].replica.is_some())
            .collect()
    }

    pub fn replicas(&self) -> impl Iterator<Item = &Replica> {
        self.slots.iter().filter_map(|s| s.replica.as_ref())
    }

    pub fn name(&self, slot: usize) -> String {
        self.slots[slot]
            .replica
            .as_ref()
            .map_or_else(|| format!("slot {slot}"), Replica::name)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the slot's process, if it runs.
    pub fn signal(&self, slot: usize, signal: &str) -> Result<()> {
        if let Some(replica) = &self.slots[slot].replica {
            let ok = std::process::Command::new("kill")
                .args([format!("-{signal}"), replica.pid().to_string()])
                .status()?
                .success();
            anyhow::ensure!(ok, "kill -{signal} {} failed", replica.pid());
        }
        Ok(())
    }

    /// `kill -9`, restarted after `restart_in`.
    pub fn kill9(&mut self, slot: usize, restart_in: Duration) {
        if let Some(mut replica) = self.slots[slot].replica.take() {
            replica.kill9();
        }
        self.slots[slot].restart_at = Some(Instant::now() + restart_in);
    }

    /// SIGTERM and wait for the exit; restarted after `restart_in`, or retired when None.
    /// A replica that does not exit 0 within `timeout` is a violation (and is killed).
    pub async fn sigterm(
        &mut self,
        slot: usize,
        restart_in: Option<Duration>,
        timeout: Duration,
        violations: &mut Vec<String>,
    ) -> Result<Option<ExitStatus>> {
        let Some(mut replica) = self.slots[slot].replica.take() else {
            return Ok(None);
        };
        replica.sigterm()?;
        let status = replica.wait_exit(timeout).await;
        match status {
            Some(s) if s.success() => {}
            Some(s) => violations.push(format!(
                "{} exited with {s} after SIGTERM (expected 0); log: {}",
                replica.name(),
                replica.log.display()
            )),
            None => violations.push(format!(
                "{} did not exit within {timeout:?} after SIGTERM; log: {}",
                replica.name(),
                replica.log.display()
            )),
        }
        drop(replica);
        let s = &mut self.slots[slot];
        s.restart_at = restart_in.map(|d| Instant::now() + d);
        s.retired = restart_in.is_none();
        Ok(status)
    }

    /// Scales a slot down for good: SIGTERM if it runs (must exit 0), never restarted.
    pub async fn retire(
        &mut self,
        slot: usize,
        timeout: Duration,
        violations: &mut Vec<String>,
    ) -> Result<()> {
        if self.slots[slot].replica.is_some() {
            self.sigterm(slot, None, timeout, violations).await?;
        }
        self.slots[slot].retired = true;
        self.slots[slot].restart_at = None;
        Ok(())
    }

    /// Restarts replicas whose time has come and reports replicas that exited by themselves.
    pub fn tend(&mut self, violations: &mut Vec<String>) -> Result<()> {
        for slot in 0..self.slots.len() {
            let s = &mut self.slots[slot];
            if let Some(replica) = &mut s.replica {
                if let Some(status) = replica.exited() {
                    let message = format!(
                        "{} exited by itself with {status}; log: {}",
                        replica.name(),
                        replica.log.display()
                    );
                    say(&message);
                    violations.push(message);
                    s.replica = None;
                    s.restart_at = Some(Instant::now() + Duration::from_secs(1));
                }
            }
            let due = s.restart_at.is_some_and(|at| at <= Instant::now());
            if due && !s.retired && s.replica.is_none() {
                self.start(slot)?;
            }
        }
        Ok(())
    }

    /// Starts every stopped replica that is not retired, now.
    pub fn restart_all_now(&mut self) -> Result<()> {
        for slot in 0..self.slots.len() {
            if !self.slots[slot].retired && self.slots[slot].replica.is_none() {
                self.start(slot)?;
            }
        }
        Ok(())
    }
}
