//! `check`'s look at the Schema Registry: it answers, and where a topic's subject is known
//! (`<topic>-value`, `<topic>-key`: the default subject names), every mapped field is in the
//! subject's latest schema, with a kind its column's explicit type accepts.

use std::sync::Arc;

use super::Registry;
use crate::config::{path_text, ColumnSource, ColumnType, Config, Format, Mapping, PathSegment};
use crate::decode::formats::schemas::Decoding;
use crate::decode::formats::{RegisteredSchema, SchemaKind, Schemas};
use crate::error::Error;
use crate::metrics::Metrics;

/// The problems found; empty when every checked field is there.
pub async fn check(config: &Config) -> Result<Vec<String>, Error> {
    let Some(settings) = &config.schema_registry else {
        return Ok(Vec::new());
    };
    let metrics = Metrics::new().map_err(|e| Error::Fatal(e.to_string()))?;
    let registry = Registry::new(
        settings,
        &config.mappings,
        Arc::new(Schemas::default()),
        metrics,
        Arc::default(),
    )?;
    let mut problems = Vec::new();
    for (i, m) in config.mappings.iter().enumerate() {
        for part in [Part::Value, Part::Key] {
            let format = match part {
                Part::Value => Some(m.format),
                Part::Key => m.key_format,
            };
            if !format.is_some_and(Format::uses_registry) {
                continue;
            }
            let subject = format!("{}-{}", m.topic, part.name());
            let latest = match registry.latest(&subject).await {
                Ok(Some(latest)) => latest,
                // Another subject name strategy: nothing to compare with.
                Ok(None) => continue,
                Err(e) => {
                    problems.push(format!(
                        "schema_registry: cannot read subject `{subject}` at {}: {e}",
                        registry.client.url()
                    ));
                    return Ok(problems);
                }
            };
            for problem in fields(m, part, &latest) {
                problems.push(format!("mappings[{i}] (subject `{subject}`): {problem}"));
            }
        }
    }
    Ok(problems)
}

#[derive(Clone, Copy)]
enum Part {
    Value,
    Key,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Self::Value => "value",
            Self::Key => "key",
        }
    }
}

/// Each mapped path of `part` against `schema`.
fn fields(m: &Mapping, part: Part, schema: &RegisteredSchema) -> Vec<String> {
    let decoding = match Decoding::parse(schema) {
        Ok(decoding) => decoding,
        Err(e) => {
            return vec![format!(
                "the latest schema (id {}) cannot be parsed: {e}",
                schema.id
            )]
        }
    };
    let mut problems = Vec::new();
    for c in &m.columns {
        let path = match (&c.source, part) {
            (ColumnSource::Value(path), Part::Value) | (ColumnSource::Key(path), Part::Key) => path,
            _ => continue,
        };
        let kinds = match (&decoding, schema.kind) {
            (Decoding::Avro(avro), _) => avro.kinds_at(path),
            (_, SchemaKind::Json) => json_kinds_at(&schema.text, path),
            // Protobuf fields are checked when a record is decoded.
            _ => continue,
        };
        match kinds {
            Err(e) => problems.push(format!(
                "column `{}`: {e} (latest version, id {})",
                c.name, schema.id
            )),
            Ok(kinds) => {
                if let Some(ty) = c.ty.filter(|&ty| !kinds.iter().any(|k| accepts(ty, k))) {
                    problems.push(format!(
                        "column `{}`: `{}` is {} in the latest schema (id {}), which types.{} = {} does not take",
                        c.name,
                        path_text(path),
                        kinds.join(" or "),
                        schema.id,
                        c.name,
                        ty.pg_name()
                    ));
                }
            }
        }
    }
    problems
}

/// Whether a column converted to `ty` takes a value of `kind`.
fn accepts(ty: ColumnType, kind: &str) -> bool {
    use ColumnType::*;
    match ty {
        Text | Jsonb => true,
        Smallint | Integer | Bigint => matches!(kind, "integer" | "value"),
        Numeric => matches!(kind, "integer" | "float" | "decimal" | "string" | "value"),
        Double => matches!(kind, "integer" | "float" | "decimal" | "value"),
        Boolean => matches!(kind, "boolean" | "value"),
        Timestamptz => matches!(kind, "timestamp" | "string" | "integer" | "value"),
        Date => matches!(kind, "date" | "string" | "value"),
        Uuid => matches!(kind, "uuid" | "string" | "value"),
        Bytea => matches!(kind, "bytes" | "string" | "value"),
    }
}

/// The kinds at `path` in a JSON Schema (`properties`, `items`, `type`); `$ref`s and
/// combinators are not followed (their fields are taken as present).
fn json_kinds_at(text: &str, path: &[PathSegment]) -> Result<Vec<&'static str>, String> {
    let schema: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the JSON Schema is not JSON: {e}"))?;
    let mut current = &schema;
    for (depth, segment) in path.iter().enumerate() {
        if current.get("$ref").is_some()
            || ["anyOf", "oneOf", "allOf"]
                .iter()
                .any(|k| current.get(k).is_some())
        {
            return Ok(vec!["value"]);
        }
        let next = match segment {
            PathSegment::Field(name) => current
                .get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| {
                    current
                        .get("additionalProperties")
                        .filter(|a| a.is_object())
                }),
            PathSegment::Index(_) => current.get("items"),
        };
        current =
            next.ok_or_else(|| format!("`{}` is not in the schema", path_text(&path[..=depth])))?;
    }
    let types: Vec<&str> = match current.get("type") {
        Some(serde_json::Value::String(t)) => vec![t.as_str()],
        Some(serde_json::Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str()).collect(),
        _ => return Ok(vec!["value"]),
    };
    Ok(types
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| match t {
            "integer" => "integer",
            "number" => "float",
            "boolean" => "boolean",
            "string" => "string",
            "array" => "array",
            _ => "object",
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_schema_paths_and_kinds() {
        let schema = r#"{"type": "object", "properties": {
            "id": {"type": "integer"}, "note": {"type": ["null", "string"]},
            "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}}}}"#;
        let field = |f: &str| PathSegment::Field(f.into());
        assert_eq!(json_kinds_at(schema, &[field("id")]).unwrap(), ["integer"]);
        assert_eq!(json_kinds_at(schema, &[field("note")]).unwrap(), ["string"]);
        assert_eq!(
            json_kinds_at(
                schema,
                &[field("items"), PathSegment::Index(0), field("sku")]
            )
            .unwrap(),
            ["string"]
        );
        let missing = json_kinds_at(schema, &[field("items"), PathSegment::Index(0), field("x")]);
        assert_eq!(missing.unwrap_err(), "`items[0].x` is not in the schema");
        assert!(accepts(ColumnType::Bigint, "integer"));
        assert!(!accepts(ColumnType::Bigint, "string"));
        assert!(accepts(ColumnType::Numeric, "decimal"));
        assert!(!accepts(ColumnType::Boolean, "timestamp"));
    }
}
