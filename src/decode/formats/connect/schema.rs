//! A Connect schema as JsonConverter writes it (`type`, `optional`, `name`, `parameters`,
//! `default`, and `items`, `keys`/`values` or `fields`), parsed into a tree that borrows from the
//! record. A logical type is checked against its base type here, so rendering needs no guesses.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::render::Unit;
use super::{kind, Path, Step, MAX_DEPTH};

pub(super) struct Schema<'a> {
    pub kind: Kind<'a>,
    pub optional: bool,
    /// The schema's `name`, for errors.
    pub name: Option<&'a str>,
    pub logical: Logical,
    /// In the payload's JSON form, as JsonConverter writes defaults; a `null` default is none.
    pub default: Option<&'a Value>,
}

pub(super) enum Kind<'a> {
    Int(Int),
    Float32,
    Float64,
    Boolean,
    String,
    Bytes,
    Array(Box<Schema<'a>>),
    Map {
        keys: Box<Schema<'a>>,
        values: Box<Schema<'a>>,
    },
    Struct(Vec<Field<'a>>),
}

pub(super) struct Field<'a> {
    pub name: &'a str,
    pub schema: Schema<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Int {
    I8,
    I16,
    I32,
    I64,
}

impl Int {
    pub fn range(self) -> (i64, i64) {
        match self {
            Self::I8 => (i8::MIN.into(), i8::MAX.into()),
            Self::I16 => (i16::MIN.into(), i16::MAX.into()),
            Self::I32 => (i32::MIN.into(), i32::MAX.into()),
            Self::I64 => (i64::MIN, i64::MAX),
        }
    }
}

/// The logical types rendered differently from their base type. Others (Debezium's `Uuid`,
/// `Json`, `Xml`, `Enum`, `Bits`, `ZonedTimestamp`, `Iso*`, …) read as their base type already
/// says: a string as the string, bytes as `bytea` hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Logical {
    None,
    /// Connect's `Decimal` on bytes: the unscaled value, scaled by the schema's parameter.
    Decimal {
        scale: i32,
    },
    /// Debezium's `VariableScaleDecimal`: a struct of `scale` and `value` (a `Decimal`'s bytes).
    VariableScaleDecimal,
    /// Days since the epoch.
    Date,
    /// Time since midnight.
    Time(Unit),
    /// Time since the epoch; `utc` false for Debezium's, which are local date-times.
    Timestamp {
        unit: Unit,
        utc: bool,
    },
    /// Debezium's interval, in (approximate) microseconds.
    MicroDuration,
}

/// The largest decimal scale either way: PostgreSQL's `numeric` keeps at most 16383 digits after
/// the point, and a larger scale would only make a huge text that no column can take.
pub(super) const MAX_SCALE: i64 = 16_383;

impl<'a> Schema<'a> {
    /// `depth` counts this schema if it is an array, map or struct.
    pub fn parse(json: &'a Value, path: &Path<'_>, depth: usize) -> Result<Self, String> {
        let error = |e: String| format!("the schema of {path}: {e}");
        let Value::Object(json) = json else {
            return Err(error(format!("is {}, not an object", kind(json))));
        };
        let type_name = match json.get("type") {
            Some(Value::String(t)) => t.as_str(),
            _ => return Err(error("has no `type`".into())),
        };
        let nested = matches!(type_name, "array" | "map" | "struct");
        if nested && depth > MAX_DEPTH {
            return Err(error(format!("nests deeper than {MAX_DEPTH} levels")));
        }
        let child = |member: &str, step: Step<'_>| match json.get(member) {
            Some(s) if !s.is_null() => Schema::parse(s, &path.then(step), depth + 1).map(Box::new),
            _ => Err(error(format!("has no `{member}`"))),
        };
        let kind = match type_name {
            "int8" => Kind::Int(Int::I8),
            "int16" => Kind::Int(Int::I16),
            "int32" => Kind::Int(Int::I32),
            "int64" => Kind::Int(Int::I64),
            "float" | "float32" => Kind::Float32,
            "double" | "float64" => Kind::Float64,
            "boolean" => Kind::Boolean,
            "string" => Kind::String,
            "bytes" => Kind::Bytes,
            "array" => Kind::Array(child("items", Step::Items)?),
            "map" => Kind::Map {
                keys: child("keys", Step::Keys)?,
                values: child("values", Step::Values)?,
            },
            "struct" => Kind::Struct(fields(json, path, depth)?),
            other => return Err(error(format!("unknown type `{other}`"))),
        };
        // As JsonConverter reads them: only `true` makes a schema optional, a name that is not
        // a string is no name.
        let optional = json.get("optional") == Some(&Value::Bool(true));
        let name = json.get("name").and_then(Value::as_str);
        let logical = logical(name, type_name, json.get("parameters")).map_err(error)?;
        let default = json.get("default").filter(|d| !d.is_null());
        Ok(Self {
            kind,
            optional,
            name,
            logical,
            default,
        })
    }

    /// The type expected, for errors: `int32`, or `int32 (io.debezium.time.Date)`.
    pub fn expected(&self) -> String {
        let base = match &self.kind {
            Kind::Int(Int::I8) => "int8",
            Kind::Int(Int::I16) => "int16",
            Kind::Int(Int::I32) => "int32",
            Kind::Int(Int::I64) => "int64",
            Kind::Float32 => "float32",
            Kind::Float64 => "float64",
            Kind::Boolean => "boolean",
            Kind::String => "string",
            Kind::Bytes => "bytes",
            Kind::Array(_) => "array",
            Kind::Map { .. } => "map",
            Kind::Struct(_) => "struct",
        };
        match self.name {
            Some(name) => format!("{base} ({name})"),
            None => base.to_string(),
        }
    }
}

fn fields<'a>(
    json: &'a Map<String, Value>,
    path: &Path<'_>,
    depth: usize,
) -> Result<Vec<Field<'a>>, String> {
    let error = |e: String| format!("the schema of {path}: {e}");
    let Some(Value::Array(list)) = json.get("fields") else {
        return Err(error("has no `fields` array".into()));
    };
    let mut names = HashSet::new();
    let mut fields = Vec::with_capacity(list.len());
    for (i, field) in list.iter().enumerate() {
        let Some(name) = field.get("field").and_then(Value::as_str) else {
            return Err(error(format!("field {i} has no `field` name")));
        };
        if !names.insert(name) {
            return Err(error(format!("field `{name}` is declared twice")));
        }
        let schema = Schema::parse(field, &path.field(name), depth + 1)?;
        fields.push(Field { name, schema });
    }
    Ok(fields)
}

/// The logical type `name` stands for, when it is one rendered differently from its base type,
/// checked against the base type it is defined on.
fn logical(name: Option<&str>, base: &str, parameters: Option<&Value>) -> Result<Logical, String> {
    let Some(name) = name else {
        return Ok(Logical::None);
    };
    let (logical, defined_on) = match name {
        "org.apache.kafka.connect.data.Decimal" => (
            Logical::Decimal {
                scale: scale(parameters)?,
            },
            "bytes",
        ),
        "org.apache.kafka.connect.data.Date" | "io.debezium.time.Date" => (Logical::Date, "int32"),
        "org.apache.kafka.connect.data.Time" | "io.debezium.time.Time" => {
            (Logical::Time(Unit::Millis), "int32")
        }
        "io.debezium.time.MicroTime" => (Logical::Time(Unit::Micros), "int64"),
        "io.debezium.time.NanoTime" => (Logical::Time(Unit::Nanos), "int64"),
        "org.apache.kafka.connect.data.Timestamp" => (
            Logical::Timestamp {
                unit: Unit::Millis,
                utc: true,
            },
            "int64",
        ),
        "io.debezium.time.Timestamp" => (local(Unit::Millis), "int64"),
        "io.debezium.time.MicroTimestamp" => (local(Unit::Micros), "int64"),
        "io.debezium.time.NanoTimestamp" => (local(Unit::Nanos), "int64"),
        "io.debezium.time.MicroDuration" => (Logical::MicroDuration, "int64"),
        "io.debezium.data.VariableScaleDecimal" => (Logical::VariableScaleDecimal, "struct"),
        _ => return Ok(Logical::None),
    };
    if base != defined_on {
        return Err(format!(
            "`{name}` is a logical type of {defined_on}, but the schema's type is {base}"
        ));
    }
    Ok(logical)
}

fn local(unit: Unit) -> Logical {
    Logical::Timestamp { unit, utc: false }
}

/// A `Decimal`'s `scale` parameter: a string in JsonConverter's output (a number is taken too).
fn scale(parameters: Option<&Value>) -> Result<i32, String> {
    let scale = match parameters.and_then(|p| p.get("scale")) {
        Some(Value::String(s)) => s.parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => return Err("a Decimal without its `scale` parameter".into()),
    };
    match scale {
        Some(s) if (-MAX_SCALE..=MAX_SCALE).contains(&s) => Ok(s as i32),
        _ => Err(format!(
            "a Decimal's `scale` parameter is not an integer from -{MAX_SCALE} to {MAX_SCALE}"
        )),
    }
}
