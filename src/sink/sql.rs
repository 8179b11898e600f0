//! SQL text for one mapping, built once at start-up from validated identifiers only.

use crate::config::{AccumulateOp, Mapping, Mode};

/// Statements a writer runs for one mapping. Stage tables are per-connection temporary tables
/// with the target's column types plus `kps_ord`, the record offset; they are emptied at every
/// commit. For binary COPY the types are the ones read at start-up, written out, so that the
/// stage keeps the types the rows are encoded for even if the table changes later; otherwise
/// `CREATE TABLE AS ... WITH NO DATA` copies the table's current types (not its constraints).
#[derive(Clone, Debug)]
pub struct MappingSql {
    pub create_stage: String,
    pub create_delete_stage: String,
    pub copy_rows: String,
    pub copy_deletes: String,
    pub copy_rows_binary: String,
    pub copy_deletes_binary: String,
    /// Moves the stage into the target table, according to the mode.
    pub apply: String,
    /// `apply` for a stage that holds one row per key in key order (`TableRows::sorted`): an
    /// upsert then neither sorts nor removes duplicates, and an accumulate mapping's rows, each
    /// its key's reduction (`TableRows::per_key`), are merged without `GROUP BY`. Empty where
    /// the mode has none, and for an accumulate mapping whose stage types make the server's
    /// per-record reduction differ from the connector's ([`takes_per_key_rows`]).
    pub apply_sorted: String,
    /// Insert mode: COPY of rows without `kps_ord`, in offset order (`TableRows::unordered`),
    /// straight into the table (`TableRows::direct`); empty for other modes.
    pub copy_direct: String,
    pub copy_direct_binary: String,
    /// Insert mode, the same rows through the stage (a direct COPY failed, so the batch is
    /// written, or its bad rows found, the staged way): `kps_ord` stays NULL and the rows are
    /// applied in the order COPY stored them.
    pub copy_unordered: String,
    pub copy_unordered_binary: String,
    pub apply_unordered: String,
    pub delete: String,
    /// Deletes every row of the table (a change stream's truncate).
    pub delete_all: String,
}

impl MappingSql {
    /// `index` makes stage names unique per mapping on one connection. `stage_types`, when
    /// given, are the column types (SQL text, one per column) of the stage tables.
    pub fn new(mapping: &Mapping, index: usize, stage_types: Option<&[String]>) -> Self {
        let table = mapping.table.quoted();
        let stage = format!("kps_stage_{index}");
        let del_stage = format!("kps_delete_{index}");
        let columns = join(mapping.columns.iter().map(|c| c.name.quoted()));
        let keys = join(mapping.key_columns().map(|c| c.name.quoted()));
        let key_match = mapping
            .key_columns()
            .map(|c| format!("t.{0} = d.{0}", c.name.quoted()))
            .collect::<Vec<_>>()
            .join(" AND ");
        let (create_stage, create_delete_stage) = match stage_types {
            Some(types) if types.len() == mapping.columns.len() => {
                let typed = |keys_only: bool| {
                    join(
                        mapping
                            .columns
                            .iter()
                            .zip(types)
                            .filter(|(c, _)| !keys_only || mapping.key.contains(&c.name))
                            .map(|(c, ty)| format!("{} {ty}", c.name.quoted())),
                    )
                };
                (
                    format!(
                        "CREATE TEMP TABLE IF NOT EXISTS {stage} ({}, kps_ord bigint) ON COMMIT DELETE ROWS",
                        typed(false)
                    ),
                    format!(
                        "CREATE TEMP TABLE IF NOT EXISTS {del_stage} ({}) ON COMMIT DELETE ROWS",
                        typed(true)
                    ),
                )
            }
            _ => (
                format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS \
                     SELECT {columns}, NULL::bigint AS kps_ord FROM {table} WITH NO DATA"
                ),
                format!(
                    "CREATE TEMP TABLE IF NOT EXISTS {del_stage} ON COMMIT DELETE ROWS AS SELECT {keys} FROM {table} WITH NO DATA"
                ),
            ),
        };
        Self {
            create_stage,
            create_delete_stage,
            copy_rows: format!("COPY pg_temp.{stage} ({columns}, kps_ord) FROM STDIN"),
            copy_deletes: format!("COPY pg_temp.{del_stage} ({keys}) FROM STDIN"),
            copy_rows_binary: format!(
                "COPY pg_temp.{stage} ({columns}, kps_ord) FROM STDIN (FORMAT binary)"
            ),
            copy_deletes_binary: format!(
                "COPY pg_temp.{del_stage} ({keys}) FROM STDIN (FORMAT binary)"
            ),
            copy_direct: insert_only(mapping, || format!("COPY {table} ({columns}) FROM STDIN")),
            copy_direct_binary: insert_only(mapping, || {
                format!("COPY {table} ({columns}) FROM STDIN (FORMAT binary)")
            }),
            copy_unordered: insert_only(mapping, || {
                format!("COPY pg_temp.{stage} ({columns}) FROM STDIN")
            }),
            copy_unordered_binary: insert_only(mapping, || {
                format!("COPY pg_temp.{stage} ({columns}) FROM STDIN (FORMAT binary)")
            }),
            // A stage emptied at every commit is filled from its first page on, so physical
            // order is COPY order.
            apply_unordered: insert_only(mapping, || {
                format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM pg_temp.{stage} ORDER BY ctid")
            }),
            apply_sorted: match mapping.mode {
                Mode::Upsert if mapping.only_if_newer.is_none() => {
                    upsert(mapping, &table, &stage, &columns, &keys, false)
                }
                Mode::Accumulate if takes_per_key_rows(mapping, stage_types) => {
                    accumulate(mapping, &table, &stage, &columns, &keys, false)
                }
                _ => String::new(),
            },
            apply: match mapping.mode {
                Mode::Upsert | Mode::Cdc => upsert(mapping, &table, &stage, &columns, &keys, true),
                Mode::Insert => {
                    format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM pg_temp.{stage} ORDER BY kps_ord")
                }
                Mode::Accumulate => accumulate(mapping, &table, &stage, &columns, &keys, true),
            },
            delete: format!(
                "DELETE FROM {table} AS t USING pg_temp.{del_stage} AS d WHERE {key_match}"
            ),
            delete_all: format!("DELETE FROM {table}"),
        }
    }
}

/// `statement()` for an insert mapping, else empty.
fn insert_only(mapping: &Mapping, statement: impl FnOnce() -> String) -> String {
    match mapping.mode {
        Mode::Insert => statement(),
        _ => String::new(),
    }
}

/// One row per key (the decoder already reduced by key text; `DISTINCT ON` also covers keys that
/// are equal in SQL but not as text, such as `1.0` and `1`). Without `distinct`, for a stage
/// the decoder left with one row per key, in key order.
fn upsert(
    mapping: &Mapping,
    table: &str,
    stage: &str,
    columns: &str,
    keys: &str,
    distinct: bool,
) -> String {
    let updates: Vec<String> = mapping
        .columns
        .iter()
        .filter(|c| !mapping.key.contains(&c.name))
        .map(|c| format!("{0} = EXCLUDED.{0}", c.name.quoted()))
        .collect();
    let (order, guard) = match &mapping.only_if_newer {
        // Applying in order with a strict `<` guard keeps the first of equal versions.
        Some(v) => (
            format!("{keys}, {} DESC NULLS LAST, kps_ord", v.quoted()),
            format!(" WHERE t.{0} < EXCLUDED.{0}", v.quoted()),
        ),
        None => (format!("{keys}, kps_ord DESC"), String::new()),
    };
    let on_conflict = if updates.is_empty() {
        format!("ON CONFLICT ({keys}) DO NOTHING")
    } else {
        format!(
            "ON CONFLICT ({keys}) DO UPDATE SET {}{guard}",
            updates.join(", ")
        )
    };
    if !distinct {
        return format!(
            "INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM pg_temp.{stage} {on_conflict}"
        );
    }
    format!(
        "INSERT INTO {table} AS t ({columns}) SELECT DISTINCT ON ({keys}) {columns} FROM pg_temp.{stage} ORDER BY {order} {on_conflict}"
    )
}

/// Whether the stage, typed as `stage_types` (the table's catalog types, `None` when the rows go
/// as COPY text), reads every record's value of an aggregated column as the connector's
/// reduction does, so that one row per key reduced by the connector gives what `GROUP BY` over
/// the per-record rows gives. A type modifier makes them differ: `numeric(14,2)` rounds each
/// record's value before the server sums them, `varchar(n)` refuses a long value of a record
/// whose value the reduction would drop, and so does `json`'s check of an old `last` value; so
/// only these types, written without a modifier (a collation is fine), take reduced rows.
pub fn takes_per_key_rows(mapping: &Mapping, stage_types: Option<&[String]>) -> bool {
    const EXACT: &[&str] = &[
        "smallint",
        "integer",
        "bigint",
        "numeric",
        "timestamp with time zone",
        "text",
        "character varying",
        "boolean",
        "uuid",
    ];
    let Some(types) = stage_types.filter(|t| t.len() == mapping.columns.len()) else {
        return false;
    };
    mapping.columns.iter().zip(types).all(|(c, ty)| {
        let base = ty.split(" COLLATE ").next().unwrap_or(ty);
        mapping.key.contains(&c.name) || EXACT.contains(&base)
    })
}

/// Merges the batch into the table. With `group`, the stage holds the per-record rows, reduced
/// per key here in SQL (exact numeric arithmetic); without, it holds one row per key already
/// (`TableRows::per_key`) in key order, as COPY wrote them. Either way the rows are written in
/// key order, so writers of different partitions that share keys lock them in the same order
/// instead of deadlocking.
fn accumulate(
    mapping: &Mapping,
    table: &str,
    stage: &str,
    columns: &str,
    keys: &str,
    group: bool,
) -> String {
    let mut selects = Vec::new();
    let mut merges = Vec::new();
    for c in &mapping.columns {
        let q = c.name.quoted();
        let Some(op) = c.op else {
            selects.push(q);
            continue;
        };
        selects.push(match op {
            AccumulateOp::Add | AccumulateOp::Count => format!("sum({q})"),
            AccumulateOp::Min => format!("min({q})"),
            AccumulateOp::Max => format!("max({q})"),
            AccumulateOp::Last => format!("(array_agg({q} ORDER BY kps_ord DESC))[1]"),
        });
        merges.push(match op {
            AccumulateOp::Add | AccumulateOp::Count => {
                format!("{q} = COALESCE(t.{q} + EXCLUDED.{q}, t.{q}, EXCLUDED.{q})")
            }
            AccumulateOp::Min => format!("{q} = LEAST(t.{q}, EXCLUDED.{q})"),
            AccumulateOp::Max => format!("{q} = GREATEST(t.{q}, EXCLUDED.{q})"),
            AccumulateOp::Last => format!("{q} = EXCLUDED.{q}"),
        });
    }
    let on_conflict = if merges.is_empty() {
        format!("ON CONFLICT ({keys}) DO NOTHING")
    } else {
        format!("ON CONFLICT ({keys}) DO UPDATE SET {}", merges.join(", "))
    };
    if !group {
        return format!(
            "INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM pg_temp.{stage} {on_conflict}"
        );
    }
    format!(
        "INSERT INTO {table} AS t ({columns}) SELECT {} FROM pg_temp.{stage} GROUP BY {keys} ORDER BY {keys} {on_conflict}",
        selects.join(", ")
    )
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn mapping(extra: &str) -> Mapping {
        let text = format!("[kafka]\nbrokers='b'\n[postgres]\nurl='postgres://x'\n[[mappings]]\ntopic='t'\ntable='billing.acct'\n{extra}\n");
        Config::from_toml(&text).unwrap().mappings.remove(0)
    }

    #[test]
    fn upsert_updates_every_non_key_column_with_one_row_per_key() {
        let sql = MappingSql::new(
            &mapping(
                "key=['id']\ncolumns={ id='value.id', amount='value.amount', note='value.note' }",
            ),
            3,
            None,
        );
        assert_eq!(
            sql.apply,
            "INSERT INTO \"billing\".\"acct\" AS t (\"amount\", \"id\", \"note\") SELECT DISTINCT ON (\"id\") \"amount\", \"id\", \"note\" \
             FROM pg_temp.kps_stage_3 ORDER BY \"id\", kps_ord DESC \
             ON CONFLICT (\"id\") DO UPDATE SET \"amount\" = EXCLUDED.\"amount\", \"note\" = EXCLUDED.\"note\""
        );
        assert_eq!(
            sql.apply_sorted,
            "INSERT INTO \"billing\".\"acct\" AS t (\"amount\", \"id\", \"note\") SELECT \"amount\", \"id\", \"note\" \
             FROM pg_temp.kps_stage_3 \
             ON CONFLICT (\"id\") DO UPDATE SET \"amount\" = EXCLUDED.\"amount\", \"note\" = EXCLUDED.\"note\""
        );
        assert_eq!(
            sql.copy_rows,
            "COPY pg_temp.kps_stage_3 (\"amount\", \"id\", \"note\", kps_ord) FROM STDIN"
        );
        assert_eq!(sql.delete, "DELETE FROM \"billing\".\"acct\" AS t USING pg_temp.kps_delete_3 AS d WHERE t.\"id\" = d.\"id\"");
    }

    #[test]
    fn version_guard_keeps_the_highest_version() {
        let sql = MappingSql::new(
            &mapping(
                "key=['id']\nonly_if_newer='v'\ncolumns={ id='key', v='value.v', x='value.x' }",
            ),
            0,
            None,
        );
        assert!(
            sql.apply
                .contains("ORDER BY \"id\", \"v\" DESC NULLS LAST, kps_ord ON CONFLICT"),
            "{}",
            sql.apply
        );
        assert!(
            sql.apply.ends_with("WHERE t.\"v\" < EXCLUDED.\"v\""),
            "{}",
            sql.apply
        );
    }

    #[test]
    fn key_only_tables_do_nothing_on_conflict() {
        let sql = MappingSql::new(&mapping("key=['id']\ncolumns={ id='value.id' }"), 0, None);
        assert!(
            sql.apply.ends_with("ON CONFLICT (\"id\") DO NOTHING"),
            "{}",
            sql.apply
        );
    }

    #[test]
    fn insert_appends_in_offset_order() {
        let sql = MappingSql::new(
            &mapping("mode='insert'\ncolumns={ id='value.id', body='value' }"),
            1,
            None,
        );
        assert_eq!(
            sql.apply,
            "INSERT INTO \"billing\".\"acct\" (\"body\", \"id\") SELECT \"body\", \"id\" FROM pg_temp.kps_stage_1 ORDER BY kps_ord"
        );
        assert_eq!(
            sql.copy_direct_binary,
            "COPY \"billing\".\"acct\" (\"body\", \"id\") FROM STDIN (FORMAT binary)"
        );
        assert_eq!(
            sql.copy_unordered,
            "COPY pg_temp.kps_stage_1 (\"body\", \"id\") FROM STDIN"
        );
        assert_eq!(
            sql.apply_unordered,
            "INSERT INTO \"billing\".\"acct\" (\"body\", \"id\") SELECT \"body\", \"id\" FROM pg_temp.kps_stage_1 ORDER BY ctid"
        );
    }

    #[test]
    fn only_inserts_have_direct_statements() {
        for mode in [
            "mode='upsert'\nkey=['id']",
            "mode='accumulate'\nkey=['id']\naccumulate={ n='add' }",
        ] {
            let sql = MappingSql::new(
                &mapping(&format!("{mode}\ncolumns={{ id='value.id', n='value.n' }}")),
                0,
                None,
            );
            assert!(
                sql.copy_direct.is_empty() && sql.apply_unordered.is_empty(),
                "{mode}"
            );
        }
    }

    #[test]
    fn accumulate_pre_aggregates_and_merges() {
        let sql = MappingSql::new(
            &mapping("mode='accumulate'\nkey=['account']\ncolumns={ account='value.account', total='value.amount', hi='value.amount', last_ref='value.ref' }\naccumulate={ total='add', hi='max', last_ref='last', n='count' }\nwindow={ column='hour', source='value.ts', size='1h' }"),
            0,
            None,
        );
        assert_eq!(
            sql.apply,
            "INSERT INTO \"billing\".\"acct\" AS t (\"account\", \"hi\", \"hour\", \"last_ref\", \"n\", \"total\") \
             SELECT \"account\", max(\"hi\"), \"hour\", (array_agg(\"last_ref\" ORDER BY kps_ord DESC))[1], sum(\"n\"), sum(\"total\") \
             FROM pg_temp.kps_stage_0 GROUP BY \"account\", \"hour\" ORDER BY \"account\", \"hour\" ON CONFLICT (\"account\", \"hour\") DO UPDATE SET \
             \"hi\" = GREATEST(t.\"hi\", EXCLUDED.\"hi\"), \"last_ref\" = EXCLUDED.\"last_ref\", \
             \"n\" = COALESCE(t.\"n\" + EXCLUDED.\"n\", t.\"n\", EXCLUDED.\"n\"), \
             \"total\" = COALESCE(t.\"total\" + EXCLUDED.\"total\", t.\"total\", EXCLUDED.\"total\")"
        );
        assert!(sql.apply_sorted.is_empty(), "COPY text: the server reduces");
    }

    const ACCUMULATE: &str = "mode='accumulate'\nkey=['account']\ncolumns={ account='value.account', total='value.amount', last_ref='value.ref' }\naccumulate={ total='add', last_ref='last', n='count' }";

    /// Stage types of [`ACCUMULATE`]'s columns (account, last_ref, n, total) with `total` and
    /// `last_ref` as given.
    fn stage(total: &str, last_ref: &str) -> Vec<String> {
        ["text COLLATE \"de-x-icu\"", last_ref, "bigint", total]
            .map(str::to_owned)
            .to_vec()
    }

    #[test]
    fn rows_reduced_per_key_are_merged_without_grouping() {
        let m = mapping(ACCUMULATE);
        let sql = MappingSql::new(&m, 2, Some(&stage("numeric", "text")));
        assert_eq!(
            sql.apply_sorted,
            "INSERT INTO \"billing\".\"acct\" AS t (\"account\", \"last_ref\", \"n\", \"total\") \
             SELECT \"account\", \"last_ref\", \"n\", \"total\" FROM pg_temp.kps_stage_2 \
             ON CONFLICT (\"account\") DO UPDATE SET \"last_ref\" = EXCLUDED.\"last_ref\", \
             \"n\" = COALESCE(t.\"n\" + EXCLUDED.\"n\", t.\"n\", EXCLUDED.\"n\"), \
             \"total\" = COALESCE(t.\"total\" + EXCLUDED.\"total\", t.\"total\", EXCLUDED.\"total\")"
        );
        assert!(sql
            .apply
            .contains("GROUP BY \"account\" ORDER BY \"account\""));
    }

    #[test]
    fn type_modifiers_and_json_keep_the_reduction_in_the_server() {
        let m = mapping(ACCUMULATE);
        assert!(takes_per_key_rows(
            &m,
            Some(&stage("numeric", "character varying"))
        ));
        for (total, last_ref) in [
            // Each record's value is rounded to two places before the server sums them.
            ("numeric(14,2)", "text"),
            // An old `last` value too long, or not JSON, is a bad record there.
            ("numeric", "character varying(8)"),
            ("numeric", "json"),
            ("numeric", "jsonb"),
            ("public.money_domain", "text"),
        ] {
            assert!(
                !takes_per_key_rows(&m, Some(&stage(total, last_ref))),
                "{total} {last_ref}"
            );
            let sql = MappingSql::new(&m, 0, Some(&stage(total, last_ref)));
            assert!(sql.apply_sorted.is_empty(), "{total} {last_ref}");
        }
        assert!(!takes_per_key_rows(&m, None));
    }
}
