//! The rows of a decoded batch: per mapping, the COPY data of its upserts and deletes, each row
//! traceable to its record, and the records no mapping could apply.

use std::ops::Range;

use crate::decode::Rejected;

/// Rows in COPY text or binary format (without the binary header and trailer), each traceable to
/// its record.
#[derive(Debug, Default)]
pub struct RowSet {
    pub data: Vec<u8>,
    ends: Vec<usize>,
    /// Batch index of the record each row came from.
    pub records: Vec<usize>,
    /// In batches reduced on sort keys ([`TableRows::sorted`]): each row's sort key
    /// ([`super::binary::sort_key`] of its key columns), ending at `key_ends`.
    keys: Vec<u8>,
    key_ends: Vec<usize>,
}

impl RowSet {
    /// No rows (the row set of a step without COPY data).
    pub const EMPTY: RowSet = RowSet {
        data: Vec::new(),
        ends: Vec::new(),
        records: Vec::new(),
        keys: Vec::new(),
        key_ends: Vec::new(),
    };

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The COPY data of rows `range`.
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        let start = if range.start == 0 {
            0
        } else {
            self.ends[range.start - 1]
        };
        let end = if range.end == 0 {
            0
        } else {
            self.ends[range.end - 1]
        };
        &self.data[start..end]
    }

    pub(super) fn reserve(&mut self, rows: usize, bytes: usize) {
        self.data.reserve(bytes);
        self.ends.reserve(rows);
        self.records.reserve(rows);
    }

    /// Where the next row's text starts; rows are written straight into `data`, then kept
    /// ([`Self::keep`]) or dropped ([`Self::drop_from`]).
    pub(super) fn next_start(&self) -> usize {
        self.data.len()
    }

    /// Ends the row written since the last kept one, as the row of `record`.
    pub(super) fn keep(&mut self, record: usize) {
        self.ends.push(self.data.len());
        self.records.push(record);
    }

    /// Drops the text written from `start` on (a row that failed or that a newer one replaces).
    pub(super) fn drop_from(&mut self, start: usize) {
        self.data.truncate(start);
    }

    /// Ends the row written since the last kept one, as the row of `record`, with its sort key.
    pub(super) fn keep_sorted(&mut self, record: usize, key: &[u8]) {
        self.keep(record);
        self.keys.extend_from_slice(key);
        self.key_ends.push(self.keys.len());
    }

    /// Puts the rows in the order of their sort keys, which are unique. False, with the rows left
    /// as they are, if not every row has a sort key.
    pub(super) fn sort_by_keys(&mut self) -> bool {
        if self.key_ends.len() != self.len() {
            debug_assert!(
                false,
                "{} sort keys for {} rows",
                self.key_ends.len(),
                self.len()
            );
            return false;
        }
        let key = |row: usize| {
            let start = if row == 0 { 0 } else { self.key_ends[row - 1] };
            &self.keys[start..self.key_ends[row]]
        };
        // The first 16 bytes as one integer (zero-padded, which keeps the order) decide almost
        // every comparison; only keys that share them are compared in full.
        let prefix = |key: &[u8]| {
            let mut bytes = [0u8; 16];
            let n = key.len().min(16);
            bytes[..n].copy_from_slice(&key[..n]);
            u128::from_be_bytes(bytes)
        };
        let mut order: Vec<(u128, usize)> = (0..self.len()).map(|r| (prefix(key(r)), r)).collect();
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(a.1).cmp(key(b.1))));
        let mut sorted = RowSet::default();
        sorted.reserve(order.len(), self.data.len());
        sorted.keys.reserve(self.keys.len());
        sorted.key_ends.reserve(order.len());
        for (_, row) in order {
            sorted.data.extend_from_slice(self.bytes(row..row + 1));
            sorted.keep_sorted(self.records[row], key(row));
        }
        *self = sorted;
        true
    }
}

impl RowSet {
    /// Puts the rows in the opposite order (the walk is newest first; a direct insert goes in
    /// offset order).
    pub(super) fn reverse(&mut self) {
        debug_assert!(
            self.key_ends.is_empty(),
            "reversing rows that carry sort keys"
        );
        let mut reversed = RowSet::default();
        reversed.reserve(self.len(), self.data.len());
        for row in (0..self.len()).rev() {
            reversed.data.extend_from_slice(self.bytes(row..row + 1));
            reversed.keep(self.records[row]);
        }
        *self = reversed;
    }
}

/// The rows of one mapping for one batch.
#[derive(Debug, Default)]
pub struct TableRows {
    pub mapping: usize,
    /// Rows for the INSERT (all columns, then the record offset as `kps_ord` unless
    /// [`Self::unordered`]).
    pub upserts: RowSet,
    /// Key rows for the DELETE of tombstones.
    pub deletes: RowSet,
    /// Tombstones skipped by `tombstone = "ignore"`.
    pub ignored: usize,
    /// Whether both row sets are in binary COPY format (else text).
    pub binary: bool,
    /// The upserts hold one row per key, in key order: they need no `DISTINCT ON` (see
    /// `Plan::sorted` in the decoder). For an accumulate mapping: [`Self::per_key`] holds the
    /// batch reduced per key, to be sent instead of the upserts; the writer clears it to send
    /// the per-record rows for the server to reduce.
    pub sorted: bool,
    /// Accumulate mode: one row per key, in key order, each the reduction of the key's per-record
    /// rows in [`Self::upserts`] (`kps_ord` its newest offset, and its newest record in
    /// `records`); empty where the batch is reduced by the server (see `encode::aggregate`).
    /// A rejected row stands for several records: they are found among the per-record rows.
    pub per_key: RowSet,
    /// The upserts (an insert mapping's rows) carry no `kps_ord` and are in offset order.
    pub unordered: bool,
    /// The upserts go by `COPY` straight into the table, with no stage and no `INSERT … SELECT`;
    /// the writer clears it to send a batch through the stage instead.
    pub direct: bool,
    /// A change stream's truncate (`truncate = "delete_all"`) falls in this batch: every row of
    /// the table is deleted first; the rows here come from the events after it.
    pub truncate: bool,
}

/// A decoded batch.
#[derive(Debug, Default)]
pub struct Decoded {
    pub tables: Vec<TableRows>,
    pub rejected: Vec<Rejected>,
}
