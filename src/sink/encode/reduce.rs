//! The newest-first reduction of one mapping's rows: for an upsert, the newest row of each key
//! and the delete of an older tombstone; with a version guard, every candidate after the newest
//! tombstone; for inserts, every row.
//!
//! Guarantee: for upserts, the rows kept leave the table in the state that applying every good
//! record in offset order would leave.

use super::aggregate::Aggregates;
use super::binary::BinType;
use super::decoder::{ChangePlan, Plan};
use super::row::{Miss, Row};
use super::rows::TableRows;
use crate::config::{Mapping, Mode, Tombstone, Truncate};
use crate::decode::json::{scalar, Scalar};
use crate::decode::keys::KeyMap;
use crate::decode::{Failure, Parsed, Rejected, Stage};
use crate::record::Record;

/// Per-key progress of the newest-first reduction.
enum KeyState {
    /// The newest upsert is emitted; an older tombstone still needs its delete.
    SeekingDelete,
    /// Version-guarded: every upsert newer than the newest tombstone is a candidate.
    Collecting,
    Done,
}

/// One mapping's rows and rejects while a batch is decoded, newest record first.
pub(super) struct MappingRows<'d> {
    pub(super) rows: TableRows,
    pub(super) rejected: Vec<Rejected>,
    /// Per-key progress of the reduction.
    states: KeyMap<KeyState>,
    /// The current record's key text.
    key: String,
    /// The current record's sort key, on which the rows are reduced when they go sorted
    /// ([`Plan::sorted`]) instead of on `key`.
    sort: Vec<u8>,
    pub(super) sorted: bool,
    /// Column types when the rows are written in binary.
    pub(super) binary: Option<&'d [BinType]>,
    /// An accumulate batch in binary: its reduction per key, fed each row as it is kept.
    pub(super) agg: Option<Aggregates<'d>>,
}

impl<'d> MappingRows<'d> {
    pub(super) fn new(
        mapping: usize,
        records: &[Record],
        binary: Option<&'d [BinType]>,
        plan: &'d Plan,
    ) -> Self {
        let mut rows = TableRows {
            mapping,
            binary: binary.is_some(),
            unordered: plan.direct,
            direct: plan.direct,
            ..TableRows::default()
        };
        // COPY rows are about as long as the payloads they come from: size the buffer once.
        let payload: usize = records
            .iter()
            .map(|r| r.value().map_or(0, <[u8]>::len))
            .sum();
        rows.upserts.reserve(records.len(), payload);
        Self {
            rows,
            rejected: Vec::new(),
            states: KeyMap::with_capacity(records.len()),
            key: String::new(),
            sort: Vec::new(),
            sorted: binary.is_some() && plan.sorted,
            agg: binary
                .and(plan.aggregate.as_deref())
                .map(|folds| Aggregates::new(folds, records.len())),
            binary,
        }
    }

    fn reject(&mut self, record: usize, (stage, error): Failure) {
        self.rejected.push(Rejected {
            record,
            mapping: self.rows.mapping,
            stage,
            error,
        });
    }
}

/// Record `i`'s rows for mapping `m` (planned as `plan`), its reject, or `Err` when a value cannot
/// be written in binary (the mapping's batch then goes as COPY text).
pub(super) fn record_rows(
    m: &Mapping,
    plan: &Plan,
    out: &mut MappingRows<'_>,
    i: usize,
    p: &Parsed<'_>,
) -> Result<(), ()> {
    out.key.clear();
    out.sort.clear();
    if let Some(change) = &plan.cdc {
        return change_rows(m, plan, change, out, i, p);
    }
    match (p.record.value(), m.tombstone) {
        (Some(_), _) => upsert_row(m, plan, out, i, p),
        (None, Tombstone::Ignore) => {
            out.rows.ignored += 1;
            Ok(())
        }
        (None, Tombstone::BadRecord) => {
            out.reject(
                i,
                (
                    Stage::Decode,
                    "tombstone (null value) is not accepted by this mapping".into(),
                ),
            );
            Ok(())
        }
        (None, Tombstone::Delete) => delete_row(m, plan, out, i, p),
    }
}

/// A change event's rows: an upsert of the new row image, a delete by key, a truncate, or
/// nothing (the tombstone after a delete, a logical decoding message, events before a truncate).
fn change_rows(
    m: &Mapping,
    plan: &Plan,
    change: &ChangePlan,
    out: &mut MappingRows<'_>,
    i: usize,
    p: &Parsed<'_>,
) -> Result<(), ()> {
    if p.record.value().is_none() {
        // A tombstone: Debezium writes one after each delete, for log compaction, which may
        // remove the delete event itself; so it deletes by the record key (after the delete
        // event, that delete finds nothing).
        if out.rows.truncate {
            return Ok(());
        }
        return match m.tombstone {
            Tombstone::Delete => delete_row(&change.from_key, plan, out, i, p),
            Tombstone::Ignore => {
                out.rows.ignored += 1;
                Ok(())
            }
            Tombstone::BadRecord => {
                out.reject(
                    i,
                    (
                        Stage::Decode,
                        "tombstone (null value) is not accepted by this mapping".into(),
                    ),
                );
                Ok(())
            }
        };
    }
    let doc = match &p.json {
        Some(Ok(doc)) => doc,
        Some(Err(e)) => {
            out.reject(i, (Stage::Decode, e.clone()));
            return Ok(());
        }
        None => return upsert_row(m, plan, out, i, p),
    };
    let op = doc.get(&change.op).map(scalar);
    // Events older than a truncate in this batch are superseded by it, but only events: one
    // that cannot be read is still a bad record, wherever the batch happens to end.
    let known =
        matches!(&op, Some(Scalar::Text(op)) if matches!(&**op, "c" | "r" | "u" | "d" | "t" | "m"));
    if out.rows.truncate && known {
        return Ok(());
    }
    match op {
        Some(Scalar::Text(op)) if matches!(&*op, "c" | "r" | "u") => upsert_row(m, plan, out, i, p),
        Some(Scalar::Text(op)) if op == "d" => {
            let has_before = doc
                .get(&change.before)
                .is_some_and(|b| !matches!(scalar(b), Scalar::Null));
            let keyed = if has_before {
                &change.from_before
            } else {
                &change.from_key
            };
            delete_row(keyed, plan, out, i, p)
        }
        Some(Scalar::Text(op)) if op == "t" => {
            match change.cdc.truncate {
                Truncate::DeleteAll => out.rows.truncate = true,
                Truncate::Ignore => out.rows.ignored += 1,
                Truncate::BadRecord => out.reject(
                    i,
                    (
                        Stage::Decode,
                        "a truncate event (op \"t\"): set truncate = \"delete_all\" or \"ignore\" to apply or skip it".into(),
                    ),
                ),
            }
            Ok(())
        }
        // A logical decoding message carries no row.
        Some(Scalar::Text(op)) if op == "m" => {
            out.rows.ignored += 1;
            Ok(())
        }
        Some(Scalar::Text(op)) => {
            out.reject(
                i,
                (
                    Stage::Decode,
                    format!("unknown change event operation `op` = \"{op}\" (expected c, r, u, d, t or m)"),
                ),
            );
            Ok(())
        }
        _ => {
            out.reject(
                i,
                (
                    Stage::Decode,
                    "not a Debezium change event: no `op` string (is the envelope unwrapped by an ExtractNewRecordState transform? then use mode = \"upsert\")".into(),
                ),
            );
            Ok(())
        }
    }
}

/// A tombstone's delete row, kept unless a newer tombstone of its key already has one.
fn delete_row(
    m: &Mapping,
    plan: &Plan,
    out: &mut MappingRows<'_>,
    i: usize,
    p: &Parsed<'_>,
) -> Result<(), ()> {
    let start = out.rows.deletes.next_start();
    let row = Row {
        m,
        plan,
        p,
        with_ord: false,
    };
    match row.write(
        plan.keys.iter().copied(),
        &mut out.rows.deletes.data,
        &mut out.key,
        out.binary,
        out.sorted.then_some(&mut out.sort),
    ) {
        Err(Miss::Text) => return Err(()),
        Err(Miss::Reject(failure)) => {
            out.rows.deletes.drop_from(start);
            out.reject(i, failure);
        }
        Ok(()) => {
            let sorted = out.sorted;
            let state = out.states.slot(if sorted {
                &out.sort
            } else {
                out.key.as_bytes()
            });
            if matches!(state, Some(KeyState::Done)) {
                out.rows.deletes.drop_from(start);
            } else {
                out.rows.deletes.keep(i);
                *state = Some(KeyState::Done);
            }
        }
    }
    Ok(())
}

/// A record's row for the INSERT: every row of an insert or accumulate mapping (an accumulate
/// row also folded into its key's reduction); for an upsert, the newest row of its key (every
/// candidate after the newest tombstone with a version guard).
fn upsert_row(
    m: &Mapping,
    plan: &Plan,
    out: &mut MappingRows<'_>,
    i: usize,
    p: &Parsed<'_>,
) -> Result<(), ()> {
    let start = out.rows.upserts.next_start();
    let row = Row {
        m,
        plan,
        p,
        with_ord: !plan.direct,
    };
    match row.write(
        0..m.columns.len(),
        &mut out.rows.upserts.data,
        &mut out.key,
        out.binary,
        (out.sorted || out.agg.is_some()).then_some(&mut out.sort),
    ) {
        Ok(()) => {}
        Err(Miss::Text) => return Err(()),
        Err(Miss::Reject(failure)) => {
            out.rows.upserts.drop_from(start);
            out.reject(i, failure);
            return Ok(());
        }
    }
    let upserts = &mut out.rows.upserts;
    if m.mode != Mode::Upsert {
        if let Some(agg) = &mut out.agg {
            agg.fold(&out.sort, &upserts.data, start, i, p.record.offset);
        }
        upserts.keep(i);
        return Ok(());
    }
    let sorted = out.sorted;
    let state = out.states.slot(if sorted {
        &out.sort
    } else {
        out.key.as_bytes()
    });
    match state {
        None if sorted => {
            upserts.keep_sorted(i, &out.sort);
            *state = Some(KeyState::SeekingDelete);
        }
        None => {
            upserts.keep(i);
            *state = Some(if m.only_if_newer.is_some() {
                KeyState::Collecting
            } else {
                KeyState::SeekingDelete
            });
        }
        Some(KeyState::Collecting) => upserts.keep(i),
        Some(_) => upserts.drop_from(start),
    }
    Ok(())
}
