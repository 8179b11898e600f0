//! What the test registry remembers, with no IO: schemas by global id and subjects as lists of
//! versions. It keeps the two promises a Schema Registry client relies on: one schema (type,
//! text, references) has one global id whatever subject it is registered under, and registering
//! a schema a subject already has returns its id without adding a version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The three schema types of the Confluent wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaType {
    Avro,
    Protobuf,
    Json,
}

impl SchemaType {
    /// The name the REST API uses (`schemaType`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Protobuf => "PROTOBUF",
            Self::Json => "JSON",
        }
    }

    /// The type named `name` (the API's `schemaType`, case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Avro, Self::Protobuf, Self::Json]
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }
}

/// A reference from one schema to a version of another subject (an imported `.proto` file, a
/// named Avro type, a `$ref`d JSON schema).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: u32,
}

/// A schema as registered: identical values are one schema with one id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    pub schema_type: SchemaType,
    pub text: String,
    pub references: Vec<Reference>,
}

/// Which version of a subject a request names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Latest,
    Number(u32),
}

impl Version {
    /// `latest`, `-1` (also the latest) or a version number from 1.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "latest" | "-1" => Ok(Self::Latest),
            _ => match text.parse::<u32>() {
                Ok(n) if n >= 1 && n <= i32::MAX as u32 => Ok(Self::Number(n)),
                _ => Err(StoreError::InvalidVersion(text.to_owned())),
            },
        }
    }
}

/// Why a request cannot be answered, with the registry's error code for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    SubjectNotFound(String),
    VersionNotFound(u32),
    SchemaNotFound,
    InvalidSchema(String),
    InvalidVersion(String),
}

impl StoreError {
    /// The HTTP status and the `error_code` of the registry's error body.
    pub fn codes(&self) -> (u16, u32) {
        match self {
            Self::SubjectNotFound(_) => (404, 40401),
            Self::VersionNotFound(_) => (404, 40402),
            Self::SchemaNotFound => (404, 40403),
            Self::InvalidSchema(_) => (422, 42201),
            Self::InvalidVersion(_) => (422, 42202),
        }
    }

    /// The error body's `message`.
    pub fn message(&self) -> String {
        match self {
            Self::SubjectNotFound(subject) => format!("Subject '{subject}' not found."),
            Self::VersionNotFound(version) => format!("Version {version} not found."),
            Self::SchemaNotFound => "Schema not found".to_owned(),
            Self::InvalidSchema(why) => format!("Invalid schema: {why}"),
            Self::InvalidVersion(text) => format!(
                "The specified version '{text}' is not a valid version id. Allowed values are \
                 between [1, 2^31-1] and the string \"latest\""
            ),
        }
    }
}

/// A subject's version: its number and the schema's global id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    pub version: u32,
    pub id: u32,
}

/// Every schema and subject of one registry.
#[derive(Default)]
pub struct Store {
    /// Schema with id `n` at index `n - 1`: ids start at 1 and are never reused.
    schemas: Vec<Schema>,
    /// Each subject's versions in order: version `n` (the schema id) at index `n - 1`.
    subjects: BTreeMap<String, Vec<u32>>,
}

impl Store {
    /// Registers `schema` under `subject`: its id, new or existing.
    pub fn register(&mut self, subject: &str, schema: Schema) -> Result<u32, StoreError> {
        self.check(&schema)?;
        let id = match self.schemas.iter().position(|s| *s == schema) {
            Some(index) => index as u32 + 1,
            None => {
                self.schemas.push(schema);
                self.schemas.len() as u32
            }
        };
        let versions = self.subjects.entry(subject.to_owned()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        Ok(id)
    }

    /// The version of `subject` that holds `schema`.
    pub fn lookup(&self, subject: &str, schema: &Schema) -> Result<Registered, StoreError> {
        let versions = self.versions_of(subject)?;
        versions
            .iter()
            .position(|&id| self.schemas[id as usize - 1] == *schema)
            .map(|index| Registered {
                version: index as u32 + 1,
                id: versions[index],
            })
            .ok_or(StoreError::SchemaNotFound)
    }

    /// The schema with global id `id`.
    pub fn schema(&self, id: u32) -> Result<&Schema, StoreError> {
        (id as usize)
            .checked_sub(1)
            .and_then(|index| self.schemas.get(index))
            .ok_or(StoreError::SchemaNotFound)
    }

    /// Every subject, in name order.
    pub fn subjects(&self) -> Vec<String> {
        self.subjects.keys().cloned().collect()
    }

    /// The version numbers of `subject`.
    pub fn versions(&self, subject: &str) -> Result<Vec<u32>, StoreError> {
        Ok((1..=self.versions_of(subject)?.len() as u32).collect())
    }

    /// One version of `subject`.
    pub fn version(&self, subject: &str, version: Version) -> Result<Registered, StoreError> {
        let versions = self.versions_of(subject)?;
        let number = match version {
            Version::Latest => versions.len() as u32,
            Version::Number(n) => n,
        };
        let id = (number as usize)
            .checked_sub(1)
            .and_then(|index| versions.get(index))
            .ok_or(StoreError::VersionNotFound(number))?;
        Ok(Registered {
            version: number,
            id: *id,
        })
    }

    /// Every (subject, version) that holds the schema with id `id`.
    pub fn usages(&self, id: u32) -> Result<Vec<(String, u32)>, StoreError> {
        self.schema(id)?;
        Ok(self
            .subjects
            .iter()
            .flat_map(|(subject, versions)| {
                let at = versions.iter().position(|&v| v == id);
                at.map(|index| (subject.clone(), index as u32 + 1))
            })
            .collect())
    }

    fn versions_of(&self, subject: &str) -> Result<&Vec<u32>, StoreError> {
        self.subjects
            .get(subject)
            .ok_or_else(|| StoreError::SubjectNotFound(subject.to_owned()))
    }

    /// What a registry refuses before storing: an empty schema, Avro or JSON Schema text that
    /// is not JSON, and a reference to a version that does not exist. (A real registry parses
    /// the schema fully; this one trusts the test.)
    fn check(&self, schema: &Schema) -> Result<(), StoreError> {
        if schema.text.trim().is_empty() {
            return Err(StoreError::InvalidSchema("empty schema".into()));
        }
        if schema.schema_type != SchemaType::Protobuf {
            serde_json::from_str::<serde_json::Value>(&schema.text)
                .map_err(|e| StoreError::InvalidSchema(e.to_string()))?;
        }
        for reference in &schema.references {
            let found = self.version(&reference.subject, Version::Number(reference.version));
            if found.is_err() {
                return Err(StoreError::InvalidSchema(format!(
                    "reference {} to version {} of subject '{}', which does not exist",
                    reference.name, reference.version, reference.subject
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avro(text: &str) -> Schema {
        Schema {
            schema_type: SchemaType::Avro,
            text: text.into(),
            references: vec![],
        }
    }

    #[test]
    fn one_schema_has_one_id_across_subjects_and_registrations() {
        let mut store = Store::default();
        let a = store.register("a-value", avro(r#""string""#)).unwrap();
        let b = store.register("b-value", avro(r#""string""#)).unwrap();
        let again = store.register("a-value", avro(r#""string""#)).unwrap();
        assert_eq!((a, b, again), (1, 1, 1));
        assert_eq!(store.versions("a-value").unwrap(), vec![1]);
        let other = Schema {
            schema_type: SchemaType::Json,
            ..avro(r#""string""#)
        };
        assert_eq!(store.register("a-value", other).unwrap(), 2);
        assert_eq!(
            store.usages(1).unwrap(),
            vec![("a-value".into(), 1), ("b-value".into(), 1)]
        );
    }

    #[test]
    fn an_older_schema_registered_again_adds_no_version() {
        let mut store = Store::default();
        store.register("s", avro(r#""int""#)).unwrap();
        store.register("s", avro(r#""long""#)).unwrap();
        assert_eq!(store.register("s", avro(r#""int""#)).unwrap(), 1);
        assert_eq!(store.versions("s").unwrap(), vec![1, 2]);
        let latest = store.version("s", Version::Latest).unwrap();
        assert_eq!(latest, Registered { version: 2, id: 2 });
        assert_eq!(store.lookup("s", &avro(r#""int""#)).unwrap().version, 1);
    }

    #[test]
    fn missing_things_have_their_error_codes() {
        let mut store = Store::default();
        store.register("s", avro(r#""int""#)).unwrap();
        let code = |e: StoreError| e.codes().1;
        assert_eq!(code(store.versions("t").unwrap_err()), 40401);
        assert_eq!(
            code(store.version("s", Version::Number(2)).unwrap_err()),
            40402
        );
        assert_eq!(code(store.schema(7).unwrap_err()), 40403);
        assert_eq!(code(store.schema(0).unwrap_err()), 40403);
        assert_eq!(
            code(store.lookup("s", &avro(r#""long""#)).unwrap_err()),
            40403
        );
        assert_eq!(code(Version::parse("0").unwrap_err()), 42202);
        assert_eq!(Version::parse("-1").unwrap(), Version::Latest);
    }

    #[test]
    fn refuses_invalid_schemas_and_dangling_references() {
        let mut store = Store::default();
        let code = |e: StoreError| e.codes().1;
        assert_eq!(
            code(store.register("s", avro("{not json")).unwrap_err()),
            42201
        );
        assert_eq!(code(store.register("s", avro(" ")).unwrap_err()), 42201);
        let dangling = Schema {
            references: vec![Reference {
                name: "other.proto".into(),
                subject: "other.proto".into(),
                version: 1,
            }],
            schema_type: SchemaType::Protobuf,
            text: "syntax = \"proto3\";".into(),
        };
        assert_eq!(code(store.register("s", dangling).unwrap_err()), 42201);
        assert!(store.subjects().is_empty());
    }
}
