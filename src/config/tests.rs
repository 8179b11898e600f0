use std::collections::HashMap;
use std::io::Write;

use super::*;

const GOOD: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"

[postgres]
url = "postgres://app:hunter2@127.0.0.1:5432/billing"

[[mappings]]
topic = "payments"
table = "billing.payments"
key = ["id"]
columns = { id = "value.id", amount = "value.amount", src_offset = "kafka.offset" }
"#;

fn problems(text: &str) -> Vec<String> {
    match Config::from_toml(text) {
        Err(ConfigError::Invalid(problems)) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn a_minimal_file_gets_documented_defaults() {
    let cfg = Config::from_toml(GOOD).unwrap();
    assert_eq!(cfg.kafka.group_id, "kafka-pg-sink");
    assert_eq!(cfg.kafka.auto_offset_reset, OffsetReset::Earliest);
    assert!(cfg.kafka.commit_to_kafka);
    assert_eq!(cfg.batch.max_records, 10_000);
    assert_eq!(cfg.batch.max_wait_ms, 100);
    assert_eq!(cfg.postgres.writers, 2);
    assert_eq!(cfg.schema.as_str(), "kafka_pg_sink");
    assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
    let m = &cfg.mappings[0];
    assert_eq!(m.table.quoted(), "\"billing\".\"payments\"");
    assert_eq!(m.key.len(), 1);
    assert_eq!(m.columns.len(), 3);
}

#[test]
fn every_problem_is_reported_at_once_with_its_key_path() {
    let text = r#"
[kafka]
brokers = ""
properties = { "enable.auto.commit" = "true", "security.protocol" = "SSL", "isolation.level" = "read_uncommitted", "check.crcs" = "false" }
[postgres]
url = "mysql://x"
schema = "ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss"
writers = 0
[batch]
max_records = 0
[http]
listen = "nowhere"
[[mappings]]
topic = ""
table = "a.b.c"
key = ["id", "missing"]
columns = { id = "value.id", cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc = "value.x", other = "vaule.y" }
"#;
    let found = problems(text);
    for expected in [
        "kafka.brokers:",
        "kafka.properties.\"enable.auto.commit\":",
        "kafka.properties.\"isolation.level\": set by the connector itself and cannot be overridden (always read_committed: read_uncommitted would apply records of aborted transactions)",
        "kafka.properties.\"check.crcs\": set by the connector itself and cannot be overridden (always true",
        "postgres.url:",
        "postgres.schema:",
        "postgres.writers:",
        "batch.max_records:",
        "http.listen:",
        "mappings[0].topic:",
        "mappings[0].table:",
        "mappings[0].key[1]: `missing` is not in columns",
        "mappings[0].columns.cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc:",
        "mappings[0].columns.other:",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "missing problem `{expected}` in {found:#?}"
        );
    }
    assert_eq!(found.len(), 14, "{found:#?}");
}

#[test]
fn no_mappings_is_an_error() {
    let text = GOOD.split("[[mappings]]").next().unwrap();
    assert_eq!(
        problems(text),
        vec!["mappings: at least one [[mappings]] entry is required"]
    );
}

#[test]
fn same_topic_and_table_twice_is_an_error() {
    let text = format!("{GOOD}\n[[mappings]]\ntopic = \"payments\"\ntable = \"billing.payments\"\nkey = [\"id\"]\ncolumns = {{ id = \"value.id\" }}\n");
    let found = problems(&text);
    assert!(
        found[0].contains("mapped to table `billing.payments` twice"),
        "{found:?}"
    );
}

#[test]
fn unknown_keys_are_rejected() {
    for (text, key) in [
        (
            GOOD.replace("[kafka]", "[kafka]\nbroker_list = \"x\""),
            "broker_list",
        ),
        (format!("{GOOD}\n[batch]\nmax_recods = 5\n"), "max_recods"),
        (
            GOOD.replace("key = [\"id\"]", "key = [\"id\"]\nmode = \"upsertt\""),
            "mode",
        ),
        (format!("{GOOD}\n[extra]\nx = 1\n"), "extra"),
    ] {
        match Config::from_toml(&text) {
            Err(ConfigError::Load(msg)) => assert!(msg.contains(key), "{msg}"),
            other => panic!("`{key}` must be rejected, got {other:?}"),
        }
    }
}

#[test]
fn environment_overrides_the_file() {
    let mut file = tempfile();
    file.0.write_all(GOOD.as_bytes()).unwrap();
    let env: HashMap<String, String> = [
        ("KAFKA_PG_SINK__KAFKA__BROKERS", "10.0.0.1:9092"),
        ("KAFKA_PG_SINK__POSTGRES__URL", "postgres://other@db/x"),
        ("KAFKA_PG_SINK__BATCH__MAX_RECORDS", "77"),
        ("KAFKA_PG_SINK__KAFKA__COMMIT_TO_KAFKA", "false"),
        ("UNRELATED", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let cfg = Config::load_with_env(&file.1, env).unwrap();
    assert_eq!(cfg.kafka.brokers, "10.0.0.1:9092");
    assert_eq!(cfg.postgres.url.expose(), "postgres://other@db/x");
    assert_eq!(cfg.batch.max_records, 77);
    assert!(!cfg.kafka.commit_to_kafka);
    // check-config prints what is in force, environment included.
    let printed = cfg.to_toml();
    assert!(printed.contains("max_records = 77"), "{printed}");
    assert!(printed.contains("brokers = \"10.0.0.1:9092\""), "{printed}");
}

#[test]
fn check_config_prints_toml_that_loads_back_the_same_with_secrets_hidden() {
    let text = GOOD.replace(
        "brokers = \"127.0.0.1:9092\"",
        "brokers = \"127.0.0.1:9092\"\nproperties = { \"sasl.password\" = \"topsecret\", \"security.protocol\" = \"SASL_SSL\" }",
    );
    let cfg = Config::from_toml(&text).unwrap();
    let printed = cfg.to_toml();
    for secret in ["hunter2", "topsecret"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(
        printed.contains("postgres://app:***@127.0.0.1:5432/billing"),
        "{printed}"
    );
    assert!(
        printed.contains("\"security.protocol\" = \"SASL_SSL\""),
        "{printed}"
    );
    // Every default is written out, and the text is a configuration that loads the same.
    assert!(printed.contains("max_wait_ms = 100"), "{printed}");
    let again = Config::from_toml(&printed).unwrap();
    assert_eq!(again.summary(), cfg.summary());
    assert_eq!(again.to_toml(), printed);
}

#[test]
fn unknown_environment_keys_are_rejected() {
    let mut file = tempfile();
    file.0.write_all(GOOD.as_bytes()).unwrap();
    let env = HashMap::from([(
        "KAFKA_PG_SINK__BATCH__MAX_RECORD".to_owned(),
        "5".to_owned(),
    )]);
    let err = Config::load_with_env(&file.1, env).unwrap_err().to_string();
    assert!(err.contains("max_record"), "{err}");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let err = Config::load_with_env(Path::new("/nonexistent/k.toml"), HashMap::new()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/k.toml"), "{err}");
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let text = GOOD.replace(
        "[kafka]",
        "[kafka]\nproperties = { \"sasl.password\" = \"kafkasecret\", \"sasl.username\" = \"me\" }",
    );
    let cfg = Config::from_toml(&text).unwrap();
    let printed = format!("{cfg:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(!printed.contains("kafkasecret"), "{printed}");
    assert!(printed.contains("sasl.username"), "{printed}");
}

fn tempfile() -> (std::fs::File, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!(
        "kps-config-{}-{:?}.toml",
        std::process::id(),
        std::thread::current().id()
    ));
    (std::fs::File::create(&path).unwrap(), path)
}

#[test]
fn the_shipped_example_configs_are_valid() {
    for text in [
        include_str!("../../config/kafka-pg-sink.toml"),
        include_str!("../../config/demo.toml"),
    ] {
        let cfg = Config::from_toml(text).unwrap();
        assert_eq!(cfg.mappings.len(), 1);
    }
}

fn mapping_problems(mapping: &str) -> Vec<String> {
    problems(&format!(
        "{}\n[[mappings]]\ntopic = 't'\ntable = 'x'\n{mapping}\n",
        GOOD.split("[[mappings]]").next().unwrap()
    ))
}

#[test]
fn mode_specific_settings_are_validated() {
    for (mapping, expected) in [
        ("mode='insert'\nkey=['id']\ncolumns={ id='value.id' }", "mappings[0].key: insert mode appends"),
        ("key=['id']\ncolumns={ id='value.id', t='value.t' }\naccumulate={ t='add' }", "mappings[0].accumulate.t: only used with mode"),
        ("mode='accumulate'\nkey=['id']\ncolumns={ id='value.id', t='value.t' }", "mappings[0].accumulate: column `t` needs an operation"),
        ("mode='accumulate'\nkey=['id']\ncolumns={ id='value.id', n='value.n' }\naccumulate={ n='count' }", "mappings[0].accumulate.n: a count column takes no source"),
        ("mode='accumulate'\nkey=['id']\ncolumns={ id='value.id' }\naccumulate={ total='add' }", "mappings[0].accumulate.total: not in columns"),
        ("key=['id']\ncolumns={ id='value.id' }\nwindow={ column='w', source='value.ts', size='1h' }", "mappings[0].window: only the accumulate mode"),
        ("mode='accumulate'\nkey=['id']\ncolumns={ id='value.id' }\nwindow={ column='w', source='value.ts', size='1 hour' }", "mappings[0].window.size:"),
        ("key=['id']\ncolumns={ id='value.id' }\nonly_if_newer='v'", "mappings[0].only_if_newer: `v` is not in columns"),
        ("mode='insert'\ncolumns={ id='value.id', v='value.v' }\nonly_if_newer='v'", "mappings[0].only_if_newer: only the upsert mode"),
        ("key=['id']\ncolumns={ id='value.id' }\ntombstone='delete'", "mappings[0].tombstone: `delete` needs key columns"),
        ("mode='insert'\ncolumns={ id='value.id' }\ntombstone='delete'", "mappings[0].tombstone: `delete` is only for the upsert mode"),
        ("key=['id']\ncolumns={ id='value.id' }\ntypes={ id='integr' }", "mappings[0].types.id:"),
        ("key=['id']\ncolumns={ id='value.id' }\ntypes={ other='integer' }", "mappings[0].types.other: not in columns"),
        ("key=['id']\ncolumns={ id='value.id' }\nrequired=['x']", "mappings[0].required[0]: `x` is not in columns"),
        ("key=['id']\ncolumns={ id='value.id' }\nconstants={ id='1' }", "mappings[0].constants.id: also listed in columns"),
        ("key=['id']\nformat='text'\ncolumns={ id='key', b='value.x' }", "mappings[0].columns.b: format Text has no fields"),
    ] {
        let found = mapping_problems(mapping);
        assert!(found.iter().any(|p| p.starts_with(expected)), "missing `{expected}` for {mapping:?} in {found:#?}");
    }
}

#[test]
fn tombstones_default_to_delete_only_when_the_key_does_not_need_the_value() {
    let m = |mapping: &str| {
        let text = format!(
            "{}\n[[mappings]]\ntopic = 't'\ntable = 'x'\n{mapping}\n",
            GOOD.split("[[mappings]]").next().unwrap()
        );
        Config::from_toml(&text).unwrap().mappings.remove(0)
    };
    assert_eq!(
        m("key=['id']\ncolumns={ id='key' }").tombstone,
        Tombstone::Delete
    );
    assert_eq!(
        m("key=['id']\ncolumns={ id='value.id' }").tombstone,
        Tombstone::BadRecord
    );
    assert_eq!(
        m("mode='insert'\ncolumns={ id='value.id' }").tombstone,
        Tombstone::BadRecord
    );
    let acc = m("mode='accumulate'\nkey=['acct']\ncolumns={ acct='key', t='value.t' }\naccumulate={ t='add', n='count' }\nwindow={ column='w', source='kafka.timestamp', size='1h' }");
    assert_eq!(
        acc.key.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        vec!["acct", "w"]
    );
    assert_eq!(acc.on_error, OnError::DeadLetter);
}

#[test]
fn the_start_up_summary_names_each_mapping_and_hides_the_password() {
    let text = format!(
        "{GOOD}\n[[mappings]]\ntopic = \"payments\"\ntable = \"audit\"\nmode = \"insert\"\non_error = \"fail\"\ncolumns = {{ id = \"value.id\" }}\n"
    );
    let summary = Config::from_toml(&text).unwrap().summary();
    assert_eq!(summary.len(), 3, "{summary:#?}");
    assert!(
        summary[0].contains("brokers 127.0.0.1:9092, group kafka-pg-sink"),
        "{}",
        summary[0]
    );
    assert!(!summary[0].contains("hunter2"), "{}", summary[0]);
    assert!(
        summary[0].contains("127.0.0.1:5432/billing"),
        "{}",
        summary[0]
    );
    assert_eq!(
        summary[1],
        "mapping payments -> billing.payments: upsert, key (id), format json, on_error dead_letter"
    );
    assert_eq!(
        summary[2],
        "mapping payments -> public.audit: insert, format json, on_error fail"
    );
}

#[test]
fn an_unknown_enum_value_names_its_key_and_the_allowed_values() {
    let text = GOOD.replace("key = [\"id\"]", "key = [\"id\"]\nmode = \"upserrt\"");
    match Config::from_toml(&text) {
        Err(ConfigError::Load(message)) => assert_eq!(
            message,
            "mappings[0].mode: unknown value `upserrt`; allowed values: upsert, insert, accumulate, cdc"
        ),
        other => panic!("{other:?}"),
    }
    let text = GOOD.replace(
        "brokers = \"127.0.0.1:9092\"",
        "brokers = \"127.0.0.1:9092\"\noffset_out_of_range = \"oldest\"",
    );
    match Config::from_toml(&text) {
        Err(ConfigError::Load(message)) => assert_eq!(
            message,
            "kafka.offset_out_of_range: unknown value `oldest`; allowed values: fail, earliest, latest"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_allowed_enum_value_listed_in_messages_parses() {
    for (name, values) in ENUM_VALUES {
        for value in *values {
            let parsed = match *name {
                "Mode" => serde_plain_parse::<Mode>(value),
                "Format" => serde_plain_parse::<Format>(value),
                "Tombstone" => serde_plain_parse::<Tombstone>(value),
                "OnError" => serde_plain_parse::<OnError>(value),
                "AccumulateOp" => serde_plain_parse::<AccumulateOp>(value),
                "OutOfRange" => serde_plain_parse::<OutOfRange>(value),
                "OffsetReset" => serde_plain_parse::<OffsetReset>(value),
                "Envelope" => serde_plain_parse::<Envelope>(value),
                "Truncate" => serde_plain_parse::<Truncate>(value),
                other => panic!("no parser for {other}"),
            };
            assert!(parsed, "{name}: `{value}` does not parse");
        }
    }
}

/// Whether `value` deserializes as `T` (a unit enum variant by name).
fn serde_plain_parse<T: serde::de::DeserializeOwned>(value: &str) -> bool {
    serde_json::from_value::<T>(serde_json::Value::String(value.to_owned())).is_ok()
}

#[test]
fn a_refused_column_is_one_problem_not_also_a_missing_column() {
    let text = GOOD.replace(
        "key = [\"id\"]\ncolumns = { id = \"value.id\", amount = \"value.amount\", src_offset = \"kafka.offset\" }",
        "mode = \"insert\"\ncolumns = { bad = \"vaule.x\" }",
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with("mappings[0].columns.bad:"),
        "{found:#?}"
    );
    let text = GOOD.replace(
        "key = [\"id\"]\ncolumns = { id = \"value.id\", amount = \"value.amount\", src_offset = \"kafka.offset\" }",
        "mode = \"insert\"\ncolumns = {}",
    );
    assert_eq!(
        problems(&text),
        vec!["mappings[0].columns: at least one column is required"]
    );
}

const BASE: &str = "[kafka]\nbrokers = \"b:9092\"\n[postgres]\nurl = \"postgres://x\"\n";

#[test]
fn registry_formats_need_a_registry_and_one_topic_is_read_one_way() {
    let mapping = |table: &str, format: &str| {
        format!("[[mappings]]\ntopic = \"t\"\ntable = \"{table}\"\nformat = \"{format}\"\nkey = [\"id\"]\ncolumns = {{ id = \"value.id\" }}\n")
    };
    let found = problems(&format!("{BASE}{}", mapping("a", "avro")));
    assert!(
        found
            .iter()
            .any(|p| p.contains("format avro needs a [schema_registry]")),
        "{found:?}"
    );
    let registry = "[schema_registry]\nurl = \"https://user:s3cret@registry:8081\"\n";
    let both = format!(
        "{BASE}{registry}{}{}",
        mapping("a", "avro"),
        mapping("b", "json")
    );
    let found = problems(&both);
    assert!(
        found.iter().any(|p| p.contains("must agree on avro")),
        "{found:?}"
    );
    let cfg = Config::from_toml(&format!("{BASE}{registry}{}", mapping("a", "avro"))).unwrap();
    assert_eq!(cfg.mappings[0].format, Format::Avro);
    let printed = format!("{:?}", cfg.schema_registry);
    assert!(!printed.contains("s3cret"), "{printed}");
    let bad = format!("{BASE}[schema_registry]\nurl = \"registry:8081\"\nusername = \"u\"\ncache_capacity = 0\n{}", mapping("a", "avro"));
    let found = problems(&bad);
    for expected in [
        "must start with http",
        "username and password go together",
        "cache_capacity",
    ] {
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{expected}: {found:?}"
        );
    }
}

#[test]
fn cdc_reads_the_row_image_the_source_block_and_the_envelope() {
    let cdc = format!(
        "{BASE}[[mappings]]\ntopic = \"t\"\ntable = \"a\"\nmode = \"cdc\"\nkey = [\"id\"]\n\
         columns = {{ id = \"value.id\", lsn = \"source.lsn\", at = \"envelope.ts_ms\", k = \"key.id\" }}\n"
    );
    let cfg = Config::from_toml(&cdc).unwrap();
    let m = &cfg.mappings[0];
    assert_eq!(m.mode, Mode::Upsert);
    assert_eq!(
        m.cdc,
        Some(Cdc {
            envelope: Envelope::Debezium,
            truncate: Truncate::BadRecord
        })
    );
    assert_eq!(m.tombstone, Tombstone::Delete);
    let source = |name: &str| {
        m.columns
            .iter()
            .find(|c| c.name.as_str() == name)
            .unwrap()
            .source
            .clone()
    };
    assert_eq!(source("id"), ColumnSource::parse("value.after.id").unwrap());
    assert_eq!(
        source("lsn"),
        ColumnSource::parse("value.source.lsn").unwrap()
    );
    assert_eq!(source("at"), ColumnSource::parse("value.ts_ms").unwrap());
    assert_eq!(source("k"), ColumnSource::parse("key.id").unwrap());
    let ignoring = cdc.replace("mode = \"cdc\"", "mode = \"cdc\"\ntombstone = \"ignore\"");
    assert_eq!(
        Config::from_toml(&ignoring).unwrap().mappings[0].tombstone,
        Tombstone::Ignore
    );
    let found =
        problems(&cdc.replace("mode = \"cdc\"", "mode = \"upsert\"\ntruncate = \"ignore\""));
    assert!(
        found.iter().any(|p| p.contains("only for mode = \"cdc\"")),
        "{found:?}"
    );
}
