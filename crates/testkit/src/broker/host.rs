//! The mock broker host: librdkafka's mock cluster (a Kafka-protocol broker over TCP on
//! 127.0.0.1) in a process of its own, so a connector under test can be killed and restarted
//! against the same data, and steered by commands on stdin.
//!
//! It prints `BOOTSTRAP=<host:port>`, then answers one command per line with `ok` or
//! `error: ...`:
//! - `create-topic <name> <partitions>`;
//! - `broker-down`, `broker-up` (the data is kept);
//! - `request-errors <api> <count> <error-code>`: the next `count` requests of that API (a name
//!   such as `Fetch`, `OffsetCommit`, `Heartbeat`, `JoinGroup`, or its number) fail with the
//!   Kafka error code, e.g. 1 OFFSET_OUT_OF_RANGE, 6 NOT_LEADER_OR_FOLLOWER, 7
//!   REQUEST_TIMED_OUT, 15 COORDINATOR_NOT_AVAILABLE, 27 REBALANCE_IN_PROGRESS;
//!   `clear-request-errors <api>`;
//! - `rtt <ms>`: round-trip delay added by the broker (`rtt 0` removes it).
//!
//! It runs until killed. What the mock does and does not do (no transaction markers, no static
//! membership) is in `BROKERS.md` of the development notes.

use std::io::{BufRead, Write};
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

/// Runs a mock cluster with `topics` (`name:partitions`) until the process is killed.
pub fn serve(topics: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = MockCluster::new(1)?;
    for spec in topics {
        let (name, partitions) = spec
            .split_once(':')
            .ok_or("--topic takes name:partitions")?;
        cluster.create_topic(name, partitions.parse()?, 1)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "BOOTSTRAP={}", cluster.bootstrap_servers())?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let result = match words.as_slice() {
            ["create-topic", name, partitions] => match partitions.parse() {
                Ok(n) => cluster.create_topic(name, n, 1).map_err(|e| e.to_string()),
                Err(_) => Err(format!("`{partitions}` is not a partition count")),
            },
            ["broker-down"] => cluster.broker_down(-1).map_err(|e| e.to_string()),
            ["broker-up"] => cluster.broker_up(-1).map_err(|e| e.to_string()),
            ["request-errors", api, count, code] => request_errors(&cluster, api, count, code),
            ["clear-request-errors", api] => {
                api_key(api).map(|key| cluster.clear_request_errors(key))
            }
            ["rtt", ms] => match ms.parse() {
                Ok(ms) => cluster
                    .broker_round_trip_time(1, Duration::from_millis(ms))
                    .map_err(|e| e.to_string()),
                Err(_) => Err(format!("`{ms}` is not a number of milliseconds")),
            },
            [] => continue,
            _ => Err(format!("unknown command `{line}`")),
        };
        match result {
            Ok(()) => writeln!(out, "ok")?,
            Err(error) => writeln!(out, "error: {error}")?,
        }
        out.flush()?;
    }
    // stdin closed: keep serving until killed.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Makes the next `count` requests of `api` fail with Kafka error `code`.
fn request_errors(
    cluster: &MockCluster<'static, DefaultProducerContext>,
    api: &str,
    count: &str,
    code: &str,
) -> Result<(), String> {
    let key = api_key(api)?;
    let count: usize = count
        .parse()
        .map_err(|_| format!("`{count}` is not a count"))?;
    let error = code
        .parse::<i32>()
        .ok()
        .and_then(|c| RDKafkaRespErr::try_from(c).ok())
        .ok_or_else(|| format!("`{code}` is not a Kafka error code"))?;
    cluster.request_errors(key, &vec![error; count]);
    Ok(())
}

/// A protocol API by name (`Fetch`) or number (`1`); only the ones a consumer group uses.
fn api_key(name: &str) -> Result<RDKafkaApiKey, String> {
    use RDKafkaApiKey::*;
    let known = [
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        InitProducerId,
    ];
    known
        .into_iter()
        .find(|key| {
            format!("{key:?}").eq_ignore_ascii_case(name) || (*key as i16).to_string() == name
        })
        .ok_or_else(|| format!("unknown or unsupported API `{name}`"))
}
