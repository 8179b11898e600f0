//! Operator commands at the edge, each printing a report and returning an exit status: `check`,
//! `dead-letters` (list and replay), `offsets` (show and set), `migrate` and `ddl`. They use the
//! library below them; nothing but `main` uses them.
//!
//! - `check`: the start-up check of the database, on its own.
//! - `dead_letters`: the `dead-letters` command; `replay`: listing and replaying dead letters.
//! - `offsets`: stored offsets beside the broker's logs, and moving them.
//! - `migrate`: the connector's own migrations; `ddl`: `CREATE TABLE` statements for the mappings.

mod check;
mod ddl;
mod dead_letters;
mod migrate;
pub mod offsets;
pub mod replay;

pub use check::check;
pub use ddl::create_statements;
pub use dead_letters::{list_dead_letters, replay_dead_letters};
pub use migrate::migrate;
