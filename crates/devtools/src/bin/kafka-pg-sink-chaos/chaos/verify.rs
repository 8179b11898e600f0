//! The checker: every table against the ground truth from the producer. A good record must be
//! applied exactly once to each mapping; a poison record must be a dead letter exactly once per
//! mapping. Every violation names its first offending record (id, partition, offset).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::Result;
use sqlx::PgPool;

use super::workload::{Kind, Truth};

/// The target tables, in mapping order.
pub const TABLES: [&str; 3] = ["payments_latest", "payments_log", "balances"];

pub const DDL: &str = r#"
CREATE TABLE payments_latest (
    id bigint PRIMARY KEY,
    account text NOT NULL,
    amount numeric(14, 2) NOT NULL CHECK (amount >= 0),
    ts timestamptz
);
-- Every row application of the upsert, so a record applied twice is visible even though the
-- upsert itself is idempotent.
CREATE TABLE payments_applied (id bigint NOT NULL, amount numeric(14, 2) NOT NULL);
CREATE FUNCTION audit_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO payments_applied VALUES (NEW.id, NEW.amount);
    RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON payments_latest
    FOR EACH ROW EXECUTE FUNCTION audit_payment();
CREATE TABLE payments_log (
    id bigint NOT NULL,
    account text NOT NULL,
    amount numeric(14, 2) NOT NULL CHECK (amount >= 0),
    src_partition int,
    src_offset bigint
);
CREATE TABLE balances (
    account text,
    hour timestamptz,
    total numeric NOT NULL CHECK (total >= 0),
    events bigint NOT NULL,
    PRIMARY KEY (account, hour)
);
"#;

#[derive(Default)]
pub struct Findings {
    pub violations: Vec<String>,
    /// Records with an effect missing from some mapping.
    pub lost: BTreeSet<u64>,
    /// Records applied (or dead-lettered) more than once in some mapping.
    pub duplicated: BTreeSet<u64>,
    /// Per table: (expected, found) dead letters.
    pub dead_letters: BTreeMap<&'static str, (u64, u64)>,
    /// (account, hour) keys checked and mismatched.
    pub balance_keys: (usize, usize),
}

impl Findings {
    /// Records a violation for `ids` (if any), naming the first and counting the rest.
    fn about(&mut self, truth: &Truth, ids: &[u64], what: &str) {
        if let Some(&first) = ids.first() {
            let more = match ids.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            self.violations
                .push(format!("{what}: {}{more}", truth.describe(first)));
        }
    }

    fn expect_eq(&mut self, what: &str, expected: i64, found: i64) {
        if expected != found {
            self.violations
                .push(format!("{what}: expected {expected}, found {found}"));
        }
    }
}

/// Runs every table check.
pub async fn tables(pool: &PgPool, truth: &Truth, group: &str, topic: &str) -> Result<Findings> {
    let mut f = Findings::default();
    latest(pool, truth, &mut f).await?;
    log(pool, truth, &mut f).await?;
    balances(pool, truth, &mut f).await?;
    dead_letters(pool, truth, group, topic, &mut f).await?;
    Ok(f)
}

/// Good log positions, each with its id.
fn good_positions(truth: &Truth) -> Vec<((i32, i64), u64)> {
    let mut all: Vec<((i32, i64), u64)> = truth
        .at
        .iter()
        .filter(|(_, id)| truth.event(**id).is_some_and(|e| e.kind == Kind::Good))
        .map(|(at, id)| (*at, *id))
        .collect();
    all.sort_unstable();
    all
}

async fn latest(pool: &PgPool, truth: &Truth, f: &mut Findings) -> Result<()> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, (amount * 100)::bigint FROM payments_latest ORDER BY id")
            .fetch_all(pool)
            .await?;
    let (mut unexpected, mut wrong) = (Vec::new(), Vec::new());
    let mut seen = BTreeSet::new();
    for &(id, cents) in &rows {
        let id = id as u64;
        match truth.event(id) {
            Some(e) if e.kind == Kind::Good && truth.copies(id) > 0 => {
                seen.insert(id);
                if e.cents != cents {
                    wrong.push(id);
                }
            }
            _ => unexpected.push(id),
        }
    }
    let good: Vec<u64> = truth.good_ids().collect();
    let missing: Vec<u64> = good
        .iter()
        .copied()
        .filter(|id| !seen.contains(id))
        .collect();
    f.lost.extend(&missing);
    f.about(
        truth,
        &missing,
        "payments_latest: good record missing (lost)",
    );
    f.about(
        truth,
        &unexpected,
        "payments_latest: row for a record that is not good",
    );
    f.about(truth, &wrong, "payments_latest: wrong amount");
    f.expect_eq(
        "payments_latest row count",
        good.len() as i64,
        rows.len() as i64,
    );
    let expected: i64 = good
        .iter()
        .filter_map(|&id| truth.event(id))
        .map(|e| e.cents)
        .sum();
    let sum: i64 = rows.iter().map(|r| r.1).sum();
    f.expect_eq("payments_latest sum(amount) in cents", expected, sum);

    let applied: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, count(*) FROM payments_applied GROUP BY id ORDER BY id")
            .fetch_all(pool)
            .await?;
    // A record applied once per log copy at most (copies in one batch are reduced to one).
    let twice: Vec<u64> = applied
        .iter()
        .filter(|(id, n)| *n as usize > truth.copies(*id as u64).max(1))
        .map(|(id, _)| *id as u64)
        .collect();
    f.duplicated.extend(&twice);
    f.about(
        truth,
        &twice,
        "payments_latest: record applied more than once (audit table)",
    );
    let total: i64 = applied.iter().map(|(_, n)| n).sum();
    let (low, high) = (good.len() as i64, truth.good_records as i64);
    if total < low || total > high {
        f.violations.push(format!(
            "payments_latest applications (audit rows): expected {}, found {total}",
            if low == high {
                low.to_string()
            } else {
                format!("{low}..={high}")
            }
        ));
    }
    Ok(())
}

async fn log(pool: &PgPool, truth: &Truth, f: &mut Findings) -> Result<()> {
    let rows: Vec<(i64, Option<i32>, Option<i64>, i64)> = sqlx::query_as(
        "SELECT id, src_partition, src_offset, (amount * 100)::bigint FROM payments_log ORDER BY src_partition, src_offset",
    )
    .fetch_all(pool)
    .await?;
    let mut count: HashMap<(i32, i64), u64> = HashMap::new();
    let (mut misplaced, mut wrong) = (Vec::new(), Vec::new());
    for &(id, partition, offset, cents) in &rows {
        let at = partition.zip(offset);
        let there = at.and_then(|at| truth.at.get(&at).copied());
        match (at, truth.event(id as u64)) {
            (Some(at), Some(e)) if there == Some(e.id) && e.kind == Kind::Good => {
                *count.entry(at).or_default() += 1;
                if e.cents != cents {
                    wrong.push(e.id);
                }
            }
            _ => misplaced.push(id as u64),
        }
    }
    let good = good_positions(truth);
    let mut twice: Vec<u64> = good
        .iter()
        .filter(|(at, _)| count.get(at).is_some_and(|n| *n > 1))
        .map(|(_, id)| *id)
        .collect();
    twice.dedup();
    let missing: Vec<u64> = good
        .iter()
        .filter(|(at, _)| !count.contains_key(at))
        .map(|(_, id)| *id)
        .collect();
    f.lost.extend(&missing);
    f.duplicated.extend(&twice);
    f.about(truth, &missing, "payments_log: good record missing (lost)");
    f.about(
        truth,
        &twice,
        "payments_log: record inserted more than once",
    );
    f.about(
        truth,
        &misplaced,
        "payments_log: row that matches no good record at its (src_partition, src_offset)",
    );
    f.about(truth, &wrong, "payments_log: wrong amount");
    f.expect_eq(
        "payments_log row count",
        truth.good_records as i64,
        rows.len() as i64,
    );
    let sum: i64 = rows.iter().map(|r| r.3).sum();
    f.expect_eq("payments_log sum(amount) in cents", truth.good_cents, sum);
    Ok(())
}

async fn balances(pool: &PgPool, truth: &Truth, f: &mut Findings) -> Result<()> {
    let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT account, (extract(epoch FROM hour) * 1000)::bigint, (total * 100)::bigint, events FROM balances",
    )
    .fetch_all(pool)
    .await?;
    let found: BTreeMap<(String, i64), (i64, i64)> = rows
        .into_iter()
        .map(|(a, h, t, e)| ((a, h), (t, e)))
        .collect();
    let keys: BTreeSet<&(String, i64)> = truth.balances.keys().chain(found.keys()).collect();
    let mut mismatched = Vec::new();
    for key in &keys {
        let expected = truth.balances.get(*key).copied().unwrap_or_default();
        let actual = found.get(*key).copied().unwrap_or_default();
        if expected != actual {
            mismatched.push(format!(
                "account {} hour {} ms: expected total {} cents over {} events, found {} cents over {} events",
                key.0, key.1, expected.0, expected.1, actual.0, actual.1
            ));
        }
    }
    f.balance_keys = (keys.len(), mismatched.len());
    if let Some(first) = mismatched.first() {
        f.violations.push(format!(
            "balances: {} (account, hour) keys differ from the good records, first: {first}",
            mismatched.len()
        ));
    }
    Ok(())
}

/// target_table, partition, offset, stage, error, record_key.
type DeadLetterRow = (String, i32, i64, String, String, Option<Vec<u8>>);

/// "public.payments_log" or "\"payments_log\"" -> "payments_log".
fn bare(table: &str) -> String {
    table
        .rsplit('.')
        .next()
        .unwrap_or(table)
        .trim_matches('"')
        .to_owned()
}

async fn dead_letters(
    pool: &PgPool,
    truth: &Truth,
    group: &str,
    topic: &str,
    f: &mut Findings,
) -> Result<()> {
    let rows: Vec<DeadLetterRow> = sqlx::query_as(
        "SELECT target_table, partition, \"offset\", stage, error, record_key FROM kafka_pg_sink.dead_letters \
         WHERE group_id = $1 AND topic = $2 ORDER BY partition, \"offset\"",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    let mut by_table: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for row in rows {
        by_table.entry(bare(&row.0)).or_default().push(row);
    }
    for table in by_table.keys().filter(|t| !TABLES.contains(&t.as_str())) {
        f.violations
            .push(format!("dead letters for an unknown table `{table}`"));
    }
    let poison: Vec<((i32, i64), u64)> = truth
        .at
        .iter()
        .filter(|(_, id)| truth.event(**id).is_some_and(|e| e.kind != Kind::Good))
        .map(|(at, id)| (*at, *id))
        .collect();
    for table in TABLES {
        let rows = by_table.remove(table).unwrap_or_default();
        f.dead_letters
            .insert(table, (poison.len() as u64, rows.len() as u64));
        let mut count: HashMap<(i32, i64), u64> = HashMap::new();
        let (mut stray, mut good, mut wrong_stage, mut wrong_key) =
            (vec![], vec![], vec![], vec![]);
        for (_, partition, offset, stage, error, key) in &rows {
            let Some(&id) = truth.at.get(&(*partition, *offset)) else {
                stray.push(format!("{partition}/{offset}"));
                continue;
            };
            *count.entry((*partition, *offset)).or_default() += 1;
            let kind = truth.event(id).map_or(Kind::Good, |e| e.kind);
            if kind == Kind::Good {
                good.push((id, error.clone()));
            } else if kind.stage() != stage {
                wrong_stage.push((id, format!("{stage}: {error}")));
            }
            if key.as_deref() != Some(id.to_string().as_bytes()) {
                wrong_key.push(id);
            }
        }
        if let Some(first) = stray.first() {
            f.violations.push(format!(
                "dead letters in {table}: {} at offsets that hold no produced record, first {first}",
                stray.len()
            ));
        }
        let ids = |v: &[(u64, String)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        if let Some((_, error)) = good.first() {
            let what = format!("dead letters in {table}: good record dead-lettered ({error})");
            f.about(truth, &ids(&good), &what);
        }
        if let Some((id, error)) = wrong_stage.first() {
            let what = format!(
                "dead letters in {table}: stage differs from the documented `{}` (found {error})",
                truth.event(*id).map_or("?", |e| e.kind.stage())
            );
            f.about(truth, &ids(&wrong_stage), &what);
        }
        f.about(
            truth,
            &wrong_key,
            &format!("dead letters in {table}: record key differs"),
        );
        let mut twice: Vec<u64> = poison
            .iter()
            .filter(|(at, _)| count.get(at).is_some_and(|n| *n > 1))
            .map(|(_, id)| *id)
            .collect();
        let mut missing: Vec<u64> = poison
            .iter()
            .filter(|(at, _)| !count.contains_key(at))
            .map(|(_, id)| *id)
            .collect();
        twice.sort_unstable();
        missing.sort_unstable();
        f.lost.extend(&missing);
        f.duplicated.extend(&twice);
        f.about(
            truth,
            &missing,
            &format!("dead letters in {table}: poison record missing (lost)"),
        );
        f.about(
            truth,
            &twice,
            &format!("dead letters in {table}: poison record dead-lettered more than once"),
        );
    }
    Ok(())
}

/// Self-test: corrupts the tables the way a connector bug would, so the checker must fail.
/// Deletes one applied row and applies another record a second time; returns their ids.
pub async fn corrupt(pool: &PgPool, truth: &Truth) -> Result<(u64, u64)> {
    let n = truth.events.len() as u64;
    // Records held once in the log, so a second application is a duplicate whatever the batching.
    let good_from = |start: u64| {
        truth
            .good_ids()
            .find(|&id| id >= start && truth.copies(id) == 1)
    };
    let (Some(lost), Some(twice)) = (good_from(n / 3), good_from(2 * n / 3)) else {
        anyhow::bail!("self-test needs good records in the last two thirds of the stream");
    };
    sqlx::query("DELETE FROM payments_latest WHERE id = $1")
        .bind(lost as i64)
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO payments_log SELECT * FROM payments_log WHERE id = $1 LIMIT 1")
        .bind(twice as i64)
        .execute(pool)
        .await?;
    // The audit trigger records this as a second application of the same record.
    sqlx::query("UPDATE payments_latest SET amount = amount WHERE id = $1")
        .bind(twice as i64)
        .execute(pool)
        .await?;
    Ok((lost, twice))
}
