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
        plan_sorted: bool,
    ) -> Self {
        let mut rows = TableRows {
            mapping,
            binary: binary.is_some(),
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
            sorted: binary.is_some() && plan_sorted,
            binary,
        }
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
    let index = out.rows.mapping;
    let binary = out.binary;
    let rows = &mut out.rows;
    let key = &mut out.key;
    key.clear();
    let sort = &mut out.sort;
    sort.clear();
    let sorted = out.sorted;
    let mut reject = |(stage, error): Failure| {
        out.rejected.push(Rejected {
            record: i,
            mapping: index,
            stage,
            error,
        })
    };
    if p.record.value().is_none() {
        match m.tombstone {
            Tombstone::Ignore => rows.ignored += 1,
            Tombstone::BadRecord => reject((
                Stage::Decode,
                "tombstone (null value) is not accepted by this mapping".into(),
            )),
            Tombstone::Delete => {
                let start = rows.deletes.next_start();
                let row = Row {
                    m,
                    plan,
                    p,
                    with_ord: false,
                };
                match row.write(
                    plan.keys.iter().copied(),
                    &mut rows.deletes.data,
                    key,
                    binary,
                    sorted.then_some(&mut *sort),
                ) {
                    Err(Miss::Text) => return Err(()),
                    Err(Miss::Reject(failure)) => {
                        rows.deletes.drop_from(start);
                        reject(failure);
                    }
                    Ok(()) => {
                        let state = out.states.slot(if sorted { sort } else { key.as_bytes() });
                        if matches!(state, Some(KeyState::Done)) {
                            rows.deletes.drop_from(start);
                        } else {
                            rows.deletes.keep(i);
                            *state = Some(KeyState::Done);
                        }
                    }
                }
            }
        }
        return Ok(());
    }
    let start = rows.upserts.next_start();
    let row = Row {
        m,
        plan,
        p,
        with_ord: true,
    };
    match row.write(
        0..m.columns.len(),
        &mut rows.upserts.data,
        key,
        binary,
        sorted.then_some(&mut *sort),
    ) {
        Ok(()) => {}
        Err(Miss::Text) => return Err(()),
        Err(Miss::Reject(failure)) => {
            rows.upserts.drop_from(start);
            reject(failure);
            return Ok(());
        }
    }
    if m.mode != Mode::Upsert {
        rows.upserts.keep(i);
        return Ok(());
    }
    let state = out.states.slot(if sorted { sort } else { key.as_bytes() });
    match state {
        None if sorted => {
            rows.upserts.keep_sorted(i, sort);
            *state = Some(KeyState::SeekingDelete);
        }
        None => {
            rows.upserts.keep(i);
            *state = Some(if m.only_if_newer.is_some() {
                KeyState::Collecting
            } else {
                KeyState::SeekingDelete
            });
        }
        Some(KeyState::Collecting) => rows.upserts.keep(i),
        Some(_) => rows.upserts.drop_from(start),
    }
    Ok(())
}
