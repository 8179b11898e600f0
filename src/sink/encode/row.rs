//! One record's COPY row for one mapping, in binary where every value allows it, else as text.
//!
//! Guarantee: a value goes in binary only when the binary encoder writes exactly what the
//! server's text input would make of the value's text; otherwise the caller is told to write the
//! batch as text ([`Miss::Text`]).

use std::borrow::Cow;

use super::binary::{self, BinType};
use super::decoder::Plan;
use super::text::copy_escape;
use crate::config::{Column, ColumnSource, ColumnType, Mapping};
use crate::decode::json::{scalar_with, Scalar};
use crate::decode::{extract, jsonb_as_is_with, Failure, Parsed, Stage};

/// Why a row was not written.
pub(super) enum Miss {
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

/// One record's row for one mapping.
pub(super) struct Row<'a> {
    pub(super) m: &'a Mapping,
    pub(super) plan: &'a Plan,
    pub(super) p: &'a Parsed<'a>,
    /// Whether the record offset follows the columns (as `kps_ord`).
    pub(super) with_ord: bool,
}

impl<'a> Row<'a> {
    /// Appends one COPY row for `columns` (indexes into the mapping's columns) to `line`, in
    /// binary with `binary`'s column types or else as text, and the key columns' text to `key`
    /// for the reduction. On an error, part of a row may have been written: the caller drops it.
    pub(super) fn write(
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
        let Some(Ok(doc)) = self.p.json.as_ref().filter(|_| self.m.format.reads_json()) else {
            return None;
        };
        let raw = doc.get(path)?;
        // Most payloads have no escape at all: their values are not searched for one.
        let may_escape = !doc.unescaped();
        if let (Some(ColumnType::Jsonb), BinType::Jsonb) = (column.ty, bin) {
            // Valid JSON: no raw NUL. JSON null and `\u0000` take the checked path.
            let raw = jsonb_as_is_with(raw, may_escape)?;
            return binary::jsonb_without_nul(raw, line).then_some(raw);
        }
        let text = match (column.ty, bin, scalar_with(raw, may_escape)) {
            (
                None | Some(ColumnType::Timestamptz),
                BinType::Timestamptz,
                Scalar::Text(Cow::Borrowed(t)),
            )
            | (None | Some(ColumnType::Uuid), BinType::Uuid, Scalar::Text(Cow::Borrowed(t)))
            | (None | Some(ColumnType::Bigint), BinType::Int8, Scalar::Number(t))
            | (None | Some(ColumnType::Integer), BinType::Int4, Scalar::Number(t))
            | (
                None | Some(ColumnType::Numeric),
                BinType::Numeric,
                Scalar::Number(t) | Scalar::Text(Cow::Borrowed(t)),
            ) => t,
            // A string without escapes out of valid JSON holds no NUL.
            (None | Some(ColumnType::Text), BinType::Text, Scalar::Text(Cow::Borrowed(t))) => {
                return binary::text_without_nul(t, line).then_some(t);
            }
            _ => return None,
        };
        binary::encode(bin, text, line).then_some(text)
    }
}
