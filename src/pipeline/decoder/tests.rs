use super::*;
use crate::config::Config;
use crate::kafka::TopicPartition;

fn decoder(mapping: &str) -> Decoder {
    let text = format!("[kafka]\nbrokers='b'\n[postgres]\nurl='postgres://x'\n[[mappings]]\ntopic='t'\ntable='acct'\n{mapping}\n");
    Decoder::new(Config::from_toml(&text).unwrap().mappings.into())
}

fn record(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
    Record {
        tp: TopicPartition::new("t", 0),
        offset,
        timestamp_ms: Some(1_700_000_000_123),
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        headers: vec![
            ("trace".into(), Some(b"abc".to_vec())),
            ("empty".into(), None),
        ],
    }
}

fn lines(set: &RowSet) -> Vec<String> {
    let mut out: Vec<String> = String::from_utf8(set.data.clone())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

fn decode(d: &Decoder, records: &[Record]) -> Decoded {
    d.decode(records, &HashSet::new())
}

#[test]
fn duplicate_keys_keep_the_highest_offset() {
    let d = decoder("key=['id']\ncolumns={ id='value.id', amount='value.amount' }");
    let out = decode(
        &d,
        &[
            record(0, None, Some(r#"{"id":1,"amount":"1.00"}"#)),
            record(1, None, Some(r#"{"id":2,"amount":5}"#)),
            record(2, None, Some(r#"{"id":1,"amount":3.10}"#)),
        ],
    );
    assert!(out.rejected.is_empty());
    assert_eq!(lines(&out.tables[0].upserts), vec!["3.10\t1\t2", "5\t2\t1"]);
    assert_eq!(out.tables[0].upserts.records.len(), 2);
}

#[test]
fn numbers_keep_their_exact_digits() {
    let d = decoder(
        "key=['id']\ncolumns={ id='value.id', amount='value.amount' }\ntypes={ amount='numeric' }",
    );
    let out = decode(
        &d,
        &[record(
            0,
            None,
            Some(r#"{"id":1,"amount":12345678901234567890.123456789}"#),
        )],
    );
    assert_eq!(
        lines(&out.tables[0].upserts),
        vec!["12345678901234567890.123456789\t1\t0"]
    );
}

#[test]
fn tombstones_delete_by_key_in_order_with_upserts() {
    let d = decoder("key=['id']\ncolumns={ id='key', amount='value.amount' }");
    let out = decode(
        &d,
        &[
            record(0, Some("a"), Some(r#"{"amount":1}"#)),
            record(1, Some("a"), None),
            record(2, Some("b"), None),
            record(3, Some("b"), Some(r#"{"amount":2}"#)),
            record(4, Some("c"), None),
            record(5, Some("c"), Some(r#"{"amount":3}"#)),
            record(6, Some("c"), Some(r#"{"amount":4}"#)),
        ],
    );
    // a: deleted last. b and c: deleted, then written again (the delete resets unmapped columns).
    assert_eq!(lines(&out.tables[0].deletes), vec!["a", "b", "c"]);
    assert_eq!(lines(&out.tables[0].upserts), vec!["2\tb\t3", "4\tc\t6"]);
}

#[test]
fn version_guard_sends_every_candidate_after_the_last_tombstone() {
    let d = decoder("key=['id']\nonly_if_newer='v'\ncolumns={ id='key', v='value.v' }");
    let out = decode(
        &d,
        &[
            record(0, Some("a"), Some(r#"{"v":9}"#)),
            record(1, Some("a"), None),
            record(2, Some("a"), Some(r#"{"v":5}"#)),
            record(3, Some("a"), Some(r#"{"v":3}"#)),
        ],
    );
    assert_eq!(lines(&out.tables[0].deletes), vec!["a"]);
    assert_eq!(lines(&out.tables[0].upserts), vec!["a\t3\t3", "a\t5\t2"]);
}

#[test]
fn insert_and_accumulate_keep_every_record() {
    let d = decoder("mode='insert'\ncolumns={ id='value.id' }");
    let out = decode(
        &d,
        &[
            record(0, None, Some(r#"{"id":1}"#)),
            record(1, None, Some(r#"{"id":1}"#)),
        ],
    );
    assert_eq!(out.tables[0].upserts.len(), 2);
    let d = decoder("mode='accumulate'\nkey=['acct']\ncolumns={ acct='value.a', total='value.n' }\naccumulate={ total='add', n='count' }\nwindow={ column='hour', source='value.ts', size='1h' }");
    let out = decode(
        &d,
        &[
            record(
                0,
                None,
                Some(r#"{"a":"x","n":"1.5","ts":"2026-01-01T10:59:59Z"}"#),
            ),
            record(1, None, Some(r#"{"a":"x","n":2,"ts":1767265200000}"#)),
        ],
    );
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    // Columns by name: acct, hour, n, total, then kps_ord.
    assert_eq!(
        lines(&out.tables[0].upserts),
        vec![
            "x\t2026-01-01T10:00:00.000Z\t1\t1.5\t0",
            "x\t2026-01-01T11:00:00.000Z\t1\t2\t1"
        ]
    );
}

#[test]
fn nested_paths_metadata_headers_constants_and_escaping() {
    let d = decoder(
        "key=['id']\ncolumns={ id='value.id', sku='value.items[1].sku', doc='value.meta', ts='kafka.timestamp', off='kafka.offset', p='kafka.partition', tp='kafka.topic', note='value.note', missing='value.nope', hs='headers', trace='header.trace' }\nconstants={ region='eu' }",
    );
    let out = decode(
        &d,
        &[record(
            7,
            None,
            Some(
                r#"{"id":"x","items":[{"sku":"a"},{"sku":"b"}],"meta":{"k":[1,2]},"note":"tab\there\\ and\nnewline"}"#,
            ),
        )],
    );
    // Columns by name: doc, hs, id, missing, note, off, p, region, sku, tp, trace, ts, then kps_ord.
    assert_eq!(
        lines(&out.tables[0].upserts),
        vec![
            "{\"k\":[1,2]}\t{\"empty\":null,\"trace\":\"abc\"}\tx\t\\N\ttab\\there\\\\ and\\nnewline\t7\t0\teu\tb\tt\tabc\t2023-11-14T22:13:20.123Z\t7"
                .to_string()
        ]
    );
}

#[test]
fn bad_records_are_rejected_with_stage_and_reason_and_good_ones_kept() {
    let d = decoder("key=['id']\ncolumns={ id='value.id', n='value.n' }\ntypes={ n='integer' }\nrequired=['n']\ntombstone='bad_record'");
    let out = decode(
        &d,
        &[
            record(0, None, Some("{not json")),
            record(1, None, Some(r#"{"other":1}"#)),
            record(2, None, Some(r#"{"id":null,"n":1}"#)),
            record(3, None, None),
            record(4, None, Some("{\"id\":\"a\\u0000b\",\"n\":1}")),
            record(5, None, Some(r#"{"id":5,"n":"x"}"#)),
            record(6, None, Some(r#"{"id":6}"#)),
            record(7, None, Some(r#"{"id":7,"n":7}"#)),
        ],
    );
    let mut found: Vec<(usize, Stage, String)> = out
        .rejected
        .iter()
        .map(|r| (r.record, r.stage, r.error.clone()))
        .collect();
    found.sort_by_key(|f| f.0);
    let expect = [
        (0, Stage::Decode, "not valid JSON"),
        (1, Stage::Decode, "required column `id`"),
        (2, Stage::Decode, "required column `id`"),
        (3, Stage::Decode, "tombstone"),
        (4, Stage::Convert, "NUL"),
        (5, Stage::Convert, "column `n`"),
        (6, Stage::Decode, "required column `n`"),
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for ((record, stage, error), (r, st, needle)) in found.iter().zip(expect) {
        assert_eq!((*record, *stage), (r, st), "{error}");
        assert!(error.contains(needle), "record {record}: {error}");
    }
    assert_eq!(lines(&out.tables[0].upserts), vec!["7\t7\t7"]);
}

#[test]
fn a_bad_newer_record_does_not_hide_an_older_good_one() {
    let d = decoder("key=['id']\ncolumns={ id='key', n='value.n' }\ntypes={ n='integer' }");
    let out = decode(
        &d,
        &[
            record(0, Some("a"), Some(r#"{"n":1}"#)),
            record(1, Some("a"), Some(r#"{"n":"x"}"#)),
        ],
    );
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(lines(&out.tables[0].upserts), vec!["a\t1\t0"]);
}

#[test]
fn text_and_bytes_payloads() {
    let d = decoder("mode='insert'\nformat='text'\ncolumns={ body='value', k='key' }");
    let out = decode(&d, &[record(0, Some("k1"), Some("hello\tworld"))]);
    assert_eq!(lines(&out.tables[0].upserts), vec!["hello\\tworld\tk1\t0"]);
    let d = decoder("mode='insert'\nformat='bytes'\ncolumns={ body='value' }");
    let out = decode(&d, &[record(0, None, Some("\u{1}A"))]);
    assert_eq!(lines(&out.tables[0].upserts), vec!["\\\\x0141\t0"]);
}
