//! SQL identifiers that are safe by construction.
//!
//! Every table, schema and column name the connector puts into SQL goes through [`Ident`]: it is
//! validated once when the configuration is loaded and always rendered double-quoted, so no user
//! string is ever pasted into a statement.

use std::fmt;

/// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1); we refuse them instead.
const MAX_IDENT_BYTES: usize = 63;

/// A validated SQL identifier (letters, digits, `_`, `$`; not starting with a digit or `$`).
///
/// Case is preserved and the name is always quoted, so `Payments` and `payments` are different
/// tables, exactly as in `CREATE TABLE "Payments"`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Checks `name` and wraps it, or says what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.len() > MAX_IDENT_BYTES {
            return Err(format!("`{name}` is longer than {MAX_IDENT_BYTES} bytes"));
        }
        let mut chars = name.chars();
        let first = chars.next().unwrap_or('0');
        if !(first.is_ascii_alphabetic() || first == '_') {
            return Err(format!("`{name}` must start with a letter or `_`"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '$'))
        {
            return Err(format!(
                "`{name}` contains `{bad}`; only letters, digits, `_` and `$` are allowed"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The bare name, as stored in the catalog.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as it appears in SQL: always double-quoted.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A table name, optionally schema-qualified (`schema.table`); unqualified means `public`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TableName {
    pub schema: Ident,
    pub table: Ident,
}

impl TableName {
    /// Parses `table` or `schema.table`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (schema, table) = match text.split_once('.') {
            Some((s, t)) => (s, t),
            None => ("public", text),
        };
        Ok(Self {
            schema: Ident::parse(schema)?,
            table: Ident::parse(table)?,
        })
    }

    /// `"schema"."table"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", self.schema.quoted(), self.table.quoted())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names_and_quotes_them() {
        let id = Ident::parse("amount_usd").unwrap();
        assert_eq!(id.quoted(), "\"amount_usd\"");
    }

    #[test]
    fn rejects_injection_attempts() {
        for bad in ["a\"; drop table x; --", "a b", "1abc", "", "tab.le", "$x"] {
            assert!(Ident::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        assert!(Ident::parse(&"x".repeat(64)).is_err());
    }

    #[test]
    fn table_names_default_to_public() {
        let t = TableName::parse("events").unwrap();
        assert_eq!(t.quoted(), "\"public\".\"events\"");
        let t = TableName::parse("billing.usage").unwrap();
        assert_eq!(t.quoted(), "\"billing\".\"usage\"");
        assert!(TableName::parse("a.b.c").is_err());
    }
}
