//! The pipeline: a pure per-partition batcher and the run loop that ties the poll thread to the
//! database writers.

mod batcher;
mod run;

pub use batcher::{Batcher, Limits};
pub use run::{Pipeline, Wiring};

/// The old path of `sink::encode::binary`, for the developer tools in `src/bin` until they move
/// to their own crate and import the new path.
#[doc(hidden)]
pub use crate::sink::encode::binary;
