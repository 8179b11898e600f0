//! What every request to the test registry passes before the API: it is counted (so a test can
//! see that the connector asked), failed while the test simulates a broken registry, and
//! refused without the right HTTP Basic credentials when the test asked for them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::watch;

use super::api::error;

/// A simulated registry failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    /// Answering normally.
    None,
    /// Every request answered 503 with error code 50003, as a registry that cannot reach its
    /// leader or its Kafka store answers.
    ServerErrors,
    /// Not listening: connections are refused (and open ones closed) until the outage ends,
    /// then the registry listens again on the same port with its schemas kept.
    Refuse,
}

/// The state the gate checks, shared by the handle and the server.
pub struct Gate {
    /// The current outage; the server watches it to stop and resume listening.
    pub outage: watch::Sender<Outage>,
    /// The `Authorization` header every request must carry, when set.
    authorization: Mutex<Option<String>>,
    /// Requests seen, by `METHOD /path`.
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            outage: watch::Sender::new(Outage::None),
            authorization: Mutex::new(None),
            counts: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Gate {
    /// Requires `authorization` (an `Authorization` header value) on every request from now on.
    pub fn require(&self, authorization: String) {
        *lock(&self.authorization) = Some(authorization);
    }

    /// Requests seen so far, by `METHOD /path` (query strings left out).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.counts).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The middleware: count, then outage, then credentials, then the API.
pub async fn guard(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let key = format!("{} {}", request.method(), request.uri().path());
    *lock(&gate.counts).entry(key).or_default() += 1;
    if *gate.outage.borrow() == Outage::ServerErrors {
        return error(
            503,
            50003,
            "Error while forwarding the request to the leader (simulated outage)",
        );
    }
    let required = lock(&gate.authorization).clone();
    if let Some(required) = required {
        let given = request.headers().get(header::AUTHORIZATION);
        if given.and_then(|v| v.to_str().ok()) != Some(required.as_str()) {
            let mut response = error(401, 401, "Unauthorized");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"SchemaRegistry\""),
            );
            return response;
        }
    }
    next.run(request).await
}
