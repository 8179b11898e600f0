//! Schemas by registry id: what the registry answered, and each parsed once for decoding.
//!
//! The cache is filled by the registry client before a batch is decoded, so decoding itself never
//! waits on the network: a record whose id is not here is a decode failure the caller prevented.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{avro::AvroSchema, protobuf::ProtoSchema};

/// The kind of a registered schema (`schemaType`; absent means Avro).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaKind {
    Avro,
    Protobuf,
    Json,
}

impl SchemaKind {
    /// From the registry's `schemaType` field.
    pub fn from_registry(schema_type: Option<&str>) -> Result<Self, String> {
        match schema_type {
            None | Some("AVRO") => Ok(Self::Avro),
            Some("PROTOBUF") => Ok(Self::Protobuf),
            Some("JSON") => Ok(Self::Json),
            Some(other) => Err(format!("unknown schemaType `{other}`")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Protobuf => "PROTOBUF",
            Self::Json => "JSON",
        }
    }
}

/// A schema as the registry gives it, with its references resolved (recursively).
#[derive(Clone, Debug)]
pub struct RegisteredSchema {
    pub id: u32,
    pub kind: SchemaKind,
    pub text: String,
    pub references: Vec<Reference>,
}

/// A reference of a schema: for Avro, a named type's full name; for Protobuf, the import path.
#[derive(Clone, Debug)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i32,
    pub schema: RegisteredSchema,
}

/// A schema ready to decode with.
#[derive(Debug)]
pub enum Decoding {
    /// Boxed: a parsed Avro schema is much larger than the other variants.
    Avro(Box<AvroSchema>),
    Protobuf(ProtoSchema),
    /// JSON Schema: the body is JSON and is read as such; the schema is not needed to decode.
    Json,
}

impl Decoding {
    pub fn kind(&self) -> SchemaKind {
        match self {
            Self::Avro(_) => SchemaKind::Avro,
            Self::Protobuf(_) => SchemaKind::Protobuf,
            Self::Json => SchemaKind::Json,
        }
    }

    /// Parses a registered schema; an error when it cannot be parsed.
    pub fn parse(schema: &RegisteredSchema) -> Result<Self, String> {
        match schema.kind {
            SchemaKind::Avro => AvroSchema::parse(schema).map(|a| Self::Avro(Box::new(a))),
            SchemaKind::Protobuf => ProtoSchema::parse(schema).map(Self::Protobuf),
            SchemaKind::Json => Ok(Self::Json),
        }
    }
}

/// What an id resolved to: a schema, or why it cannot be used (an unparseable schema makes every
/// record written with it a bad record).
pub type Entry = Result<Arc<Decoding>, String>;

/// The schemas seen so far, shared by every writer.
#[derive(Debug, Default)]
pub struct Schemas {
    by_id: RwLock<HashMap<u32, Entry>>,
}

impl Schemas {
    pub fn get(&self, id: u32) -> Option<Entry> {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn contains(&self, id: u32) -> bool {
        self.by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    pub fn insert(&self, id: u32, entry: Entry) {
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, entry);
    }

    pub fn remove(&self, id: u32) {
        self.by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub fn len(&self) -> usize {
        self.by_id.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
