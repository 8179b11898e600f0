//! Postgres: SQL built once per mapping, the COPY rows of a batch (`encode`), the batch writer,
//! the offset store, and the tables the mappings need (`ddl`).

mod apply;
mod check;
mod ddl;
mod dead_letters;
pub mod encode;
mod migrate;
mod offsets;
pub mod replay;
mod sql;
mod writer;

pub use check::{check_database, column_types};
pub use ddl::create_statements;
pub use dead_letters::{headers_json, DeadLetterSql};
pub use migrate::migrate;
pub use offsets::{compare_and_set, load_one, OffsetSql, OffsetStore};
pub use sql::MappingSql;
pub use writer::{Batch, Outcome, WriteBatch, Writer};
