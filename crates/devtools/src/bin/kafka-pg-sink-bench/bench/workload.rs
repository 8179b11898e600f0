//! The benchmark's records, deterministic from the seed, and the truth to verify the tables
//! against.
//!
//! Record `seq` either introduces a new key or, with probability `update_share`, reuses a key
//! drawn uniformly from the keys introduced before it. Key number `k` maps to the id
//! `k * ODD mod 2^63`, a bijection, so ids are distinct, positive, spread over the whole bigint
//! range (as real ids are: index pages are touched at random) and a key always lands in the same
//! partition. Values carry only characters that need no escaping in COPY text.

use std::collections::HashSet;
use std::fmt::Write;

use super::clock::push_rfc3339_ms;
use super::rng::{mix, Rng};

/// 2026-01-01T00:00:00Z: record timestamps advance 10 ms per record from here (plus up to 1 s
/// of jitter), so accumulate windows of one hour each hold ~360,000 records.
const BASE_TS_MS: i64 = 1_767_225_600_000;
const ACCOUNTS: u64 = 10_000;
const REGIONS: u64 = 12;
const ID_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;
const HOUR_MS: i64 = 3_600_000;

#[derive(Clone, Copy, Debug)]
pub struct Rec {
    pub seq: u64,
    pub id: i64,
    /// Key number (1-based): index into per-key state.
    pub key: u32,
    pub cents: u32,
    pub account: u32,
    pub region: u8,
    pub partition: u16,
    pub ts_ms: i64,
}

pub struct Workload {
    pub partitions: usize,
    /// The backlog (`records[..backlog]`), then the records of the latency phase.
    pub records: Vec<Rec>,
    pub backlog: usize,
    /// Indices of the backlog records of each partition, in order.
    pub backlog_by_partition: Vec<Vec<u32>>,
}

/// What the tables must contain after `records` records were applied.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Truth {
    pub records: u64,
    pub keys: u64,
    /// Sum of the amount (cents) and of `seq` over the newest record of each key (upsert).
    pub last_cents: u64,
    pub last_seq: u64,
    /// Sum of the amount (cents) and of `seq` over every record (insert, accumulate).
    pub total_cents: u64,
    pub total_seq: u64,
    /// Distinct (account, hour) pairs (accumulate rows).
    pub account_hours: u64,
}

pub fn id_of(key: u64) -> i64 {
    (key.wrapping_mul(ID_MULTIPLIER) & (u64::MAX >> 1)) as i64
}

impl Workload {
    pub fn generate(
        backlog: usize,
        extra: usize,
        partitions: usize,
        update_share: f64,
        seed: u64,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let mut keys = 0u64;
        let mut records = Vec::with_capacity(backlog + extra);
        let mut by_partition = vec![Vec::new(); partitions];
        for seq in 0..(backlog + extra) as u64 {
            let key = if keys > 0 && rng.chance(update_share) {
                rng.range(1, keys + 1)
            } else {
                keys += 1;
                keys
            };
            let id = id_of(key);
            let partition = (mix(id as u64) % partitions as u64) as u16;
            if (seq as usize) < backlog {
                by_partition[partition as usize].push(seq as u32);
            }
            records.push(Rec {
                seq,
                id,
                key: key as u32,
                cents: rng.range(1, 1_000_000) as u32,
                account: rng.range(0, ACCOUNTS) as u32,
                region: rng.range(1, REGIONS + 1) as u8,
                partition,
                ts_ms: BASE_TS_MS + seq as i64 * 10 + rng.range(0, 1000) as i64,
            });
        }
        Self {
            partitions,
            records,
            backlog,
            backlog_by_partition: by_partition,
        }
    }

    pub fn truth(&self, upto: usize) -> Truth {
        let mut last: Vec<Option<(u32, u64)>> = Vec::new();
        let mut hours = HashSet::new();
        let mut t = Truth::default();
        for r in &self.records[..upto] {
            let k = r.key as usize;
            if last.len() <= k {
                last.resize(k + 1, None);
            }
            last[k] = Some((r.cents, r.seq));
            hours.insert((r.account, r.ts_ms.div_euclid(HOUR_MS)));
            t.total_cents += u64::from(r.cents);
            t.total_seq += r.seq;
        }
        for (cents, seq) in last.iter().flatten() {
            t.keys += 1;
            t.last_cents += u64::from(*cents);
            t.last_seq += seq;
        }
        t.records = upto as u64;
        t.account_hours = hours.len() as u64;
        t
    }

    /// Average value size in bytes, over ~10,000 records spread over the whole run.
    pub fn mean_value_bytes(&self) -> f64 {
        let step = (self.records.len() / 10_000).max(1);
        let mut buf = String::new();
        let (mut total, mut n) = (0, 0);
        for r in self.records.iter().step_by(step) {
            buf.clear();
            value_json(r, &mut buf);
            total += buf.len();
            n += 1;
        }
        total as f64 / f64::from(n.max(1))
    }
}

/// `{"id":..,"account":"acct-..","amount":"..","ts":"..","meta":{..}}` into `out`. Written
/// piece by piece (no formatting machinery): the producer renders one per record while the
/// connector runs on the same cores.
pub fn value_json(r: &Rec, out: &mut String) {
    let mut n = itoa::Buffer::new();
    out.push_str(r#"{"id":"#);
    out.push_str(n.format(r.id));
    out.push_str(r#","account":"acct-"#);
    out.push_str(n.format(r.account));
    out.push_str(r#"","amount":""#);
    out.push_str(n.format(r.cents / 100));
    out.push('.');
    let cents = r.cents % 100;
    out.push(char::from(b'0' + (cents / 10) as u8));
    out.push(char::from(b'0' + (cents % 10) as u8));
    out.push_str(r#"","ts":""#);
    push_rfc3339_ms(out, r.ts_ms);
    out.push_str(r#"","meta":{"source":"bench","region":"eu-"#);
    out.push_str(n.format(r.region));
    out.push_str(r#"","seq":"#);
    out.push_str(n.format(r.seq));
    out.push_str("}}");
}

/// One COPY text line: id, account, amount, ts, meta, ord.
pub fn copy_line(r: &Rec, out: &mut String) {
    let _ = write!(
        out,
        "{}\tacct-{}\t{}.{:02}\t",
        r.id,
        r.account,
        r.cents / 100,
        r.cents % 100
    );
    push_rfc3339_ms(out, r.ts_ms);
    let _ = writeln!(
        out,
        "\t{{\"source\":\"bench\",\"region\":\"eu-{}\",\"seq\":{}}}\t{}",
        r.region, r.seq, r.seq
    );
}

/// `12.34` -> 1234 cents; `None` unless the text is a plain decimal with at most two places.
pub fn parse_cents(text: &str) -> Option<u64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 2 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: u64 = format!("{frac:0<2}").parse().ok()?;
    Some(whole.parse::<u64>().ok()? * 100 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_records_and_updates_reuse_keys() {
        let a = Workload::generate(5_000, 100, 4, 0.3, 9);
        let b = Workload::generate(5_000, 100, 4, 0.3, 9);
        assert!(a.records.iter().zip(&b.records).all(|(x, y)| x.id == y.id));
        let t = a.truth(5_000);
        assert!((3_200..3_800).contains(&t.keys), "{}", t.keys);
        let per_partition: usize = a.backlog_by_partition.iter().map(Vec::len).sum();
        assert_eq!(per_partition, 5_000);
        assert!(a.records.iter().all(|r| r.id > 0));
    }

    #[test]
    fn value_is_json_with_the_documented_shape() {
        let w = Workload::generate(10, 0, 2, 0.3, 1);
        let mut s = String::new();
        value_json(&w.records[3], &mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["id"].to_string(), w.records[3].id.to_string());
        assert_eq!(v["meta"]["source"], "bench");
        assert_eq!(
            parse_cents(v["amount"].as_str().unwrap()),
            Some(u64::from(w.records[3].cents))
        );
        for r in &Workload::generate(2_000, 0, 3, 0.3, 5).records {
            s.clear();
            value_json(r, &mut s);
            let mut ts = String::new();
            push_rfc3339_ms(&mut ts, r.ts_ms);
            let expected = format!(
                r#"{{"id":{},"account":"acct-{}","amount":"{}.{:02}","ts":"{ts}","meta":{{"source":"bench","region":"eu-{}","seq":{}}}}}"#,
                r.id,
                r.account,
                r.cents / 100,
                r.cents % 100,
                r.region,
                r.seq
            );
            assert_eq!(s, expected);
        }
        assert_eq!(parse_cents("7"), Some(700));
        assert_eq!(parse_cents("7.5"), Some(750));
        assert_eq!(parse_cents("7.555"), None);
    }
}
