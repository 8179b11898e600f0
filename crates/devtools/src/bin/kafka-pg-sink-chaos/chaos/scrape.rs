//! The connector's own figures must agree with the tables once it has caught up: every
//! partition reported by exactly one replica, its committed offset at the log end, lag 0.
//! (Counters restart from zero with each process, so they are not compared with the tables.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::fleet::Fleet;
use testkit::prom::{label, samples};

/// Polls `/metrics` of every running replica until the figures agree or `timeout` passes
/// (lag comes from librdkafka statistics every 5 s). Ok(summary) or Err(the last disagreement).
pub async fn agree(
    fleet: &Fleet,
    topic: &str,
    ends: &[i64],
    timeout: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let problem = match once(fleet, topic, ends).await {
            Ok(summary) => return Ok(summary),
            Err(problem) => problem,
        };
        if Instant::now() > deadline {
            return Err(problem);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What one replica reports for one partition: (replica, committed offset, lag).
type Report = (String, Option<i64>, Option<i64>);

async fn once(fleet: &Fleet, topic: &str, ends: &[i64]) -> Result<String, String> {
    let mut reports: BTreeMap<i32, Vec<Report>> = BTreeMap::new();
    let mut scraped = 0;
    for replica in fleet.replicas() {
        let body = replica
            .metrics()
            .await
            .ok_or_else(|| format!("{} does not answer /metrics", replica.name()))?;
        scraped += 1;
        let mut mine: BTreeMap<i32, Report> = BTreeMap::new();
        for (name, is_lag) in [
            ("kafka_pg_sink_committed_offset", false),
            ("kafka_pg_sink_consumer_lag", true),
        ] {
            for (labels, value) in samples(&body, name) {
                let partition = label(labels, "partition").and_then(|p| p.parse().ok());
                let Some(p) = partition.filter(|_| label(labels, "topic") == Some(topic)) else {
                    continue;
                };
                let entry = mine.entry(p).or_insert((replica.name(), None, None));
                *(if is_lag { &mut entry.2 } else { &mut entry.1 }) = Some(value as i64);
            }
        }
        for (p, report) in mine {
            reports.entry(p).or_default().push(report);
        }
    }
    let mut problems = Vec::new();
    for (p, end) in ends.iter().enumerate() {
        let p = p as i32;
        let show = |r: &Report| {
            format!(
                "{} (committed_offset {:?}, consumer_lag {:?})",
                r.0, r.1, r.2
            )
        };
        match reports.get(&p).map(Vec::as_slice).unwrap_or_default() {
            [] => problems.push(format!("no replica reports partition {p}")),
            [one] if one.1 != Some(*end) || one.2 != Some(0) => {
                problems.push(format!("partition {p} (log end {end}): {}", show(one)))
            }
            [_] => {}
            many => problems.push(format!(
                "partition {p} (log end {end}) reported by {} replicas: {}",
                many.len(),
                many.iter().map(show).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(format!(
        "{scraped} replicas scraped; all {} partitions owned once, committed_offset = log end, consumer_lag 0",
        ends.len()
    ))
}
