//! SQL text for one mapping, built once at start-up from validated identifiers only.

use crate::config::Mapping;

/// Statements a writer runs for one mapping. Stage tables are per-connection temporary tables
/// with the target's column types (`CREATE TABLE AS ... WITH NO DATA` copies types, not
/// constraints), emptied at every commit.
#[derive(Clone, Debug)]
pub struct MappingSql {
    pub create_stage: String,
    pub create_delete_stage: String,
    pub copy_upserts: String,
    pub copy_deletes: String,
    pub upsert: String,
    pub delete: String,
}

impl MappingSql {
    /// `index` makes stage names unique per mapping on one connection.
    pub fn new(mapping: &Mapping, index: usize) -> Self {
        let table = mapping.table.quoted();
        let stage = format!("kps_stage_{index}");
        let del_stage = format!("kps_delete_{index}");
        let columns = join(mapping.columns.iter().map(|(c, _)| c.quoted()));
        let keys = join(mapping.key.iter().map(|k| k.quoted()));
        let updates: Vec<String> = mapping
            .columns
            .iter()
            .filter(|(c, _)| !mapping.key.contains(c))
            .map(|(c, _)| format!("{0} = EXCLUDED.{0}", c.quoted()))
            .collect();
        let on_conflict = if updates.is_empty() {
            format!("ON CONFLICT ({keys}) DO NOTHING")
        } else {
            format!("ON CONFLICT ({keys}) DO UPDATE SET {}", updates.join(", "))
        };
        let key_match = mapping
            .key
            .iter()
            .map(|k| format!("t.{0} = d.{0}", k.quoted()))
            .collect::<Vec<_>>()
            .join(" AND ");
        Self {
            create_stage: format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS SELECT {columns} FROM {table} WITH NO DATA"
            ),
            create_delete_stage: format!(
                "CREATE TEMP TABLE IF NOT EXISTS {del_stage} ON COMMIT DELETE ROWS AS SELECT {keys} FROM {table} WITH NO DATA"
            ),
            copy_upserts: format!("COPY pg_temp.{stage} ({columns}) FROM STDIN"),
            copy_deletes: format!("COPY pg_temp.{del_stage} ({keys}) FROM STDIN"),
            upsert: format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM pg_temp.{stage} {on_conflict}"),
            delete: format!("DELETE FROM {table} AS t USING pg_temp.{del_stage} AS d WHERE {key_match}"),
        }
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn mapping(columns: &str) -> Mapping {
        let text = format!(
            "[kafka]\nbrokers='b'\n[postgres]\nurl='postgres://x'\n[[mappings]]\ntopic='t'\ntable='billing.acct'\nkey=['id']\ncolumns={{ {columns} }}\n"
        );
        Config::from_toml(&text).unwrap().mappings.remove(0)
    }

    #[test]
    fn upsert_updates_every_non_key_column() {
        let sql = MappingSql::new(
            &mapping("id='value.id', amount='value.amount', note='value.note'"),
            3,
        );
        assert_eq!(
            sql.upsert,
            "INSERT INTO \"billing\".\"acct\" (\"amount\", \"id\", \"note\") SELECT \"amount\", \"id\", \"note\" \
             FROM pg_temp.kps_stage_3 ON CONFLICT (\"id\") DO UPDATE SET \"amount\" = EXCLUDED.\"amount\", \"note\" = EXCLUDED.\"note\""
        );
        assert_eq!(
            sql.copy_upserts,
            "COPY pg_temp.kps_stage_3 (\"amount\", \"id\", \"note\") FROM STDIN"
        );
        assert_eq!(
            sql.delete,
            "DELETE FROM \"billing\".\"acct\" AS t USING pg_temp.kps_delete_3 AS d WHERE t.\"id\" = d.\"id\""
        );
    }

    #[test]
    fn key_only_tables_do_nothing_on_conflict() {
        let sql = MappingSql::new(&mapping("id='value.id'"), 0);
        assert!(
            sql.upsert.ends_with("ON CONFLICT (\"id\") DO NOTHING"),
            "{}",
            sql.upsert
        );
    }
}
