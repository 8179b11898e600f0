//! `offsets show`: a table of stored offsets beside the broker's log start and end, with the lag
//! per partition and warnings for offsets outside the log.

use std::process::ExitCode;

use sqlx::PgPool;

use super::cluster::Cluster;
use super::stored::{load_stored, Stored};
use crate::config::{Config, OffsetReset};
use crate::decode::convert::format_timestamp_millis;

/// `offsets show` columns, and which are right-aligned.
const COLUMNS: [&str; 8] = [
    "topic",
    "partition",
    "stored",
    "log start",
    "log end",
    "lag",
    "updated at",
    "",
];
const RIGHT_ALIGNED: [bool; 8] = [false, true, true, true, true, true, false, false];

/// `offsets show`.
pub(super) async fn show(
    config: &Config,
    pool: &PgPool,
    cluster: &Cluster,
    topic: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut rows = vec![COLUMNS.map(String::from).to_vec()];
    for topic in topic.map_or_else(|| config.topics(), |t| vec![t]) {
        let stored = load_stored(pool, config, &topic).await?;
        let partitions = cluster.partitions(&topic).await?.unwrap_or_default();
        let marks = cluster.watermarks(&topic, &partitions).await?;
        // Stored rows of partitions the broker does not have are shown too, flagged.
        let orphans = stored.keys().filter(|p| !marks.contains_key(p));
        for p in partitions.iter().chain(orphans) {
            rows.push(show_row(&topic, *p, stored.get(p), marks.get(p).copied()));
        }
        if partitions.is_empty() {
            let mut row = vec!["-".to_string(); COLUMNS.len()];
            (row[0], row[7]) = (topic, "WARNING: topic not on the broker".into());
            rows.push(row);
        }
    }
    println!("consumer group `{}`", config.kafka.group_id);
    print!("{}", render(&rows, &RIGHT_ALIGNED));
    if rows.iter().any(|r| r[5].ends_with('*')) {
        let start = match config.kafka.auto_offset_reset {
            OffsetReset::Earliest => "start",
            OffsetReset::Latest => "end",
        };
        println!(
            "* no stored offset: lag counted from the log start; the connector starts such a \
             partition at the log {start} (kafka.auto_offset_reset)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A `show` line; `marks` is None for a stored partition the broker does not have.
pub(super) fn show_row(
    topic: &str,
    partition: i32,
    stored: Option<&Stored>,
    marks: Option<(i64, i64)>,
) -> Vec<String> {
    let dash = || "-".to_string();
    let (lag, warning) = match marks {
        None => (dash(), "WARNING: partition not on the broker"),
        Some((low, high)) => match stored.map(|s| s.next_offset) {
            None => (format!("{}*", high - low), ""),
            Some(s) if s < low => (
                (high - s).to_string(),
                "WARNING: below log start (records lost to retention)",
            ),
            Some(s) if s > high => (
                (high - s).to_string(),
                "WARNING: beyond log end (topic recreated?)",
            ),
            Some(s) => ((high - s).to_string(), ""),
        },
    };
    vec![
        topic.to_owned(),
        partition.to_string(),
        stored.map_or_else(dash, |s| s.next_offset.to_string()),
        marks.map_or_else(dash, |m| m.0.to_string()),
        marks.map_or_else(dash, |m| m.1.to_string()),
        lag,
        stored.map_or_else(dash, |s| format_timestamp_millis(s.updated_ms)),
        warning.to_owned(),
    ]
}

/// Rows as aligned columns (two spaces apart), `right[i]` right-aligning column `i`.
pub(super) fn render(rows: &[Vec<String>], right: &[bool]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| match right.get(i) {
                Some(true) => format!("{c:>w$}", w = widths[i]),
                _ => format!("{c:<w$}", w = widths[i]),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
