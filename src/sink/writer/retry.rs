//! Retrying a failed write: the backoff ceiling, the jittered delay, and the cause label of the
//! retry metric.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use crate::error::Error;

pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub(super) fn retry_cause(error: &Error) -> &'static str {
    match error {
        Error::Database(sqlx::Error::Database(db)) => match db.code().as_deref() {
            Some("40001") => "serialization_failure",
            Some("40P01") => "deadlock",
            Some(code) if code.starts_with("57P") => "server_shutdown",
            _ => "database",
        },
        Error::Database(_) => "connection",
        _ => "other",
    }
}

/// Full jitter between half and the whole delay.
pub(super) fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let half = delay / 2;
    half + Duration::from_nanos(random % (half.as_nanos().max(1) as u64))
}
