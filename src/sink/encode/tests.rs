use std::collections::HashSet;

use testkit::rng::Rng;

use super::binary::{self, BinType};
use super::{Decoded, Decoder, RowSet, TableRows};
use crate::config::{Config, Mapping};
use crate::decode::{extract, scan, Parsed, Stage};
use crate::record::{Record, TopicPartition};

fn decoder(mapping: &str) -> Decoder {
    let text = format!("[kafka]\nbrokers='b'\n[postgres]\nurl='postgres://x'\n[[mappings]]\ntopic='t'\ntable='acct'\n{mapping}\n");
    Decoder::new(Config::from_toml(&text).unwrap().mappings.into())
}

fn record(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
    Record::new(
        TopicPartition::new("t", 0),
        offset,
        Some(1_700_000_000_123),
        key.map(str::as_bytes),
        value.map(str::as_bytes),
        vec![
            ("trace".into(), Some(b"abc".to_vec())),
            ("empty".into(), None),
        ],
    )
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

/// Applies a decoded batch to a model table the way the SQL does: deletes first, then one row
/// per key (highest version, then lowest offset, with the guard; else highest offset), merged
/// with the version guard when configured.
fn apply_model(
    table: &mut std::collections::BTreeMap<String, (i64, i64)>,
    rows: &TableRows,
    guarded: bool,
) {
    for line in String::from_utf8(rows.deletes.data.clone())
        .unwrap()
        .lines()
    {
        table.remove(line);
    }
    let mut best: std::collections::BTreeMap<String, (i64, i64, i64)> =
        std::collections::BTreeMap::new();
    for line in String::from_utf8(rows.upserts.data.clone())
        .unwrap()
        .lines()
    {
        let f: Vec<&str> = line.split('\t').collect();
        let (k, v, ver, ord) = (
            f[0].to_string(),
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        let better = |old: &(i64, i64, i64)| {
            if guarded {
                ver > old.1 || (ver == old.1 && ord < old.2)
            } else {
                ord > old.2
            }
        };
        if best.get(&k).is_none_or(better) {
            best.insert(k, (v, ver, ord));
        }
    }
    for (k, (v, ver, _)) in best {
        match table.get(&k) {
            Some(&(_, old)) if guarded && old >= ver => {}
            _ => {
                table.insert(k, (v, ver));
            }
        }
    }
}

#[test]
fn random_upserts_and_deletes_in_random_batches_end_as_applied_one_by_one() {
    for guarded in [false, true] {
        let mapping = if guarded {
            "key=['k']\nonly_if_newer='ver'\ncolumns={ k='key', v='value.v', ver='value.ver' }"
        } else {
            "key=['k']\ncolumns={ k='key', v='value.v', ver='value.ver' }"
        };
        let d = decoder(mapping);
        for seed in 1..300u64 {
            let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
            let n = 1 + rng.below(60) as i64;
            let mut records = Vec::new();
            let mut expected: std::collections::BTreeMap<String, (i64, i64)> =
                std::collections::BTreeMap::new();
            for offset in 0..n {
                let key = format!("k{}", rng.below(4));
                if rng.below(4) == 0 {
                    records.push(record(offset, Some(&key), None));
                    expected.remove(&key);
                } else {
                    let (v, ver) = (rng.below(1000) as i64, rng.below(6) as i64);
                    records.push(record(
                        offset,
                        Some(&key),
                        Some(&format!(r#"{{"v":{v},"ver":{ver}}}"#)),
                    ));
                    match expected.get(&key) {
                        Some(&(_, old)) if guarded && old >= ver => {}
                        _ => {
                            expected.insert(key, (v, ver));
                        }
                    }
                }
            }
            let mut table = std::collections::BTreeMap::new();
            let mut start = 0;
            while start < records.len() {
                let end = (start + 1 + rng.below(12) as usize).min(records.len());
                let out = decode(&d, &records[start..end]);
                assert!(out.rejected.is_empty());
                apply_model(&mut table, &out.tables[0], guarded);
                start = end;
            }
            assert_eq!(table, expected, "seed {seed}, guarded {guarded}");
        }
    }
}

#[test]
fn decoding_arbitrary_bytes_never_panics() {
    let mappings = [
        "key=['id']\ncolumns={ id='value.id', a='value.a[0].b', k='key.x', h='header.h', all='headers' }\ntypes={ a='numeric' }",
        "mode='insert'\nformat='bytes'\ncolumns={ b='value', k='key' }\ntypes={ k='uuid' }",
        "mode='insert'\nformat='text'\ncolumns={ t='value' }\ntypes={ t='timestamptz' }",
        "mode='accumulate'\nkey=['k']\ncolumns={ k='key', n='value.n' }\ntypes={ n='bigint' }\naccumulate={ n='add', c='count' }\nwindow={ column='w', source='value.ts', size='1h' }",
    ];
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let fragments: [&[u8]; 12] = [
        b"{",
        b"}",
        b"\"id\":",
        b"\"a\":[{\"b\":",
        b"1e999",
        b"-0.0",
        b"null",
        b"\"\\u0000\"",
        b"\xff\xfe",
        b"[",
        b"\"ts\":",
        b"9223372036854775808",
    ];
    for mapping in mappings {
        let d = decoder(mapping);
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..rng.below(12) {
                if rng.below(2) == 0 {
                    bytes.extend_from_slice(fragments[rng.below(fragments.len() as u64) as usize]);
                } else {
                    bytes.push(rng.below(256) as u8);
                }
            }
            let key = (rng.below(3) > 0).then(|| bytes.iter().rev().copied().collect::<Vec<u8>>());
            let value = (rng.below(5) > 0).then_some(bytes.clone());
            let r = Record::new(
                TopicPartition::new("t", 0),
                rng.below(1000) as i64,
                Some(rng.below(u64::MAX) as i64),
                key.as_deref(),
                value.as_deref(),
                vec![("h".into(), Some(bytes))],
            );
            let out = decode(&d, &[r]);
            let accounted = out.rejected.len()
                + out.tables[0].upserts.len()
                + out.tables[0].deletes.len()
                + out.tables[0].ignored;
            assert_eq!(accounted, 1, "a record was neither applied nor rejected");
        }
    }
}

#[test]
fn binary_fields_written_straight_from_the_json_are_what_the_checked_path_writes() {
    let config = "key=['id']\ncolumns={ id='value.id', n='value.n', nt='value.nt', t='value.t', \
        tu='value.tu', s='value.s', st='value.st', i='value.i', big='value.big', u='value.u', \
        ut='value.ut', j='value.j', ju='value.ju' }\n\
        types={ id='bigint', nt='numeric', t='timestamptz', st='text', i='integer', ut='uuid', \
        j='jsonb' }";
    let mappings = decoder(config).mappings.clone();
    let types: Vec<BinType> = mappings[0]
        .columns
        .iter()
        .map(|c| match c.name.as_str() {
            "id" | "big" => BinType::Int8,
            "i" => BinType::Int4,
            "n" | "nt" => BinType::Numeric,
            "t" | "tu" => BinType::Timestamptz,
            "u" | "ut" => BinType::Uuid,
            "j" | "ju" => BinType::Jsonb,
            _ => BinType::Text,
        })
        .collect();
    let d = Decoder::with_binary(mappings.clone(), vec![Some(types.clone())]);
    // Values the direct path takes, and values it leaves to the checked path (escaped strings,
    // an epoch number for a typed timestamp, numbers and booleans for a text column, JSON null
    // and untyped values for a jsonb column).
    let values = [
        r#"{"id":1,"n":12.30,"nt":"-0.005","t":"2026-01-01T00:00:00Z","tu":"2026-11-03t10:20:30.123456-02:30","s":"plain","st":"x","i":-7,"big":9223372036854775807,"u":"0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b","ut":"0F8E4C2A-1B3D-4E5F-8A9B-0C1D2E3F4A5B","j":{"a":[1,2.50,"x"]},"ju":{"a":1}}"#,
        r#"{"id":2,"n":"1e5","nt":1.5E-3,"t":"2016-12-31T23:59:59.1234-00:30","tu":"2000-02-29 00:00:00+14:00","s":"tab\tand \u00e9","st":"\u0041","i":"12","big":-1,"u":"0F8E4C2A1B3D4E5F8A9B0C1D2E3F4A5B","ut":"ffffffff-ffff-ffff-ffff-ffffffffffff","j":"text \"q\"","ju":"{\"b\":2}"}"#,
        r#"{"id":"3","n":null,"nt":"+.5","t":1700000000123,"tu":"1999-12-31T23:59:59.999999Z","s":"","st":42,"i":2147483647,"ut":"00000000000000000000000000000000","j":null,"ju":[1]}"#,
        r#"{"id":4,"nt":"\u0031.5","t":"2026-01-01T00:00:00.5+00:00","s":"\"quoted\"","st":true,"big":0,"u":"\u0030f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b","ut":"0f8e4c2a1b3d4e5f8a9b0c1d2e3f4a5b","j": { "k" : [ true , null ] } ,"ju":12.5}"#,
    ];
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| record(i as i64, None, Some(v)))
        .collect();
    let out = decode(&d, &records);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let rows = &out.tables[0];
    assert!(rows.binary, "every value here can go in binary");
    assert_eq!(rows.upserts.len(), records.len());
    let m = &mappings[0];
    for (row, &i) in rows.upserts.records.iter().enumerate() {
        let mut members = Vec::new();
        let (value, _) = scan(records[i].value().map(Ok), None, &mut members);
        let p = Parsed {
            record: &records[i],
            json: value.map(|v| v.map(|s| s.doc(&members))),
            key_json: None,
        };
        let mut want = Vec::new();
        let at = binary::start_row(&mut want);
        for (c, column) in m.columns.iter().enumerate() {
            match extract(m, &p, &column.source, column.ty, column.name.as_str()) {
                Ok(Some(text)) => assert!(binary::encode(types[c], &text, &mut want), "{text}"),
                Ok(None) => binary::null(&mut want),
                Err(e) => panic!("{e:?}"),
            }
        }
        binary::int8(&mut want, i as i64);
        binary::end_row(&mut want, at, m.columns.len() as u16 + 1);
        assert_eq!(rows.upserts.bytes(row..row + 1), &want[..], "record {i}");
    }
    // Both paths read jsonb values the same way: pinned here, so a change to that shared rule
    // shows. JSON null is SQL NULL; any other value is its own text, trimmed.
    let j = column_at(&mappings, "j");
    let fields = binary_rows(&rows.upserts);
    for (row, &i) in rows.upserts.records.iter().enumerate() {
        let want: Option<&[u8]> = match i {
            0 => Some(b"\x01{\"a\":[1,2.50,\"x\"]}"),
            1 => Some(b"\x01\"text \\\"q\\\"\""),
            2 => None,
            _ => Some(b"\x01{ \"k\" : [ true , null ] }"),
        };
        assert_eq!(fields[row][j].as_deref(), want, "record {i}");
    }
}

#[test]
fn a_value_binary_cannot_carry_makes_the_whole_batch_text_without_losing_or_doubling_records() {
    let config = "key=['id']\ncolumns={ id='value.id', t='value.t' }\ntypes={ t='timestamptz' }";
    let mappings = decoder(config).mappings.clone();
    let types: Vec<BinType> = mappings[0]
        .columns
        .iter()
        .map(|c| match c.name.as_str() {
            "id" => BinType::Int8,
            _ => BinType::Timestamptz,
        })
        .collect();
    let d = Decoder::with_binary(mappings, vec![Some(types)]);
    // 30 records over several chunks, newest first: a bad record late in the batch is rejected
    // before the walk reaches offset 1, whose seven fraction digits binary cannot carry.
    let records: Vec<Record> = (0..30)
        .map(|i| {
            let value = match i {
                1 => r#"{"id":1,"t":"2026-01-01T00:00:00.1234567Z"}"#.to_string(),
                25 => r#"{"id":25,"t":"not a time"}"#.to_string(),
                _ => format!(r#"{{"id":{},"t":"2026-01-01T00:00:00Z"}}"#, i % 20),
            };
            record(i, None, Some(&value))
        })
        .collect();
    let out = decode(&d, &records);
    let rows = &out.tables[0];
    assert!(!rows.binary);
    assert_eq!(out.rejected.len(), 1, "{:?}", out.rejected);
    assert_eq!(out.rejected[0].record, 25);
    // Keys 0..20 (offset 1's key 1 is superseded by offset 21), the newest record of each.
    let mut kept = rows.upserts.records.clone();
    kept.sort_unstable();
    let mut want: Vec<usize> = (10..30).filter(|&i| i != 25).chain([5]).collect();
    want.sort_unstable();
    assert_eq!(kept, want);
    assert!(lines(&rows.upserts)
        .iter()
        .all(|l| l.contains("2026-01-01")));
}

/// The fields of each binary COPY row (`None`: NULL).
fn binary_rows(set: &RowSet) -> Vec<Vec<Option<Vec<u8>>>> {
    (0..set.len())
        .map(|row| {
            let bytes = set.bytes(row..row + 1);
            let count = u16::from_be_bytes([bytes[0], bytes[1]]);
            let mut at = 2;
            (0..count)
                .map(|_| {
                    let len = i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
                    at += 4;
                    (len >= 0).then(|| {
                        at += len as usize;
                        bytes[at - len as usize..at].to_vec()
                    })
                })
                .collect()
        })
        .collect()
}

fn int8_of(field: &Option<Vec<u8>>) -> i64 {
    i64::from_be_bytes(field.as_deref().unwrap().try_into().unwrap())
}

/// The position of column `name` in the first mapping (columns are kept in name order).
fn column_at(mappings: &[Mapping], name: &str) -> usize {
    mappings[0]
        .columns
        .iter()
        .position(|c| c.name.as_str() == name)
        .unwrap()
}

#[test]
fn integer_keys_spelled_differently_leave_one_row_per_value_in_key_order() {
    let config = "key=['id']\ncolumns={ id='key', v='value.v' }\ntypes={ id='bigint', v='bigint' }";
    let mappings = decoder(config).mappings.clone();
    let id = column_at(&mappings, "id");
    let d = Decoder::with_binary(mappings, vec![Some(vec![BinType::Int8, BinType::Int8])]);
    for seed in 1..200u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let n = 1 + rng.below(40) as i64;
        let mut records = Vec::new();
        let mut expected = std::collections::BTreeMap::new();
        for offset in 0..n {
            let k = rng.below(5) as i64 - 2;
            // The same value as `7` or `007`: equal in SQL, different as text.
            let key = match rng.below(3) {
                0 => k.to_string(),
                zeros if k >= 0 => format!("{}{k}", "0".repeat(zeros as usize)),
                zeros => format!("-{}{}", "0".repeat(zeros as usize), -k),
            };
            if rng.below(4) == 0 {
                records.push(record(offset, Some(&key), None));
                expected.remove(&k);
            } else {
                records.push(record(
                    offset,
                    Some(&key),
                    Some(&format!(r#"{{"v":{offset}}}"#)),
                ));
                expected.insert(k, offset);
            }
        }
        let mut table = std::collections::BTreeMap::new();
        let mut start = 0;
        while start < records.len() {
            let end = (start + 1 + rng.below(25) as usize).min(records.len());
            let out = decode(&d, &records[start..end]);
            assert!(out.rejected.is_empty(), "{:?}", out.rejected);
            let rows = &out.tables[0];
            assert!(rows.binary && rows.sorted, "seed {seed}");
            for fields in binary_rows(&rows.deletes) {
                table.remove(&int8_of(&fields[0]));
            }
            let upserts = binary_rows(&rows.upserts);
            let ids: Vec<i64> = upserts.iter().map(|f| int8_of(&f[id])).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "seed {seed}: {ids:?}");
            for (fields, &record) in upserts.iter().zip(&rows.upserts.records) {
                let v = int8_of(&fields[1 - id]);
                assert_eq!(
                    v,
                    records[start + record].offset,
                    "seed {seed}: row and record differ"
                );
                table.insert(int8_of(&fields[id]), v);
            }
            start = end;
        }
        assert_eq!(table, expected, "seed {seed}");
    }
}

#[test]
fn composite_uuid_and_integer_keys_spelled_differently_leave_one_row_per_key_in_key_order() {
    let config = "key=['u','n']\ncolumns={ u='value.u', n='value.n', v='value.v' }\n\
        types={ u='uuid', n='bigint', v='bigint' }";
    let mappings = decoder(config).mappings.clone();
    let at = |name: &str| column_at(&mappings, name);
    let (u, n, v) = (at("u"), at("n"), at("v"));
    // Rows sort by the key columns in column order, as `ORDER BY` does in `DISTINCT ON`'s path.
    assert!(n < u, "columns in name order");
    let mut types = vec![BinType::Int8; 3];
    types[u] = BinType::Uuid;
    let d = Decoder::with_binary(mappings.clone(), vec![Some(types)]);
    let uuids = [
        "80000000-0000-0000-0000-0000000000ab",
        "0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5b",
        "0f8e4c2a-1b3d-4e5f-8a9b-0c1d2e3f4a5c",
    ];
    for seed in 1..200u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let count = 1 + rng.below(30) as usize;
        let mut expected = std::collections::BTreeMap::new();
        let records: Vec<Record> = (0..count as i64)
            .map(|offset| {
                let id = uuids[rng.below(3) as usize];
                // One uuid as lower case, upper case or without hyphens; one number as 1 or 01.
                let spelled = match rng.below(3) {
                    0 => id.to_string(),
                    1 => id.to_uppercase(),
                    _ => id.replace('-', ""),
                };
                let number = rng.below(2);
                let zero = if rng.below(2) == 0 { "" } else { "0" };
                expected.insert((number as i64, id.replace('-', "")), offset);
                let value = format!(r#"{{"u":"{spelled}","n":"{zero}{number}","v":{offset}}}"#);
                record(offset, None, Some(&value))
            })
            .collect();
        let out = decode(&d, &records);
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let rows = &out.tables[0];
        assert!(rows.binary && rows.sorted, "seed {seed}");
        let got: Vec<((i64, String), i64)> = binary_rows(&rows.upserts)
            .iter()
            .map(|f| {
                let hex: String = f[u]
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                ((int8_of(&f[n]), hex), int8_of(&f[v]))
            })
            .collect();
        // The number, then the uuid bytewise (the order of their hex texts).
        let want: Vec<((i64, String), i64)> = expected.into_iter().collect();
        assert_eq!(got, want, "seed {seed}");
    }
}

#[test]
fn text_keys_go_sorted_only_where_the_table_compares_them_bytewise() {
    let config = "key=['sku']\ncolumns={ sku='value.sku', v='value.v' }\ntypes={ v='bigint' }";
    let mappings = decoder(config).mappings.clone();
    let sku = column_at(&mappings, "sku");
    let mut types = vec![BinType::Int8; 2];
    types[sku] = BinType::Text;
    // `a\u0062` is `ab` once read, and `é` is the same two bytes escaped or not.
    let values = [
        r#"{"sku":"ab","v":0}"#,
        r#"{"sku":"b","v":1}"#,
        r#"{"sku":"a\u0062","v":2}"#,
        r#"{"sku":"a","v":3}"#,
        r#"{"sku":"\u00e9","v":4}"#,
        r#"{"sku":"","v":5}"#,
        r#"{"sku":"é","v":6}"#,
        r#"{"sku":"B","v":7}"#,
        r#"{"sku":"a b","v":8}"#,
    ];
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| record(i as i64, None, Some(v)))
        .collect();
    let unsure = Decoder::with_binary(mappings.clone(), vec![Some(types.clone())]);
    let out = decode(&unsure, &records);
    assert!(out.tables[0].binary && !out.tables[0].sorted);
    let exact = Decoder::with_binary(mappings, vec![Some(types)]).with_exact_keys(&[true]);
    let out = decode(&exact, &records);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let rows = &out.tables[0];
    assert!(rows.binary && rows.sorted);
    let got: Vec<(String, i64)> = binary_rows(&rows.upserts)
        .iter()
        .map(|f| {
            let text = String::from_utf8(f[sku].clone().unwrap()).unwrap();
            (text, int8_of(&f[1 - sku]))
        })
        .collect();
    // Byte order (the C collation's), the newest record of each string.
    let want = [
        ("", 5),
        ("B", 7),
        ("a", 3),
        ("a b", 8),
        ("ab", 2),
        ("b", 1),
        ("é", 6),
    ];
    let want: Vec<(String, i64)> = want.iter().map(|&(t, v)| (t.to_string(), v)).collect();
    assert_eq!(got, want);
}

/// A direct insert's rows carry no `kps_ord` and go in offset order, across chunk boundaries and
/// around rejected records; the rows stay traceable to their records. A staged insert keeps
/// `kps_ord` (the stage orders by it).
#[test]
fn direct_inserts_go_in_offset_order_without_the_offset_column() {
    let d = decoder("mode='insert'\ncolumns={ n='value.n' }").with_direct_inserts(&[true]);
    let records: Vec<Record> = (0..40)
        .map(|i| match i % 9 {
            4 => record(i, None, Some("not json")),
            _ => record(i, None, Some(&format!(r#"{{"n":{i}}}"#))),
        })
        .collect();
    let out = decode(&d, &records);
    let table = &out.tables[0];
    assert!(table.direct && table.unordered);
    let good: Vec<i64> = (0..40).filter(|i| i % 9 != 4).collect();
    let text = String::from_utf8(table.upserts.data.clone()).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    let expected: Vec<String> = good.iter().map(i64::to_string).collect();
    assert_eq!(rows, expected, "one column, no offset, in offset order");
    let traced: Vec<i64> = table
        .upserts
        .records
        .iter()
        .map(|&r| records[r].offset)
        .collect();
    assert_eq!(traced, good);
    assert_eq!(out.rejected.len(), 40 - good.len());

    let staged = decoder("mode='insert'\ncolumns={ n='value.n' }");
    let out = decode(&staged, &records[..3]);
    assert!(!out.tables[0].direct && !out.tables[0].unordered);
    assert_eq!(lines(&out.tables[0].upserts), vec!["0\t0", "1\t1", "2\t2"]);
}

#[test]
fn decoding_arbitrary_bytes_in_every_format_never_panics_and_accounts_for_every_record() {
    use std::sync::Arc;

    use crate::decode::formats::schemas::Decoding;
    use crate::decode::formats::{RegisteredSchema, SchemaKind, Schemas};

    let schemas = Arc::new(Schemas::default());
    let avro = r#"{"type": "record", "name": "R", "fields": [
        {"name": "id", "type": "long"}, {"name": "s", "type": ["null", "string"]},
        {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "a", "type": {"type": "array", "items": {"type": "map", "values": "double"}}}]}"#;
    let proto = "syntax = \"proto3\";\nmessage R { int64 id = 1; string s = 2; repeated R kids = 3; map<string, bytes> m = 4; }\n";
    for (id, kind, text) in [
        (1, SchemaKind::Avro, avro),
        (2, SchemaKind::Protobuf, proto),
        (3, SchemaKind::Json, "{\"type\": \"object\"}"),
    ] {
        let registered = RegisteredSchema {
            id,
            kind,
            text: text.into(),
            references: Vec::new(),
        };
        let parsed = Decoding::parse(&registered).map(Arc::new);
        assert!(parsed.is_ok(), "schema {id}: {:?}", parsed.err());
        schemas.insert(id, parsed);
    }
    let registry = "\n[schema_registry]\nurl='http://r'\n";
    let mappings = [
        "format='avro'\nkey=['id']\ncolumns={ id='value.id', s='value.s', d='value.d', a='value.a[0]' }\ntypes={ d='numeric' }",
        "format='protobuf'\nkey=['id']\ncolumns={ id='value.id', s='value.kids[0].s', m='value.m' }",
        "format='json_schema'\nmode='insert'\ncolumns={ id='value.id', all='value' }",
        "format='connect_json'\nkey=['id']\ncolumns={ id='value.id', x='value.x.y' }",
        "format='avro'\nkey_format='avro'\nmode='cdc'\ntruncate='delete_all'\nkey=['id']\ncolumns={ id='value.id', s='value.s', lsn='source.lsn' }",
        "format='connect_json'\nkey_format='connect_json'\nmode='cdc'\nkey=['id']\ncolumns={ id='value.id' }",
    ];
    let fragments: [&[u8]; 12] = [
        &[0, 0, 0, 0, 1],
        &[0, 0, 0, 0, 2, 0],
        &[0, 0, 0, 0, 3],
        &[0, 0, 0, 0, 9],
        br#"{"schema":{"type":"struct","fields":[{"field":"id","type":"int64"}]},"payload":"#,
        br#"{"op":"d","before":{"id":1},"after":null}"#,
        b"\x02\x06abc",
        b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
        b"\x0a\xff\xff\xff\x0f",
        b"}",
        b"null",
        b"\x7f",
    ];
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    for mapping in mappings {
        let text = format!("[kafka]\nbrokers='b'\n[postgres]\nurl='postgres://x'\n{registry}[[mappings]]\ntopic='t'\ntable='acct'\n{mapping}\n");
        let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{mapping}: {e}"));
        let d = Decoder::new(config.mappings.into()).with_schemas(Arc::clone(&schemas));
        for _ in 0..3000 {
            let mut bytes = Vec::new();
            for _ in 0..rng.below(8) {
                if rng.below(2) == 0 {
                    bytes.extend_from_slice(fragments[rng.index(fragments.len())]);
                } else {
                    bytes.push(rng.below(256) as u8);
                }
            }
            let key = (rng.below(3) > 0).then(|| bytes.iter().rev().copied().collect::<Vec<u8>>());
            let value = (rng.below(6) > 0).then_some(bytes);
            let r = Record::new(
                TopicPartition::new("t", 0),
                rng.below(1000) as i64,
                None,
                key.as_deref(),
                value.as_deref(),
                Vec::new(),
            );
            let out = decode(&d, &[r]);
            let t = &out.tables[0];
            let accounted = out.rejected.len()
                + t.upserts.len()
                + t.deletes.len()
                + t.ignored
                + usize::from(t.truncate);
            assert_eq!(
                accounted, 1,
                "{mapping}: a record was neither applied nor rejected"
            );
        }
    }
}
