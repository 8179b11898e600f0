//! `kafka-pg-sink ddl`: the tables the mappings need, as SQL a person reviews and runs. The
//! connector never runs it itself (the target tables belong to the user).
//!
//! Types come from the mapping: `types` first; then what the source always is (`kafka.offset`
//! bigint, `kafka.partition` integer, `kafka.timestamp` and a window start timestamptz, `headers`
//! jsonb, the whole value of a `bytes` mapping bytea); accumulate `count` columns are bigint and
//! `add` columns numeric; anything else is text, with a comment saying so. Key columns are the
//! primary key (the `ON CONFLICT` target); key and `required` columns are NOT NULL.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::config::{AccumulateOp, Column, ColumnSource, Format, KafkaMeta, Mapping, Mode};

/// The statements for every mapping, one table once (a table fed by several mappings is
/// described by the first of them, and a comment says which others use it).
pub fn create_statements(mappings: &[Mapping]) -> String {
    let mut out = String::new();
    let mut schemas = HashSet::new();
    let mut done: Vec<(&Mapping, usize)> = Vec::new();
    for (i, m) in mappings.iter().enumerate() {
        if let Some((_, first)) = done.iter().find(|(d, _)| d.table == m.table) {
            let _ = writeln!(
                out,
                "-- mappings[{i}] ({} -> {}) writes to the table of mappings[{first}] above; check that its columns are there.\n",
                m.topic, m.table
            );
            continue;
        }
        if m.table.schema.as_str() != "public" && schemas.insert(m.table.schema.clone()) {
            let _ = writeln!(
                out,
                "CREATE SCHEMA IF NOT EXISTS {};\n",
                m.table.schema.quoted()
            );
        }
        out.push_str(&create_table(i, m));
        out.push('\n');
        done.push((m, i));
    }
    out
}

/// `CREATE TABLE` for one mapping.
fn create_table(index: usize, m: &Mapping) -> String {
    let mut out = format!(
        "-- mappings[{index}]: topic {} -> {} ({})\n",
        m.topic,
        m.table,
        m.mode.name()
    );
    let _ = writeln!(out, "CREATE TABLE {} (", m.table.quoted());
    let mut lines = Vec::new();
    for c in &m.columns {
        let (ty, guessed) = column_type(m, c);
        let not_null = c.required || m.key.contains(&c.name);
        let mut line = format!(
            "    {} {ty}{}",
            c.name.quoted(),
            if not_null { " NOT NULL" } else { "" }
        );
        if guessed {
            line.push_str(" /* text: set `types` for another type */");
        }
        lines.push(line);
    }
    if m.mode != Mode::Insert && !m.key.is_empty() {
        let keys: Vec<String> = m.key.iter().map(|k| k.quoted()).collect();
        lines.push(format!("    PRIMARY KEY ({})", keys.join(", ")));
    }
    out.push_str(&lines.join(",\n"));
    out.push_str("\n);\n");
    out
}

/// The column's type, and whether it is only the text default.
fn column_type(m: &Mapping, c: &Column) -> (&'static str, bool) {
    if let Some(ty) = c.ty {
        return (ty.pg_name(), false);
    }
    match c.op {
        Some(AccumulateOp::Count) => return ("bigint", false),
        Some(AccumulateOp::Add) => return ("numeric", false),
        _ => {}
    }
    let ty = match &c.source {
        ColumnSource::Kafka(KafkaMeta::Offset) => "bigint",
        ColumnSource::Kafka(KafkaMeta::Partition) => "integer",
        ColumnSource::Kafka(KafkaMeta::Timestamp) | ColumnSource::WindowStart => {
            "timestamp with time zone"
        }
        ColumnSource::Kafka(KafkaMeta::Topic) => "text",
        ColumnSource::Headers => "jsonb",
        ColumnSource::Value(path) if path.is_empty() && m.format == Format::Bytes => "bytea",
        _ => return ("text", true),
    };
    (ty, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn mappings(text: &str) -> Vec<Mapping> {
        let config = format!("[kafka]\nbrokers = 'b'\n[postgres]\nurl = 'postgres://x'\n{text}");
        Config::from_toml(&config).unwrap().mappings
    }

    #[test]
    fn a_table_per_mapping_with_types_keys_and_aggregates() {
        let sql = create_statements(&mappings(
            r#"
[[mappings]]
topic = "payments"
table = "billing.payments"
key = ["id"]
required = ["amount"]
columns = { id = "value.id", amount = "value.amount", note = "value.note", at = "kafka.timestamp", src_offset = "kafka.offset" }
types = { id = "bigint", amount = "numeric" }

[[mappings]]
topic = "payments"
table = "usage-per-hour"
mode = "accumulate"
key = ["account"]
columns = { account = "value.account", total = "value.amount" }
accumulate = { total = "add", events = "count" }
window = { column = "hour", source = "value.ts", size = "1h" }

[[mappings]]
topic = "refunds"
table = "billing.payments"
mode = "insert"
columns = { id = "value.id" }
"#,
        ));
        assert_eq!(
            sql,
            r#"CREATE SCHEMA IF NOT EXISTS "billing";

-- mappings[0]: topic payments -> billing.payments (upsert)
CREATE TABLE "billing"."payments" (
    "amount" numeric NOT NULL,
    "at" timestamp with time zone,
    "id" bigint NOT NULL,
    "note" text /* text: set `types` for another type */,
    "src_offset" bigint,
    PRIMARY KEY ("id")
);

-- mappings[1]: topic payments -> public.usage-per-hour (accumulate)
CREATE TABLE "public"."usage-per-hour" (
    "account" text NOT NULL /* text: set `types` for another type */,
    "events" bigint NOT NULL,
    "hour" timestamp with time zone NOT NULL,
    "total" numeric,
    PRIMARY KEY ("account", "hour")
);

-- mappings[2] (refunds -> billing.payments) writes to the table of mappings[0] above; check that its columns are there.

"#
        );
    }
}
