//! Records → COPY rows: the [`Decoder`] reads each record's values through `decode`, reduces a
//! batch per key, and writes the rows in PostgreSQL's binary COPY format where every column
//! allows it, else in COPY text.
//!
//! Guarantees: every record of a batch is either turned into rows or reported as rejected with
//! its stage and reason (never silently dropped); for upserts, the rows leave the table in the
//! state that applying every good record in offset order would leave.
//!
//! Values are written into COPY rows while the batch is walked, not collected first: each chunk
//! of records is scanned and every mapping's rows are written from it while its payloads are
//! still in the core's cache, and a binary field is written straight from its JSON text where
//! that is exact. That is why the walk over a batch lives here, with the encoders.
//!
//! - `decoder`: each mapping's plan and the walk over a batch.
//! - `reduce`: the newest-first reduction per key (upserts, tombstones, version guards).
//! - `aggregate`: an accumulate batch reduced to one row per key, exactly as SQL would.
//! - `row`: one record's row for one mapping; `text` and `binary`: the two COPY formats.
//! - `rows`: the row sets of a decoded batch.

mod aggregate;
pub mod binary;
mod decoder;
mod reduce;
mod row;
mod rows;
mod text;

pub use binary::BinType;
pub use decoder::Decoder;
pub use rows::{Decoded, RowSet, TableRows};

#[cfg(test)]
mod tests;
