//! The rules against tables described by hand, as the catalog would describe them.

use super::*;
use crate::config::Config;
use crate::sink::check::catalog::tests::{column, table, unique};

pub(in crate::sink::check) fn mapping(body: &str) -> Mapping {
    let text = format!(
        "[kafka]\nbrokers='b'\n[postgres]\nurl='postgres://x'\n[[mappings]]\ntopic='t'\ntable='acct'\n{body}\n"
    );
    Config::from_toml(&text).unwrap().mappings.remove(0)
}

const UPSERT: &str = "key=['id']\ncolumns={ id='value.id', amount='value.amount' }";

#[test]
fn a_table_that_fits_has_no_problem() {
    let t = table(
        vec![column("id", "bigint"), column("amount", "numeric(14,2)")],
        vec![unique("acct_pkey", &["id"])],
    );
    let m = mapping(&format!("{UPSERT}\ntypes={{ amount='numeric' }}"));
    assert_eq!(check_mapping(&m, &t), Vec::<String>::new());
}

#[test]
fn a_missing_column_is_named_with_its_config_key_and_a_case_hint() {
    let t = table(
        vec![column("id", "bigint"), column("Amount", "numeric")],
        vec![unique("acct_pkey", &["id"])],
    );
    let problems = check_mapping(&mapping(UPSERT), &t);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert!(
        p.contains("has no column \"amount\" (from columns.amount"),
        "{p}"
    );
    assert!(
        p.contains("the table has \"Amount\", names are case-sensitive"),
        "{p}"
    );
    assert!(p.contains("its columns are \"id\", \"Amount\""), "{p}");
}

#[test]
fn an_explicit_type_must_fit_the_column_or_its_domain_base_type() {
    let m = mapping(&format!("{UPSERT}\ntypes={{ amount='numeric' }}"));
    let keyed = |amount: CatalogColumn| {
        table(
            vec![column("id", "bigint"), amount],
            vec![unique("acct_pkey", &["id"])],
        )
    };
    let problems = check_mapping(&m, &keyed(column("amount", "text")));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0]
        .contains("column \"amount\" has type text, which does not fit types.amount = numeric"));
    let mut domain = column("amount", "money_amount");
    domain.base_ty = "numeric(14,2)".into();
    assert_eq!(check_mapping(&m, &keyed(domain)), Vec::<String>::new());
}

#[test]
fn generated_and_always_identity_columns_cannot_be_written() {
    let mut generated = column("amount", "numeric");
    generated.generated = "s".into();
    let mut always = column("id", "bigint");
    always.identity = "a".into();
    let t = table(vec![always, generated], vec![unique("acct_pkey", &["id"])]);
    let problems = check_mapping(&mapping(UPSERT), &t);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems
        .iter()
        .any(|p| p.contains("\"amount\" is a generated column")));
    assert!(problems
        .iter()
        .any(|p| p.contains("\"id\" is GENERATED ALWAYS AS IDENTITY")));
    // By default, an identity column takes written values.
    let mut by_default = column("id", "bigint");
    by_default.identity = "d".into();
    let t = table(
        vec![by_default, column("amount", "numeric")],
        vec![unique("acct_pkey", &["id"])],
    );
    assert_eq!(check_mapping(&mapping(UPSERT), &t), Vec::<String>::new());
}

#[test]
fn summed_columns_must_be_numeric() {
    let m = mapping(
        "mode='accumulate'\nkey=['id']\ncolumns={ id='value.id', total='value.t' }\naccumulate={ total='add', n='count' }",
    );
    let t = |total: &str, n: &str| {
        table(
            vec![
                column("id", "bigint"),
                column("total", total),
                column("n", n),
            ],
            vec![unique("acct_pkey", &["id"])],
        )
    };
    assert_eq!(
        check_mapping(&m, &t("numeric(14,2)", "bigint")),
        Vec::<String>::new()
    );
    let problems = check_mapping(&m, &t("text", "integer[]"));
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("accumulate.n = count sums it"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("accumulate.total = add sums it"),
        "{problems:?}"
    );
}

#[test]
fn numeric_types_are_recognised_by_base_name_and_never_as_arrays() {
    for ty in ["numeric(14,2)", "integer", " double precision ", "money"] {
        assert!(is_numeric(ty), "{ty}");
    }
    for ty in ["integer[]", "numeric(14,2)[]", "text", "interval"] {
        assert!(!is_numeric(ty), "{ty}");
    }
}

#[test]
fn upserts_need_a_usable_unique_index_on_exactly_the_key() {
    let m = mapping(UPSERT);
    let columns = || vec![column("id", "bigint"), column("amount", "numeric")];
    let problems = |indexes| check_mapping(&m, &table(columns(), indexes));
    assert_eq!(
        problems(vec![unique("acct_pkey", &["id"])]),
        Vec::<String>::new()
    );

    let mut partial = unique("acct_id_partial", &["id"]);
    partial.partial = true;
    let found = problems(vec![partial, unique("acct_id_amount", &["id", "amount"])]);
    assert_eq!(found.len(), 1, "{found:?}");
    let p = &found[0];
    assert!(
        p.contains("mode upsert writes with ON CONFLICT (\"id\")"),
        "{p}"
    );
    assert!(
        p.contains("index \"acct_id_partial\" does not count: partial"),
        "{p}"
    );
    assert!(
        p.contains("the table's unique keys are (\"id\", \"amount\")"),
        "{p}"
    );
    assert!(
        p.contains("CREATE UNIQUE INDEX ON \"public\".\"acct\" (\"id\")"),
        "{p}"
    );

    let mut deferrable = unique("acct_id", &["id"]);
    deferrable.deferrable = true;
    deferrable.valid = false;
    let found = problems(vec![deferrable]);
    assert!(
        found[0]
            .contains("does not count: invalid (a failed CREATE INDEX CONCURRENTLY?), deferrable"),
        "{found:?}"
    );
    // Inserts need no index.
    let insert = mapping("mode='insert'\ncolumns={ id='value.id', amount='value.amount' }");
    assert_eq!(
        check_mapping(&insert, &table(columns(), vec![])),
        Vec::<String>::new()
    );
}

#[test]
fn unmapped_not_null_columns_without_a_default_fail_unless_a_trigger_fills_them() {
    let mut created = column("created_by", "text");
    created.needs_value = true;
    let mut t = table(
        vec![column("id", "bigint"), column("amount", "numeric"), created],
        vec![unique("acct_pkey", &["id"])],
    );
    let problems = check_mapping(&mapping(UPSERT), &t);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("column(s) \"created_by\" of public.acct are NOT NULL"),
        "{problems:?}"
    );
    // Mapped, it is filled.
    let constant = mapping(&format!("{UPSERT}\nconstants={{ created_by='sink' }}"));
    assert_eq!(check_mapping(&constant, &t), Vec::<String>::new());
    t.fills_on_insert = true;
    assert_eq!(check_mapping(&mapping(UPSERT), &t), Vec::<String>::new());
}
