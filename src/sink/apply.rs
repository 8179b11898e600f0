//! The body of a batch transaction, and the isolation of rows Postgres rejects.
//!
//! When a statement fails with a data exception or constraint violation, the transaction is
//! rolled back and a diagnosis transaction bisects the failing step's rows under savepoints to
//! find the rows that fail on their own; the caller excludes those records (as dead letters) and
//! writes the batch again, so their neighbours commit.
//!
//! An accumulate batch reduced per key in the connector (`TableRows::per_key`) has one row for
//! several records, so the diagnosis sends its per-record rows instead, through the `GROUP BY`
//! statement: they leave the table as the reduced rows would (that is the reduction's
//! guarantee), and each names one record, so the bad record is isolated alone and its
//! neighbours are written again, reduced, exactly once.

use sqlx::{Connection, PgConnection};

use super::encode::{binary, Decoded, RowSet};
use super::sql::MappingSql;
use crate::decode::{Rejected, Stage};
use crate::error::{classify, Error, ErrorClass};

/// The rows of a step that sends none.
static NO_ROWS: RowSet = RowSet::EMPTY;

/// Rows written per mapping: (mapping index, rows inserted or updated, rows deleted).
pub type Written = Vec<(usize, u64, u64)>;

/// One statement pair of a batch: COPY into a stage, then apply it; or, for a direct insert,
/// one COPY straight into the table (`apply` empty); or, for a truncate, the statement alone
/// (`copy` empty).
struct Step<'a> {
    mapping: usize,
    copy: &'a str,
    apply: &'a str,
    rows: &'a RowSet,
    deletes: bool,
    /// Rows in binary COPY format.
    binary: bool,
}

/// The statements of a batch. With `per_record`, an accumulate batch reduced in the connector is
/// sent as its per-record rows, for the server to reduce (the diagnosis).
fn steps<'a>(sql: &'a [MappingSql], decoded: &'a Decoded, per_record: bool) -> Vec<Step<'a>> {
    let mut steps = Vec::new();
    for t in &decoded.tables {
        let s = &sql[t.mapping];
        let (copy_rows, copy_deletes) = if t.binary {
            (&s.copy_rows_binary, &s.copy_deletes_binary)
        } else {
            (&s.copy_rows, &s.copy_deletes)
        };
        // A truncate first: the batch's rows are those of the events after it.
        if t.truncate {
            steps.push(Step {
                mapping: t.mapping,
                copy: "",
                apply: &s.delete_all,
                rows: &NO_ROWS,
                deletes: true,
                binary: t.binary,
            });
        }
        // Deletes first: with a tombstone followed by newer upserts of the same key in one batch,
        // the row is deleted and then written again, as applying in order would do.
        if !t.deletes.is_empty() {
            steps.push(Step {
                mapping: t.mapping,
                copy: copy_deletes,
                apply: &s.delete,
                rows: &t.deletes,
                deletes: true,
                binary: t.binary,
            });
        }
        // Accumulate rows reduced per key go when the statement for them exists; otherwise (and
        // for the diagnosis) the per-record rows go, reduced by the server.
        let reduced = !t.per_key.is_empty();
        let per_key = reduced && t.sorted && !per_record && !s.apply_sorted.is_empty();
        let sorted = t.sorted && (!reduced || per_key);
        if !t.upserts.is_empty() {
            let (copy, apply) = match (t.unordered, t.direct, t.binary) {
                (true, true, true) => (&s.copy_direct_binary, ""),
                (true, true, false) => (&s.copy_direct, ""),
                (true, false, true) => (&s.copy_unordered_binary, s.apply_unordered.as_str()),
                (true, false, false) => (&s.copy_unordered, s.apply_unordered.as_str()),
                (false, _, _) if sorted => (copy_rows, s.apply_sorted.as_str()),
                (false, _, _) => (copy_rows, s.apply.as_str()),
            };
            steps.push(Step {
                mapping: t.mapping,
                copy,
                apply,
                rows: if per_key { &t.per_key } else { &t.upserts },
                deletes: false,
                binary: t.binary,
            });
        }
    }
    steps
}

/// Writes every mapping's rows inside the caller's transaction.
pub(crate) async fn apply_batch(
    tx: &mut PgConnection,
    sql: &[MappingSql],
    decoded: &Decoded,
) -> Result<Written, Error> {
    let mut written: Written = Vec::new();
    for step in steps(sql, decoded, false) {
        let n = run(tx, &step, step.rows.bytes(0..step.rows.len())).await?;
        match written.iter_mut().find(|(m, _, _)| *m == step.mapping) {
            Some(entry) if step.deletes => entry.2 += n,
            Some(entry) => entry.1 += n,
            None if step.deletes => written.push((step.mapping, 0, n)),
            None => written.push((step.mapping, n, 0)),
        }
    }
    Ok(written)
}

/// COPY, then the statement that applies the stage; a COPY straight into the table (no `apply`)
/// counts the rows it stored.
async fn run(tx: &mut PgConnection, step: &Step<'_>, data: &[u8]) -> Result<u64, Error> {
    let copied = copy(tx, step, data).await?;
    if step.apply.is_empty() {
        return Ok(copied);
    }
    Ok(sqlx::query(step.apply)
        .execute(&mut *tx)
        .await?
        .rows_affected())
}

/// Finds the rows that Postgres rejects, in a transaction that is always rolled back.
/// Returns an empty list when nothing fails any more (the error was not about the data).
pub(crate) async fn diagnose(
    conn: &mut PgConnection,
    sql: &[MappingSql],
    decoded: &Decoded,
) -> Result<Vec<Rejected>, Error> {
    let mut tx = conn.begin().await?;
    let mut found = Vec::new();
    for step in steps(sql, decoded, true) {
        let all = 0..step.rows.len();
        if let Some(error) = probe(&mut tx, &step, all.clone()).await? {
            for (row, error) in bisect(&mut tx, &step, all, error).await? {
                found.push(Rejected {
                    record: step.rows.records[row],
                    mapping: step.mapping,
                    stage: Stage::Database,
                    error,
                });
            }
            break;
        }
        // Keep this step's effect so later steps see the state they would see in the batch.
        run(&mut tx, &step, step.rows.bytes(0..step.rows.len())).await?;
    }
    tx.rollback().await?;
    Ok(found)
}

/// Narrows a failing range of rows down to the rows that fail alone.
async fn bisect(
    tx: &mut PgConnection,
    step: &Step<'_>,
    range: std::ops::Range<usize>,
    error: String,
) -> Result<Vec<(usize, String)>, Error> {
    let mut bad = Vec::new();
    let mut stack = vec![(range, error)];
    while let Some((range, error)) = stack.pop() {
        if range.len() == 1 {
            bad.push((range.start, error));
            continue;
        }
        let mid = range.start + range.len() / 2;
        let mut any = false;
        for half in [range.start..mid, mid..range.end] {
            if let Some(e) = probe(tx, step, half.clone()).await? {
                stack.push((half, e));
                any = true;
            }
        }
        if !any {
            // Only the combination fails (for example two rows colliding on another unique
            // index): reject the newest row of the range and let the retry find the rest.
            bad.push((range.end - 1, error));
        }
    }
    Ok(bad)
}

/// Runs `range` under a savepoint that is always rolled back; `Some(message)` when Postgres
/// rejects the data.
async fn probe(
    tx: &mut PgConnection,
    step: &Step<'_>,
    range: std::ops::Range<usize>,
) -> Result<Option<String>, Error> {
    sqlx::query("SAVEPOINT kps_probe").execute(&mut *tx).await?;
    let result = run(tx, step, step.rows.bytes(range)).await;
    sqlx::query("ROLLBACK TO SAVEPOINT kps_probe")
        .execute(&mut *tx)
        .await?;
    match result {
        Ok(_) => Ok(None),
        Err(error) if classify(&error) == ErrorClass::BadRecord => Ok(Some(describe(&error))),
        Err(error) => Err(error),
    }
}

/// `SQLSTATE code: message (detail)` for a database error.
pub(crate) fn describe(error: &Error) -> String {
    match error {
        Error::Database(sqlx::Error::Database(db)) => {
            let detail = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .and_then(|pg| pg.detail())
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            format!(
                "{}: {}{detail}",
                db.code().as_deref().unwrap_or("?"),
                db.message()
            )
        }
        other => other.to_string(),
    }
}

async fn copy(conn: &mut PgConnection, step: &Step<'_>, data: &[u8]) -> Result<u64, Error> {
    if step.copy.is_empty() {
        return Ok(0);
    }
    let mut copy = conn.copy_in_raw(step.copy).await?;
    let parts: &[&[u8]] = if step.binary {
        &[binary::HEADER, data, binary::TRAILER]
    } else {
        &[data]
    };
    for part in parts {
        if let Err(error) = copy.send(*part).await {
            // Abort explicitly so the connection is left in a known state.
            let _ = copy.abort(error.to_string()).await;
            return Err(error.into());
        }
    }
    Ok(copy.finish().await?)
}
