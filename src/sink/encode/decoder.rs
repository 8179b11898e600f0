//! The [`Decoder`]: each mapping's plan, worked out once, and the walk over a batch, newest
//! first, that turns its records into every mapping's COPY rows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::aggregate::{self, Fold};
use super::binary::BinType;
use super::reduce::{self, MappingRows};
use super::rows::Decoded;
use crate::config::{Cdc, ColumnSource, Format, Mapping, Mode, PathSegment};
use crate::decode::formats::{self, Json, Schemas};
use crate::decode::{scan, Parsed};
use crate::record::Record;

/// Decodes batches for every configured mapping.
#[derive(Debug)]
pub struct Decoder {
    pub(super) mappings: Arc<[Mapping]>,
    /// Per mapping, in the same order.
    plans: Vec<Plan>,
    by_topic: HashMap<String, Vec<usize>>,
    /// The registry's schemas, filled before a batch is decoded.
    schemas: Arc<Schemas>,
}

/// A mapping's columns as the decoder walks them, worked out once instead of per record.
#[derive(Debug)]
pub(super) struct Plan {
    /// Indexes of the key columns, in COPY order (the rows of a delete).
    pub(super) keys: Vec<usize>,
    /// Whether each column is part of the key.
    pub(super) is_key: Vec<bool>,
    /// Each column's binary COPY type, when every column has one (else rows are COPY text).
    pub(super) binary: Option<Vec<BinType>>,
    /// An upsert without a version guard whose key columns all sort exactly
    /// ([`BinType::sorts_exactly`]: integers, uuids; text and timestamps where the table keeps
    /// them as written):
    /// in a binary batch the reduction keys on the values written (equal here exactly when equal
    /// in SQL, unlike their texts: `7` and `007`, a uuid in either case), so one row per key is
    /// left, and the rows go in key order. Postgres then neither sorts nor removes duplicates,
    /// and writers that share keys still lock them in one order. Otherwise rows go unsorted,
    /// through `DISTINCT ON`.
    pub(super) sorted: bool,
    /// An accumulate mapping whose batches are reduced per key here ([`aggregate`]): how each
    /// column is reduced. Needs binary rows and keys that compare exactly, as `sorted` does.
    pub(super) aggregate: Option<Vec<Fold>>,
    /// An insert whose rows go by `COPY` straight into the table ([`TableRows::direct`]): rows
    /// without `kps_ord`, turned into offset order after the newest-first walk.
    pub(super) direct: bool,
    /// A change stream's mapping (`mode = "cdc"`).
    pub(super) cdc: Option<ChangePlan>,
}

/// How a change event is read: its operation, and the key of a delete.
#[derive(Debug)]
pub(super) struct ChangePlan {
    pub(super) cdc: Cdc,
    /// The path of the operation (`op`).
    pub(super) op: Vec<PathSegment>,
    /// The path of the old row image (`before`).
    pub(super) before: Vec<PathSegment>,
    /// The mapping with its key columns read from `before` instead of `after`: a delete's key.
    pub(super) from_before: Mapping,
    /// ... read from the record key instead (when `before` is null): `key.<field>`.
    pub(super) from_key: Mapping,
}

impl ChangePlan {
    fn new(m: &Mapping, cdc: Cdc) -> Self {
        let after = PathSegment::Field("after".into());
        let before = PathSegment::Field("before".into());
        let rewrite = |to_key: bool| {
            let mut m = m.clone();
            for c in m.columns.iter_mut().filter(|c| m.key.contains(&c.name)) {
                if let ColumnSource::Value(path) = &c.source {
                    if path.first() == Some(&after) {
                        c.source = if to_key {
                            ColumnSource::Key(path[1..].to_vec())
                        } else {
                            let mut path = path.clone();
                            path[0] = before.clone();
                            ColumnSource::Value(path)
                        };
                    }
                }
            }
            m
        };
        Self {
            cdc,
            op: vec![PathSegment::Field("op".into())],
            before: vec![before.clone()],
            from_before: rewrite(false),
            from_key: rewrite(true),
        }
    }
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
            aggregate: binary
                .as_deref()
                .and_then(|types| aggregate::plan(m, types, exact_keys)),
            keys,
            is_key,
            binary,
            direct: false,
            cdc: m.cdc.map(|cdc| ChangePlan::new(m, cdc)),
        }
    }
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
            schemas: Arc::default(),
        }
    }

    /// Declares, per mapping, whether the table keeps its key values as written (see
    /// [`BinType::sorts_exactly`]): its upserts can then go sorted (`Plan::sorted`), and its
    /// accumulate batches be reduced here (`Plan::aggregate`), with text and timestamp keys too.
    pub fn with_exact_keys(mut self, exact: &[bool]) -> Self {
        for ((plan, m), &exact) in self.plans.iter_mut().zip(self.mappings.iter()).zip(exact) {
            plan.sorted = Plan::sorts(m, &plan.keys, plan.binary.as_deref(), exact);
            plan.aggregate = plan
                .binary
                .as_deref()
                .and_then(|types| aggregate::plan(m, types, exact));
        }
        self
    }

    /// Declares, per mapping, whether `COPY` into its table does what `INSERT` does
    /// (`sink::copies_like_inserts`): its insert-mode rows then go straight into the table.
    pub fn with_direct_inserts(mut self, copies_like_inserts: &[bool]) -> Self {
        for ((plan, m), &direct) in self
            .plans
            .iter_mut()
            .zip(self.mappings.iter())
            .zip(copies_like_inserts)
        {
            plan.direct = direct && m.mode == Mode::Insert;
        }
        self
    }

    /// Decodes registry formats with these schemas (filled by the registry client before each
    /// batch is decoded).
    pub fn with_schemas(mut self, schemas: Arc<Schemas>) -> Self {
        self.schemas = schemas;
        self
    }

    pub fn schemas(&self) -> &Arc<Schemas> {
        &self.schemas
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
            .any(|&i| self.mappings[i].format.reads_json());
        let key_json = indexes.iter().any(|&i| {
            let m = &self.mappings[i];
            let json_key = m.key_format.is_some_and(Format::reads_json);
            // A delete without `before` takes its key from the record key.
            if m.cdc.is_some() && m.key_format.is_none_or(Format::reads_json) {
                return true;
            }
            m.columns.iter().any(|c| match &c.source {
                ColumnSource::Key(p) => json_key || !p.is_empty(),
                _ => false,
            })
        });
        // Payloads in another format are rendered as JSON first, for the whole batch (the mappings
        // of a topic share their formats).
        let first = &self.mappings[indexes[0]];
        let values = self.rendered(records, value_json, first.format, Record::value, "value");
        let key_format = first.key_format.unwrap_or(Format::Json);
        let keys = self.rendered(records, key_json, key_format, Record::key, "key");
        let mut outs: Vec<MappingRows<'_>> = indexes
            .iter()
            .zip(text)
            .map(|(&i, &text)| {
                let binary = self.plans[i].binary.as_deref().filter(|_| !text);
                MappingRows::new(i, records, binary, &self.plans[i])
            })
            .collect();
        // A chunk's top-level members go into one buffer, reused for every chunk.
        let mut members = Vec::with_capacity(CHUNK.min(records.len()) * 8);
        let mut end = records.len();
        while end > 0 {
            let start = end.saturating_sub(CHUNK);
            members.clear();
            let chunk = &records[start..end];
            let scanned: Vec<_> = (start..end)
                .map(|i| {
                    let value = text_of(&values, records[i].value(), i, value_json);
                    let key = text_of(&keys, records[i].key(), i, key_json);
                    scan(value, key, &mut members)
                })
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
                    let index = out.rows.mapping;
                    let (m, plan) = (&self.mappings[index], &self.plans[index]);
                    reduce::record_rows(m, plan, out, start + j, p).map_err(|()| k)?;
                }
            }
            end = start;
        }
        let mut decoded = Decoded::default();
        for mut out in outs {
            if out.sorted {
                out.rows.sorted = out.rows.upserts.sort_by_keys();
            }
            if let Some(per_key) = out
                .agg
                .take()
                .and_then(|a| a.finish(&out.rows.upserts.data))
            {
                out.rows.per_key = per_key;
                out.rows.sorted = true;
            }
            if out.rows.direct {
                out.rows.upserts.reverse();
            }
            decoded.rejected.append(&mut out.rejected);
            decoded.tables.push(out.rows);
        }
        Ok(decoded)
    }
}

/// Each record's payload (or key) as the JSON the mappings read, where its format is not JSON
/// already: one buffer for the batch, and each record's place in it (or its own bytes, or why it
/// cannot be read). Empty when nothing needs rendering.
#[derive(Default)]
struct Rendered<'r> {
    text: String,
    parts: Vec<Option<Result<Part<'r>, String>>>,
}

enum Part<'r> {
    Borrowed(&'r [u8]),
    Own(std::ops::Range<usize>),
}

/// Record `i`'s JSON text to scan: rendered, or its own bytes; `None` when not read as JSON.
fn text_of<'r>(
    rendered: &'r Rendered<'r>,
    own: Option<&'r [u8]>,
    i: usize,
    json: bool,
) -> Option<Result<&'r [u8], String>> {
    if !json {
        return None;
    }
    match rendered.parts.get(i) {
        Some(part) => part.as_ref().map(|r| match r {
            Ok(Part::Borrowed(bytes)) => Ok(*bytes),
            Ok(Part::Own(range)) => Ok(&rendered.text.as_bytes()[range.clone()]),
            Err(e) => Err(e.clone()),
        }),
        None => own.map(Ok),
    }
}

impl Decoder {
    fn rendered<'r>(
        &self,
        records: &'r [Record],
        json: bool,
        format: Format,
        part: fn(&Record) -> Option<&[u8]>,
        what: &str,
    ) -> Rendered<'r> {
        if !json || matches!(format, Format::Json | Format::Text | Format::Bytes) {
            return Rendered::default();
        }
        let size: usize = records.iter().filter_map(part).map(<[u8]>::len).sum();
        let mut rendered = Rendered {
            text: String::with_capacity(size * 3),
            parts: Vec::with_capacity(records.len()),
        };
        for r in records {
            let entry = part(r).map(|bytes| {
                let start = rendered.text.len();
                match formats::to_json(format, bytes, &self.schemas, &mut rendered.text) {
                    Ok(Json::Borrowed(bytes)) => Ok(Part::Borrowed(bytes)),
                    Ok(Json::Appended) => Ok(Part::Own(start..rendered.text.len())),
                    Err(e) => Err(format!("{what} ({}): {e}", format.name())),
                }
            });
            rendered.parts.push(entry);
        }
        rendered
    }
}

/// Records scanned per step of a batch: about 50 KB of payloads and their members, well inside
/// a core's second-level cache. Unit tests use a small odd size, so that their batches cross
/// chunk boundaries.
const CHUNK: usize = if cfg!(test) { 7 } else { 256 };
