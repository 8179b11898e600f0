use super::*;
use crate::config::Config;
use crate::kafka::TopicPartition;

fn decoder(columns: &str, key: &str) -> Decoder {
    let text = format!(
        "[kafka]\nbrokers='b'\n[postgres]\nurl='postgres://x'\n[[mappings]]\ntopic='t'\ntable='acct'\nkey=[{key}]\ncolumns={{ {columns} }}\n"
    );
    Decoder::new(Config::from_toml(&text).unwrap().mappings.into())
}

fn record(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
    Record {
        tp: TopicPartition::new("t", 0),
        offset,
        timestamp_ms: Some(1_700_000_000_123),
        key: key.map(|k| k.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

fn lines(buf: &[u8]) -> Vec<String> {
    let mut out: Vec<String> = String::from_utf8(buf.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

#[test]
fn duplicate_keys_keep_the_highest_offset() {
    let d = decoder("id='value.id', amount='value.amount'", "'id'");
    let rows = d
        .decode(&[
            record(0, None, Some(r#"{"id":1,"amount":"1.00"}"#)),
            record(1, None, Some(r#"{"id":2,"amount":5}"#)),
            record(2, None, Some(r#"{"id":1,"amount":3.10}"#)),
        ])
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].upsert_rows, 2);
    assert_eq!(lines(&rows[0].upserts), vec!["3.10\t1", "5\t2"]);
}

#[test]
fn numbers_keep_their_exact_digits() {
    let d = decoder("id='value.id', amount='value.amount'", "'id'");
    let rows = d
        .decode(&[record(
            0,
            None,
            Some(r#"{"id":1,"amount":12345678901234567890.123456789}"#),
        )])
        .unwrap();
    assert_eq!(
        lines(&rows[0].upserts),
        vec!["12345678901234567890.123456789\t1"]
    );
}

#[test]
fn tombstones_delete_by_key_and_the_last_operation_wins() {
    let d = decoder("id='key', amount='value.amount'", "'id'");
    let rows = d
        .decode(&[
            record(0, Some("a"), Some(r#"{"amount":1}"#)),
            record(1, Some("a"), None),
            record(2, Some("b"), None),
            record(3, Some("b"), Some(r#"{"amount":2}"#)),
        ])
        .unwrap();
    assert_eq!(lines(&rows[0].deletes), vec!["a"]);
    assert_eq!(lines(&rows[0].upserts), vec!["2\tb"]);
}

#[test]
fn nested_paths_metadata_and_escaping() {
    let d = decoder(
        "id='value.id', sku='value.items[1].sku', doc='value.meta', ts='kafka.timestamp', off='kafka.offset', p='kafka.partition', tp='kafka.topic', note='value.note', missing='value.nope'",
        "'id'",
    );
    let rows = d
        .decode(&[record(
            7,
            None,
            Some(r#"{"id":"x","items":[{"sku":"a"},{"sku":"b"}],"meta":{"k":[1,2]},"note":"tab\there\\ and\nnewline"}"#),
        )])
        .unwrap();
    // Columns are ordered by name: doc, id, missing, note, off, p, sku, tp, ts.
    assert_eq!(
        lines(&rows[0].upserts),
        vec![
            "{\"k\":[1,2]}\tx\t\\N\ttab\\there\\\\ and\\nnewline\t7\t0\tb\tt\t2023-11-14T22:13:20.123Z".to_string()
        ]
    );
}

#[test]
fn bad_records_name_their_offset_and_reason() {
    let d = decoder("id='value.id'", "'id'");
    for (rec, reason) in [
        (record(4, None, Some("{not json")), "not valid JSON"),
        (
            record(5, None, Some(r#"{"other":1}"#)),
            "key column `id` is missing",
        ),
        (
            record(6, None, Some(r#"{"id":null}"#)),
            "key column `id` is missing or null",
        ),
        (record(7, None, None), "tombstone"),
        (record(8, None, Some("{\"id\":\"a\\u0000b\"}")), "NUL"),
    ] {
        let offset = rec.offset;
        match d.decode(&[rec]) {
            Err(Error::BadRecord {
                offset: o,
                reason: r,
                ..
            }) => {
                assert_eq!(o, offset);
                assert!(r.contains(reason), "{r}");
            }
            other => panic!("offset {offset}: expected a bad record, got {other:?}"),
        }
    }
}

#[test]
fn timestamps_render_as_rfc3339() {
    assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
    assert_eq!(
        rfc3339_millis(4_102_444_799_999),
        "2099-12-31T23:59:59.999Z"
    );
}
