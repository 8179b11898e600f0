//! `check` against a real Postgres (and a Schema Registry): each mismatch between the
//! configuration and the database, or a registry subject, is reported, naming the mapping and
//! what to change, and all of them at once.

use kafka_pg_sink::config::Config;
use kafka_pg_sink::sink::{check_database, migrate};
use testkit::prelude::*;

/// Runs `ddl` in a fresh database, optionally migrates, checks `mappings` and drops the database
/// (before any assertion can fail, so no database is left behind).
async fn check_with(ddl: &str, mappings: &str, migrated: bool) -> Vec<String> {
    let db = TestDb::create().await;
    if !ddl.is_empty() {
        db.exec(ddl).await;
    }
    let text = format!(
        "[kafka]\nbrokers = 'unused:9092'\n[postgres]\nurl = '{}'\n{mappings}",
        db.url
    );
    let config = Config::from_toml(&text).unwrap();
    if migrated {
        migrate(&db.pool, &config.schema).await.unwrap();
    }
    let problems = check_database(&db.pool, &config).await;
    db.drop_db().await;
    let mut problems = problems.unwrap();
    problems.extend(
        kafka_pg_sink::registry::check::check(&config)
            .await
            .unwrap(),
    );
    problems
}

async fn check(ddl: &str, mappings: &str) -> Vec<String> {
    check_with(ddl, mappings, true).await
}

/// The one problem that contains every one of `parts`; fails listing all problems otherwise.
fn find<'a>(problems: &'a [String], parts: &[&str]) -> &'a str {
    problems
        .iter()
        .find(|p| parts.iter().all(|part| p.contains(part)))
        .unwrap_or_else(|| panic!("no problem contains all of {parts:?}; got {problems:#?}"))
}

const PAYMENTS: &str = r#"
[[mappings]]
topic = "payments"
table = "payments"
key = ["id"]
columns = { id = "value.id", amount = "value.amount" }
types = { amount = "numeric" }
"#;

const PAYMENTS_CONTEXT: &str = "mappings[0] (topic payments → public.payments): ";

#[tokio::test]
async fn a_correct_setup_has_no_problems() {
    let ddl = r#"
        CREATE SCHEMA billing;
        CREATE TABLE payments (id bigint PRIMARY KEY, amount numeric(14, 2) NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(), note text);
        CREATE TABLE billing."Events" (seq bigint GENERATED ALWAYS AS IDENTITY, body jsonb NOT NULL,
            topic text, doubled bigint GENERATED ALWAYS AS (seq * 2) STORED);
        CREATE TABLE usage (account text NOT NULL, hour timestamptz NOT NULL, total numeric NOT NULL,
            n integer NOT NULL, hi text, last_ref text);
        CREATE UNIQUE INDEX usage_key ON usage (hour, account) INCLUDE (last_ref);
        CREATE UNIQUE INDEX usage_partial ON usage (account) WHERE hi IS NOT NULL;
        CREATE DOMAIN cents AS bigint;
        CREATE TABLE ledger (id uuid, value cents NOT NULL, CONSTRAINT ledger_id UNIQUE (id));
    "#;
    let mappings = r#"
        [[mappings]]
        topic = "payments"
        table = "payments"
        key = ["id"]
        columns = { id = "value.id", amount = "value.amount", note = "value.note" }
        types = { id = "bigint", amount = "numeric" }
        only_if_newer = "amount"

        [[mappings]]
        topic = "events"
        table = "billing.Events"
        mode = "insert"
        columns = { body = "value", topic = "kafka.topic" }
        types = { body = "jsonb" }

        [[mappings]]
        topic = "payments"
        table = "usage"
        mode = "accumulate"
        key = ["account"]
        columns = { account = "value.account", total = "value.amount", hi = "value.ref", last_ref = "value.ref" }
        accumulate = { total = "add", n = "count", hi = "max", last_ref = "last" }
        window = { column = "hour", source = "value.ts", size = "1h" }

        [[mappings]]
        topic = "ledger"
        table = "ledger"
        key = ["id"]
        columns = { id = "key", value = "value.cents" }
        types = { id = "uuid", value = "bigint" }
    "#;
    assert_eq!(check(ddl, mappings).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_table_says_create_it_and_nothing_else() {
    let problems = check("", PAYMENTS).await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].starts_with(PAYMENTS_CONTEXT), "{problems:#?}");
    find(
        &problems,
        &["table public.payments does not exist", "create it"],
    );
}

#[tokio::test]
async fn a_table_differing_only_in_case_is_pointed_out() {
    let problems = check(
        r#"CREATE TABLE "Payments" (id bigint PRIMARY KEY, amount numeric)"#,
        PAYMENTS,
    )
    .await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    find(
        &problems,
        &["public.\"Payments\"", "case-sensitive", "create it"],
    );
}

#[tokio::test]
async fn a_view_or_a_missing_schema_is_not_a_table() {
    let mappings = r#"
        [[mappings]]
        topic = "a"
        table = "payments"
        mode = "insert"
        columns = { id = "value.id" }

        [[mappings]]
        topic = "b"
        table = "nowhere.payments"
        mode = "insert"
        columns = { id = "value.id" }
    "#;
    let problems = check("CREATE VIEW payments AS SELECT 1::bigint AS id", mappings).await;
    assert_eq!(problems.len(), 2, "{problems:#?}");
    find(
        &problems,
        &[
            "mappings[0] (topic a",
            "public.payments is a view, not a table",
        ],
    );
    find(
        &problems,
        &[
            "mappings[1] (topic b",
            "schema nowhere does not exist",
            "create it",
        ],
    );
}

#[tokio::test]
async fn missing_columns_are_listed_with_the_tables_columns() {
    let mappings = r#"
        [[mappings]]
        topic = "payments"
        table = "payments"
        key = ["id"]
        columns = { id = "value.id", amount = "value.amount", note = "value.note" }
    "#;
    let problems = check(
        r#"CREATE TABLE payments (id bigint PRIMARY KEY, "Amount" numeric)"#,
        mappings,
    )
    .await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problem = find(
        &problems,
        &[
            PAYMENTS_CONTEXT,
            "public.payments has no column",
            "\"note\" (from columns.note)",
        ],
    );
    assert!(
        problem.contains(
            "\"amount\" (from columns.amount; the table has \"Amount\", names are case-sensitive)"
        ),
        "{problem}"
    );
    assert!(
        problem.contains("its columns are \"id\", \"Amount\""),
        "{problem}"
    );
}

#[tokio::test]
async fn a_missing_version_column_is_reported() {
    let mappings = r#"
        [[mappings]]
        topic = "payments"
        table = "payments"
        key = ["id"]
        columns = { id = "value.id", version = "value.version" }
        only_if_newer = "version"
    "#;
    let problems = check("CREATE TABLE payments (id bigint PRIMARY KEY)", mappings).await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    find(
        &problems,
        &[PAYMENTS_CONTEXT, "\"version\" (from columns.version)"],
    );
}

#[tokio::test]
async fn an_explicit_type_that_does_not_fit_the_column_is_reported() {
    let problems = check(
        "CREATE TABLE payments (id bigint PRIMARY KEY, amount text)",
        PAYMENTS,
    )
    .await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    find(
        &problems,
        &[
            PAYMENTS_CONTEXT,
            "column \"amount\" has type text",
            "types.amount = numeric",
        ],
    );
}

#[tokio::test]
async fn upsert_without_a_unique_index_on_the_key_gets_the_statement_to_run() {
    let problems = check(
        "CREATE TABLE payments (id bigint NOT NULL, amount numeric, account text UNIQUE)",
        PAYMENTS,
    )
    .await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let problem = find(
        &problems,
        &[
            PAYMENTS_CONTEXT,
            "ON CONFLICT (\"id\")",
            "add a unique index on (\"id\")",
            "CREATE UNIQUE INDEX ON \"public\".\"payments\" (\"id\")",
        ],
    );
    assert!(
        problem.contains("unique keys are (\"account\")"),
        "{problem}"
    );
}

#[tokio::test]
async fn partial_expression_deferrable_and_wider_indexes_do_not_count() {
    let ddl = r#"
        CREATE TABLE a (id bigint, x text);
        CREATE UNIQUE INDEX a_partial ON a (id) WHERE x IS NOT NULL;
        CREATE TABLE b (id bigint, x text);
        CREATE UNIQUE INDEX b_expr ON b (id, lower(x));
        CREATE TABLE c (id bigint, x text, CONSTRAINT c_deferred UNIQUE (id) DEFERRABLE);
        CREATE TABLE d (id bigint, x text, UNIQUE (id, x));
    "#;
    let mut mappings = String::new();
    for t in ["a", "b", "c", "d"] {
        mappings += &format!(
            "[[mappings]]\ntopic = 't'\ntable = '{t}'\nkey = ['id']\ncolumns = {{ id = 'value.id', x = 'value.x' }}\n"
        );
    }
    let problems = check(ddl, &mappings).await;
    assert_eq!(problems.len(), 4, "{problems:#?}");
    find(
        &problems,
        &["public.a)", "\"a_partial\" does not count: partial"],
    );
    find(
        &problems,
        &["public.b)", "\"b_expr\" does not count: on expressions"],
    );
    find(
        &problems,
        &["public.c)", "\"c_deferred\" does not count: deferrable"],
    );
    find(
        &problems,
        &[
            "public.d)",
            "CREATE UNIQUE INDEX ON \"public\".\"d\" (\"id\")",
        ],
    );
}

#[tokio::test]
async fn an_invalid_unique_index_does_not_count() {
    let db = TestDb::create().await;
    db.exec("CREATE TABLE payments (id bigint, amount numeric); INSERT INTO payments VALUES (1, 1), (1, 2)")
        .await;
    // Fails on the duplicates and leaves an invalid index behind.
    let failed = sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY payments_id ON payments (id)")
        .execute(&db.pool)
        .await;
    let text = format!(
        "[kafka]\nbrokers = 'unused:9092'\n[postgres]\nurl = '{}'\n{PAYMENTS}",
        db.url
    );
    let config = Config::from_toml(&text).unwrap();
    migrate(&db.pool, &config.schema).await.unwrap();
    let problems = check_database(&db.pool, &config).await;
    db.drop_db().await;
    assert!(failed.is_err());
    let problems = problems.unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    find(
        &problems,
        &[PAYMENTS_CONTEXT, "\"payments_id\" does not count: invalid"],
    );
}

#[tokio::test]
async fn add_and_count_need_numeric_columns() {
    let ddl = r#"
        CREATE TABLE usage (account text PRIMARY KEY, total text, n text, hi text, events numeric(20, 0));
    "#;
    let mappings = r#"
        [[mappings]]
        topic = "usage"
        table = "usage"
        mode = "accumulate"
        key = ["account"]
        columns = { account = "value.account", total = "value.amount", hi = "value.ref", events = "value.events" }
        accumulate = { total = "add", n = "count", hi = "max", events = "add" }
    "#;
    let problems = check(ddl, mappings).await;
    assert_eq!(problems.len(), 2, "{problems:#?}");
    find(
        &problems,
        &[
            "column \"total\" has type text",
            "accumulate.total = add",
            "numeric type",
        ],
    );
    find(
        &problems,
        &["column \"n\" has type text", "accumulate.n = count"],
    );
}

#[tokio::test]
async fn unmapped_not_null_columns_without_a_default_are_reported() {
    let ddl = r#"
        CREATE TABLE events (
            id bigint GENERATED BY DEFAULT AS IDENTITY,
            body jsonb NOT NULL,
            source text NOT NULL,
            region text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            size integer NOT NULL GENERATED ALWAYS AS (octet_length(body::text)) STORED,
            note text
        );
    "#;
    let mappings = r#"
        [[mappings]]
        topic = "events"
        table = "events"
        mode = "insert"
        columns = { body = "value" }
        constants = { region = "eu" }
    "#;
    let problems = check(ddl, mappings).await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    find(
        &problems,
        &[
            "mappings[0] (topic events → public.events): column(s) \"source\" of public.events",
            "NOT NULL without a default and not mapped",
        ],
    );
}

#[tokio::test]
async fn a_before_insert_trigger_may_fill_not_null_columns() {
    let ddl = r#"
        CREATE TABLE events (body text, source text NOT NULL);
        CREATE FUNCTION fill_source() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN NEW.source := coalesce(NEW.source, 'kafka'); RETURN NEW; END $$;
        CREATE TRIGGER fill BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION fill_source();
    "#;
    let mappings = r#"
        [[mappings]]
        topic = "events"
        table = "events"
        mode = "insert"
        columns = { body = "value" }
        format = "text"
    "#;
    assert_eq!(check(ddl, mappings).await, Vec::<String>::new());
}

#[tokio::test]
async fn generated_and_identity_always_columns_cannot_be_written() {
    let ddl = r#"
        CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, body text,
            size integer GENERATED ALWAYS AS (length(body)) STORED);
    "#;
    let mappings = r#"
        [[mappings]]
        topic = "events"
        table = "events"
        mode = "insert"
        columns = { id = "kafka.offset", body = "value", size = "value" }
        format = "text"
    "#;
    let problems = check(ddl, mappings).await;
    assert_eq!(problems.len(), 2, "{problems:#?}");
    find(
        &problems,
        &["column \"id\" is GENERATED ALWAYS AS IDENTITY"],
    );
    find(&problems, &["column \"size\" is a generated column"]);
}

#[tokio::test]
async fn missing_own_tables_say_run_migrate() {
    let problems = check_with(
        "CREATE TABLE payments (id bigint PRIMARY KEY, amount numeric)",
        PAYMENTS,
        false,
    )
    .await;
    assert_eq!(problems.len(), 2, "{problems:#?}");
    find(
        &problems,
        &[
            "kafka_pg_sink.offsets does not exist",
            "run `kafka-pg-sink migrate`",
        ],
    );
    find(
        &problems,
        &[
            "kafka_pg_sink.dead_letters does not exist",
            "run `kafka-pg-sink migrate`",
        ],
    );
}

#[tokio::test]
async fn every_problem_in_every_mapping_is_reported_at_once() {
    let ddl = r#"
        CREATE TABLE payments (id bigint, amount text, owner text NOT NULL);
        CREATE TABLE usage (account text NOT NULL, hour timestamptz NOT NULL, total text);
    "#;
    let mappings = r#"
        [[mappings]]
        topic = "payments"
        table = "payments"
        key = ["id"]
        columns = { id = "value.id", amount = "value.amount", note = "value.note" }
        types = { amount = "numeric" }

        [[mappings]]
        topic = "missing"
        table = "nothing_here"
        mode = "insert"
        columns = { id = "value.id" }

        [[mappings]]
        topic = "usage"
        table = "usage"
        mode = "accumulate"
        key = ["account"]
        columns = { account = "value.account", total = "value.amount" }
        accumulate = { total = "add", n = "count" }
        window = { column = "hour", source = "value.ts", size = "1h" }
    "#;
    let problems = check(ddl, mappings).await;
    let first = "mappings[0] (topic payments → public.payments): ";
    let third = "mappings[2] (topic usage → public.usage): ";
    find(&problems, &[first, "no column \"note\""]);
    find(&problems, &[first, "column \"amount\" has type text"]);
    find(
        &problems,
        &[
            first,
            "CREATE UNIQUE INDEX ON \"public\".\"payments\" (\"id\")",
        ],
    );
    find(&problems, &[first, "\"owner\"", "NOT NULL"]);
    find(
        &problems,
        &[
            "mappings[1] (topic missing → public.nothing_here)",
            "create it",
        ],
    );
    find(&problems, &[third, "no column \"n\" (from accumulate.n)"]);
    find(&problems, &[third, "column \"total\" has type text", "add"]);
    find(
        &problems,
        &[
            third,
            "CREATE UNIQUE INDEX ON \"public\".\"usage\" (\"account\", \"hour\")",
        ],
    );
    assert_eq!(problems.len(), 8, "{problems:#?}");
}

/// Issue 21: `kafka-pg-sink ddl` prints tables that the same configuration then checks clean
/// against, for every mode, and the connector writes into them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ddl_command_prints_tables_that_pass_check_and_take_records() {
    let db = TestDb::create().await;
    let mut broker = broker();
    let topic = unique("ddl");
    broker.create_topic(&topic, 1).expect("create the topic");
    let group = unique("group");
    let rest = format!(
        r#"[batch]
max_wait_ms = 20

[[mappings]]
topic = "{topic}"
table = "billing.payments"
key = ["id"]
required = ["amount"]
columns = {{ id = "value.id", amount = "value.amount", note = "value.note", at = "kafka.timestamp", src_offset = "kafka.offset" }}
types = {{ id = "bigint", amount = "numeric" }}

[[mappings]]
topic = "{topic}"
table = "usage-per-hour"
mode = "accumulate"
key = ["account"]
columns = {{ account = "value.account", total = "value.amount" }}
accumulate = {{ total = "add", events = "count" }}
window = {{ column = "hour", source = "kafka.timestamp", size = "1h" }}

[[mappings]]
topic = "{topic}"
table = "log"
mode = "insert"
columns = {{ body = "value", p = "kafka.partition" }}
types = {{ body = "jsonb" }}
"#
    );
    let (config, http) = sink_config(&broker, &db, &group, &rest);
    let run = |command: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kafka-pg-sink"))
            .args(["--config", config.0.to_str().unwrap(), command])
            .output()
            .unwrap()
    };
    let ddl = run("ddl");
    assert!(
        ddl.status.success(),
        "{}",
        String::from_utf8_lossy(&ddl.stderr)
    );
    let ddl = String::from_utf8(ddl.stdout).unwrap();
    assert!(
        ddl.contains("CREATE TABLE \"billing\".\"payments\""),
        "{ddl}"
    );
    // Printing is all it does.
    assert_eq!(
        db.scalar_i64("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
            .await,
        0
    );
    db.exec(&ddl).await;
    let migrate = run("migrate");
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let check = run("check");
    assert!(
        check.status.success(),
        "{}\n{ddl}",
        String::from_utf8_lossy(&check.stdout)
    );
    let records: Vec<Produced> = (1..=10)
        .map(|i| {
            (
                0,
                i.to_string(),
                Some(format!(
                    r#"{{"id":{i},"amount":"{i}.25","note":"n","account":"a{}"}}"#,
                    i % 2
                )),
            )
        })
        .collect();
    stream(&broker.bootstrap, &topic, records, 10_000)
        .join()
        .unwrap();
    let sink = Sink::start_with(config, http);
    assert!(
        eventually(std::time::Duration::from_secs(40), || async {
            db.stored_offsets(&group, &topic).await == vec![(0, 10)]
        })
        .await
    );
    assert_eq!(
        db.scalar_text("SELECT sum(amount)::text FROM billing.payments")
            .await,
        "57.50"
    );
    assert_eq!(
        db.scalar_text(
            r#"SELECT sum(total)::text || '/' || sum(events)::text FROM "usage-per-hour""#
        )
        .await,
        "57.50/10"
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM log").await, 10);
    drop(sink);
    db.drop_db().await;
}

/// `check` against a Schema Registry: the subject of an Avro topic is read, and mapped fields the
/// latest schema lacks, or whose kind the column's explicit type does not take, are reported;
/// an unreachable registry is a problem of its own.
#[tokio::test]
async fn registry_subjects_are_checked_against_the_mapped_fields() {
    let registry = SchemaRegistry::start();
    let topic = unique("checked_orders");
    let schema = r#"{"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "long"},
        {"name": "total", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "note", "type": ["null", "string"], "default": null},
        {"name": "shipping", "type": {"type": "record", "name": "Address", "fields": [{"name": "city", "type": "string"}]}}]}"#;
    registry.register(&format!("{topic}-value"), SchemaType::Avro, schema, &[]);
    let ddl = "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric, note text, city text, zip text)";
    let mapping = |columns: &str, types: &str, url: &str| {
        format!(
            "[schema_registry]\nurl = '{url}'\n[[mappings]]\ntopic = '{topic}'\ntable = 'orders'\nformat = 'avro'\n\
             key = ['id']\ncolumns = {{ {columns} }}\ntypes = {{ {types} }}\n"
        )
    };
    let good = mapping(
        "id = 'value.id', total = 'value.total', note = 'value.note', city = 'value.shipping.city'",
        "total = 'numeric'",
        registry.url(),
    );
    assert_eq!(check(ddl, &good).await, Vec::<String>::new());

    let bad = mapping(
        "id = 'value.id', total = 'value.total', note = 'value.note', zip = 'value.shipping.zip'",
        "note = 'bigint'",
        registry.url(),
    );
    let problems = check(ddl, &bad).await;
    find(
        &problems,
        &[
            &format!("{topic}-value"),
            "column `zip`",
            "`shipping.zip` is not in the schema",
        ],
    );
    find(
        &problems,
        &["subject", "column `note`", "string", "types.note = bigint"],
    );
    // The table's text column does not fit bigint either: the database check says so too.
    find(&problems, &["column \"note\" has type text"]);
    assert_eq!(problems.len(), 3, "{problems:#?}");

    let port = free_port();
    let unreachable = mapping("id = 'value.id'", "", &format!("http://127.0.0.1:{port}"));
    let problems = check(ddl, &unreachable).await;
    find(
        &problems,
        &[
            "schema_registry: cannot read subject",
            &format!("127.0.0.1:{port}"),
        ],
    );
}
