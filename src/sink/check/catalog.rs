//! What the catalog says about a target table: its columns with their types and collations, its
//! unique indexes, whether a trigger fills rows on insert; and the column types the writers
//! build their plan from. Only the catalog is read, and names reach it as bind parameters.

use std::collections::BTreeSet;

use sqlx::postgres::types::Oid;
use sqlx::PgPool;

use crate::config::Mapping;
use crate::error::Error;
use crate::ident::{Ident, TableName};

/// What the catalog says about a mapping's columns, in mapping order.
pub struct ColumnTypes {
    /// `format_type()` of each column.
    pub types: Vec<String>,
    /// The same with the column's collation where it is not its type's default: the column
    /// definitions of a stage table that compares as the target table does.
    pub stage: Vec<String>,
    /// Whether key values are equal in the table exactly when they are as written
    /// ([`exact_keys`]).
    pub exact_keys: bool,
}

/// The catalog types of the mapping's columns; `None` when the table or a column does not exist.
pub async fn column_types(pool: &PgPool, mapping: &Mapping) -> Result<Option<ColumnTypes>, Error> {
    let Ok(oid) = find_table(pool, &mapping.table).await? else {
        return Ok(None);
    };
    let table = Table::load(pool, oid).await?;
    let Some(found) = mapping
        .columns
        .iter()
        .map(|c| table.column(&c.name))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    Ok(Some(ColumnTypes {
        types: found.iter().map(|c| c.ty.clone()).collect(),
        stage: found
            .iter()
            .map(|c| match &c.collation {
                Some(collation) => format!("{} COLLATE {collation}", c.ty),
                None => c.ty.clone(),
            })
            .collect(),
        exact_keys: exact_keys(mapping, &table),
    }))
}

/// Whether `COPY` into the mapping's table does what `INSERT` does, so that insert-mode rows can
/// go straight into it: `COPY FROM` fires triggers and checks constraints as `INSERT` does, but
/// it does not apply rewrite rules (a table with an `INSERT` rule, `ev_type` 3) and is refused
/// (0A000) on a table with row-level security enabled; such tables take their rows through
/// `INSERT … SELECT`. False too when the table is not found.
pub async fn copies_like_inserts(pool: &PgPool, mapping: &Mapping) -> Result<bool, Error> {
    let Ok(oid) = find_table(pool, &mapping.table).await? else {
        return Ok(false);
    };
    let copies: bool = sqlx::query_scalar(
        "SELECT NOT c.relrowsecurity AND NOT EXISTS \
         (SELECT 1 FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.ev_type = '3') \
         FROM pg_class c WHERE c.oid = $1",
    )
    .bind(oid)
    .fetch_one(pool)
    .await?;
    Ok(copies)
}

/// Whether two key values are equal in the table exactly when they are as written (text as its
/// bytes, a timestamp to the microsecond): every key column has no type modifier (the server
/// would cut `varchar(n)` overflow made of spaces and round `timestamptz(p)`, making different
/// values one) and, with every unique index on exactly the key columns (the `ON CONFLICT`
/// arbiters), uses deterministic collations (a case-insensitive ICU collation, say, is not).
fn exact_keys(mapping: &Mapping, table: &Table) -> bool {
    let key: BTreeSet<&str> = mapping.key.iter().map(|k| k.as_str()).collect();
    let columns = mapping.key.iter().all(|k| {
        table
            .column(k)
            .is_some_and(|c| c.deterministic && !c.ty.contains('('))
    });
    let indexes = table
        .unique_indexes
        .iter()
        .filter(|i| i.has_columns(&key))
        .all(|i| i.deterministic);
    columns && indexes
}

/// The table's oid, or what is wrong with the configured name (missing, not a table).
pub(super) async fn find_table(
    pool: &PgPool,
    table: &TableName,
) -> Result<Result<Oid, String>, Error> {
    let rows: Vec<(Oid, String, String)> = sqlx::query_as(
        "SELECT c.oid, c.relname::text, c.relkind::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND lower(c.relname) = lower($2)",
    )
    .bind(table.schema.as_str())
    .bind(table.table.as_str())
    .fetch_all(pool)
    .await?;
    let is_table = |kind: &str| matches!(kind, "r" | "p");
    if let Some((oid, _, kind)) = rows.iter().find(|(_, n, _)| n == table.table.as_str()) {
        if is_table(kind) {
            return Ok(Ok(*oid));
        }
        return Ok(Err(format!(
            "{table} is a {}, not a table; point `table` at a table",
            relkind_name(kind)
        )));
    }
    let schema_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(table.schema.as_str())
            .fetch_one(pool)
            .await?;
    let schema = &table.schema;
    Ok(Err(match rows.iter().find(|(_, _, kind)| is_table(kind)) {
        _ if !schema_exists => format!(
            "schema {schema} does not exist; create it and the table {table}, or fix `table`"
        ),
        Some((_, name, _)) => format!(
            "table {table} does not exist, but {schema}.\"{name}\" does (names are \
             case-sensitive); create it or fix `table`"
        ),
        None => format!("table {table} does not exist; create it or fix `table`"),
    }))
}

fn relkind_name(relkind: &str) -> &'static str {
    match relkind {
        "v" => "view",
        "m" => "materialized view",
        "f" => "foreign table",
        "S" => "sequence",
        "i" | "I" => "index",
        "c" => "composite type",
        _ => "relation of another kind",
    }
}

/// A target table as the catalog describes it.
pub(super) struct Table {
    pub(super) columns: Vec<CatalogColumn>,
    pub(super) unique_indexes: Vec<UniqueIndex>,
    /// A BEFORE INSERT row trigger may fill NOT NULL columns the mapping leaves out.
    pub(super) fills_on_insert: bool,
}

#[derive(sqlx::FromRow)]
pub(super) struct CatalogColumn {
    pub(super) name: String,
    /// `format_type()` of the column, as shown to the user.
    pub(super) ty: String,
    /// The same for a domain's base type, which is what values are really converted to.
    pub(super) base_ty: String,
    /// An insert that leaves it out fails: NOT NULL, no default, not identity or generated.
    pub(super) needs_value: bool,
    /// `a` (GENERATED ALWAYS AS IDENTITY), `d` (BY DEFAULT) or empty.
    pub(super) identity: String,
    /// `s` (GENERATED ALWAYS AS (...) STORED) or empty; such columns cannot be written at all.
    pub(super) generated: String,
    /// Its collation, if it has one, compares bytewise for equality.
    pub(super) deterministic: bool,
    /// Its collation, qualified and quoted, where it is not its type's default.
    pub(super) collation: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct UniqueIndex {
    pub(super) name: String,
    /// Key columns in index order (INCLUDE columns left out, expressions skipped).
    pub(super) columns: Vec<String>,
    pub(super) valid: bool,
    pub(super) partial: bool,
    pub(super) expressions: bool,
    /// Deferrable constraints cannot be `ON CONFLICT` arbiters.
    pub(super) deferrable: bool,
    /// Every collation of its columns compares bytewise for equality.
    pub(super) deterministic: bool,
}

impl UniqueIndex {
    pub(super) fn has_columns(&self, key: &BTreeSet<&str>) -> bool {
        self.columns
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            == *key
    }

    /// Why `ON CONFLICT` cannot use it even when its columns match.
    pub(super) fn flaws(&self) -> Vec<&'static str> {
        [
            (!self.valid, "invalid (a failed CREATE INDEX CONCURRENTLY?)"),
            (self.partial, "partial (has a WHERE clause)"),
            (self.expressions, "on expressions"),
            (self.deferrable, "deferrable"),
        ]
        .into_iter()
        .filter_map(|(flawed, why)| flawed.then_some(why))
        .collect()
    }
}

impl Table {
    pub(super) async fn load(pool: &PgPool, oid: Oid) -> Result<Self, Error> {
        let columns = sqlx::query_as(
            "SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS ty, \
                    CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) \
                         ELSE format_type(a.atttypid, a.atttypmod) END AS base_ty, \
                    a.attnotnull AND NOT a.atthasdef AND a.attidentity = '' \
                         AND a.attgenerated = '' AS needs_value, \
                    a.attidentity::text AS identity, a.attgenerated::text AS generated, \
                    COALESCE((SELECT co.collisdeterministic FROM pg_collation co \
                              WHERE co.oid = a.attcollation), true) AS deterministic, \
                    (SELECT quote_ident(cn.nspname) || '.' || quote_ident(co.collname) \
                     FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace \
                     WHERE co.oid = a.attcollation AND a.attcollation <> t.typcollation) \
                         AS collation \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(pool)
        .await?;
        let unique_indexes = sqlx::query_as(
            "SELECT ic.relname::text AS name, \
                    ARRAY(SELECT a.attname::text \
                          FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                          WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS columns, \
                    i.indisvalid AS valid, i.indpred IS NOT NULL AS partial, \
                    i.indexprs IS NOT NULL AS expressions, NOT i.indimmediate AS deferrable, \
                    NOT EXISTS (SELECT 1 FROM unnest(i.indcollation::oid[]) AS k(coll) \
                                JOIN pg_collation co ON co.oid = k.coll \
                                WHERE NOT co.collisdeterministic) AS deterministic \
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
             WHERE i.indrelid = $1 AND i.indisunique ORDER BY ic.relname",
        )
        .bind(oid)
        .fetch_all(pool)
        .await?;
        // tgtype bits: 1 = ROW, 2 = BEFORE, 4 = INSERT.
        let fills_on_insert = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal \
                            AND tgenabled <> 'D' AND tgtype::int & 7 = 7)",
        )
        .bind(oid)
        .fetch_one(pool)
        .await?;
        Ok(Self {
            columns,
            unique_indexes,
            fills_on_insert,
        })
    }

    pub(super) fn column(&self, name: &Ident) -> Option<&CatalogColumn> {
        self.columns.iter().find(|c| c.name == name.as_str())
    }
}

#[cfg(test)]
pub(super) mod tests {
    //! Tables described by hand, as the catalog would describe them (shared with the rules'
    //! tests), and [`exact_keys`] on them.

    use super::*;
    use crate::sink::check::rules::tests::mapping;

    /// A nullable, writable column of type `ty` with the default collation.
    pub(in crate::sink::check) fn column(name: &str, ty: &str) -> CatalogColumn {
        CatalogColumn {
            name: name.into(),
            ty: ty.into(),
            base_ty: ty.into(),
            needs_value: false,
            identity: String::new(),
            generated: String::new(),
            deterministic: true,
            collation: None,
        }
    }

    /// A valid, plain unique index on `columns`.
    pub(in crate::sink::check) fn unique(name: &str, columns: &[&str]) -> UniqueIndex {
        UniqueIndex {
            name: name.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            valid: true,
            partial: false,
            expressions: false,
            deferrable: false,
            deterministic: true,
        }
    }

    pub(in crate::sink::check) fn table(
        columns: Vec<CatalogColumn>,
        unique_indexes: Vec<UniqueIndex>,
    ) -> Table {
        Table {
            columns,
            unique_indexes,
            fills_on_insert: false,
        }
    }

    #[test]
    fn keys_are_exact_only_without_modifiers_and_with_deterministic_collations() {
        let m = mapping("key=['id']\ncolumns={ id='value.id', v='value.v' }");
        let exact = |id: CatalogColumn, index: UniqueIndex| {
            exact_keys(&m, &table(vec![id, column("v", "text")], vec![index]))
        };
        assert!(exact(column("id", "text"), unique("pk", &["id"])));
        assert!(exact(column("id", "bigint"), unique("pk", &["id"])));
        // varchar(n) cuts trailing spaces, timestamptz(p) rounds: two values become one.
        assert!(!exact(
            column("id", "character varying(8)"),
            unique("pk", &["id"])
        ));
        assert!(!exact(
            column("id", "timestamp(3) with time zone"),
            unique("pk", &["id"])
        ));
        let mut case_insensitive = column("id", "text");
        case_insensitive.deterministic = false;
        assert!(!exact(case_insensitive, unique("pk", &["id"])));
        let mut index = unique("pk", &["id"]);
        index.deterministic = false;
        assert!(!exact(column("id", "text"), index));
        // Only the indexes on exactly the key are arbiters.
        let mut other = unique("other", &["id", "v"]);
        other.deterministic = false;
        assert!(exact(column("id", "text"), other));
    }
}
