//! The files of a registered schema compiled into one descriptor pool: the schema's own file, its
//! references (each under the import path that names it), protox's copies of the well-known
//! `google/protobuf/*` files, and the Confluent and `google/type` files that serializers treat as
//! built in and do not register.
//!
//! Each file is `.proto` source, or the base64 of a serialized `FileDescriptorProto` (what the
//! registry's `?format=serialized` returns, and what some serializers register).

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
use base64::Engine as _;
use prost_reflect::prost::Message as _;
use prost_reflect::prost_types::FileDescriptorProto;
use prost_reflect::DescriptorPool;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use crate::decode::formats::schemas::RegisteredSchema;

/// References nested deeper than this are refused: the registry cannot hold a cycle, but a
/// misbehaving one could send one.
const MAX_REFERENCE_DEPTH: usize = 32;

/// Compiles `schema` with its imports; returns the pool and the name of the schema's own file in
/// it. Errors name the file, and the line and column where the source says where.
pub(super) fn compile(schema: &RegisteredSchema) -> Result<(DescriptorPool, String), String> {
    let mut texts = HashMap::new();
    collect_references(schema, &mut texts, 0)?;
    let mut main = format!("schema-{}.proto", schema.id);
    while texts.contains_key(&main) {
        main.insert(0, '_');
    }
    texts.insert(main.clone(), schema.text.clone());
    // The writer's own copies come first: a reference of the same name replaces a built-in.
    for (name, text) in BUILT_IN {
        texts
            .entry((*name).to_owned())
            .or_insert_with(|| (*text).to_owned());
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(Texts(texts));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.open_file(&main).map_err(|e| describe(&e))?;
    Ok((compiler.descriptor_pool(), main))
}

/// protox's `Debug` is the form with the place (`file:line:column: message`) where the error has
/// one; the others get the file's name.
fn describe(e: &protox::Error) -> String {
    let text = format!("{e:?}");
    match e.file() {
        Some(file) if !text.starts_with(file) => format!("{file}: {text}"),
        _ => text,
    }
}

/// The texts of `schema`'s references by import path, recursively; where two share a path, the
/// one nearer the schema wins.
fn collect_references(
    schema: &RegisteredSchema,
    texts: &mut HashMap<String, String>,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_REFERENCE_DEPTH {
        return Err(format!(
            "schema {}: references nest deeper than {MAX_REFERENCE_DEPTH}",
            schema.id
        ));
    }
    for r in &schema.references {
        texts
            .entry(r.name.clone())
            .or_insert_with(|| r.schema.text.clone());
    }
    for r in &schema.references {
        collect_references(&r.schema, texts, depth + 1)?;
    }
    Ok(())
}

/// Files by import path, parsed when the compiler asks for them.
struct Texts(HashMap<String, String>);

impl FileResolver for Texts {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let text = self
            .0
            .get(name)
            .ok_or_else(|| protox::Error::file_not_found(name))?;
        match base64_body(text) {
            Some(Ok(bytes)) => {
                let mut descriptor =
                    FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
                        invalid(format!(
                            "{name}: base64, but not of a serialized FileDescriptorProto: {e}"
                        ))
                    })?;
                // Imports find a file by the name it has in the pool: the path that imports it.
                descriptor.name = Some(name.to_owned());
                Ok(File::from_file_descriptor_proto(descriptor))
            }
            Some(Err(e)) => Err(invalid(format!(
                "{name}: neither .proto source nor base64 of a FileDescriptorProto: {e}"
            ))),
            None => File::from_source(name, text),
        }
    }
}

/// The bytes `text` encodes when it is base64, `None` when it is not meant as base64. `.proto`
/// source always has a character outside the base64 alphabet (`;`, `{`, a space), so a text made
/// of that alphabet alone is base64 or nothing.
fn base64_body(text: &str) -> Option<Result<Vec<u8>, base64::DecodeError>> {
    let text = text.trim();
    let standard = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    let url_safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=');
    if text.is_empty() {
        None
    } else if text.bytes().all(standard) {
        Some(STANDARD_PAD_INDIFFERENT.decode(text))
    } else if text.bytes().all(url_safe) {
        Some(URL_SAFE_PAD_INDIFFERENT.decode(text))
    } else {
        None
    }
}

fn invalid(message: String) -> protox::Error {
    protox::Error::new(Invalid(message))
}

/// An error of ours inside a protox error; its `Debug` is the message, as protox's own are.
struct Invalid(String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// Files the Schema Registry and Confluent's serializers know without a reference, so a schema
/// may import them without registering them. Only the types rendered specially, and the options
/// file that annotates fields, are here; other `google/type` files must come as references.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "confluent/meta.proto",
        r#"syntax = "proto3";
package confluent;
import "google/protobuf/descriptor.proto";
message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
}
extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
extend google.protobuf.EnumOptions { Meta enum_meta = 1088; }
extend google.protobuf.EnumValueOptions { Meta enum_value_meta = 1088; }
"#,
    ),
    (
        "confluent/type/decimal.proto",
        r#"syntax = "proto3";
package confluent.type;
message Decimal {
  bytes value = 1;
  uint32 precision = 2;
  int32 scale = 3;
}
"#,
    ),
    (
        "google/type/date.proto",
        r#"syntax = "proto3";
package google.type;
message Date {
  int32 year = 1;
  int32 month = 2;
  int32 day = 3;
}
"#,
    ),
    (
        "google/type/decimal.proto",
        r#"syntax = "proto3";
package google.type;
message Decimal {
  string value = 1;
}
"#,
    ),
];
