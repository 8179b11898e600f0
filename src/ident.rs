//! SQL identifiers that are safe by construction.
//!
//! Every table, schema and column name the connector puts into SQL goes through [`Ident`]: it is
//! validated once when the configuration is loaded and always rendered double-quoted, so no user
//! string is ever pasted into a statement.

use std::fmt;

/// PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1); we refuse them instead.
const MAX_IDENT_BYTES: usize = 63;

/// A validated SQL identifier: any name PostgreSQL accepts when it is quoted (1 to 63 bytes, no
/// NUL), so `payments-eu`, `Zahlungen` or `order items` are names like any other.
///
/// Case is preserved and the name is always quoted (a `"` in it doubled), so `Payments` and
/// `payments` are different tables, exactly as in `CREATE TABLE "Payments"`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Checks `name` and wraps it, or says what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("must not be empty".into());
        }
        if name.len() > MAX_IDENT_BYTES {
            return Err(format!(
                "`{name}` is longer than {MAX_IDENT_BYTES} bytes (PostgreSQL would cut it)"
            ));
        }
        if name.contains('\0') {
            return Err(format!(
                "`{}` contains a NUL character",
                name.escape_default()
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The bare name, as stored in the catalog.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as it appears in SQL: always double-quoted, a `"` inside doubled.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0.replace('"', "\"\""))
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
    /// Parses `table` or `schema.table`; a part may be written in double quotes, as in SQL
    /// (`"eu.payments"."2026"`, a `"` inside doubled), to hold a dot.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (first, rest) = split_part(text)?;
        let (schema, table) = match rest {
            None => ("public".to_owned(), first),
            Some(rest) => match split_part(rest)? {
                (table, None) => (first, table),
                (_, Some(_)) => {
                    return Err(format!(
                        "`{text}` has more than two parts; use `table` or `schema.table` (quote a part that holds a dot)"
                    ))
                }
            },
        };
        Ok(Self {
            schema: Ident::parse(&schema)?,
            table: Ident::parse(&table)?,
        })
    }

    /// `"schema"."table"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", self.schema.quoted(), self.table.quoted())
    }
}

/// The first part of a dotted name and what follows its dot: a quoted part runs to its closing
/// quote (`""` is a quote inside), a bare part to the first dot.
fn split_part(text: &str) -> Result<(String, Option<&str>), String> {
    let Some(quoted) = text.strip_prefix('"') else {
        return Ok(match text.split_once('.') {
            Some((part, rest)) => (part.to_owned(), Some(rest)),
            None => (text.to_owned(), None),
        });
    };
    let mut part = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            part.push(c);
            continue;
        }
        let after = &quoted[i + 1..];
        if after.starts_with('"') {
            part.push('"');
            chars.next();
            continue;
        }
        return match after.strip_prefix('.') {
            Some(rest) => Ok((part, Some(rest))),
            None if after.is_empty() => Ok((part, None)),
            None => Err(format!("`{text}`: expected `.` after a quoted name")),
        };
    }
    Err(format!("`{text}`: a quoted name is not closed"))
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
    fn any_name_postgres_takes_quoted_is_accepted_and_quoted_safely() {
        for (name, quoted) in [
            ("payments-eu", "\"payments-eu\""),
            ("Zahlungen", "\"Zahlungen\""),
            ("order items", "\"order items\""),
            ("1abc", "\"1abc\""),
            ("a\"; drop table x; --", "\"a\"\"; drop table x; --\""),
        ] {
            assert_eq!(Ident::parse(name).unwrap().quoted(), quoted);
        }
        assert!(Ident::parse("").is_err());
        assert!(Ident::parse("a\0b").is_err());
        assert!(Ident::parse(&"x".repeat(63)).is_ok());
        assert!(Ident::parse(&"x".repeat(64)).is_err());
        // 63 bytes, not characters: 32 two-byte letters are 64 bytes.
        assert!(Ident::parse(&"ü".repeat(32)).is_err());
    }

    #[test]
    fn table_names_default_to_public() {
        let t = TableName::parse("events").unwrap();
        assert_eq!(t.quoted(), "\"public\".\"events\"");
        let t = TableName::parse("billing.usage").unwrap();
        assert_eq!(t.quoted(), "\"billing\".\"usage\"");
        assert!(TableName::parse("a.b.c").is_err());
        let t = TableName::parse("payments-eu").unwrap();
        assert_eq!(t.quoted(), "\"public\".\"payments-eu\"");
        let t = TableName::parse("\"eu.billing\".\"Zahlungen \"\"2026\"\"\"").unwrap();
        assert_eq!(t.schema.as_str(), "eu.billing");
        assert_eq!(t.table.as_str(), "Zahlungen \"2026\"");
        assert_eq!(t.quoted(), "\"eu.billing\".\"Zahlungen \"\"2026\"\"\"");
        let t = TableName::parse("billing.\"a.b\"").unwrap();
        assert_eq!((t.schema.as_str(), t.table.as_str()), ("billing", "a.b"));
        assert!(TableName::parse("\"open").is_err());
        assert!(TableName::parse("\"a\"b").is_err());
    }
}
