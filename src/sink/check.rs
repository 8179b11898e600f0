//! Start-up checks of the database against the configuration (also the `check` subcommand).
//!
//! Guarantee: every mismatch the writer would otherwise meet on its first batch (a missing table
//! or column, a column an explicit conversion cannot feed, no arbiter index for `ON CONFLICT`, a
//! `NOT NULL` column nobody fills, missing own tables) is reported before anything is consumed,
//! all at once, one line each, naming the mapping and the change to make. Only the catalog is
//! read, and names reach it as bind parameters.

use std::collections::BTreeSet;

use sqlx::postgres::types::Oid;
use sqlx::PgPool;

use crate::config::{AccumulateOp, Column, ColumnSource, Config, Mapping, Mode};
use crate::error::Error;
use crate::ident::{Ident, TableName};

/// The connector's own tables (see migrations/), in `postgres.schema`.
const OWN_TABLES: &[&str] = &["offsets", "dead_letters"];

/// Base types `sum()` and `+` work on, as `format_type()` prints them without modifiers.
const NUMERIC_TYPES: &[&str] = &[
    "smallint",
    "integer",
    "bigint",
    "numeric",
    "real",
    "double precision",
    "money",
];

/// Checks every mapped table and the connector's own tables; returns every problem found, each
/// saying what to change. An empty list means the configuration can run against this database.
/// Err only when the catalog cannot be read.
pub async fn check_database(pool: &PgPool, config: &Config) -> Result<Vec<String>, Error> {
    let mut problems = own_tables(pool, &config.schema).await?;
    for (i, mapping) in config.mappings.iter().enumerate() {
        let context = format!(
            "mappings[{i}] (topic {} → {})",
            mapping.topic, mapping.table
        );
        let found = match find_table(pool, &mapping.table).await? {
            Ok(oid) => check_mapping(mapping, &Table::load(pool, oid).await?),
            // The other checks would only repeat that the table is missing.
            Err(missing) => vec![missing],
        };
        problems.extend(found.into_iter().map(|p| format!("{context}: {p}")));
    }
    Ok(problems)
}

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

async fn own_tables(pool: &PgPool, schema: &Ident) -> Result<Vec<String>, Error> {
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind IN ('r', 'p')",
    )
    .bind(schema.as_str())
    .bind(OWN_TABLES)
    .fetch_all(pool)
    .await?;
    Ok(OWN_TABLES
        .iter()
        .filter(|t| !found.iter().any(|f| f == *t))
        .map(|t| {
            format!(
                "postgres.schema: the connector's table {schema}.{t} does not exist; \
                 run `kafka-pg-sink migrate` (or start the connector, which migrates first)"
            )
        })
        .collect())
}

/// The table's oid, or what is wrong with the configured name (missing, not a table).
async fn find_table(pool: &PgPool, table: &TableName) -> Result<Result<Oid, String>, Error> {
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
struct Table {
    columns: Vec<CatalogColumn>,
    unique_indexes: Vec<UniqueIndex>,
    /// A BEFORE INSERT row trigger may fill NOT NULL columns the mapping leaves out.
    fills_on_insert: bool,
}

#[derive(sqlx::FromRow)]
struct CatalogColumn {
    name: String,
    /// `format_type()` of the column, as shown to the user.
    ty: String,
    /// The same for a domain's base type, which is what values are really converted to.
    base_ty: String,
    /// An insert that leaves it out fails: NOT NULL, no default, not identity or generated.
    needs_value: bool,
    /// `a` (GENERATED ALWAYS AS IDENTITY), `d` (BY DEFAULT) or empty.
    identity: String,
    /// `s` (GENERATED ALWAYS AS (...) STORED) or empty; such columns cannot be written at all.
    generated: String,
    /// Its collation, if it has one, compares bytewise for equality.
    deterministic: bool,
    /// Its collation, qualified and quoted, where it is not its type's default.
    collation: Option<String>,
}

#[derive(sqlx::FromRow)]
struct UniqueIndex {
    name: String,
    /// Key columns in index order (INCLUDE columns left out, expressions skipped).
    columns: Vec<String>,
    valid: bool,
    partial: bool,
    expressions: bool,
    /// Deferrable constraints cannot be `ON CONFLICT` arbiters.
    deferrable: bool,
    /// Every collation of its columns compares bytewise for equality.
    deterministic: bool,
}

impl UniqueIndex {
    fn has_columns(&self, key: &BTreeSet<&str>) -> bool {
        self.columns
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            == *key
    }

    /// Why `ON CONFLICT` cannot use it even when its columns match.
    fn flaws(&self) -> Vec<&'static str> {
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
    async fn load(pool: &PgPool, oid: Oid) -> Result<Self, Error> {
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

    fn column(&self, name: &Ident) -> Option<&CatalogColumn> {
        self.columns.iter().find(|c| c.name == name.as_str())
    }
}

/// Every problem of one mapping whose table exists, without the mapping prefix.
fn check_mapping(mapping: &Mapping, table: &Table) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(missing_columns(mapping, table));
    for column in &mapping.columns {
        if let Some(found) = table.column(&column.name) {
            problems.extend(column_problems(column, found));
        }
    }
    if matches!(mapping.mode, Mode::Upsert | Mode::Accumulate) {
        problems.extend(missing_unique_index(mapping, table));
    }
    problems.extend(unfilled_columns(mapping, table));
    problems
}

fn missing_columns(mapping: &Mapping, table: &Table) -> Option<String> {
    let missing: Vec<String> = mapping
        .columns
        .iter()
        .filter(|c| table.column(&c.name).is_none())
        .map(|c| {
            let same_but_case = table
                .columns
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(c.name.as_str()));
            match same_but_case {
                Some(t) => format!(
                    "{} (from {}; the table has \"{}\", names are case-sensitive)",
                    c.name.quoted(),
                    config_key(c),
                    t.name
                ),
                None => format!("{} (from {})", c.name.quoted(), config_key(c)),
            }
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    let existing = quote_all(table.columns.iter().map(|c| c.name.as_str()));
    Some(format!(
        "{} has no column {}; add the column(s) to the table or fix the mapping \
         (its columns are {existing})",
        mapping.table,
        missing.join(", "),
    ))
}

/// The configuration key a column comes from, for messages.
fn config_key(column: &Column) -> String {
    match column.source {
        ColumnSource::WindowStart => "window.column".into(),
        ColumnSource::One => format!("accumulate.{}", column.name),
        ColumnSource::Constant(_) => format!("constants.{}", column.name),
        _ => format!("columns.{}", column.name),
    }
}

fn column_problems(column: &Column, found: &CatalogColumn) -> Vec<String> {
    let name = column.name.quoted();
    let mut problems = Vec::new();
    if let Some(ty) = column.ty {
        if !ty.accepts_catalog_type(&found.ty) && !ty.accepts_catalog_type(&found.base_ty) {
            problems.push(format!(
                "column {name} has type {}, which does not fit types.{} = {}; \
                 change the column's type or `types.{}`",
                found.ty,
                column.name,
                ty.pg_name(),
                column.name
            ));
        }
    }
    if let Some(op @ (AccumulateOp::Add | AccumulateOp::Count)) = column.op {
        if !is_numeric(&found.base_ty) {
            let op = if op == AccumulateOp::Add {
                "add"
            } else {
                "count"
            };
            problems.push(format!(
                "column {name} has type {}, but accumulate.{} = {op} sums it; \
                 change it to a numeric type ({})",
                found.ty,
                column.name,
                NUMERIC_TYPES.join(", ")
            ));
        }
    }
    if found.generated == "s" {
        problems.push(format!(
            "column {name} is a generated column and cannot be written; remove it from the mapping"
        ));
    } else if found.identity == "a" {
        problems.push(format!(
            "column {name} is GENERATED ALWAYS AS IDENTITY and rejects written values; \
             remove it from the mapping or make it GENERATED BY DEFAULT"
        ));
    }
    problems
}

/// `numeric(14,2)` → numeric, `integer[]` → no.
fn is_numeric(format_type: &str) -> bool {
    let ty = format_type.trim();
    !ty.ends_with("[]") && NUMERIC_TYPES.contains(&ty.split('(').next().unwrap_or(ty).trim())
}

/// `ON CONFLICT (keys)` needs a usable unique index on exactly the key columns.
fn missing_unique_index(mapping: &Mapping, table: &Table) -> Option<String> {
    let key: BTreeSet<&str> = mapping.key.iter().map(Ident::as_str).collect();
    let same_columns: Vec<&UniqueIndex> = table
        .unique_indexes
        .iter()
        .filter(|ix| ix.has_columns(&key))
        .collect();
    if same_columns.iter().any(|ix| ix.flaws().is_empty()) {
        return None;
    }
    let keys = mapping
        .key
        .iter()
        .map(Ident::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    let mut notes: Vec<String> = same_columns
        .iter()
        .map(|ix| {
            format!(
                "; index \"{}\" does not count: {}",
                ix.name,
                ix.flaws().join(", ")
            )
        })
        .collect();
    let others: Vec<String> = table
        .unique_indexes
        .iter()
        .filter(|ix| !ix.has_columns(&key) && ix.flaws().is_empty())
        .map(|ix| format!("({})", quote_all(ix.columns.iter().map(String::as_str))))
        .collect();
    if !others.is_empty() {
        notes.push(format!(
            "; the table's unique keys are {}",
            others.join(", ")
        ));
    }
    let why = notes.concat();
    Some(format!(
        "mode {} writes with ON CONFLICT ({keys}), which needs a valid, non-partial unique index \
         or primary key on exactly those columns{why}; add a unique index on ({keys}): \
         CREATE UNIQUE INDEX ON {} ({keys})",
        if mapping.mode == Mode::Upsert {
            "upsert"
        } else {
            "accumulate"
        },
        mapping.table.quoted()
    ))
}

/// NOT NULL columns without a default that no mapped column fills: every insert would fail
/// (unless a trigger fills them; the check cannot see what a trigger does, so it trusts it).
fn unfilled_columns(mapping: &Mapping, table: &Table) -> Option<String> {
    if table.fills_on_insert {
        return None;
    }
    let unfilled: Vec<&str> = table
        .columns
        .iter()
        .filter(|c| c.needs_value && !mapping.columns.iter().any(|m| m.name.as_str() == c.name))
        .map(|c| c.name.as_str())
        .collect();
    if unfilled.is_empty() {
        return None;
    }
    Some(format!(
        "column(s) {} of {} are NOT NULL without a default and not mapped, so every insert \
         would fail; map them (columns or constants), give them a DEFAULT, or drop NOT NULL",
        quote_all(unfilled.into_iter()),
        mapping.table
    ))
}

fn quote_all<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
