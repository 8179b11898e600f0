//! The newest-first reduction of one mapping's rows: for an upsert, the newest row of each key
//! and the delete of an older tombstone; with a version guard, every candidate after the newest
//! tombstone; for inserts, every row.
//!
//! Guarantee: for upserts, the rows kept leave the table in the state that applying every good
//! record in offset order would leave.

use super::binary::BinType;
use super::decoder::Plan;
use super::row::{Miss, Row};
use super::rows::TableRows;
use crate::config::{Mapping, Mode, Tombstone};
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
}

impl<'d> MappingRows<'d> {
    pub(super) fn new(
        mapping: usize,
        records: &[Record],
        binary: Option<&'d [BinType]>,
        plan: &Plan,
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

/// A record's row for the INSERT: every row of an insert or accumulate mapping; for an upsert,
/// the newest row of its key (every candidate after the newest tombstone with a version guard).
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
        out.sorted.then_some(&mut out.sort),
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
