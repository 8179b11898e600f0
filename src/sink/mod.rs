//! Postgres: SQL built once per mapping, the COPY rows of a batch (`encode`), the batch writer,
//! and the offset store.

mod apply;
mod check;
mod dead_letters;
pub mod encode;
mod migrate;
mod offsets;
mod sql;
mod writer;

pub(crate) use apply::{apply_batch, describe};
pub use check::{check_database, column_types, copies_like_inserts};
pub(crate) use dead_letters::headers_from_json;
pub use dead_letters::{headers_json, DeadLetterSql};
pub use migrate::migrate;
pub use offsets::{compare_and_set, load_one, OffsetSql, OffsetStore};
pub use sql::MappingSql;
pub use writer::{Batch, Outcome, WriteBatch, Writer};
