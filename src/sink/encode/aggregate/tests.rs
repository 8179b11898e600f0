//! The reduction per key against models computed independently: exact decimal sums (with an
//! integer model scaled by a power of ten, and by hand beyond 128 bits), comparisons, and whole
//! batches decoded through the [`Decoder`] with every operation, NULLs, windows and fallbacks.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use testkit::rng::Rng;

use super::decimal::{Numeric, Sum};
use crate::config::{Config, Mapping};
use crate::record::{Record, TopicPartition};
use crate::sink::encode::binary::{self, BinType};
use crate::sink::encode::{Decoded, Decoder, RowSet};

/// The binary field (without its length word) the encoder writes for `text`.
fn numeric(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(binary::encode(BinType::Numeric, text, &mut out), "{text}");
    out.split_off(4)
}

/// A binary numeric as the server prints it: every digit down to the display scale.
fn numeric_text(field: &[u8]) -> String {
    let word = |i: usize| u16::from_be_bytes([field[i], field[i + 1]]);
    let (n, weight, sign, dscale) = (
        word(0) as i32,
        word(2) as i16 as i32,
        word(4),
        word(6) as i32,
    );
    let digit = |w: i32| -> u16 {
        let i = weight - w;
        if (0..n).contains(&i) {
            word(8 + 2 * i as usize)
        } else {
            0
        }
    };
    let mut int = String::new();
    for w in (0..=weight.max(0)).rev() {
        int.push_str(&format!("{:04}", digit(w)));
    }
    let int = int.trim_start_matches('0');
    let mut frac = String::new();
    for w in 1..=(dscale + 3) / 4 {
        frac.push_str(&format!("{:04}", digit(-w)));
    }
    frac.truncate(dscale as usize);
    let sign = if sign == 0x4000 { "-" } else { "" };
    let int = if int.is_empty() { "0" } else { int };
    if dscale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// The sum of `terms` as the connector writes it, printed.
fn sum(terms: &[&str]) -> String {
    let mut sum = Sum::default();
    for t in terms {
        let field = numeric(t);
        sum.add(&Numeric::parse(&field).unwrap());
    }
    let mut out = Vec::new();
    assert!(sum.write(&mut out));
    numeric_text(&out[4..])
}

#[test]
fn decimal_sums_are_exact_and_keep_the_largest_scale() {
    for (terms, want) in [
        (&["12.30", "-0.005"][..], "12.295"),
        (&["1.0", "2.00"], "3.00"),
        (&["1e3", "0.5"], "1000.5"),
        (&["1.5E-3", "2"], "2.0015"),
        (&["-5", "5"], "0"),
        (&["-5.00", "5"], "0.00"),
        (&["1", "-3.5"], "-2.5"),
        (&["-0.0001", "-0.9999"], "-1.0000"),
        (&["9999.9999", "0.0001"], "10000.0000"),
        (&["-10000", "0.0001"], "-9999.9999"),
        (&["0"], "0"),
        (&["123456789012345678", "-123456789012345679.5"], "-1.5"),
    ] {
        assert_eq!(sum(terms), want, "{terms:?}");
    }
}

#[test]
fn decimal_sums_go_beyond_128_bits() {
    let nines = "9".repeat(60);
    let one_then_zeros = format!("1{}", "0".repeat(60));
    assert_eq!(sum(&[&nines, "1"]), one_then_zeros);
    assert_eq!(
        sum(&[&format!("-{one_then_zeros}"), "1"]),
        format!("-{nines}")
    );
    let tiny = format!("0.{}1", "0".repeat(40));
    assert_eq!(
        sum(&[&nines, &tiny, &format!("-{nines}")]),
        format!("0.{}1", "0".repeat(40))
    );
    // 200 terms of 10^40 − 1: 2·10^42 − 200.
    let big = "9".repeat(40);
    let terms: Vec<&str> = std::iter::repeat_n(big.as_str(), 200).collect();
    assert_eq!(sum(&terms), format!("1{}800", "9".repeat(39)));
}

#[test]
fn sums_that_outgrow_128_bits_or_16_places_carry_on_exactly() {
    // Each term fits the 128-bit part; a thousand of them do not.
    let big = "9999999999999999999.9999999999999999";
    let mut terms: Vec<&str> = std::iter::repeat_n(big, 1000).collect();
    // Terms finer than 10^-16 go to the wide part from the start.
    terms.extend(["-0.00000000000000000001"; 3]);
    assert_eq!(sum(&terms), "9999999999999999999999.99999999999989999997");
    assert_eq!(
        sum(&["-0.00000000000000000001", "1"]),
        "0.99999999999999999999"
    );
    assert_eq!(
        sum(&["-99999999999999999999", "1"]),
        "-99999999999999999998"
    );
}

/// `value` in units of 10^-SCALE, for the model.
const SCALE: u32 = 8;

/// A random decimal's text and its value in units of 10^-SCALE, with its display scale.
fn random_decimal(rng: &mut Rng) -> (String, i128, u32) {
    let int_digits = rng.range(0, 26) as usize;
    let frac_digits = rng.range(0, SCALE as u64 + 1) as u32;
    let mut digits = String::new();
    for _ in 0..int_digits + frac_digits as usize {
        digits.push((b'0' + rng.range(0, 10) as u8) as char);
    }
    if digits.is_empty() {
        digits.push('0');
    }
    let negative = rng.chance(0.4);
    let units: i128 = digits.parse::<i128>().unwrap() * 10i128.pow(SCALE - frac_digits);
    let value = if negative { -units } else { units };
    let sign = if negative { "-" } else { "" };
    // Written plainly, or as mantissa·10^exponent with the same value and scale.
    let (int, frac) = digits.split_at(digits.len() - frac_digits as usize);
    let text = if rng.chance(0.2) && frac_digits > 0 {
        format!("{sign}{digits}e-{frac_digits}")
    } else if frac_digits == 0 {
        format!("{sign}{}", if int.is_empty() { "0" } else { int })
    } else {
        format!("{sign}{}.{frac}", if int.is_empty() { "0" } else { int })
    };
    (text, value, frac_digits)
}

/// The model's value printed with `scale` digits after the point.
fn model_text(value: i128, scale: u32) -> String {
    let sign = if value < 0 { "-" } else { "" };
    let units = value.unsigned_abs();
    let int = units / 10u128.pow(SCALE);
    let frac = format!(
        "{:0width$}",
        units % 10u128.pow(SCALE),
        width = SCALE as usize
    );
    match scale {
        0 => format!("{sign}{int}"),
        s => format!("{sign}{int}.{}", &frac[..s as usize]),
    }
}

#[test]
fn random_decimal_sums_and_comparisons_match_an_integer_model() {
    let mut rng = Rng::for_test("random_decimal_sums_and_comparisons_match_an_integer_model");
    for _ in 0..300 {
        let n = rng.range(1, 60) as usize;
        let terms: Vec<(String, i128, u32)> = (0..n).map(|_| random_decimal(&mut rng)).collect();
        let texts: Vec<&str> = terms.iter().map(|t| t.0.as_str()).collect();
        let total: i128 = terms.iter().map(|t| t.1).sum();
        let scale = terms.iter().map(|t| t.2).max().unwrap_or(0);
        assert_eq!(sum(&texts), model_text(total, scale), "{texts:?}");
        let (a, b) = (&terms[0], &terms[n - 1]);
        let (fa, fb) = (numeric(&a.0), numeric(&b.0));
        let order = Numeric::parse(&fa)
            .unwrap()
            .cmp_value(&Numeric::parse(&fb).unwrap());
        assert_eq!(order, a.1.cmp(&b.1), "{} vs {}", a.0, b.0);
    }
}

#[test]
fn numerics_compare_by_value_whatever_their_scale() {
    let cmp = |a: &str, b: &str| {
        let (fa, fb) = (numeric(a), numeric(b));
        Numeric::parse(&fa)
            .unwrap()
            .cmp_value(&Numeric::parse(&fb).unwrap())
    };
    for (a, b, want) in [
        ("1.0", "1.00", Ordering::Equal),
        ("1e3", "1000", Ordering::Equal),
        ("-0", "0.00", Ordering::Equal),
        ("-1", "0", Ordering::Less),
        ("0.0001", "0.001", Ordering::Less),
        ("-0.5", "-1", Ordering::Greater),
        ("10000", "9999.9999", Ordering::Greater),
        ("-10000", "-9999.9999", Ordering::Less),
        (
            "123456789012345678901234567890",
            "123456789012345678901234567891",
            Ordering::Less,
        ),
    ] {
        assert_eq!(cmp(a, b), want, "{a} vs {b}");
        assert_eq!(cmp(b, a), want.reverse(), "{b} vs {a}");
    }
}

/// Accumulate into `acct` per account and hour: a sum, a minimum, a maximum, the last
/// reference and a count (columns by name: account, events, hour, last_ref, low, peak, total).
const MAPPING: &str = "mode='accumulate'\nkey=['account']\n\
    columns={ account='value.a', total='value.amt', low='value.amt', peak='value.n', last_ref='value.ref' }\n\
    accumulate={ total='add', low='min', peak='max', last_ref='last', events='count' }\n\
    window={ column='hour', source='value.ts', size='1h' }";

fn mappings(mapping: &str) -> Arc<[Mapping]> {
    let text = format!("[kafka]\nbrokers='b'\n[postgres]\nurl='postgres://x'\n[[mappings]]\ntopic='t'\ntable='acct'\n{mapping}\n");
    Config::from_toml(&text).unwrap().mappings.into()
}

/// Binary types by column name, in the mapping's column order.
fn types(m: &Mapping, by_name: &[(&str, BinType)]) -> Vec<BinType> {
    m.columns
        .iter()
        .map(|c| {
            by_name
                .iter()
                .find(|(n, _)| *n == c.name.as_str())
                .unwrap()
                .1
        })
        .collect()
}

const TYPES: &[(&str, BinType)] = &[
    ("account", BinType::Text),
    ("events", BinType::Int8),
    ("hour", BinType::Timestamptz),
    ("last_ref", BinType::Text),
    ("low", BinType::Numeric),
    ("peak", BinType::Int8),
    ("total", BinType::Numeric),
];

/// A binary decoder for `mapping` with these column types, keys compared exactly or not.
fn binary_decoder(mapping: &str, by_name: &[(&str, BinType)], exact_keys: bool) -> Decoder {
    let ms = mappings(mapping);
    let types = types(&ms[0], by_name);
    Decoder::with_binary(ms, vec![Some(types)]).with_exact_keys(&[exact_keys])
}

fn rec(offset: i64, value: &str) -> Record {
    Record::new(
        TopicPartition::new("t", 0),
        offset,
        None,
        None,
        Some(value.as_bytes()),
        vec![],
    )
}

/// Each binary row's fields printed (`None`: NULL), the offset last.
fn printed(set: &RowSet, types: &[BinType]) -> Vec<Vec<Option<String>>> {
    (0..set.len())
        .map(|row| {
            let bytes = set.bytes(row..row + 1);
            let count = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
            assert_eq!(count, types.len() + 1);
            let mut at = 2;
            (0..count)
                .map(|c| {
                    let len = i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
                    at += 4;
                    if len < 0 {
                        return None;
                    }
                    let field = &bytes[at..at + len as usize];
                    at += len as usize;
                    let int = || i64::from_be_bytes(field.try_into().unwrap()).to_string();
                    Some(match types.get(c) {
                        Some(BinType::Text) => String::from_utf8(field.to_vec()).unwrap(),
                        Some(BinType::Numeric) => numeric_text(field),
                        Some(BinType::Int4) => {
                            i32::from_be_bytes(field.try_into().unwrap()).to_string()
                        }
                        _ => int(),
                    })
                })
                .collect()
        })
        .collect()
}

fn decode(d: &Decoder, records: &[Record]) -> Decoded {
    d.decode(records, &HashSet::new())
}

/// 2026-01-01T<h>:<m>:00Z.
fn ts(h: u32, m: u32) -> String {
    format!("2026-01-01T{h:02}:{m:02}:00Z")
}

/// Microseconds from 2000-01-01 of 2026-01-01T<h>:00:00Z, as the window column holds it.
fn hour_micros(h: i64) -> String {
    ((9497 * 86_400 + h * 3600) * 1_000_000).to_string()
}

fn row(fields: &[Option<&str>]) -> Vec<Option<String>> {
    fields.iter().map(|f| f.map(str::to_owned)).collect()
}

#[test]
fn a_batch_reduces_to_one_row_per_account_and_hour_in_key_order_with_sql_null_rules() {
    let d = binary_decoder(MAPPING, TYPES, true);
    let records = [
        rec(
            0,
            &format!(
                r#"{{"a":"x","amt":"12.30","n":5,"ref":"r0","ts":"{}"}}"#,
                ts(10, 10)
            ),
        ),
        rec(
            1,
            &format!(
                r#"{{"a":"y","amt":-0.005,"n":7,"ref":"r1","ts":"{}"}}"#,
                ts(10, 20)
            ),
        ),
        rec(
            2,
            &format!(
                r#"{{"a":"x","amt":-0.005,"n":9,"ref":"r2","ts":"{}"}}"#,
                ts(10, 30)
            ),
        ),
        rec(
            3,
            &format!(r#"{{"a":"x","amt":null,"ts":"{}"}}"#, ts(10, 40)),
        ),
        rec(
            4,
            &format!(
                r#"{{"a":"x","amt":1e3,"n":1,"ref":"r4","ts":"{}"}}"#,
                ts(11, 5)
            ),
        ),
        rec(
            5,
            &format!(r#"{{"a":"z","ref":"r5","ts":"{}"}}"#, ts(10, 0)),
        ),
    ];
    let out = decode(&d, &records);
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    let t = &out.tables[0];
    assert!(t.binary && t.sorted);
    assert_eq!(t.upserts.len(), 6, "the per-record rows are kept");
    let types = types(&d.mappings()[0], TYPES);
    let (h10, h11) = (hour_micros(10), hour_micros(11));
    // account, events, hour, last_ref, low, peak, total, kps_ord.
    assert_eq!(
        printed(&t.per_key, &types),
        vec![
            row(&[
                Some("x"),
                Some("3"),
                Some(&h10),
                None,
                Some("-0.005"),
                Some("9"),
                Some("12.295"),
                Some("3")
            ]),
            row(&[
                Some("x"),
                Some("1"),
                Some(&h11),
                Some("r4"),
                Some("1000"),
                Some("1"),
                Some("1000"),
                Some("4")
            ]),
            row(&[
                Some("y"),
                Some("1"),
                Some(&h10),
                Some("r1"),
                Some("-0.005"),
                Some("7"),
                Some("-0.005"),
                Some("1")
            ]),
            row(&[
                Some("z"),
                Some("1"),
                Some(&h10),
                Some("r5"),
                None,
                None,
                None,
                Some("5")
            ]),
        ]
    );
    assert_eq!(
        t.per_key.records,
        vec![3, 4, 1, 5],
        "each row's newest record"
    );
}

#[test]
fn equal_numerics_of_different_scales_keep_the_oldest_as_hash_aggregation_does() {
    let d = binary_decoder(MAPPING, TYPES, true);
    let records: Vec<Record> = ["1.0", "1.00", "1", "2.000", "2.0"]
        .iter()
        .enumerate()
        .map(|(i, amt)| {
            rec(
                i as i64,
                &format!(r#"{{"a":"x","amt":{amt},"ts":"{}"}}"#, ts(10, 0)),
            )
        })
        .collect();
    let out = decode(&d, &records);
    let types = types(&d.mappings()[0], TYPES);
    let rows = printed(&out.tables[0].per_key, &types);
    // low, peak (NULL: no `n`), total.
    assert_eq!(rows[0][4..7], row(&[Some("1.0"), None, Some("7.000")])[..]);
}

/// The per-key rows are empty and every record is in the per-record rows.
fn goes_per_record(d: &Decoder, records: &[Record]) -> Decoded {
    let out = decode(d, records);
    let t = &out.tables[0];
    assert!(t.per_key.is_empty(), "reduced where the server must reduce");
    assert_eq!(t.upserts.len() + out.rejected.len(), records.len());
    out
}

#[test]
fn batches_the_connector_cannot_reduce_exactly_go_per_record_for_the_server() {
    let records = |amts: &[&str]| -> Vec<Record> {
        amts.iter()
            .enumerate()
            .map(|(i, amt)| {
                rec(
                    i as i64,
                    &format!(
                        r#"{{"a":"x","amt":{amt},"n":{i},"ref":"r","ts":"{}"}}"#,
                        ts(10, 0)
                    ),
                )
            })
            .collect()
    };
    let good = records(&["1", "2"]);
    // Text keys that the table may not compare bytewise.
    goes_per_record(&binary_decoder(MAPPING, TYPES, false), &good);
    // No binary types: rows go as COPY text.
    let text = Decoder::new(mappings(MAPPING));
    assert!(!goes_per_record(&text, &good).tables[0].binary);
    // A text minimum: the order is the collation's.
    let text_min: Vec<(&str, BinType)> = TYPES
        .iter()
        .map(|&(n, t)| (n, if n == "low" { BinType::Text } else { t }))
        .collect();
    goes_per_record(&binary_decoder(MAPPING, &text_min, true), &good);
    // A sum of uuids or booleans has no SQL meaning: the server reports it.
    let bool_sum: Vec<(&str, BinType)> = TYPES
        .iter()
        .map(|&(n, t)| (n, if n == "total" { BinType::Bool } else { t }))
        .collect();
    goes_per_record(&binary_decoder(MAPPING, &bool_sum, true), &good);
    let d = binary_decoder(MAPPING, TYPES, true);
    // A value binary COPY cannot carry (not a number, too large an exponent): the batch goes
    // as COPY text, and the server reads or refuses each record's value.
    for bad in [r#""abc""#, r#""NaN""#, "1e400"] {
        let out = goes_per_record(&d, &records(&["1", bad, "2"]));
        assert!(!out.tables[0].binary, "{bad}");
        assert!(out.rejected.is_empty(), "{bad}: the server decides");
    }
    // A sum too large for its column: the server reports the overflow as it does today.
    let int4: Vec<(&str, BinType)> = TYPES
        .iter()
        .map(|&(n, t)| {
            (
                n,
                if n == "peak" || n == "total" {
                    BinType::Int4
                } else {
                    t
                },
            )
        })
        .collect();
    let d = binary_decoder(MAPPING, &int4, true);
    let max = i32::MAX.to_string();
    goes_per_record(&d, &records(&[&max, "1"]));
    assert!(!decode(&d, &records(&[&max, "-1"])).tables[0]
        .per_key
        .is_empty());
    // A bigint sum that leaves the 64-bit range on the way (newest first: MAX, then 1).
    let int8: Vec<(&str, BinType)> = TYPES
        .iter()
        .map(|&(n, t)| (n, if n == "total" { BinType::Int8 } else { t }))
        .collect();
    let d = binary_decoder(MAPPING, &int8, true);
    let max = i64::MAX.to_string();
    goes_per_record(&d, &records(&["-2", "1", &max]));
    let reduced = decode(&d, &records(&["1", "-2", &max]));
    assert!(!reduced.tables[0].per_key.is_empty());
}

#[test]
fn a_value_that_is_not_a_number_rejects_its_record_alone_and_the_rest_is_reduced() {
    let typed = format!("{MAPPING}\ntypes={{ total='numeric', low='numeric' }}");
    let d = binary_decoder(&typed, TYPES, true);
    let records: Vec<Record> = [r#""1.5""#, r#""abc""#, "2.25"]
        .iter()
        .enumerate()
        .map(|(i, amt)| {
            rec(
                i as i64,
                &format!(r#"{{"a":"x","amt":{amt},"ts":"{}"}}"#, ts(10, 0)),
            )
        })
        .collect();
    let out = decode(&d, &records);
    assert_eq!(out.rejected.len(), 1);
    assert_eq!(out.rejected[0].record, 1);
    let error = &out.rejected[0].error;
    assert!(error.contains("expected a decimal number"), "{error}");
    assert!(out.tables[0].binary);
    let types = types(&d.mappings()[0], TYPES);
    let rows = printed(&out.tables[0].per_key, &types);
    // events counts the two good records; total sums them.
    assert_eq!(rows[0][1].as_deref(), Some("2"));
    assert_eq!(rows[0][6].as_deref(), Some("3.75"));
}

/// What the server's `GROUP BY` gives for one key, computed from the records in offset order.
#[derive(Default)]
struct Expected {
    events: i64,
    last_ref: Option<String>,
    /// (value in 10^-SCALE, display scale) of the minimum and maximum; the oldest on ties.
    low: Option<(i128, u32)>,
    peak: Option<i64>,
    total: Option<(i128, u32)>,
    offset: i64,
}

#[test]
fn random_batches_reduce_to_what_group_by_gives_over_their_records() {
    let mut rng = Rng::for_test("random_batches_reduce_to_what_group_by_gives_over_their_records");
    let d = binary_decoder(MAPPING, TYPES, true);
    let types = types(&d.mappings()[0], TYPES);
    let accounts = ["", "a", "ab", "b", "é"];
    for _ in 0..150 {
        let n = rng.range(1, 120) as usize;
        let mut records = Vec::new();
        let mut fields = Vec::new();
        for offset in 0..n as i64 {
            let account = rng.pick(&accounts);
            let hour = rng.range(0, 3);
            let amt = rng.chance(0.85).then(|| random_decimal(&mut rng));
            let peak = rng.chance(0.8).then(|| rng.range(0, 2000) as i64 - 1000);
            let reference = rng.chance(0.8).then(|| format!("r{}", rng.range(0, 50)));
            let json = |v: &Option<String>| v.clone().unwrap_or_else(|| "null".into());
            // A JSON number where the text is one (no leading zero), else a numeric string.
            let amt_json = amt.as_ref().map(|(text, _, _)| {
                let digits = text.trim_start_matches('-').as_bytes();
                let json_number =
                    !(digits.len() > 1 && digits[0] == b'0' && digits[1].is_ascii_digit());
                if json_number && rng.chance(0.5) {
                    text.clone()
                } else {
                    format!("\"{text}\"")
                }
            });
            records.push(rec(
                offset,
                &format!(
                    r#"{{"a":"{account}","amt":{},"n":{},"ref":{},"ts":"{}"}}"#,
                    json(&amt_json),
                    json(&peak.map(|p| p.to_string())),
                    json(&reference.as_ref().map(|r| format!("\"{r}\""))),
                    ts(hour as u32, rng.range(0, 60) as u32)
                ),
            ));
            fields.push((account, hour, amt, peak, reference));
        }
        // Records Postgres rejected in an earlier attempt are left out.
        let excluded: HashSet<(usize, usize)> = (0..n)
            .filter(|_| rng.chance(0.05))
            .map(|i| (0, i))
            .collect();
        let mut expected: BTreeMap<(Vec<u8>, u64), Expected> = BTreeMap::new();
        for (i, (account, hour, amt, peak, reference)) in fields.into_iter().enumerate() {
            if excluded.contains(&(0, i)) {
                continue;
            }
            let e = expected
                .entry((account.as_bytes().to_vec(), hour))
                .or_default();
            e.events += 1;
            e.offset = i as i64;
            e.last_ref = reference;
            if let Some((_, value, scale)) = amt {
                e.total = Some(match e.total {
                    Some((t, s)) => (t + value, s.max(scale)),
                    None => (value, scale),
                });
                if e.low.is_none_or(|(low, _)| value < low) {
                    e.low = Some((value, scale));
                }
            }
            if let Some(p) = peak {
                e.peak = Some(e.peak.map_or(p, |q| q.max(p)));
            }
        }
        let want: Vec<Vec<Option<String>>> = expected
            .into_iter()
            .map(|((account, hour), e)| {
                vec![
                    Some(String::from_utf8(account).unwrap()),
                    Some(e.events.to_string()),
                    Some(hour_micros(hour as i64)),
                    e.last_ref,
                    e.low.map(|(v, s)| model_text(v, s)),
                    e.peak.map(|p| p.to_string()),
                    e.total.map(|(v, s)| model_text(v, s)),
                    Some(e.offset.to_string()),
                ]
            })
            .collect();
        let out = d.decode(&records, &excluded);
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        let t = &out.tables[0];
        assert_eq!(t.upserts.len(), n - excluded.len());
        assert_eq!(printed(&t.per_key, &types), want);
    }
}
