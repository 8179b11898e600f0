//! One error type for the library, and the one function that decides what an error means.
//!
//! [`classify`] is the only place where an error becomes a decision: a **transient** error is
//! retried with backoff and never advances an offset; a **bad record** error is the fault of one
//! record's data; a **fatal** error stops the process with a non-zero exit.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;

/// Errors raised inside the connector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("kafka error: {0}")]
    Kafka(#[from] KafkaError),
    #[error("bad record {topic}/{partition}@{offset}: {reason}")]
    BadRecord {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    /// A Schema Registry request failed: `status` is the HTTP status, `None` when no answer came
    /// (connect error, timeout); `code` is the registry's `error_code` when the body had one.
    #[error("schema registry: {message}")]
    Registry {
        status: Option<u16>,
        code: Option<i64>,
        message: String,
    },
    #[error("{0}")]
    Fatal(String),
}

/// What to do about an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry the same work later; the database state is unchanged.
    Transient,
    /// The record's data cannot be applied as configured.
    BadRecord,
    /// Stop the process: configuration, schema or broker state needs a human.
    Fatal,
}

/// Decides what an error means. Keep every classification rule here.
pub fn classify(error: &Error) -> ErrorClass {
    match error {
        Error::Database(e) => classify_sqlx(e),
        Error::Kafka(e) => match e.rdkafka_error_code() {
            Some(code) if is_fatal_kafka_code(code) => ErrorClass::Fatal,
            _ => ErrorClass::Transient,
        },
        Error::BadRecord { .. } => ErrorClass::BadRecord,
        // No answer, an overloaded or failing registry: wait for it. Any other answer (401, 403,
        // a 404 for a path, 422) means the configuration is wrong: retrying cannot help, and
        // turning records into dead letters would lose a healthy stream.
        Error::Registry { status, .. } => match status {
            None | Some(408 | 429 | 500..=599) => ErrorClass::Transient,
            Some(_) => ErrorClass::Fatal,
        },
        Error::Migrate(_) | Error::Fatal(_) => ErrorClass::Fatal,
    }
}

/// The registry's "schema not found" for an id (HTTP 404, error code 40403): the id is not
/// there, although the registry answered (unlike a wrong path, which has no such code).
pub fn is_schema_not_found(error: &Error) -> bool {
    matches!(
        error,
        Error::Registry {
            status: Some(404),
            code: Some(40403),
            ..
        }
    )
}

/// The one backoff of every retry loop (batch writes, connecting, reading stored offsets): the
/// wait doubles from `initial` up to `max`, and each wait is jittered to between half and all of
/// it, so replicas that failed together do not retry together. What is retried at all is
/// [`classify`]'s decision ([`ErrorClass::Transient`]), never the loop's.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { next: initial, max }
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = jitter(self.next);
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// Between half and the whole delay.
fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let half = delay / 2;
    half + Duration::from_nanos(random % (half.as_nanos().max(1) as u64))
}

/// `ON CONFLICT DO UPDATE` met one key twice in a statement (SQLSTATE 21000): for a batch sent
/// sorted, two rows the connector took for different keys are one key in the table.
pub fn is_key_affected_twice(error: &Error) -> bool {
    matches!(error, Error::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("21000"))
}

fn is_fatal_kafka_code(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::Fatal
            | C::AutoOffsetReset
            | C::Authentication
            | C::SaslAuthenticationFailed
            | C::InvalidConfig
    )
}

fn classify_sqlx(error: &sqlx::Error) -> ErrorClass {
    match error {
        sqlx::Error::Database(db) => classify_sqlstate(db.code().as_deref().unwrap_or("")),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// Classifies a PostgreSQL SQLSTATE code.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code {
        // serialization failure, deadlock, admin/crash shutdown, cannot connect now (the server
        // is starting or in recovery), too many connections, lock timeout, query cancelled, out
        // of memory/disk. Not retried: wrong password (28P01), unknown role or database (28000,
        // 3D000) and every other problem a person must fix.
        "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300" | "55P03" | "57014" | "53100"
        | "53200" => ErrorClass::Transient,
        // ON CONFLICT touching a row twice: two records of one batch with keys that are equal in SQL.
        "21000" => ErrorClass::BadRecord,
        _ if code.starts_with("08") => ErrorClass::Transient,
        _ if code.starts_with("22") || code.starts_with("23") => ErrorClass::BadRecord,
        _ => ErrorClass::Fatal,
    }
}

/// `s` shortened and quoted with escapes, so control characters stay visible.
pub(crate) fn quote(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((end, _)) => format!("{:?}…", &s[..end]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_classified() {
        for (code, class) in [
            ("40001", ErrorClass::Transient),
            ("40P01", ErrorClass::Transient),
            ("08006", ErrorClass::Transient),
            ("08003", ErrorClass::Transient),
            ("57P01", ErrorClass::Transient),
            ("22P02", ErrorClass::BadRecord),
            ("22003", ErrorClass::BadRecord),
            ("23502", ErrorClass::BadRecord),
            ("23514", ErrorClass::BadRecord),
            ("21000", ErrorClass::BadRecord),
            ("42P01", ErrorClass::Fatal),
            ("42703", ErrorClass::Fatal),
            ("42501", ErrorClass::Fatal),
            ("28P01", ErrorClass::Fatal),
            ("28000", ErrorClass::Fatal),
            ("3D000", ErrorClass::Fatal),
        ] {
            assert_eq!(classify_sqlstate(code), class, "{code}");
        }
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        for ceiling in [100, 200, 400, 700, 700] {
            let delay = backoff.next_delay();
            let ceiling = Duration::from_millis(ceiling);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} for {ceiling:?}"
            );
        }
    }

    #[test]
    fn connection_problems_are_transient() {
        let io = Error::Database(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(classify(&io), ErrorClass::Transient);
        assert_eq!(
            classify(&Error::Database(sqlx::Error::PoolTimedOut)),
            ErrorClass::Transient
        );
    }

    #[test]
    fn kafka_fatal_errors_are_fatal() {
        use rdkafka::types::RDKafkaErrorCode as C;
        assert_eq!(
            classify(&Error::Kafka(KafkaError::MessageConsumption(
                C::AutoOffsetReset
            ))),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(&Error::Kafka(KafkaError::MessageConsumption(
                C::BrokerTransportFailure
            ))),
            ErrorClass::Transient
        );
        assert_eq!(classify(&Error::Fatal("x".into())), ErrorClass::Fatal);
        let registry = |status, code| Error::Registry {
            status,
            code,
            message: String::new(),
        };
        for transient in [None, Some(503), Some(500), Some(429), Some(408)] {
            assert_eq!(
                classify(&registry(transient, None)),
                ErrorClass::Transient,
                "{transient:?}"
            );
        }
        for fatal in [Some(401), Some(403), Some(404), Some(422), Some(400)] {
            assert_eq!(
                classify(&registry(fatal, None)),
                ErrorClass::Fatal,
                "{fatal:?}"
            );
        }
        assert!(is_schema_not_found(&registry(Some(404), Some(40403))));
        assert!(!is_schema_not_found(&registry(Some(404), None)));
        assert!(!is_schema_not_found(&registry(Some(404), Some(40401))));
    }
}
