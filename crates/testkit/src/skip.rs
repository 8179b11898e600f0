//! Tests that need the mock broker's fault injection (broker down and up, request errors,
//! round-trip delays, damaged batches) cannot run against a real cluster, and the few that need
//! what only a real cluster does (static membership) cannot run against the mock. Likewise a
//! test that needs the test kit's own schema registry (outages, credentials, request counts)
//! cannot run against the one of `SCHEMA_REGISTRY_URL`. Each is
//! skipped where it cannot run, with one printed reason, and counted: `scripts/test.sh` sets
//! `KPS_SKIP_LOG` and prints a summary from it after the run, so a skip is never silent.

use std::io::Write;

/// True when the broker of this run is a real cluster (`KAFKA_BROKERS` is set), after printing
/// and recording that the calling test is skipped because it `needs` the mock broker. Call it
/// first thing in the test: `if testkit::skip::unless_mock("stops the broker") { return; }`.
pub fn unless_mock(needs: &str) -> bool {
    let real = real_cluster();
    if real {
        record(&format!("needs the mock broker ({needs})"));
    }
    real
}

/// True when the broker of this run is the mock broker, after printing and recording that the
/// calling test is skipped because it `needs` a real cluster.
pub fn unless_real(needs: &str) -> bool {
    let mock = !real_cluster();
    if mock {
        record(&format!("needs a real Kafka cluster ({needs})"));
    }
    mock
}

/// Whether `KAFKA_BROKERS` names a cluster (else each test starts the mock broker).
pub fn real_cluster() -> bool {
    std::env::var("KAFKA_BROKERS").is_ok_and(|b| !b.trim().is_empty())
}

/// True when `SCHEMA_REGISTRY_URL` names a registry, after printing and recording that the
/// calling test is skipped because it `needs` the test kit's own registry:
/// `if testkit::skip::unless_own_registry("registry outage") { return; }`.
pub fn unless_own_registry(needs: &str) -> bool {
    let real = real_registry();
    if real {
        record(&format!(
            "needs the test kit's own schema registry ({needs})"
        ));
    }
    real
}

/// Whether `SCHEMA_REGISTRY_URL` names a registry (else each test starts the test kit's own).
pub fn real_registry() -> bool {
    std::env::var("SCHEMA_REGISTRY_URL").is_ok_and(|url| !url.trim().is_empty())
}

fn record(why: &str) {
    // libtest names the test's thread after the test.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("an unnamed test");
    let line = format!("SKIPPED {test}: {why}\n");
    // Written to the process's stderr directly, not through eprintln!, which the test harness
    // captures and shows only for failures.
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Ok(path) = std::env::var("KPS_SKIP_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
}
