//! Fault injection: one fault at a time at random moments, each kind counted. Kinds are drawn
//! from a shuffled bag, so every enabled kind happens once per round; faults that need undoing
//! (request errors, latency, an extra replica) are undone later by `tend`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::fleet::Fleet;
use super::say;
use testkit::broker::Broker;
use testkit::pg_server::PgServer;
use testkit::rng::Rng;

/// How long a SIGTERMed replica may take to drain and exit (its drain timeout is 10 s).
const SIGTERM_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Kill9,
    Sigterm,
    PgRestart,
    BrokerOutage,
    Scale,
    RequestErrors,
    Latency,
    OutOfRange,
    Freeze,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::Kill9,
        Fault::Sigterm,
        Fault::PgRestart,
        Fault::BrokerOutage,
        Fault::Scale,
        Fault::RequestErrors,
        Fault::Latency,
        Fault::OutOfRange,
        Fault::Freeze,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill9 => "kill9",
            Fault::Sigterm => "sigterm",
            Fault::PgRestart => "pg-restart",
            Fault::BrokerOutage => "broker-outage",
            Fault::Scale => "scale-up-down",
            Fault::RequestErrors => "request-errors",
            Fault::Latency => "latency",
            Fault::OutOfRange => "out-of-range",
            Fault::Freeze => "freeze",
        }
    }

    /// Faults only the mock broker can inject.
    pub fn needs_mock(self) -> bool {
        matches!(
            self,
            Fault::BrokerOutage | Fault::RequestErrors | Fault::Latency | Fault::OutOfRange
        )
    }

    /// `all`, `none`, or a comma-separated list of names.
    pub fn parse_list(text: &str) -> Result<Vec<Fault>> {
        match text {
            "all" => return Ok(Self::ALL.to_vec()),
            "none" | "" => return Ok(Vec::new()),
            _ => {}
        }
        text.split(',')
            .map(|name| {
                Self::ALL
                    .into_iter()
                    .find(|f| f.name() == name.trim())
                    .ok_or_else(|| anyhow::anyhow!("unknown fault `{name}`"))
            })
            .collect()
    }
}

/// What the faults act on.
pub struct Env {
    pub fleet: Fleet,
    pub broker: Broker,
    pub pg: Arc<PgServer>,
    pub violations: Vec<String>,
}

/// A fault still to be undone.
enum Undo {
    ClearErrors(&'static str),
    RttZero,
    ScaleDown(usize),
}

pub struct Injector {
    rng: Rng,
    kinds: Vec<Fault>,
    bag: Vec<Fault>,
    pub counts: BTreeMap<Fault, u64>,
    undo: Vec<(Instant, Undo)>,
}

impl Injector {
    pub fn new(rng: Rng, kinds: Vec<Fault>) -> Self {
        Self {
            rng,
            counts: kinds.iter().map(|&k| (k, 0)).collect(),
            kinds,
            bag: Vec::new(),
            undo: Vec::new(),
        }
    }

    pub fn kinds(&self) -> &[Fault] {
        &self.kinds
    }

    /// Every enabled kind was injected at least once.
    pub fn all_kinds_done(&self) -> bool {
        self.counts.values().all(|&n| n > 0)
    }

    /// A random gap around `mean`.
    pub fn gap(&mut self, mean: Duration) -> Duration {
        let ms = mean.as_millis() as u64;
        Duration::from_millis(self.rng.range(ms / 2, ms + ms / 2 + 1))
    }

    /// Injects the next fault of the bag (skipping kinds that cannot happen right now).
    pub async fn inject(&mut self, env: &mut Env) -> Result<()> {
        for _ in 0..self.kinds.len() {
            if self.bag.is_empty() {
                self.bag = self.kinds.clone();
                self.rng.shuffle(&mut self.bag);
            }
            let Some(fault) = self.bag.pop() else {
                return Ok(());
            };
            if self.apply(fault, env).await? {
                *self.counts.entry(fault).or_default() += 1;
                return Ok(());
            }
            self.bag.insert(0, fault);
        }
        Ok(())
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.rng.range(lo, hi))
    }

    /// Applies `fault`; false when it cannot happen now (no replica running, ...).
    async fn apply(&mut self, fault: Fault, env: &mut Env) -> Result<bool> {
        let running = env.fleet.running();
        match fault {
            Fault::Kill9 | Fault::Sigterm | Fault::Freeze if running.is_empty() => {
                return Ok(false)
            }
            Fault::Kill9 => {
                let (slot, restart) = (self.rng.pick(&running), self.ms(500, 4000));
                say(&format!(
                    "FAULT kill -9 {}; restart in {restart:?}",
                    env.fleet.name(slot)
                ));
                env.fleet.kill9(slot, restart);
            }
            Fault::Sigterm => {
                let (slot, restart) = (self.rng.pick(&running), self.ms(500, 3000));
                say(&format!(
                    "FAULT SIGTERM {}; restart in {restart:?}",
                    env.fleet.name(slot)
                ));
                let status = env
                    .fleet
                    .sigterm(slot, Some(restart), SIGTERM_TIMEOUT, &mut env.violations)
                    .await?;
                say(&format!("  exited with {status:?}"));
            }
            Fault::PgRestart => {
                let down = self.ms(1000, 3000);
                say(&format!("FAULT Postgres stop -m immediate for {down:?}"));
                let pg = env.pg.clone();
                tokio::task::spawn_blocking(move || pg.stop_immediate()).await??;
                tokio::time::sleep(down).await;
                let pg = env.pg.clone();
                tokio::task::spawn_blocking(move || pg.start_again()).await??;
                say("  Postgres is back");
            }
            Fault::BrokerOutage => {
                let down = self.ms(1000, 3000);
                say(&format!("FAULT broker down for {down:?}"));
                env.broker.command("broker-down")?;
                tokio::time::sleep(down).await;
                env.broker.command("broker-up")?;
            }
            Fault::Scale => {
                if self
                    .undo
                    .iter()
                    .any(|(_, u)| matches!(u, Undo::ScaleDown(_)))
                {
                    return Ok(false);
                }
                let slot = env.fleet.add()?;
                let after = self.ms(8000, 15000);
                say(&format!(
                    "FAULT scale up: {}; scale down in {after:?}",
                    env.fleet.name(slot)
                ));
                self.undo
                    .push((Instant::now() + after, Undo::ScaleDown(slot)));
            }
            Fault::RequestErrors => self.request_errors(env)?,
            Fault::OutOfRange => {
                // Answers for positions inside the log: librdkafka stops fetching the partitions
                // named, and the connector must fetch them again without a gap or a duplicate.
                let count = self.rng.range(1, 4);
                say(&format!(
                    "FAULT next {count} Fetch requests answered OFFSET_OUT_OF_RANGE"
                ));
                env.broker
                    .command(&format!("request-errors Fetch {count} 1"))?;
                self.undo.push((
                    Instant::now() + Duration::from_secs(5),
                    Undo::ClearErrors("Fetch"),
                ));
            }
            Fault::Freeze => {
                // Past the replicas' session timeout (6 s): the group expels the frozen replica
                // while it may hold fetched records and batches in flight; when it thaws, what
                // it still tries to commit must be fenced.
                let (slot, frozen) = (self.rng.pick(&running), self.ms(8000, 11000));
                say(&format!(
                    "FAULT SIGSTOP {} for {frozen:?}, then SIGCONT",
                    env.fleet.name(slot)
                ));
                env.fleet.signal(slot, "STOP")?;
                tokio::time::sleep(frozen).await;
                env.fleet.signal(slot, "CONT")?;
                say("  thawed");
            }
            Fault::Latency => {
                let (rtt, after) = (self.rng.range(50, 301), self.ms(2000, 6000));
                say(&format!("FAULT broker round trip +{rtt} ms for {after:?}"));
                env.broker.command(&format!("rtt {rtt}"))?;
                self.undo.push((Instant::now() + after, Undo::RttZero));
            }
        }
        Ok(true)
    }

    fn request_errors(&mut self, env: &mut Env) -> Result<()> {
        // Retriable errors a consumer group meets on a real cluster.
        const CHOICES: [(&str, [u32; 2]); 3] = [
            ("Fetch", [6, 7]),          // NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT
            ("OffsetCommit", [15, 16]), // COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
            ("Heartbeat", [27, 15]),    // REBALANCE_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE
        ];
        let (api, codes) = self.rng.pick(&CHOICES);
        let (count, code) = (self.rng.range(1, 6), self.rng.pick(&codes));
        let after = self.ms(3000, 8000);
        say(&format!(
            "FAULT next {count} {api} requests fail with error {code}; cleared in {after:?}"
        ));
        env.broker
            .command(&format!("request-errors {api} {count} {code}"))?;
        self.undo
            .push((Instant::now() + after, Undo::ClearErrors(api)));
        Ok(())
    }

    /// Undoes what is due and restarts replicas whose time has come.
    pub async fn tend(&mut self, env: &mut Env) -> Result<()> {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.undo.drain(..).partition(|(at, _)| *at <= now);
        self.undo = later;
        for (_, undo) in due {
            self.undo_one(undo, env).await?;
        }
        env.fleet.tend(&mut env.violations)
    }

    /// Undoes everything pending, now.
    pub async fn undo_all(&mut self, env: &mut Env) -> Result<()> {
        for (_, undo) in std::mem::take(&mut self.undo) {
            self.undo_one(undo, env).await?;
        }
        if env.broker.is_mock() {
            for api in ["Fetch", "OffsetCommit", "Heartbeat"] {
                env.broker.command(&format!("clear-request-errors {api}"))?;
            }
            env.broker.command("rtt 0")?;
        }
        Ok(())
    }

    async fn undo_one(&mut self, undo: Undo, env: &mut Env) -> Result<()> {
        match undo {
            Undo::ClearErrors(api) => env.broker.command(&format!("clear-request-errors {api}")),
            Undo::RttZero => env.broker.command("rtt 0"),
            Undo::ScaleDown(slot) => {
                say(&format!("scale down: SIGTERM {}", env.fleet.name(slot)));
                env.fleet
                    .retire(slot, SIGTERM_TIMEOUT, &mut env.violations)
                    .await
            }
        }
    }
}

/// Checks that broker faults are only asked of the mock broker.
pub fn check_kinds(kinds: &[Fault], mock: bool) -> Result<()> {
    if let Some(f) = kinds.iter().find(|f| f.needs_mock() && !mock) {
        bail!("fault `{}` needs the mock broker", f.name());
    }
    Ok(())
}
