//! The documentation against the product: configurations shown in the docs load, documented
//! commands exist, every configuration key and every metric is documented and every documented one
//! exists. (The quickstart's `scripts/test.sh` is what CI runs; `scripts/demo.sh` is run by hand.)

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use kafka_pg_sink::config::Config;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/, as (name, text).
fn pages() -> Vec<(String, String)> {
    let mut pages = vec![(
        "README.md".to_owned(),
        std::fs::read_to_string(root().join("README.md")).unwrap(),
    )];
    let mut docs: Vec<_> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    for path in docs {
        let name = format!("docs/{}", path.file_name().unwrap().to_string_lossy());
        pages.push((name, std::fs::read_to_string(path).unwrap()));
    }
    pages
}

/// The fenced code blocks of `lang` in `text`.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_start() == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line.trim_start() == "```" => {
                out.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_complete_configuration_in_the_docs_loads() {
    let mut seen = 0;
    for (page, text) in pages() {
        for block in blocks(&text, "toml") {
            if !block.trim_start().starts_with("[kafka]") {
                continue;
            }
            seen += 1;
            if let Err(e) = Config::from_toml(&block) {
                panic!("{page}: a configuration does not load: {e}\n{block}");
            }
        }
    }
    assert!(seen > 0, "no configuration found in the docs");
}

#[test]
fn every_documented_command_exists() {
    let mut seen = BTreeSet::new();
    for (page, text) in pages() {
        for block in blocks(&text, "sh") {
            for line in block.lines() {
                let Some(rest) = line
                    .trim()
                    .strip_prefix("target/release/kafka-pg-sink ")
                    .or_else(|| line.trim().strip_prefix("kafka-pg-sink "))
                else {
                    continue;
                };
                // The subcommand words: up to the first option, placeholder or comment, with
                // `--config PATH` skipped.
                let mut words = Vec::new();
                let mut tokens = rest.split_whitespace();
                while let Some(token) = tokens.next() {
                    if token == "--config" {
                        tokens.next();
                        continue;
                    }
                    if token.starts_with(['-', '[', '#', '(']) || token.contains('=') {
                        break;
                    }
                    words.push(token.to_owned());
                }
                if !seen.insert(words.clone()) {
                    continue;
                }
                let output = Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
                    .args(&words)
                    .arg("--help")
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "{page}: `kafka-pg-sink {}` is not a command: {}",
                    words.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }
    assert!(seen.len() >= 5, "too few commands found: {seen:?}");
}

/// Keys of the reference's configuration table: `section.key` and `mappings[].key`.
fn documented_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("docs/reference.md")).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(key, _)| key.to_owned()))
        .filter(|key| key.contains('.'))
        .collect()
}

/// Keys `check-config` prints for the example configuration (every default written out).
fn printed_keys() -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
        .args(["--config", "config/kafka-pg-sink.toml", "check-config"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            section = format!("{name}[]");
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            // A table inside a section (`[kafka.properties]`, `[mappings.columns]`) is a key.
            match name.split_once('.') {
                Some((parent, key)) => {
                    let parent = if parent == "mappings" {
                        "mappings[]"
                    } else {
                        parent
                    };
                    keys.insert(format!("{parent}.{key}"));
                    section = format!("{parent}.{key}.");
                }
                None => section = name.to_owned(),
            }
        } else if let Some((key, _)) = line.split_once(" = ") {
            if !section.ends_with('.') {
                keys.insert(format!("{section}.{}", key.trim()));
            }
        }
    }
    keys
}

#[test]
fn every_configuration_key_is_documented_and_every_documented_key_exists() {
    let documented = documented_keys();
    let printed = printed_keys();
    let undocumented: Vec<_> = printed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "keys missing from docs/reference.md: {undocumented:?}"
    );
    // Optional keys without a default are not printed; every other documented key must be.
    let optional = [
        "kafka.group_instance_id",
        "mappings[].only_if_newer",
        "mappings[].tombstone",
        "mappings[].window",
        "mappings[].key_format",
        "mappings[].envelope",
        "mappings[].truncate",
        "schema_registry.username",
        "schema_registry.password",
        "schema_registry.bearer_token",
        "schema_registry.ca_file",
        "schema_registry.client_cert_file",
        "schema_registry.client_key_file",
    ];
    let unknown: Vec<_> = documented
        .iter()
        .filter(|k| !printed.contains(*k) && !optional.contains(&k.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "documented keys that do not exist: {unknown:?}"
    );
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let source = std::fs::read_to_string(root().join("src/metrics.rs")).unwrap();
    let mut defined = BTreeSet::new();
    for opener in [
        "counter(",
        "IntGauge::new(",
        "HistogramOpts::new(",
        "Opts::new(",
        "IntGaugeVec::new(",
    ] {
        for (at, _) in source.match_indices(opener) {
            let rest = source[at + opener.len()..].trim_start();
            if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split_once('"')) {
                defined.insert(name.0.to_owned());
            }
        }
    }
    assert!(defined.len() > 15, "{defined:?}");
    let reference = std::fs::read_to_string(root().join("docs/reference.md")).unwrap();
    // Metrics are the table rows of their own section (other tables list formats, modes).
    let (_, metrics) = reference
        .split_once("## Metrics and health")
        .expect("a metrics section");
    let documented: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(name, _)| name.to_owned()))
        .filter(|name| !name.contains('.'))
        .collect();
    let undocumented: Vec<_> = defined.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from docs/reference.md: {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(&defined).collect();
    assert!(
        unknown.is_empty(),
        "documented metrics that do not exist: {unknown:?}"
    );
}

#[test]
fn the_readme_configuration_is_the_one_the_demo_runs() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let shown = blocks(&readme, "toml")
        .into_iter()
        .find(|b| b.trim_start().starts_with("[kafka]"))
        .expect("a configuration in the README");
    let shown = Config::from_toml(&shown).unwrap();
    let demo =
        Config::from_toml(&std::fs::read_to_string(root().join("config/demo.toml")).unwrap())
            .unwrap();
    assert_eq!(shown.summary(), demo.summary());
}

/// Keys the example configuration names, set or commented out (`# key = …`), as `section.key`
/// and `mappings[].key`; a table header inside a section (`[mappings.columns]`) names a key too.
fn example_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("config/kafka-pg-sink.toml")).unwrap();
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            section = format!("{name}[]");
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            match name.split_once('.') {
                Some(("mappings", key)) => keys.insert(format!("mappings[].{key}")),
                Some((parent, key)) => keys.insert(format!("{parent}.{key}")),
                None => {
                    section = name.to_owned();
                    false
                }
            };
        } else {
            let setting = line.trim_start_matches('#').trim_start();
            let Some((key, _)) = setting.split_once(" = ") else {
                continue;
            };
            let bare = key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if bare && !section.is_empty() {
                keys.insert(format!("{section}.{key}"));
            }
        }
    }
    keys
}

#[test]
fn every_key_in_the_reference_appears_in_the_example_configuration() {
    let documented = documented_keys();
    assert!(documented.len() > 20, "too few keys read: {documented:?}");
    let example = example_keys();
    let missing: Vec<_> = documented.difference(&example).collect();
    assert!(
        missing.is_empty(),
        "keys of docs/reference.md that config/kafka-pg-sink.toml does not show: {missing:?}"
    );
}
