//! Retrying a failed write: the backoff of a batch, and the cause label of the retry metric.

use std::time::Duration;

use crate::error::{Backoff, Error};

/// The backoff of one batch's attempts.
pub(super) fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(10))
}

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
