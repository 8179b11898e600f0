//! Smoke test of the benchmark tool (`kafka-pg-sink-bench`) at a tiny size: it runs end to end
//! against real Postgres and the mock broker (or `KAFKA_BROKERS`), verifies its own tables,
//! exits 0 and writes a results file with every figure the table shows. Not a timed test: it
//! never asserts on speed, only that rates were measured.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(240);

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kps_bench_smoke_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn benchmark_runs_every_mode_verifies_and_writes_json() {
    let out = out_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink-bench"))
        .args(["--records", "20000", "--partitions", "4"])
        .args(["--latency-seconds", "3", "--latency-rate", "2000"])
        .arg("--sink")
        .arg(testkit::connector::binary())
        .arg("--mock-broker")
        .arg(testkit::bins::path(testkit::bins::MOCK_BROKER))
        .arg("--out")
        .arg(&out)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kafka-pg-sink-bench");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // SIGTERM first: the benchmark then stops its broker and connector itself.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            panic!("the benchmark did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "benchmark exited with {status}");

    let files: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("results directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "one results file in {}", out.display());
    let report: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    check_report(&report);
    let _ = std::fs::remove_dir_all(&out);
}

fn positive(value: &Value, what: &str) -> f64 {
    let v = value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"));
    assert!(v > 0.0, "{what} = {v}");
    v
}

fn check_report(report: &Value) {
    assert_eq!(
        report["ok"],
        Value::Bool(true),
        "problems: {}",
        report["problems"]
    );
    assert_eq!(report["settings"]["records"], 20000);
    let machine = &report["machine"];
    positive(&machine["nproc"], "nproc");
    assert!(machine["postgres"]["version"].is_string());
    assert!(machine["postgres"]["synchronous_commit"].is_string());
    assert!(machine["load_average_before"].is_string());

    // One ceiling per kind of work, each with its two-connection load again after the mode that
    // does that work, so each mode is bracketed by its own ceiling.
    let ceilings = report["ceilings"].as_array().expect("ceilings");
    let works: Vec<&str> = ceilings
        .iter()
        .map(|c| c["work"].as_str().unwrap())
        .collect();
    assert_eq!(works, ["upsert", "insert", "accumulate"]);
    let ceiling_of = |work: &str| ceilings.iter().find(|c| c["work"] == work).unwrap();
    for c in ceilings {
        positive(&c["rows_per_s"], "ceiling rows/s");
        let loads = c["loads"].as_array().expect("ceiling loads");
        assert_eq!(loads.len(), 2, "one and two connections");
        for load in loads {
            positive(&load["rows_per_s"], "ceiling load rows/s");
        }
        for load in c["again"].as_array().expect("ceilings between the modes") {
            positive(&load["rows_per_s"], "ceiling measured again");
            assert_eq!(load["connections"], 2);
        }
    }
    let after = |work: &str| -> Vec<String> {
        ceiling_of(work)["again"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["after_mode"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    for work in works {
        assert_eq!(after(work), [work]);
    }

    let modes = report["modes"].as_array().expect("modes");
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(names, ["upsert", "insert", "accumulate"]);
    for m in modes {
        let name = m["mode"].as_str().unwrap();
        assert_eq!(m["records"], 20000, "{name}");
        // Bracketed by its ceiling's two-connection loads measured just before and just after.
        let c = ceiling_of(name);
        let again = c["again"].as_array().unwrap();
        let i = again.iter().position(|l| l["after_mode"] == name).unwrap();
        let before = if i == 0 {
            &c["loads"][1]
        } else {
            &again[i - 1]
        };
        let bracket = (positive(&before["rows_per_s"], "before")
            + positive(&again[i]["rows_per_s"], "after"))
            / 2.0;
        let expected = positive(&m["records_per_s"], name) / bracket;
        let got = positive(&m["ratio_to_ceiling_bracket"], name);
        assert!(
            (got - expected).abs() <= 1e-9 * expected,
            "{name}: bracket ratio {got}, expected {expected}"
        );
        assert!(
            m["problems"].as_array().unwrap().is_empty(),
            "{name}: {}",
            m["problems"]
        );
        for field in [
            "records_per_s",
            "ratio_to_ceiling",
            "ratio_to_ceiling_before",
            "ratio_to_ceiling_after",
            "ratio_to_ceiling_bracket",
            "commit_p50_ms",
            "commit_p99_ms",
            "e2e_p50_ms",
            "e2e_p99_ms",
            "peak_rss_mb",
            "connector_cpu_total_s",
        ] {
            positive(&m[field], &format!("{name}.{field}"));
        }
        // CPU between the phase's first and last commit: at this size the phase can last 0.1 s,
        // shorter than /proc's 10 ms tick resolution makes reliable, so it may be zero, but it
        // is never negative and never more than the process used in all.
        let phase_cpu = m["cpu_s"]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}.cpu_s: {}", m["cpu_s"]));
        let total_cpu = m["connector_cpu_total_s"].as_f64().unwrap();
        assert!(
            (0.0..=total_cpu).contains(&phase_cpu),
            "{name}: phase CPU {phase_cpu} s, process total {total_cpu} s"
        );
        positive(
            &m["producer"]["records_per_s"],
            &format!("{name} producer rate"),
        );
        let latency = &m["latency"];
        assert_eq!(latency["records"], 6000, "{name}: 3 s at 2000/s");
        // The first 1.5 s (half the phase) are a warm-up and not measured.
        let observed = latency["e2e_observations"].as_u64().unwrap_or(0);
        assert!(
            (1000..6000).contains(&observed),
            "{name}: {observed} observations"
        );
        assert!(m["exit_status"].as_str().unwrap().contains('0'), "{name}");
    }
}
