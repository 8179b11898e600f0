//! Payload → row values: the strict JSON scan, fields read along the mapped paths, explicit type
//! conversions, and the map of keys a batch is reduced on. Nothing here knows COPY or Postgres:
//! writing the values as COPY rows is the sink's (`sink::encode`).
//!
//! Guarantee: a column's value is passed on exactly as written, converted exactly, or refused
//! with the stage and the reason; numbers never pass through a float.
//!
//! - `scan`: one strict pass that validates a payload and splits its top-level object.
//! - `json`: fields read along a path from a scanned payload, without a document tree.
//! - `fields`: a record's key and value scanned once, and each column's value read from them.
//! - `convert`: the explicit conversions to the text PostgreSQL's input functions accept.
//! - `keys`: the keys seen while one batch is reduced.

pub mod convert;
mod fields;
pub mod formats;
pub(crate) mod json;
pub(crate) mod keys;
pub(crate) mod scan;

pub(crate) use fields::{extract, jsonb_as_is_with, scan, Parsed};

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

/// Why a value cannot be written: the stage and the reason.
pub(crate) type Failure = (Stage, String);
