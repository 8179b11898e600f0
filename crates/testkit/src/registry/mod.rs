//! A Schema Registry for tests: the registry named by `SCHEMA_REGISTRY_URL`, or the test kit's
//! own Confluent-compatible server ([`server`], [`api`], [`store`]) started in-process on a free
//! loopback port. The own server also lets a test require credentials, simulate outages
//! ([`Outage`]) and see how often it was asked; a test that needs those skips itself on a real
//! registry with [`crate::skip::unless_own_registry`].
//!
//! What the own server does differently from Confluent's: it stores Avro and JSON Schema text
//! as given (Confluent parses and normalizes it, so two spellings of one Avro schema share an
//! id there but not here); Protobuf registered as a base64 descriptor is stored as `.proto`
//! text as Confluent does ([`proto_text`]), but spelled differently; `format=serialized` is
//! ignored; it checks no compatibility; and it keeps nothing after the handle is dropped.

pub mod api;
pub mod base64;
pub mod client;
pub mod descriptor;
pub mod gate;
pub mod proto_text;
pub mod server;
pub mod store;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

pub use client::{Client, Response};
pub use gate::Outage;
pub use store::{Reference, SchemaType};

/// A registry for one test: real (`SCHEMA_REGISTRY_URL`) or the test kit's own, stopped on drop.
pub struct SchemaRegistry {
    url: String,
    client: Client,
    credentials: Option<(String, String)>,
    own: Option<Own>,
}

/// The test kit's own server and the gate its requests pass.
struct Own {
    gate: Arc<gate::Gate>,
    server: server::Server,
}

impl SchemaRegistry {
    /// The registry of `SCHEMA_REGISTRY_URL`, or a fresh own registry; panics when neither can
    /// be had.
    pub fn start() -> Self {
        Self::try_start().expect("a schema registry (SCHEMA_REGISTRY_URL or the test kit's own)")
    }

    /// [`SchemaRegistry::start`], or why not.
    pub fn try_start() -> Result<Self> {
        match std::env::var("SCHEMA_REGISTRY_URL") {
            Ok(url) if crate::skip::real_registry() => Self::external(url.trim()),
            _ => Self::start_own(),
        }
    }

    /// The test kit's own registry, whatever the environment says.
    pub fn start_own() -> Result<Self> {
        let gate = Arc::new(gate::Gate::default());
        let store = Arc::new(Mutex::new(store::Store::default()));
        let router = api::router(store).layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            gate::guard,
        ));
        let server = server::Server::start(router, gate.clone())
            .context("starting the test schema registry")?;
        let url = format!("http://{}", server.addr);
        Ok(Self {
            client: Client::new(&url)?,
            url,
            credentials: None,
            own: Some(Own { gate, server }),
        })
    }

    /// A registry someone else runs, at `url` (credentials may be in the URL's user info).
    pub fn external(url: &str) -> Result<Self> {
        Ok(Self {
            client: Client::new(url)?,
            url: url.to_owned(),
            credentials: None,
            own: None,
        })
    }

    /// Whether this is a registry someone else runs (no outages, no server-side credentials).
    pub fn is_real(&self) -> bool {
        self.own.is_none()
    }

    /// The base URL to give a connector or a serializer.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// From now on the own registry answers 401 to any request without these HTTP Basic
    /// credentials; this handle sends them. (On a real registry: only sends them.)
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        if let Some(own) = &self.own {
            own.gate
                .require(client::basic_authorization(user, password));
        }
        self.client = self.client.with_basic_auth(user, password);
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// The credentials given to [`SchemaRegistry::with_basic_auth`].
    pub fn basic_auth(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, password)| (user.as_str(), password.as_str()))
    }

    /// Starts or ends a simulated outage of the own registry; returns once it is in effect.
    /// Panics on a real registry (skip such tests with `skip::unless_own_registry`).
    pub fn set_outage(&self, outage: Outage) {
        self.own("outages").server.set_outage(outage);
    }

    /// How many requests the own registry has received, all outcomes counted.
    pub fn requests(&self) -> u64 {
        self.request_counts().values().sum()
    }

    /// How many requests the own registry has received whose `METHOD /path` contains
    /// `pattern`, e.g. `GET /schemas/ids/` or `POST /subjects/orders-value/versions`. Paths
    /// are as sent, percent-encoded (`/subjects/shop%2Fmoney.proto/versions`), without query.
    pub fn requests_to(&self, pattern: &str) -> u64 {
        let counts = self.request_counts();
        counts
            .iter()
            .filter(|(key, _)| key.contains(pattern))
            .map(|(_, n)| n)
            .sum()
    }

    /// The own registry's request counts by `METHOD /path`.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.own("request counts").gate.counts()
    }

    fn own(&self, what: &str) -> &Own {
        match &self.own {
            Some(own) => own,
            None => panic!("{what} need the test kit's own registry, not {}", self.url),
        }
    }

    /// The HTTP client this handle uses (with its credentials).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Registers `schema` under `subject` over the REST API (so it works on a real registry
    /// too) and returns its global id; panics when the registry refuses.
    pub fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
        references: &[Reference],
    ) -> u32 {
        self.try_register(subject, schema_type, schema, references)
            .unwrap_or_else(|e| panic!("registering a schema under {subject}: {e:#}"))
    }

    /// [`SchemaRegistry::register`], or why not.
    pub fn try_register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
        references: &[Reference],
    ) -> Result<u32> {
        let mut body = json!({ "schema": schema, "schemaType": schema_type.as_str() });
        if !references.is_empty() {
            body["references"] = json!(references);
        }
        let path = format!("/subjects/{}/versions", encode_path_segment(subject));
        let response = self.client.post(&path, &body)?;
        match (
            response.status,
            response.body.get("id").and_then(Value::as_u64),
        ) {
            (200, Some(id)) => Ok(u32::try_from(id)?),
            (status, _) => bail!("{status}: {}", response.body),
        }
    }
}

/// `text` percent-encoded for one path segment (subjects may hold `/`, `:` or spaces).
pub fn encode_path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
