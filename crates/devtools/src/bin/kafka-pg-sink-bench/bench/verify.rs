//! After a mode: the tables must hold exactly what was produced, applied once, and every stored
//! offset must be the log end. A count that does not match usually means the broker dropped
//! records the connector had not read (the mock broker's retention), which the benchmark reports
//! as a failure rather than a result.

use anyhow::Result;
use rdkafka::consumer::BaseConsumer;

use super::infra::{watermarks, Database};
use super::mode::Mode;
use super::monitor::committed;
use super::produce::Shared;
use super::workload::{parse_cents, Truth};

/// Every problem found (empty when everything matches).
pub async fn run(
    db: &Database,
    mode: Mode,
    truth: &Truth,
    shared: &Shared,
    client: &BaseConsumer,
    group: &str,
    topic: &str,
) -> Result<Vec<String>> {
    let mut problems = offsets(db, shared, client, group, topic).await?;
    problems.extend(table(db, mode, truth).await?);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM kafka_pg_sink.dead_letters")
        .fetch_one(&db.pool)
        .await?;
    if dead != 0 {
        problems.push(format!(
            "{dead} records went to dead letters; expected none"
        ));
    }
    Ok(problems)
}

async fn offsets(
    db: &Database,
    shared: &Shared,
    client: &BaseConsumer,
    group: &str,
    topic: &str,
) -> Result<Vec<String>> {
    let partitions = shared.sent.len();
    let marks = watermarks(client, topic, partitions)?;
    let stored = committed(&db.pool, group, topic, &shared.offsets_table).await?;
    let mut problems = Vec::new();
    for (p, (_, high)) in marks.iter().enumerate() {
        let sent = shared.sent(p);
        let done = stored
            .iter()
            .find(|(q, _)| *q as usize == p)
            .map(|(_, o)| *o);
        if done != Some(sent) || *high != sent {
            problems.push(format!(
                "partition {p}: stored offset {done:?}, log end {high}, records produced {sent}"
            ));
        }
    }
    Ok(problems)
}

async fn table(db: &Database, mode: Mode, truth: &Truth) -> Result<Vec<String>> {
    let (rows, amount, third): (i64, Option<String>, Option<String>) =
        sqlx::query_as(mode.check_sql()).fetch_one(&db.pool).await?;
    let amount = amount.as_deref().and_then(parse_cents);
    let third: Option<u64> = third.and_then(|t| t.parse().ok());
    let (want_rows, want_amount, want_third, third_name) = match mode {
        Mode::Upsert => (
            truth.keys,
            truth.last_cents,
            truth.last_seq,
            "sum of meta.seq",
        ),
        Mode::Insert => (
            truth.records,
            truth.total_cents,
            truth.total_seq,
            "sum of meta.seq",
        ),
        Mode::Accumulate => (
            truth.account_hours,
            truth.total_cents,
            truth.records,
            "sum(events)",
        ),
    };
    let mut problems = Vec::new();
    let table = mode.table();
    if rows as u64 != want_rows {
        problems.push(format!(
            "{table} holds {rows} rows, expected {want_rows}{}",
            if (rows as u64) < want_rows {
                " — records are missing (did the broker drop data before the connector read it?)"
            } else {
                " — records were applied more than once"
            }
        ));
    }
    if amount != Some(want_amount) {
        problems.push(format!(
            "{table}: amounts sum to {amount:?} cents, expected {want_amount}"
        ));
    }
    if third != Some(want_third) {
        problems.push(format!(
            "{table}: {third_name} is {third:?}, expected {want_third}"
        ));
    }
    Ok(problems)
}
