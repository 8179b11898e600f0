//! The Schema Registry client: before a batch is decoded, every schema id its records carry is
//! fetched (with its references) into the decoder's [`Schemas`], so decoding never waits on the
//! network.
//!
//! Guarantees:
//! - An unreachable or failing registry (no answer, timeout, 5xx, 429) is waited for, with
//!   backoff, readiness down and `schema_registry_up` at 0; no record is dead-lettered for it.
//! - An answer that says the configuration is wrong (401, 403, a 404 for a path, any other 4xx)
//!   stops the connector with that answer.
//! - An id the registry says it does not have (404, error code 40403) makes its records bad
//!   records, but only once the registry has found some schema for this connector: until then
//!   the URL itself is more likely wrong, and the connector stops instead.
//!
//! - `client`: the HTTP requests and what their answers mean.
//! - `check`: the `check` command's look at the registry and the mapped fields.

pub mod check;
mod client;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Format, Mapping, SchemaRegistryConfig};
use crate::decode::formats::schemas::Decoding;
use crate::decode::formats::{wire, Reference, RegisteredSchema, SchemaKind, Schemas};
use crate::error::{classify, is_schema_not_found, Backoff, Error, ErrorClass};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::record::Record;
pub use client::Client;

/// Which parts of a topic's records carry a schema id.
#[derive(Clone, Copy, Debug, Default)]
struct Framed {
    value: bool,
    key: bool,
}

/// Fetches and keeps the schemas of the configured topics.
pub struct Registry {
    client: Client,
    schemas: Arc<Schemas>,
    framed: HashMap<String, Framed>,
    capacity: usize,
    /// When each cached id was last needed, for eviction.
    used: Mutex<HashMap<u32, Instant>>,
    /// Set once the registry has answered a lookup with a schema.
    found_one: AtomicBool,
    /// True while lookups fail, so the outage is logged once.
    degraded: AtomicBool,
    metrics: Metrics,
    health: Arc<Health>,
}

/// Referenced schemas nest at most this deep (a cycle would otherwise never end).
const MAX_REFERENCE_DEPTH: usize = 16;

/// A cached schema is evicted only when it was not needed for this long, so a batch never loses
/// the schemas fetched for it while it is written.
const KEEP_RECENT: Duration = Duration::from_secs(60);

impl Registry {
    /// A client for `config`, fetching into `schemas` the ids of the mappings' registry formats.
    pub(crate) fn new(
        config: &SchemaRegistryConfig,
        mappings: &[Mapping],
        schemas: Arc<Schemas>,
        metrics: Metrics,
        health: Arc<Health>,
    ) -> Result<Self, Error> {
        let mut framed: HashMap<String, Framed> = HashMap::new();
        for m in mappings {
            let f = framed.entry(m.topic.clone()).or_default();
            f.value |= m.format.uses_registry();
            f.key |= m.key_format.is_some_and(Format::uses_registry);
        }
        metrics.registry_up.set(1);
        Ok(Self {
            client: Client::new(config)?,
            schemas,
            framed,
            capacity: config.cache_capacity,
            used: Mutex::default(),
            found_one: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            metrics,
            health,
        })
    }

    pub fn schemas(&self) -> &Arc<Schemas> {
        &self.schemas
    }

    /// Fetches every schema `records` need that is not cached yet. Waits out registry outages
    /// until they end or `cancel` is set (`Ok(false)`); `Err` for an answer that needs a human.
    pub async fn ensure(&self, records: &[Record], cancel: &AtomicBool) -> Result<bool, Error> {
        let needed = self.ids(records);
        if needed.is_empty() {
            return Ok(true);
        }
        {
            let now = Instant::now();
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            for &id in &needed {
                used.insert(id, now);
            }
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        for &id in &needed {
            while !self.schemas.contains(id) {
                if cancel.load(Ordering::SeqCst) {
                    return Ok(false);
                }
                match self.fetch(id).await {
                    Ok(registered) => {
                        self.found_one.store(true, Ordering::SeqCst);
                        self.answered();
                        let entry = Decoding::parse(&registered).map(Arc::new);
                        if let Err(e) = &entry {
                            tracing::warn!(id, error = %e, "A schema from the registry cannot be parsed; records written with it are bad records.");
                        }
                        self.schemas.insert(id, entry);
                    }
                    Err(e) if is_schema_not_found(&e) && self.found_one.load(Ordering::SeqCst) => {
                        self.answered();
                        tracing::warn!(
                            id,
                            "Schema id not found in the registry; its records are bad records."
                        );
                        self.schemas.insert(
                            id,
                            Err(format!(
                                "schema id {id} is not registered in the schema registry"
                            )),
                        );
                    }
                    Err(e) if is_schema_not_found(&e) => {
                        return Err(Error::Fatal(format!(
                            "schema id {id} is not in the schema registry at {} ({e}), and no schema \
                             has been found there yet: is schema_registry.url the registry the \
                             producers of these topics use?",
                            self.client.url()
                        )));
                    }
                    Err(e) if classify(&e) == ErrorClass::Transient => {
                        self.metrics.registry_up.set(0);
                        self.health.set_registry(false);
                        if !self.degraded.swap(true, Ordering::SeqCst) {
                            tracing::warn!(error = %e, "Schema registry lookups fail; retrying with backoff (not ready meanwhile).");
                        }
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(e) => {
                        return Err(Error::Fatal(format!(
                            "{e} (check schema_registry.url and its credentials)"
                        )))
                    }
                }
            }
        }
        self.evict(&needed);
        Ok(true)
    }

    /// Whether every schema `records` need is cached (then [`Self::ensure`] would not wait).
    pub fn has_all(&self, records: &[Record]) -> bool {
        self.ids(records)
            .into_iter()
            .all(|id| self.schemas.contains(id))
    }

    fn answered(&self) {
        self.metrics.registry_up.set(1);
        self.health.set_registry(true);
        if self.degraded.swap(false, Ordering::SeqCst) {
            tracing::info!("Schema registry lookups recovered.");
        }
    }

    /// The distinct schema ids of `records`' framed parts.
    fn ids(&self, records: &[Record]) -> Vec<u32> {
        let Some(first) = records.first() else {
            return Vec::new();
        };
        let Some(framed) = self.framed.get(&*first.tp.topic).copied() else {
            return Vec::new();
        };
        let mut seen = HashSet::new();
        for r in records {
            if framed.value {
                seen.extend(r.value().and_then(wire::schema_id));
            }
            if framed.key {
                seen.extend(r.key().and_then(wire::schema_id));
            }
        }
        let mut ids: Vec<u32> = seen.into_iter().collect();
        ids.sort_unstable();
        ids
    }

    /// The latest schema of `subject` with its references; `None` when the subject is unknown.
    pub async fn latest(&self, subject: &str) -> Result<Option<RegisteredSchema>, Error> {
        match self.client.schema_by_version(subject, "latest").await {
            Ok(raw) => {
                let id = raw.id.unwrap_or(0);
                let mut memo = HashMap::new();
                self.registered(id, raw, &mut memo, 0).await.map(Some)
            }
            Err(Error::Registry {
                status: Some(404),
                code: Some(40401),
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A schema by id, with its references.
    async fn fetch(&self, id: u32) -> Result<RegisteredSchema, Error> {
        let raw = self.count(self.client.schema_by_id(id).await)?;
        let mut memo = HashMap::new();
        self.registered(id, raw, &mut memo, 0).await
    }

    /// Turns a raw answer into a schema, fetching its references by subject and version.
    async fn registered(
        &self,
        id: u32,
        raw: client::RawSchema,
        memo: &mut HashMap<(String, i32), RegisteredSchema>,
        depth: usize,
    ) -> Result<RegisteredSchema, Error> {
        let kind = SchemaKind::from_registry(raw.schema_type.as_deref())
            .map_err(|e| Error::Fatal(format!("schema id {id}: {e}")))?;
        let mut references = Vec::with_capacity(raw.references.len());
        for r in raw.references {
            if depth >= MAX_REFERENCE_DEPTH {
                return Err(Error::Fatal(format!(
                    "schema id {id}: references nest deeper than {MAX_REFERENCE_DEPTH}"
                )));
            }
            let key = (r.subject.clone(), r.version);
            let schema = match memo.get(&key) {
                Some(schema) => schema.clone(),
                None => {
                    let version = r.version.to_string();
                    let raw =
                        self.count(self.client.schema_by_version(&r.subject, &version).await)?;
                    let ref_id = raw.id.unwrap_or(0);
                    let schema = Box::pin(self.registered(ref_id, raw, memo, depth + 1)).await?;
                    memo.insert(key, schema.clone());
                    schema
                }
            };
            references.push(Reference {
                name: r.name,
                subject: r.subject,
                version: r.version,
                schema,
            });
        }
        Ok(RegisteredSchema {
            id,
            kind,
            text: raw.schema,
            references,
        })
    }

    /// Counts a request's outcome.
    fn count<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if is_schema_not_found(e) => "not_found",
            Err(e) if classify(e) == ErrorClass::Transient => "unavailable",
            Err(_) => "refused",
        };
        self.metrics
            .registry_requests
            .with_label_values(&[outcome])
            .inc();
        result
    }

    /// Over capacity, drops the schemas needed longest ago (never one needed in the last minute).
    fn evict(&self, needed: &[u32]) {
        if self.schemas.len() > self.capacity {
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            let mut old: Vec<(Instant, u32)> = used
                .iter()
                .filter(|(id, at)| at.elapsed() > KEEP_RECENT && !needed.contains(id))
                .map(|(&id, &at)| (at, id))
                .collect();
            old.sort_unstable();
            for (_, id) in old {
                if self.schemas.len() <= self.capacity {
                    break;
                }
                self.schemas.remove(id);
                used.remove(&id);
            }
        }
        self.metrics.registry_schemas.set(self.schemas.len() as i64);
    }
}
