//! Avro bodies, decoded with the writer's schema by `apache-avro` and rendered as JSON.
//!
//! A union is rendered as the value of its branch (`null` for the null branch), logical types as
//! [`render`] writes them: `decimal` (bytes or fixed) from its unscaled value and the schema's
//! scale, `timestamp-*` as UTC instants, `local-timestamp-*` without zone, `date`, `time-*`,
//! `uuid`, `duration` as an ISO 8601 interval; `bytes` and `fixed` as `bytea` hex; enums as their
//! symbol; maps and records as objects.

use std::collections::HashMap;

use apache_avro::headers::HeaderBuilder;
use apache_avro::schema::{Name, Schema};
use apache_avro::types::Value;
use apache_avro::GenericSingleObjectReader;

use super::render::{self, Unit};
use super::schemas::RegisteredSchema;
use crate::config::PathSegment;

/// A writer's schema with the named types of its references.
pub struct AvroSchema {
    schema: Schema,
    /// For a schema without references: a reader that resolved the schema's names once (the
    /// functions that take a schema resolve them again for every record, which cost more than
    /// decoding the record).
    reader: Option<GenericSingleObjectReader>,
    /// The referenced schemas, in the order they were parsed.
    referenced: Vec<Schema>,
    /// Every named type, for `Ref`s.
    names: HashMap<Name, Schema>,
}

impl AvroSchema {
    /// Parses a registered schema with its references (named types defined in other subjects).
    pub fn parse(registered: &RegisteredSchema) -> Result<Self, String> {
        let mut texts = Vec::new();
        collect_references(registered, &mut texts, 0)?;
        let (schema, referenced) = Schema::parse_str_with_list(&registered.text, &texts)
            .map_err(|e| format!("schema {} is not a valid Avro schema: {e}", registered.id))?;
        let mut names = HashMap::new();
        for s in referenced.iter().chain(std::iter::once(&schema)) {
            collect_names(s, &mut names);
        }
        let reader = if referenced.is_empty() {
            let reader =
                GenericSingleObjectReader::new_with_header_builder(schema.clone(), NoHeader)
                    .map_err(|e| {
                        format!("schema {} is not a valid Avro schema: {e}", registered.id)
                    })?;
            Some(reader)
        } else {
            None
        };
        Ok(Self {
            schema,
            reader,
            referenced,
            names,
        })
    }

    /// Decodes one body (after the 5-byte header) and appends it to `out` as JSON.
    pub fn transcode(&self, body: &[u8], out: &mut String) -> Result<(), String> {
        let mut reader = body;
        let value = match &self.reader {
            Some(resolved) => resolved.read_value(&mut reader),
            None => apache_avro::from_avro_datum_schemata(
                &self.schema,
                self.referenced.iter().collect(),
                &mut reader,
                None,
            ),
        }
        .map_err(|e| format!("body does not decode with its schema: {e}"))?;
        if !reader.is_empty() {
            return Err(format!(
                "{} byte(s) left after the record: the body was not written with this schema",
                reader.len()
            ));
        }
        self.render(&value, &self.schema, out, 0)
    }

    fn render(
        &self,
        value: &Value,
        schema: &Schema,
        out: &mut String,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let schema = self.resolve(schema)?;
        match (value, schema) {
            (Value::Union(i, inner), Schema::Union(union)) => {
                let branch = union
                    .variants()
                    .get(*i as usize)
                    .ok_or_else(|| format!("union branch {i} is not in the schema"))?;
                self.render(inner, branch, out, depth + 1)
            }
            (Value::Union(_, inner), other) => self.render(inner, other, out, depth + 1),
            (Value::Null, _) => {
                render::null(out);
                Ok(())
            }
            (Value::Boolean(b), _) => {
                render::boolean(out, *b);
                Ok(())
            }
            (Value::Int(n), _) => {
                render::integer(out, *n);
                Ok(())
            }
            (Value::Long(n), _) => {
                render::integer(out, *n);
                Ok(())
            }
            (Value::Float(f), _) => {
                render::float(out, f64::from(*f), true);
                Ok(())
            }
            (Value::Double(f), _) => {
                render::float(out, *f, false);
                Ok(())
            }
            (Value::Bytes(b) | Value::Fixed(_, b), _) => {
                render::bytes(out, b);
                Ok(())
            }
            (Value::String(s), _) | (Value::Enum(_, s), _) => {
                render::string(out, s);
                Ok(())
            }
            (Value::Uuid(u), _) => {
                render::string(out, &u.to_string());
                Ok(())
            }
            (Value::Decimal(d), Schema::Decimal(ds)) => {
                let bytes = Vec::<u8>::try_from(d).map_err(|e| format!("decimal: {e}"))?;
                render::decimal(out, &bytes, ds.scale as u32);
                Ok(())
            }
            (Value::Decimal(_), other) => Err(format!("a decimal where the schema has {other:?}")),
            (Value::BigDecimal(d), _) => {
                out.push_str(&d.to_plain_string());
                Ok(())
            }
            (Value::Date(days), _) => {
                render::date(out, i64::from(*days));
                Ok(())
            }
            (Value::TimeMillis(t), _) => render::time(out, i64::from(*t), Unit::Millis),
            (Value::TimeMicros(t), _) => render::time(out, *t, Unit::Micros),
            (Value::TimestampMillis(t), _) => {
                render::timestamp(out, *t, Unit::Millis, true);
                Ok(())
            }
            (Value::TimestampMicros(t), _) => {
                render::timestamp(out, *t, Unit::Micros, true);
                Ok(())
            }
            (Value::TimestampNanos(t), _) => {
                render::timestamp(out, *t, Unit::Nanos, true);
                Ok(())
            }
            (Value::LocalTimestampMillis(t), _) => {
                render::timestamp(out, *t, Unit::Millis, false);
                Ok(())
            }
            (Value::LocalTimestampMicros(t), _) => {
                render::timestamp(out, *t, Unit::Micros, false);
                Ok(())
            }
            (Value::LocalTimestampNanos(t), _) => {
                render::timestamp(out, *t, Unit::Nanos, false);
                Ok(())
            }
            (Value::Duration(d), _) => {
                let (months, days, millis) = (
                    u32::from(d.months()),
                    u32::from(d.days()),
                    u32::from(d.millis()),
                );
                out.push_str(&format!(
                    "\"P{months}M{days}DT{}.{:03}S\"",
                    millis / 1000,
                    millis % 1000
                ));
                Ok(())
            }
            (Value::Array(items), Schema::Array(array)) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.render(item, &array.items, out, depth + 1)?;
                }
                out.push(']');
                Ok(())
            }
            (Value::Map(entries), Schema::Map(map)) => {
                // Sorted by key, so the same map always renders the same text.
                let mut sorted: Vec<_> = entries.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render::string(out, k);
                    out.push(':');
                    self.render(v, &map.types, out, depth + 1)?;
                }
                out.push('}');
                Ok(())
            }
            (Value::Record(fields), Schema::Record(record)) => {
                out.push('{');
                for (i, ((name, v), field)) in fields.iter().zip(&record.fields).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render::string(out, name);
                    out.push(':');
                    self.render(v, &field.schema, out, depth + 1)?;
                }
                out.push('}');
                Ok(())
            }
            (value, schema) => Err(format!(
                "decoded {} where the schema has {}",
                kind(value),
                schema_kind(schema)
            )),
        }
    }

    /// The kinds of value found at `path` of a record written with this schema (every non-null
    /// branch of a union), for `check`; an error naming the first segment that does not exist.
    pub fn kinds_at(&self, path: &[PathSegment]) -> Result<Vec<&'static str>, String> {
        let mut current = vec![&self.schema];
        for (depth, segment) in path.iter().enumerate() {
            let mut next = Vec::new();
            for schema in current {
                for schema in self.branches(schema) {
                    match (schema, segment) {
                        (Schema::Record(r), PathSegment::Field(name)) => {
                            if let Some(&i) = r.lookup.get(name) {
                                next.push(&r.fields[i].schema);
                            }
                        }
                        (Schema::Map(m), PathSegment::Field(_)) => next.push(&*m.types),
                        (Schema::Array(a), PathSegment::Index(_)) => next.push(&*a.items),
                        _ => {}
                    }
                }
            }
            if next.is_empty() {
                return Err(format!(
                    "`{}` is not in the schema",
                    crate::config::path_text(&path[..=depth])
                ));
            }
            current = next;
        }
        let mut kinds: Vec<&'static str> = current
            .into_iter()
            .flat_map(|s| self.branches(s))
            .map(logical_kind)
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        Ok(kinds)
    }

    /// A schema's non-null union branches (the schema itself when not a union), refs resolved.
    fn branches<'s>(&'s self, schema: &'s Schema) -> Vec<&'s Schema> {
        let schema = self.resolve(schema).unwrap_or(schema);
        match schema {
            Schema::Union(u) => u
                .variants()
                .iter()
                .map(|v| self.resolve(v).unwrap_or(v))
                .filter(|v| !matches!(v, Schema::Null))
                .collect(),
            other => vec![other],
        }
    }

    fn resolve<'s>(&'s self, schema: &'s Schema) -> Result<&'s Schema, String> {
        match schema {
            Schema::Ref { name } => self
                .names
                .get(name)
                .ok_or_else(|| format!("named type `{}` is not defined", name.fullname(None))),
            other => Ok(other),
        }
    }
}

impl std::fmt::Debug for AvroSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroSchema")
            .field("schema", &self.schema)
            .field("referenced", &self.referenced.len())
            .finish_non_exhaustive()
    }
}

/// The Confluent framing is split off before the body reaches the reader: no header of its own.
struct NoHeader;

impl HeaderBuilder for NoHeader {
    fn build_header(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// Nesting beyond this is refused rather than followed (a recursive schema's data is finite, but
/// a hostile body could nest deeply).
const MAX_DEPTH: usize = 128;

/// The texts of `schema`'s references, dependencies first, each once.
fn collect_references(
    schema: &RegisteredSchema,
    texts: &mut Vec<String>,
    depth: usize,
) -> Result<(), String> {
    if depth > 32 {
        return Err(format!(
            "schema {}: references nest deeper than 32",
            schema.id
        ));
    }
    for r in &schema.references {
        collect_references(&r.schema, texts, depth + 1)?;
        if !texts.contains(&r.schema.text) {
            texts.push(r.schema.text.clone());
        }
    }
    Ok(())
}

fn collect_names(schema: &Schema, names: &mut HashMap<Name, Schema>) {
    match schema {
        Schema::Record(r) => {
            names.insert(r.name.clone(), schema.clone());
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.clone(), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(f.name.clone(), schema.clone());
        }
        Schema::Decimal(d) => {
            if let Schema::Fixed(f) = &*d.inner {
                names.insert(f.name.clone(), schema.clone());
            }
        }
        Schema::Array(a) => collect_names(&a.items, names),
        Schema::Map(m) => collect_names(&m.types, names),
        Schema::Union(u) => {
            for v in u.variants() {
                collect_names(v, names);
            }
        }
        _ => {}
    }
}

/// A schema's kind as `check` compares it with column types.
fn logical_kind(schema: &Schema) -> &'static str {
    match schema {
        Schema::Null => "null",
        Schema::Boolean => "boolean",
        Schema::Int | Schema::Long => "integer",
        Schema::Float | Schema::Double => "float",
        Schema::Bytes | Schema::Fixed(_) => "bytes",
        Schema::String | Schema::Enum(_) => "string",
        Schema::Decimal(_) | Schema::BigDecimal => "decimal",
        Schema::Uuid => "uuid",
        Schema::Date => "date",
        Schema::TimeMillis | Schema::TimeMicros => "time",
        Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => "timestamp",
        Schema::Duration => "interval",
        Schema::Array(_) => "array",
        Schema::Map(_) | Schema::Record(_) => "object",
        Schema::Union(_) | Schema::Ref { .. } => "value",
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Record(_) => "a record",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        _ => "a value",
    }
}

fn schema_kind(schema: &Schema) -> String {
    format!("{:?}", apache_avro::schema::SchemaKind::from(schema))
}

#[cfg(test)]
mod tests;
