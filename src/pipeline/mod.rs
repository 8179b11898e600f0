//! The pipeline: a pure per-partition batcher and the run loop that ties the poll thread to the
//! database writers.

mod batcher;
mod run;

pub use batcher::{Batcher, Limits};
pub use run::{Pipeline, Wiring};
