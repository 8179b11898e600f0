//! An accumulate mapping's batch reduced to one row per key in the connector, exactly as the
//! server's `GROUP BY` over the batch's rows would reduce it, so that Postgres only merges.
//!
//! Guarantee: the row of each key is the one `SELECT key, sum(c), min(c), max(c),
//! (array_agg(c ORDER BY kps_ord DESC))[1], sum(n) … GROUP BY key` gives over the batch's
//! per-record rows, or there is none and the batch goes per record, for the server to reduce
//! (`TableRows::per_key` stays empty). The per-record rows are still written first and kept:
//! every value is read from the binary field the encoder wrote for it, which holds exactly what
//! the server's input function would make of the record's text, and the diagnosis of rows
//! Postgres rejects bisects those per-record rows, so a bad record is isolated alone.
//!
//! What is reduced here, and how:
//! - key columns, which must compare exactly ([`BinType::sorts_exactly`]: equal bytes exactly
//!   when equal in SQL), and `last`: the value of the highest offset, which the newest-first walk
//!   meets first (NULL too, as `array_agg` keeps it);
//! - `add` and `count` on smallint, integer and bigint: an exact 64-bit sum, written only if it
//!   fits the column (else the batch goes per record and the server reports the overflow as it
//!   does today; so does a sum that leaves the 64-bit range on the way); on numeric: an exact sum of any length with the largest display scale of its
//!   terms ([`decimal`]);
//! - `min` and `max` on integers and timestamptz (microseconds, one instant, one value) and on
//!   numeric (compared by value). Among equal numerics of different scales (`1.0`, `1.00`) the
//!   oldest record's is kept, as the server's hash aggregation over the newest-first stage does.
//!
//! SQL's NULL rules: sums, minimums and maximums skip NULLs and are NULL for a key with no other
//! value; a count counts records (its column is the constant 1).
//!
//! Left to the server (the mapping's batches go per record): text minimums and maximums (the
//! order is the collation's), booleans, uuids and JSON (no `min`/`max` in SQL, or values the
//! server validates), `last` on jsonb and json (the server checks every record's JSON), column
//! types with no binary encoding (so none the connector does not know), keys that do not compare
//! exactly, a batch with a value binary COPY cannot carry (it goes as COPY text), and, decided
//! from the stage's catalog types in `sql`, columns with a type modifier (`numeric(14,2)` rounds
//! each record's value before the server sums them; `varchar(n)` refuses long values).
//!
//! Assumed: a text the server accepts in one record it accepts in any (a `last` value of an
//! older record is not sent). True of a UTF-8 database; in another encoding, a character it
//! cannot hold would make that record a bad record on the per-record path only.

mod decimal;
#[cfg(test)]
mod tests;

use std::ops::Range;

use self::decimal::{Numeric, Sum};
use super::binary::{self, BinType};
use super::rows::RowSet;
use crate::config::{AccumulateOp, Mapping, Mode};
use crate::decode::keys::KeyMap;

/// How one column of an accumulate mapping is reduced per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fold {
    /// The newest record's value: a key column (the same in every record of the key) or `last`.
    Newest,
    Sum(Kind),
    Min(Kind),
    Max(Kind),
}

/// How a column's binary values are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A big-endian integer of this many bytes (smallint, integer, bigint; a timestamptz's
    /// microseconds).
    Int(usize),
    Numeric,
}

/// Each column's [`Fold`] for an accumulate mapping whose binary column types are `types`, if
/// every column can be reduced here exactly; `exact_keys` as for [`BinType::sorts_exactly`].
pub(super) fn plan(m: &Mapping, types: &[BinType], exact_keys: bool) -> Option<Vec<Fold>> {
    if m.mode != Mode::Accumulate || types.len() != m.columns.len() {
        return None;
    }
    let number = |ty: BinType| match ty {
        BinType::Int2 => Some(Kind::Int(2)),
        BinType::Int4 => Some(Kind::Int(4)),
        BinType::Int8 => Some(Kind::Int(8)),
        BinType::Numeric => Some(Kind::Numeric),
        _ => None,
    };
    let ordered = |ty: BinType| match ty {
        BinType::Timestamptz => Some(Kind::Int(8)),
        other => number(other),
    };
    m.columns
        .iter()
        .zip(types)
        .map(|(c, &ty)| {
            if m.key.contains(&c.name) {
                return ty.sorts_exactly(exact_keys).then_some(Fold::Newest);
            }
            match (c.op?, ty) {
                (AccumulateOp::Add | AccumulateOp::Count, _) => number(ty).map(Fold::Sum),
                (AccumulateOp::Min, _) => ordered(ty).map(Fold::Min),
                (AccumulateOp::Max, _) => ordered(ty).map(Fold::Max),
                (AccumulateOp::Last, BinType::Jsonb) => None,
                (AccumulateOp::Last, _) => Some(Fold::Newest),
            }
        })
        .collect()
}

/// One column's value so far for one key: small and `Copy`, since every key of a batch holds
/// one per column.
#[derive(Clone, Copy, Debug)]
enum Acc {
    /// No value yet (or a NULL kept by [`Fold::Newest`]).
    Null,
    /// An integer sum, minimum or maximum.
    Int(i64),
    /// A field's bytes in the per-record rows (the newest value; a numeric minimum or maximum).
    Field { start: u32, len: u32 },
    /// A numeric sum: its index in `Aggregates::sums`.
    Sum(u32),
}

impl Acc {
    /// The field at `range` of the rows' data (which [`Aggregates::fold`] keeps under 4 GiB).
    fn field(range: Range<usize>) -> Self {
        Self::Field {
            start: range.start as u32,
            len: range.len() as u32,
        }
    }
}

/// A key's place in the result.
struct Key {
    /// The newest record of the key (the row's record, for tracing).
    record: usize,
    /// Its offset: the row's `kps_ord`.
    offset: i64,
    /// The key's sort key in `Aggregates::sort_keys`.
    sort: Range<usize>,
}

/// The per-key reduction of one mapping's batch, fed the per-record binary rows newest first.
pub(super) struct Aggregates<'p> {
    folds: &'p [Fold],
    /// Sort key → index in `keys`.
    index: KeyMap<usize>,
    keys: Vec<Key>,
    /// `folds.len()` accumulators per key.
    accs: Vec<Acc>,
    /// The numeric sums of every key and column.
    sums: Vec<Sum>,
    sort_keys: Vec<u8>,
    /// The current row's fields: their bytes' range in the rows' data, `None` for NULL.
    fields: Vec<Option<Range<usize>>>,
    /// False once a value could not be read exactly: the batch then goes per record.
    exact: bool,
    /// Rows folded so far.
    folded: usize,
}

impl<'p> Aggregates<'p> {
    pub(super) fn new(folds: &'p [Fold], records: usize) -> Self {
        Self {
            folds,
            // Room for a key per record (untouched memory costs nothing until used).
            index: KeyMap::with_capacity(records),
            keys: Vec::with_capacity(records),
            accs: Vec::with_capacity(records * folds.len()),
            sums: Vec::new(),
            sort_keys: Vec::with_capacity(records * 16),
            fields: Vec::with_capacity(folds.len()),
            exact: true,
            folded: 0,
        }
    }

    /// Adds the binary row at `data[start..]` (record `record`, at `offset`; its key columns'
    /// sort key `sort`), older than every row added before it.
    pub(super) fn fold(
        &mut self,
        sort: &[u8],
        data: &[u8],
        start: usize,
        record: usize,
        offset: i64,
    ) {
        // Fields are kept as 32-bit positions: a larger batch goes per record.
        if !self.exact || data.len() > u32::MAX as usize || !self.read_fields(data, start) {
            self.exact = false;
            return;
        }
        self.folded += 1;
        let width = self.folds.len();
        let slot = self.index.slot(sort);
        let fresh = slot.is_none();
        let k = match *slot {
            Some(k) => k,
            None => {
                // The newest record of its key: every column starts from its value.
                let k = self.keys.len();
                *slot = Some(k);
                let at = self.sort_keys.len();
                self.sort_keys.extend_from_slice(sort);
                self.keys.push(Key {
                    record,
                    offset,
                    sort: at..self.sort_keys.len(),
                });
                self.accs.resize(self.accs.len() + width, Acc::Null);
                k
            }
        };
        for (c, fold) in self.folds.iter().enumerate() {
            let Some(field) = self.fields[c].clone() else {
                continue;
            };
            let acc = &mut self.accs[k * width + c];
            let kept = match *fold {
                Fold::Newest => {
                    if fresh {
                        *acc = Acc::field(field);
                    }
                    true
                }
                Fold::Sum(kind) | Fold::Min(kind) | Fold::Max(kind) => {
                    combine(*fold, kind, acc, &mut self.sums, data, field)
                }
            };
            if !kept {
                self.exact = false;
                return;
            }
        }
    }

    /// Each field of the row at `data[start..]`; false if the row does not hold one field per
    /// column, then the record offset.
    fn read_fields(&mut self, data: &[u8], start: usize) -> bool {
        self.fields.clear();
        let Some(count) = data.get(start..start + 2) else {
            return false;
        };
        if usize::from(u16::from_be_bytes([count[0], count[1]])) != self.folds.len() + 1 {
            return false;
        }
        let mut at = start + 2;
        for _ in 0..self.folds.len() {
            let Some(len) = data.get(at..at + 4) else {
                return false;
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            at += 4;
            if len < 0 {
                self.fields.push(None);
                continue;
            }
            let end = at + len as usize;
            if end > data.len() {
                return false;
            }
            self.fields.push(Some(at..end));
            at = end;
        }
        true
    }

    /// The batch's rows, one per key in key order with `kps_ord` the key's newest offset; `None`
    /// when the batch must go per record (a value not read exactly, a sum too large for its
    /// column or for the binary format).
    pub(super) fn finish(self, data: &[u8]) -> Option<RowSet> {
        if !self.exact {
            return None;
        }
        let width = self.folds.len();
        // The rows are written in the order the keys were met, which reads the accumulators and
        // the per-record rows front to back, then copied in key order from that compact buffer.
        let mut met = RowSet::default();
        let row_bytes = data.len() / self.folded.max(1);
        met.reserve(self.keys.len(), row_bytes * self.keys.len());
        for (k, key) in self.keys.iter().enumerate() {
            let at = binary::start_row(&mut met.data);
            for (c, fold) in self.folds.iter().enumerate() {
                let acc = self.accs[k * width + c];
                if !write(*fold, acc, &self.sums, data, &mut met.data) {
                    return None;
                }
            }
            binary::int8(&mut met.data, key.offset);
            binary::end_row(&mut met.data, at, (width + 1) as u16);
            met.keep(key.record);
        }
        let mut rows = RowSet::default();
        rows.reserve(met.len(), met.data.len());
        for k in self.key_order() {
            rows.data.extend_from_slice(met.bytes(k..k + 1));
            rows.keep(met.records[k]);
        }
        Some(rows)
    }

    /// The keys in the order of their sort keys (which are unique): the first 16 bytes as one
    /// integer (zero-padded, which keeps the order) decide almost every comparison.
    fn key_order(&self) -> Vec<usize> {
        let sort = |k: usize| &self.sort_keys[self.keys[k].sort.clone()];
        let prefix = |key: &[u8]| {
            let mut bytes = [0u8; 16];
            let n = key.len().min(16);
            bytes[..n].copy_from_slice(&key[..n]);
            u128::from_be_bytes(bytes)
        };
        let mut order: Vec<(u128, usize)> =
            (0..self.keys.len()).map(|k| (prefix(sort(k)), k)).collect();
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| sort(a.1).cmp(sort(b.1))));
        order.into_iter().map(|(_, k)| k).collect()
    }
}

/// Folds the field at `data[field]` into `acc` (a numeric sum's in `sums`); false if it cannot
/// be read exactly, or an integer sum leaves the 64-bit range (no integer column holds it).
fn combine(
    fold: Fold,
    kind: Kind,
    acc: &mut Acc,
    sums: &mut Vec<Sum>,
    data: &[u8],
    field: Range<usize>,
) -> bool {
    let bytes = &data[field.clone()];
    match kind {
        Kind::Int(width) => {
            let Some(v) = int(bytes, width) else {
                return false;
            };
            *acc = match (fold, *acc) {
                (_, Acc::Null) => Acc::Int(v),
                (Fold::Sum(_), Acc::Int(s)) => match s.checked_add(v) {
                    Some(s) => Acc::Int(s),
                    None => return false,
                },
                // Equal integers are one value: which one is kept does not matter.
                (Fold::Min(_), Acc::Int(m)) => Acc::Int(m.min(v)),
                (Fold::Max(_), Acc::Int(m)) => Acc::Int(m.max(v)),
                _ => return false,
            };
            true
        }
        Kind::Numeric => {
            let Some(n) = Numeric::parse(bytes) else {
                return false;
            };
            match (fold, *acc) {
                (Fold::Sum(_), Acc::Null) => {
                    let mut sum = Sum::default();
                    sum.add(&n);
                    *acc = Acc::Sum(sums.len() as u32);
                    sums.push(sum);
                }
                (Fold::Sum(_), Acc::Sum(i)) => sums[i as usize].add(&n),
                (Fold::Min(_) | Fold::Max(_), Acc::Null) => *acc = Acc::field(field),
                (Fold::Min(_) | Fold::Max(_), Acc::Field { start, len }) => {
                    let best = start as usize..(start + len) as usize;
                    let Some(current) = Numeric::parse(&data[best]) else {
                        return false;
                    };
                    let order = n.cmp_value(&current);
                    // Rows come newest first: on a tie the older value replaces the newer.
                    let replace = match fold {
                        Fold::Min(_) => order.is_le(),
                        _ => order.is_ge(),
                    };
                    if replace {
                        *acc = Acc::field(field);
                    }
                }
                _ => return false,
            }
            true
        }
    }
}

/// A big-endian integer field of `width` bytes.
fn int(bytes: &[u8], width: usize) -> Option<i64> {
    if bytes.len() != width {
        return None;
    }
    Some(match width {
        2 => i16::from_be_bytes(bytes.try_into().ok()?).into(),
        4 => i32::from_be_bytes(bytes.try_into().ok()?).into(),
        8 => i64::from_be_bytes(bytes.try_into().ok()?),
        _ => return None,
    })
}

/// Appends a key's value of one column as a binary field; false if it does not fit the column.
fn write(fold: Fold, acc: Acc, sums: &[Sum], data: &[u8], out: &mut Vec<u8>) -> bool {
    match acc {
        Acc::Null => binary::null(out),
        Acc::Field { start, len } => {
            out.extend_from_slice(&(len as i32).to_be_bytes());
            out.extend_from_slice(&data[start as usize..(start + len) as usize]);
        }
        Acc::Sum(i) => return sums[i as usize].write(out),
        Acc::Int(v) => {
            let (Fold::Sum(Kind::Int(width))
            | Fold::Min(Kind::Int(width))
            | Fold::Max(Kind::Int(width))) = fold
            else {
                return false;
            };
            // The value's low `width` bytes, if it fits in them.
            let fits = match width {
                2 => i16::try_from(v).is_ok(),
                4 => i32::try_from(v).is_ok(),
                8 => true,
                _ => false,
            };
            if !fits {
                return false;
            }
            out.extend_from_slice(&(width as i32).to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes()[8 - width..]);
        }
    }
    true
}
