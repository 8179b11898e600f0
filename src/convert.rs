//! Explicit type conversions from record data to the text PostgreSQL's input functions accept.
//! (Being written; see the helper task.)
