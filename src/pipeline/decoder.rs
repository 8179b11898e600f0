//! Records → rows: payload decoding, explicit conversions, in-batch reduction, COPY rows
//! (binary where every column allows it, else text).
//!
//! Guarantees: every record of a batch is either turned into rows or reported as rejected with
//! its stage and reason (never silently dropped); for upserts, the rows leave the table in the
//! state that applying every good record in offset order would leave.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;

use serde_json::Value;

use super::binary::{self, BinType};
use super::json::{scalar, Doc, Scalar, Scanned};
use super::keys::KeyMap;
use super::scan::Member;
use crate::config::{Column, ColumnSource, Format, KafkaMeta, Mapping, Mode, Tombstone};
use crate::convert::{self, ColumnType, Input};
use crate::record::Record;

/// Where in the path a record failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The payload or key could not be read (invalid JSON, missing required field, tombstone).
    Decode,
    /// A value could not be converted to its column type.
    Convert,
    /// Postgres rejected the row (data exception, constraint violation).
    Database,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Convert => "convert",
            Self::Database => "database",
        }
    }
}

/// A record that a mapping cannot apply.
#[derive(Clone, Debug)]
pub struct Rejected {
    /// Index of the record in the batch.
    pub record: usize,
    /// Index of the mapping.
    pub mapping: usize,
    pub stage: Stage,
    pub error: String,
}

/// Rows in COPY text or binary format (without the binary header and trailer), each traceable to
/// its record.
#[derive(Debug, Default)]
pub struct RowSet {
    pub data: Vec<u8>,
    ends: Vec<usize>,
    /// Batch index of the record each row came from.
    pub records: Vec<usize>,
    /// In batches reduced on sort keys ([`TableRows::sorted`]): each row's sort key
    /// ([`binary::sort_key`] of its key columns), ending at `key_ends`.
    keys: Vec<u8>,
    key_ends: Vec<usize>,
}

impl RowSet {
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

    fn reserve(&mut self, rows: usize, bytes: usize) {
        self.data.reserve(bytes);
        self.ends.reserve(rows);
        self.records.reserve(rows);
    }

    /// Where the next row's text starts; rows are written straight into `data`, then kept
    /// ([`Self::keep`]) or dropped ([`Self::drop_from`]).
    fn next_start(&self) -> usize {
        self.data.len()
    }

    /// Ends the row written since the last kept one, as the row of `record`.
    fn keep(&mut self, record: usize) {
        self.ends.push(self.data.len());
        self.records.push(record);
    }

    /// Drops the text written from `start` on (a row that failed or that a newer one replaces).
    fn drop_from(&mut self, start: usize) {
        self.data.truncate(start);
    }

    /// Ends the row written since the last kept one, as the row of `record`, with its sort key.
    fn keep_sorted(&mut self, record: usize, key: &[u8]) {
        self.keep(record);
        self.keys.extend_from_slice(key);
        self.key_ends.push(self.keys.len());
    }

    /// Puts the rows in the order of their sort keys, which are unique. False, with the rows left
    /// as they are, if not every row has a sort key.
    fn sort_by_keys(&mut self) -> bool {
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

/// The rows of one mapping for one batch.
#[derive(Debug, Default)]
pub struct TableRows {
    pub mapping: usize,
    /// Rows for the INSERT (all columns, then the record offset as `kps_ord`).
    pub upserts: RowSet,
    /// Key rows for the DELETE of tombstones.
    pub deletes: RowSet,
    /// Tombstones skipped by `tombstone = "ignore"`.
    pub ignored: usize,
    /// Whether both row sets are in binary COPY format (else text).
    pub binary: bool,
    /// The upserts hold one row per key, in key order: they need no `DISTINCT ON` (see
    /// [`Plan::sorted`]).
    pub sorted: bool,
}

/// A decoded batch.
#[derive(Debug, Default)]
pub struct Decoded {
    pub tables: Vec<TableRows>,
    pub rejected: Vec<Rejected>,
}

/// Decodes batches for every configured mapping.
#[derive(Debug)]
pub struct Decoder {
    mappings: Arc<[Mapping]>,
    /// Per mapping, in the same order.
    plans: Vec<Plan>,
    by_topic: HashMap<String, Vec<usize>>,
}

/// A mapping's columns as the decoder walks them, worked out once instead of per record.
#[derive(Debug)]
struct Plan {
    /// Indexes of the key columns, in COPY order (the rows of a delete).
    keys: Vec<usize>,
    /// Whether each column is part of the key.
    is_key: Vec<bool>,
    /// Each column's binary COPY type, when every column has one (else rows are COPY text).
    binary: Option<Vec<BinType>>,
    /// An upsert without a version guard whose key columns all sort exactly
    /// ([`BinType::sorts_exactly`]: integers, uuids; text and timestamps where the table keeps
    /// them as written):
    /// in a binary batch the reduction keys on the values written (equal here exactly when equal
    /// in SQL, unlike their texts: `7` and `007`, a uuid in either case), so one row per key is
    /// left, and the rows go in key order. Postgres then neither sorts nor removes duplicates,
    /// and writers that share keys still lock them in one order. Otherwise rows go unsorted,
    /// through `DISTINCT ON`.
    sorted: bool,
}

impl Plan {
    fn sorts(m: &Mapping, keys: &[usize], binary: Option<&[BinType]>, exact_keys: bool) -> bool {
        let exact = |types: &[BinType]| keys.iter().all(|&k| types[k].sorts_exactly(exact_keys));
        m.mode == Mode::Upsert && m.only_if_newer.is_none() && binary.is_some_and(exact)
    }

    fn new(m: &Mapping, binary: Option<Vec<BinType>>, exact_keys: bool) -> Self {
        let is_key: Vec<bool> = m.columns.iter().map(|c| m.key.contains(&c.name)).collect();
        let keys: Vec<usize> = (0..m.columns.len()).filter(|&i| is_key[i]).collect();
        let binary = binary.filter(|types| types.len() == m.columns.len());
        Self {
            sorted: Self::sorts(m, &keys, binary.as_deref(), exact_keys),
            keys,
            is_key,
            binary,
        }
    }
}

/// A record's value and key, parsed once for every mapping of its topic.
struct Parsed<'r> {
    record: &'r Record,
    json: Option<Result<Doc<'r>, String>>,
    key_json: Option<Result<Doc<'r>, String>>,
}

type Failure = (Stage, String);

/// Why a row was not written.
enum Miss {
    /// The record cannot be applied.
    Reject(Failure),
    /// A value cannot be written in binary exactly as its text would be read: the batch goes as
    /// COPY text.
    Text,
}

impl From<Failure> for Miss {
    fn from(failure: Failure) -> Self {
        Self::Reject(failure)
    }
}

/// Per-key progress of the newest-first reduction.
enum KeyState {
    /// The newest upsert is emitted; an older tombstone still needs its delete.
    SeekingDelete,
    /// Version-guarded: every upsert newer than the newest tombstone is a candidate.
    Collecting,
    Done,
}

impl Decoder {
    /// A decoder that writes every row as COPY text.
    pub fn new(mappings: Arc<[Mapping]>) -> Self {
        Self::with_binary(mappings, Vec::new())
    }

    /// `binary[i]`, when present, holds the binary COPY type of each column of mapping `i`: its
    /// rows are then written in binary, or as text for a batch with a value binary cannot carry.
    pub fn with_binary(mappings: Arc<[Mapping]>, mut binary: Vec<Option<Vec<BinType>>>) -> Self {
        let mut by_topic: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, m) in mappings.iter().enumerate() {
            by_topic.entry(m.topic.clone()).or_default().push(i);
        }
        binary.resize(mappings.len(), None);
        let plans = mappings
            .iter()
            .zip(binary)
            .map(|(m, types)| Plan::new(m, types, false))
            .collect();
        Self {
            mappings,
            plans,
            by_topic,
        }
    }

    /// Declares, per mapping, whether the table keeps its key values as written (see
    /// [`BinType::sorts_exactly`]): its upserts can then go sorted ([`Plan::sorted`]) with text
    /// and timestamp keys too.
    pub fn with_exact_keys(mut self, exact: &[bool]) -> Self {
        for ((plan, m), &exact) in self.plans.iter_mut().zip(self.mappings.iter()).zip(exact) {
            plan.sorted = Plan::sorts(m, &plan.keys, plan.binary.as_deref(), exact);
        }
        self
    }

    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// Decodes one partition's batch (records in offset order) for every mapping of its topic,
    /// leaving out `(mapping, record)` pairs already rejected by the database.
    pub fn decode(&self, records: &[Record], excluded: &HashSet<(usize, usize)>) -> Decoded {
        let Some(first) = records.first() else {
            return Decoded::default();
        };
        let Some(indexes) = self.by_topic.get(&*first.tp.topic) else {
            return Decoded::default();
        };
        // Mappings that write this batch as COPY text: those without binary types, and any
        // whose batch holds a value binary cannot carry (found on the way; the batch is then
        // decoded again).
        let mut text: Vec<bool> = indexes
            .iter()
            .map(|&i| self.plans[i].binary.is_none())
            .collect();
        loop {
            match self.decode_chunks(records, excluded, indexes, &text) {
                Ok(decoded) => return decoded,
                Err(k) => text[k] = true,
            }
        }
    }

    /// Walks the batch newest first, [`CHUNK`] records at a time: each chunk is scanned, then
    /// every mapping's rows are written from it while its payloads and members are still in the
    /// core's cache (scanning the whole batch first left them to be fetched from memory again).
    /// `Err(k)` when mapping `indexes[k]` needs COPY text for this batch.
    fn decode_chunks(
        &self,
        records: &[Record],
        excluded: &HashSet<(usize, usize)>,
        indexes: &[usize],
        text: &[bool],
    ) -> Result<Decoded, usize> {
        let value_json = indexes
            .iter()
            .any(|&i| self.mappings[i].format == Format::Json);
        let key_json = indexes.iter().any(|&i| {
            self.mappings[i]
                .columns
                .iter()
                .any(|c| matches!(&c.source, ColumnSource::Key(p) if !p.is_empty()))
        });
        let mut outs: Vec<MappingRows<'_>> = indexes
            .iter()
            .zip(text)
            .map(|(&i, &text)| {
                let binary = self.plans[i].binary.as_deref().filter(|_| !text);
                MappingRows::new(i, records, binary, self.plans[i].sorted)
            })
            .collect();
        // A chunk's top-level members go into one buffer, reused for every chunk.
        let mut members = Vec::with_capacity(CHUNK.min(records.len()) * 8);
        let mut end = records.len();
        while end > 0 {
            let start = end.saturating_sub(CHUNK);
            members.clear();
            let chunk = &records[start..end];
            let scanned: Vec<_> = chunk
                .iter()
                .map(|r| scan(r, value_json, key_json, &mut members))
                .collect();
            let parsed: Vec<Parsed<'_>> = chunk
                .iter()
                .zip(scanned)
                .map(|(record, (value, key))| Parsed {
                    record,
                    json: value.map(|v| v.map(|s| s.doc(&members))),
                    key_json: key.map(|k| k.map(|s| s.doc(&members))),
                })
                .collect();
            for (k, out) in outs.iter_mut().enumerate() {
                for (j, p) in parsed.iter().enumerate().rev() {
                    if excluded.contains(&(out.rows.mapping, start + j)) {
                        continue;
                    }
                    self.decode_record(out, start + j, p).map_err(|()| k)?;
                }
            }
            end = start;
        }
        let mut decoded = Decoded::default();
        for mut out in outs {
            if out.sorted {
                out.rows.sorted = out.rows.upserts.sort_by_keys();
            }
            decoded.rejected.append(&mut out.rejected);
            decoded.tables.push(out.rows);
        }
        Ok(decoded)
    }

    /// Record `i`'s rows for one mapping, its reject, or `Err` when a value cannot be written in
    /// binary (the mapping's batch then goes as COPY text).
    fn decode_record(&self, out: &mut MappingRows<'_>, i: usize, p: &Parsed<'_>) -> Result<(), ()> {
        let index = out.rows.mapping;
        let (m, plan, binary) = (&self.mappings[index], &self.plans[index], out.binary);
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
}

/// Records scanned per step of a batch: about 50 KB of payloads and their members, well inside
/// a core's second-level cache. Unit tests use a small odd size, so that their batches cross
/// chunk boundaries.
const CHUNK: usize = if cfg!(test) { 7 } else { 256 };

/// One mapping's rows and rejects while a batch is decoded, newest record first.
struct MappingRows<'d> {
    rows: TableRows,
    rejected: Vec<Rejected>,
    /// Per-key progress of the reduction.
    states: KeyMap<KeyState>,
    /// The current record's key text.
    key: String,
    /// The current record's sort key, on which the rows are reduced when they go sorted
    /// ([`Plan::sorted`]) instead of on `key`.
    sort: Vec<u8>,
    sorted: bool,
    /// Column types when the rows are written in binary.
    binary: Option<&'d [BinType]>,
}

impl<'d> MappingRows<'d> {
    fn new(
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

/// A record's value and key, validated as JSON where a mapping reads them as JSON.
type Scans<'r> = (
    Option<Result<Scanned<'r>, String>>,
    Option<Result<Scanned<'r>, String>>,
);

fn scan<'r>(
    record: &'r Record,
    value_json: bool,
    key_json: bool,
    members: &mut Vec<Member<'r>>,
) -> Scans<'r> {
    let value = match (record.value(), value_json) {
        (Some(bytes), true) => {
            Some(Scanned::new(bytes, members).map_err(|e| format!("value is not valid JSON: {e}")))
        }
        _ => None,
    };
    let key = match (record.key(), key_json) {
        (Some(bytes), true) => {
            Some(Scanned::new(bytes, members).map_err(|e| format!("key is not valid JSON: {e}")))
        }
        _ => None,
    };
    (value, key)
}

/// One record's row for one mapping.
struct Row<'a> {
    m: &'a Mapping,
    plan: &'a Plan,
    p: &'a Parsed<'a>,
    /// Whether the record offset follows the columns (as `kps_ord`).
    with_ord: bool,
}

impl<'a> Row<'a> {
    /// Appends one COPY row for `columns` (indexes into the mapping's columns) to `line`, in
    /// binary with `binary`'s column types or else as text, and the key columns' text to `key`
    /// for the reduction. On an error, part of a row may have been written: the caller drops it.
    fn write(
        &self,
        columns: impl Iterator<Item = usize>,
        line: &mut Vec<u8>,
        key: &mut String,
        binary: Option<&[BinType]>,
        mut sort: Option<&mut Vec<u8>>,
    ) -> Result<(), Miss> {
        let (m, p) = (self.m, self.p);
        let count_at = binary.map(|_| binary::start_row(line));
        let mut fields = 0u16;
        for c in columns {
            let column = &m.columns[c];
            if fields > 0 && binary.is_none() {
                line.push(b'\t');
            }
            fields += 1;
            if let Some(types) = binary {
                let at = line.len();
                if let Some(text) = self.direct(column, types[c], line) {
                    if self.plan.is_key[c] {
                        match sort.as_deref_mut() {
                            Some(sort) => {
                                binary::sort_key(types[c], &line[at..], sort);
                            }
                            None => {
                                key.push_str(text);
                                key.push('\u{1f}');
                            }
                        }
                    }
                    continue;
                }
                line.truncate(at);
            }
            let text = extract(m, p, &column.source, column.ty, column.name.as_str())?;
            let at = line.len();
            let sorted_key = self.plan.is_key[c] && sort.is_some();
            if self.plan.is_key[c] && !sorted_key {
                key.push_str(text.as_deref().unwrap_or("\u{0}"));
                key.push('\u{1f}');
            }
            match (text, binary) {
                (None, _) if column.required => {
                    return Err(Miss::Reject((
                        Stage::Decode,
                        format!("required column `{}` is missing or null", column.name),
                    )))
                }
                (None, Some(_)) => binary::null(line),
                (None, None) => line.extend_from_slice(b"\\N"),
                (Some(text), Some(types)) => {
                    if !binary::encode(types[c], &text, line) {
                        return Err(Miss::Text);
                    }
                }
                (Some(text), None) => copy_escape(line, &text)
                    .map_err(|e| (Stage::Convert, format!("column `{}`: {e}", column.name)))?,
            }
            if let (true, Some(sort), Some(types)) = (sorted_key, sort.as_deref_mut(), binary) {
                binary::sort_key(types[c], &line[at..], sort);
            }
        }
        match count_at {
            Some(at) => {
                if self.with_ord {
                    binary::int8(line, p.record.offset);
                    fields += 1;
                }
                binary::end_row(line, at, fields);
            }
            None => {
                if self.with_ord {
                    line.push(b'\t');
                    line.extend_from_slice(itoa::Buffer::new().format(p.record.offset).as_bytes());
                }
                line.push(b'\n');
            }
        }
        Ok(())
    }

    /// Writes a payload field in binary straight from its JSON text, where the binary encoder
    /// accepting the text proves that [`extract`] would pass the same text on unchanged (its own
    /// checks accept everything the encoder does): the value is parsed once instead of twice.
    /// `None` leaves the value to the checked path; `line` may then hold part of a value, for the
    /// caller to cut.
    fn direct(&self, column: &Column, bin: BinType, line: &mut Vec<u8>) -> Option<&'a str> {
        let ColumnSource::Value(path) = &column.source else {
            return None;
        };
        let Some(Ok(doc)) = self
            .p
            .json
            .as_ref()
            .filter(|_| self.m.format == Format::Json)
        else {
            return None;
        };
        let raw = doc.get(path)?;
        let text = match (column.ty, bin, scalar(raw)) {
            (
                None | Some(ColumnType::Timestamptz),
                BinType::Timestamptz,
                Scalar::Text(Cow::Borrowed(t)),
            )
            | (None | Some(ColumnType::Text), BinType::Text, Scalar::Text(Cow::Borrowed(t)))
            | (None | Some(ColumnType::Uuid), BinType::Uuid, Scalar::Text(Cow::Borrowed(t)))
            | (None | Some(ColumnType::Bigint), BinType::Int8, Scalar::Number(t))
            | (None | Some(ColumnType::Integer), BinType::Int4, Scalar::Number(t))
            | (
                None | Some(ColumnType::Numeric),
                BinType::Numeric,
                Scalar::Number(t) | Scalar::Text(Cow::Borrowed(t)),
            ) => t,
            _ => return None,
        };
        binary::encode(bin, text, line).then_some(text)
    }
}

/// The column's value as text for its type; `None` is SQL NULL. Borrowed from the record
/// whenever no conversion changes it.
fn extract<'a>(
    m: &Mapping,
    p: &'a Parsed<'a>,
    source: &'a ColumnSource,
    ty: Option<ColumnType>,
    name: &str,
) -> Result<Option<Cow<'a, str>>, Failure> {
    let r = p.record;
    let convert_error = |e: String| (Stage::Convert, format!("column `{name}`: {e}"));
    let from_value = |v: &Value| -> Result<Option<Cow<'a, str>>, Failure> {
        if v.is_null() {
            return Ok(None);
        }
        let converted = match ty {
            Some(ty) => convert::convert(ty, Input::Json(v)),
            None => Ok(untyped_json(v)),
        };
        converted
            .map(|s| Some(Cow::Owned(s)))
            .map_err(convert_error)
    };
    let from_bytes =
        |b: &'a [u8], default: Option<ColumnType>| -> Result<Option<Cow<'a, str>>, Failure> {
            match ty.or(default) {
                Some(ty) => convert::convert(ty, Input::Bytes(b))
                    .map(|s| Some(Cow::Owned(s)))
                    .map_err(convert_error),
                None => std::str::from_utf8(b)
                    .map(|s| Some(Cow::Borrowed(s)))
                    .map_err(|_| convert_error("not valid UTF-8 text (use type bytea)".into())),
            }
        };
    let from_doc = |doc: &'a Result<Doc<'a>, String>, path| match doc {
        Ok(doc) => doc
            .get(path)
            .map_or(Ok(None), |raw| from_raw(raw, ty, name)),
        Err(e) => Err((Stage::Decode, e.clone())),
    };
    match source {
        ColumnSource::Value(path) => match m.format {
            Format::Json => p.json.as_ref().map_or(Ok(None), |doc| from_doc(doc, path)),
            Format::Text => r.value().map_or(Ok(None), |b| from_bytes(b, None)),
            Format::Bytes => r
                .value()
                .map_or(Ok(None), |b| from_bytes(b, Some(ColumnType::Bytea))),
        },
        ColumnSource::Key(path) if path.is_empty() => {
            r.key().map_or(Ok(None), |b| from_bytes(b, None))
        }
        ColumnSource::Key(path) => p
            .key_json
            .as_ref()
            .map_or(Ok(None), |doc| from_doc(doc, path)),
        ColumnSource::Kafka(meta) => from_value(&kafka_meta(r, *meta, ty)),
        ColumnSource::Headers => from_value(&headers_json(r)),
        ColumnSource::Header(name) => match r.headers.iter().rev().find(|(k, _)| k == name) {
            Some((_, Some(value))) => from_bytes(value, None),
            _ => Ok(None),
        },
        ColumnSource::Constant(text) if ty.is_none() => Ok(Some(Cow::Borrowed(text))),
        ColumnSource::Constant(text) => from_value(&Value::String(text.clone())),
        ColumnSource::WindowStart => window_start(m, p).map(|s| Some(Cow::Owned(s))),
        ColumnSource::One => Ok(Some(Cow::Borrowed("1"))),
    }
}

/// A JSON value from the payload, converted; the common cases need no copy.
fn from_raw<'a>(
    raw: &'a str,
    ty: Option<ColumnType>,
    name: &str,
) -> Result<Option<Cow<'a, str>>, Failure> {
    let borrowed = match (ty, scalar(raw)) {
        (_, Scalar::Null) => return Ok(None),
        (None, Scalar::Text(t)) | (Some(ColumnType::Text), Scalar::Text(t)) => return Ok(Some(t)),
        (None, Scalar::Number(n) | Scalar::Composite(n)) => Some(n),
        (None, Scalar::Bool(b)) => Some(if b { "true" } else { "false" }),
        // A JSON number is a valid numeric literal, digit for digit.
        (Some(ColumnType::Numeric), Scalar::Number(n)) => Some(n),
        // Exact decimals are often sent as strings ("12.30"); valid ones pass as they are.
        (Some(ColumnType::Numeric), Scalar::Text(t)) if convert::is_decimal(&t) => {
            return Ok(Some(t))
        }
        (Some(ColumnType::Bigint), Scalar::Number(n)) if n.parse::<i64>().is_ok() => Some(n),
        (Some(ColumnType::Integer), Scalar::Number(n)) if n.parse::<i32>().is_ok() => Some(n),
        // Most JSON has no backslash at all: one byte scan instead of a substring search.
        (Some(ColumnType::Jsonb), _) if !has_nul_escape(raw) => Some(raw.trim()),
        (Some(ColumnType::Timestamptz), Scalar::Text(t))
            if convert::parse_timestamp_millis(&t).is_ok() =>
        {
            return Ok(Some(t))
        }
        _ => None,
    };
    if let Some(text) = borrowed {
        return Ok(Some(Cow::Borrowed(text)));
    }
    let value: Value = serde_json::from_str(raw).map_err(|e| (Stage::Decode, e.to_string()))?;
    let ty = ty.unwrap_or(ColumnType::Text);
    convert::convert(ty, Input::Json(&value))
        .map(|s| Some(Cow::Owned(s)))
        .map_err(|e| (Stage::Convert, format!("column `{name}`: {e}")))
}

/// Whether JSON text holds `\u0000`, which jsonb cannot store.
fn has_nul_escape(raw: &str) -> bool {
    raw.as_bytes().contains(&b'\\') && raw.contains("\\u0000")
}

fn window_start(m: &Mapping, p: &Parsed<'_>) -> Result<String, Failure> {
    let Some(window) = &m.window else {
        return Err((Stage::Decode, "no window configured".into()));
    };
    let text = extract(m, p, &window.source, None, "window")?.ok_or((
        Stage::Decode,
        "the window timestamp is missing or null".to_string(),
    ))?;
    let ms = match text.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => convert::parse_timestamp_millis(&text)
            .map_err(|e| (Stage::Convert, format!("window timestamp: {e}")))?,
    };
    Ok(convert::format_timestamp_millis(
        convert::window_start_millis(ms, window.size_ms),
    ))
}

fn kafka_meta(r: &Record, meta: KafkaMeta, ty: Option<ColumnType>) -> Value {
    match meta {
        KafkaMeta::Topic => Value::String(r.tp.topic.to_string()),
        KafkaMeta::Partition => Value::from(r.tp.partition),
        KafkaMeta::Offset => Value::from(r.offset),
        KafkaMeta::Timestamp => match (r.timestamp_ms, ty) {
            (None, _) => Value::Null,
            (
                Some(ms),
                Some(
                    ColumnType::Smallint
                    | ColumnType::Integer
                    | ColumnType::Bigint
                    | ColumnType::Numeric,
                ),
            ) => Value::from(ms),
            (Some(ms), _) => Value::String(convert::format_timestamp_millis(ms)),
        },
    }
}

fn headers_json(r: &Record) -> Value {
    let map = r
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_ref().map_or(Value::Null, |b| {
                    Value::String(String::from_utf8_lossy(b).into_owned())
                }),
            )
        })
        .collect();
    Value::Object(map)
}

/// Untyped columns: scalars as their text (numbers keep their exact digits), objects and arrays
/// as JSON; Postgres' input function for the column does the conversion.
fn untyped_json(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => value.to_string(),
    }
}

/// Whether `bytes` holds a backslash or a control character up to `\r` (a superset of what
/// COPY text must escape), tested eight bytes at a time.
fn may_need_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // Exact "some byte is below n" and "some byte is zero" tests (no false answers for the
        // word as a whole, whatever the neighbouring bytes).
        let below_cr = x.wrapping_sub(ONES * 14) & !x & HIGHS;
        let y = x ^ (ONES * u64::from(b'\\'));
        let backslash = y.wrapping_sub(ONES) & !y & HIGHS;
        if below_cr | backslash != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b <= b'\r' || b == b'\\')
}

/// Appends `text` escaped for COPY's text format.
fn copy_escape(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    if !may_need_escape(bytes) {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0 => {
                return Err(
                    "text contains a NUL character, which PostgreSQL text cannot store".into(),
                )
            }
            _ => out.push(b),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
