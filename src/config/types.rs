//! The value vocabulary of a mapping's config: column type names and durations.
//!
//! Guarantee: a name or duration is accepted only in the forms listed in its error message.

use crate::error::quote;

/// Column types the connector converts to explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Text,
    Smallint,
    Integer,
    Bigint,
    Numeric,
    Double,
    Boolean,
    Timestamptz,
    Date,
    Uuid,
    Jsonb,
    Bytea,
}

/// Config names accepted by [`ColumnType::parse`], in the order the error message lists them.
const NAMES: &[(&str, ColumnType)] = &[
    ("text", ColumnType::Text),
    ("varchar", ColumnType::Text),
    ("smallint", ColumnType::Smallint),
    ("int2", ColumnType::Smallint),
    ("integer", ColumnType::Integer),
    ("int", ColumnType::Integer),
    ("int4", ColumnType::Integer),
    ("bigint", ColumnType::Bigint),
    ("int8", ColumnType::Bigint),
    ("numeric", ColumnType::Numeric),
    ("decimal", ColumnType::Numeric),
    ("double", ColumnType::Double),
    ("double precision", ColumnType::Double),
    ("float8", ColumnType::Double),
    ("boolean", ColumnType::Boolean),
    ("bool", ColumnType::Boolean),
    ("timestamptz", ColumnType::Timestamptz),
    ("timestamp with time zone", ColumnType::Timestamptz),
    ("date", ColumnType::Date),
    ("uuid", ColumnType::Uuid),
    ("jsonb", ColumnType::Jsonb),
    ("json", ColumnType::Jsonb),
    ("bytea", ColumnType::Bytea),
];

impl ColumnType {
    /// Parses a config name (case-insensitive, surrounding whitespace ignored).
    /// Err lists the accepted names.
    pub fn parse(name: &str) -> Result<Self, String> {
        let wanted = collapse_whitespace(&name.trim().to_ascii_lowercase());
        match NAMES.iter().find(|(n, _)| *n == wanted) {
            Some((_, ty)) => Ok(*ty),
            None => {
                let all: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                Err(format!(
                    "unknown column type {}; expected one of: {}",
                    quote(name),
                    all.join(", ")
                ))
            }
        }
    }

    /// The canonical PostgreSQL name, as `format_type()` prints it.
    pub fn pg_name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Smallint => "smallint",
            Self::Integer => "integer",
            Self::Bigint => "bigint",
            Self::Numeric => "numeric",
            Self::Double => "double precision",
            Self::Boolean => "boolean",
            Self::Timestamptz => "timestamp with time zone",
            Self::Date => "date",
            Self::Uuid => "uuid",
            Self::Jsonb => "jsonb",
            Self::Bytea => "bytea",
        }
    }

    /// Whether a column whose catalog type is `format_type` (output of PostgreSQL's
    /// `format_type()`, e.g. "numeric(14,2)") can take values converted to this type without
    /// loss or error in the usual case. Type modifiers are ignored; array types never match.
    pub fn accepts_catalog_type(self, format_type: &str) -> bool {
        let lower = format_type.trim().to_ascii_lowercase();
        if lower.ends_with("[]") {
            return false;
        }
        let base = strip_type_modifiers(&lower);
        let t = base.as_str();
        match self {
            Self::Text => {
                matches!(
                    t,
                    "text" | "character varying" | "character" | "bpchar" | "citext"
                ) || t.ends_with(".citext")
            }
            Self::Smallint => matches!(t, "smallint" | "integer" | "bigint" | "numeric"),
            Self::Integer => matches!(t, "integer" | "bigint" | "numeric"),
            Self::Bigint => matches!(t, "bigint" | "numeric"),
            Self::Numeric => t == "numeric",
            Self::Double => matches!(t, "double precision" | "real" | "numeric"),
            Self::Boolean => t == "boolean",
            Self::Timestamptz => is_timestamp(t),
            Self::Date => t == "date" || is_timestamp(t),
            Self::Uuid => matches!(t, "uuid" | "text"),
            Self::Jsonb => matches!(t, "jsonb" | "json"),
            Self::Bytea => t == "bytea",
        }
    }
}

/// `format_type()` output without `(...)` modifiers and with single spaces.
fn strip_type_modifiers(lower: &str) -> String {
    let mut out = String::with_capacity(lower.len());
    let mut depth = 0u32;
    for c in lower.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    collapse_whitespace(&out)
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_timestamp(t: &str) -> bool {
    matches!(
        t,
        "timestamp with time zone" | "timestamp without time zone"
    )
}

/// Parses a window size like "500ms", "30s", "15m", "1h", "1d" (a positive integer and a unit,
/// surrounding whitespace ignored) into milliseconds.
pub fn parse_duration_millis(text: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "expected a duration like 500ms, 30s, 15m, 1h or 1d, found {}",
            quote(text)
        )
    };
    let text_trimmed = text.trim();
    let split = text_trimmed.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, unit) = text_trimmed.split_at(split);
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 24 * 3_600_000,
        _ => return Err(bad()),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("{}: the duration must be positive", bad()));
    }
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("{}: too large", bad()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType as T;

    #[test]
    fn parses_config_names_and_lists_them_on_error() {
        assert_eq!(ColumnType::parse(" Double  Precision "), Ok(T::Double));
        assert_eq!(ColumnType::parse("INT8"), Ok(T::Bigint));
        assert_eq!(
            ColumnType::parse("timestamp with time zone"),
            Ok(T::Timestamptz)
        );
        assert_eq!(ColumnType::parse("json"), Ok(T::Jsonb));
        let err = ColumnType::parse("money").expect_err("unknown");
        assert!(err.contains("\"money\"") && err.contains("varchar") && err.contains("bytea"));
        for (name, ty) in NAMES {
            assert_eq!(ColumnType::parse(name), Ok(*ty));
            assert_eq!(ColumnType::parse(ty.pg_name()), Ok(*ty));
        }
    }

    #[test]
    fn catalog_types_match_by_base_name_and_never_arrays() {
        assert!(T::Numeric.accepts_catalog_type("numeric(14,2)"));
        assert!(T::Text.accepts_catalog_type("character varying(20)"));
        assert!(T::Text.accepts_catalog_type("character(3)"));
        assert!(T::Text.accepts_catalog_type("citext"));
        assert!(T::Smallint.accepts_catalog_type("bigint"));
        assert!(!T::Bigint.accepts_catalog_type("integer"));
        assert!(T::Double.accepts_catalog_type("real"));
        assert!(T::Timestamptz.accepts_catalog_type("timestamp(3) without time zone"));
        assert!(T::Date.accepts_catalog_type("timestamp with time zone"));
        assert!(T::Uuid.accepts_catalog_type("text"));
        assert!(T::Jsonb.accepts_catalog_type("json"));
        assert!(!T::Text.accepts_catalog_type("text[]"));
        assert!(!T::Numeric.accepts_catalog_type("numeric(14,2)[]"));
        assert!(!T::Boolean.accepts_catalog_type("integer"));
        assert!(!T::Bytea.accepts_catalog_type("text"));
    }

    #[test]
    fn durations_take_a_positive_integer_and_a_unit() {
        assert_eq!(parse_duration_millis("500ms"), Ok(500));
        assert_eq!(parse_duration_millis("30s"), Ok(30_000));
        assert_eq!(parse_duration_millis("15m"), Ok(900_000));
        assert_eq!(parse_duration_millis(" 1h "), Ok(3_600_000));
        assert_eq!(parse_duration_millis("1d"), Ok(86_400_000));
        for bad in [
            "",
            "10",
            "s",
            "0s",
            "-1s",
            "1.5h",
            "1w",
            "1 h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration_millis(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_duration_millis("0s")
            .unwrap_err()
            .contains("positive"));
    }
}
