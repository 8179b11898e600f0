//! Watches the stored offsets while the faults run: a stored offset must never move backwards
//! (the compare-and-set only moves forward). Postgres being down is expected and tolerated.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What the monitor saw.
#[derive(Default, Clone)]
pub struct Seen {
    /// Highest next offset seen per (group, topic, partition).
    pub max: BTreeMap<(String, String, i32), i64>,
    /// The latest value per partition, so one regression is reported once, not every sample.
    last: BTreeMap<(String, String, i32), i64>,
    pub regressions: Vec<String>,
    pub samples: u64,
    /// Samples that could not be read (Postgres down or restarting).
    pub unavailable: u64,
}

pub struct Monitor {
    pub seen: Arc<Mutex<Seen>>,
    token: CancellationToken,
    handle: JoinHandle<()>,
}

impl Monitor {
    pub fn start(url: String, every: Duration) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let token = CancellationToken::new();
        let handle = tokio::spawn(watch(url, every, seen.clone(), token.clone()));
        Self {
            seen,
            token,
            handle,
        }
    }

    /// Sum of the highest stored offsets seen: records committed so far.
    pub fn committed(&self) -> i64 {
        self.seen.lock().map(|s| s.max.values().sum()).unwrap_or(0)
    }

    pub async fn stop(self) -> Seen {
        self.token.cancel();
        let _ = self.handle.await;
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

type Row = (String, String, i32, i64);

async fn read(conn: &mut Option<PgConnection>, url: &str) -> Option<Vec<Row>> {
    if conn.is_none() {
        let connect = tokio::time::timeout(Duration::from_secs(1), PgConnection::connect(url));
        *conn = connect.await.ok()?.ok();
    }
    let query = sqlx::query_as::<_, Row>(
        "SELECT group_id, topic, partition, next_offset FROM kafka_pg_sink.offsets",
    )
    .fetch_all(conn.as_mut()?);
    match tokio::time::timeout(Duration::from_secs(2), query).await {
        Ok(Ok(rows)) => Some(rows),
        _ => {
            // Broken, timed out, or the table is not migrated yet: start afresh next time.
            *conn = None;
            None
        }
    }
}

async fn watch(url: String, every: Duration, seen: Arc<Mutex<Seen>>, token: CancellationToken) {
    let mut conn = None;
    while !token.is_cancelled() {
        let rows = read(&mut conn, &url).await;
        if let Ok(mut seen) = seen.lock() {
            record(&mut seen, rows);
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn record(seen: &mut Seen, rows: Option<Vec<Row>>) {
    let Some(rows) = rows else {
        seen.unavailable += 1;
        return;
    };
    seen.samples += 1;
    for (group, topic, partition, next) in rows {
        let key = (group, topic, partition);
        let max = seen.max.get(&key).copied().unwrap_or(next);
        let last = seen.last.insert(key.clone(), next);
        if next < max && last != Some(next) {
            let message = format!(
                "stored offset moved backwards: group {} topic {} partition {partition}: {max} -> {next}",
                key.0, key.1
            );
            super::say(&message);
            seen.regressions.push(message);
        }
        seen.max.insert(key, max.max(next));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decrease_is_a_regression_and_an_outage_is_not() {
        let mut seen = Seen::default();
        let row = |o| vec![("g".to_owned(), "t".to_owned(), 3, o)];
        record(&mut seen, Some(row(10)));
        record(&mut seen, None);
        record(&mut seen, Some(row(12)));
        record(&mut seen, Some(row(11)));
        record(&mut seen, Some(row(11)));
        assert_eq!(seen.regressions.len(), 1);
        assert!(seen.regressions[0].contains("partition 3: 12 -> 11"));
        assert_eq!((seen.samples, seen.unavailable), (4, 1));
    }
}
