//! Finding the workspace's binaries from a test or a tool.
//!
//! Cargo tells a test where its own package's binaries are (`CARGO_BIN_EXE_*`), but not another
//! package's: the connector's tests need testkit's mock broker host, and the tools need the
//! connector. Every binary of the workspace lands in one directory (`target/<profile>`), next to
//! each test executable's `deps/`, so that is where they are looked up. `cargo test --workspace`
//! (what `scripts/test.sh` runs) builds them all first; a test run of one package that finds a
//! binary missing builds it with the same cargo and profile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The connector binary.
pub const CONNECTOR: (&str, &str) = ("kafka-pg-sink", "kafka-pg-sink");
/// testkit's mock broker host.
pub const MOCK_BROKER: (&str, &str) = ("kafka-pg-sink-mock-broker", "testkit");

/// The directory the running executable's binaries share: `target/<profile>`.
pub fn dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running executable");
    let parent = exe.parent().expect("the executable's directory");
    match parent.file_name() {
        Some(name) if name == "deps" => parent.parent().unwrap_or(parent).to_owned(),
        _ => parent.to_owned(),
    }
}

/// The path of `(binary, package)`, built first if it is not there yet.
pub fn path((binary, package): (&str, &str)) -> PathBuf {
    let path = dir().join(binary);
    if path.exists() {
        return path;
    }
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        build(binary, package, &path);
    }
    path
}

fn build(binary: &str, package: &str, path: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--locked", "-p", package, "--bin", binary]);
    if dir().file_name().is_some_and(|p| p == "release") {
        command.arg("--release");
    }
    let status = command.status();
    assert!(
        matches!(status, Ok(s) if s.success()) && path.exists(),
        "{} is missing and `cargo build -p {package} --bin {binary}` did not make it ({status:?}); \
         run `cargo build --workspace --bins` first",
        path.display()
    );
}
