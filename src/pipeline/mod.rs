//! The pipeline: a pure per-partition batcher, the decoder from records to rows, and the run loop
//! that ties the poll thread to the database writers.

mod batcher;
pub mod binary;
mod decoder;
mod json;
mod keys;
mod run;
mod scan;

pub use batcher::{Batcher, Limits};
pub use binary::BinType;
pub use decoder::{Decoded, Decoder, Rejected, RowSet, Stage, TableRows};
pub use run::{Pipeline, Wiring};
