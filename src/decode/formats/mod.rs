//! Payload formats other than plain JSON, turned into the JSON text the decoder reads: Avro,
//! Protobuf and JSON Schema in the Confluent wire format, and Kafka Connect's JSON envelope.
//!
//! Guarantee: a payload is rendered exactly (see [`render`]) or refused with the reason, the
//! schema id included; decoding arbitrary bytes never panics.
//!
//! - `wire`: the Confluent framing (magic byte 0, a 4-byte schema id).
//! - `schemas`: the schemas by id, as fetched from a registry and parsed once.
//! - `avro`, `protobuf`: a body decoded with its writer's schema, by maintained crates.
//! - `connect`: Kafka Connect's `{"schema", "payload"}` with its logical types.
//! - `render`: the one JSON rendering of decoded values.

pub mod avro;
pub mod connect;
pub mod protobuf;
pub mod render;
pub mod schemas;
pub mod wire;

pub use schemas::{Reference, RegisteredSchema, SchemaKind, Schemas};

use crate::config::Format;
use schemas::Decoding;

/// Where a payload's JSON text is: the payload itself (`json`, the body of `json_schema`), or
/// appended to the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Json<'a> {
    Borrowed(&'a [u8]),
    Appended,
}

/// The JSON text a payload in `format` reads as: borrowed where the payload is JSON already,
/// else rendered at the end of `out` (on an error, `out` is left as it was). Errors name the
/// schema id. One buffer serves a whole batch, so a record costs no allocation of its own.
pub fn to_json<'a>(
    format: Format,
    bytes: &'a [u8],
    schemas: &Schemas,
    out: &mut String,
) -> Result<Json<'a>, String> {
    let start = out.len();
    let result = render_json(format, bytes, schemas, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn render_json<'a>(
    format: Format,
    bytes: &'a [u8],
    schemas: &Schemas,
    out: &mut String,
) -> Result<Json<'a>, String> {
    match format {
        Format::Json | Format::Text | Format::Bytes => Ok(Json::Borrowed(bytes)),
        Format::ConnectJson => connect::transcode(bytes, out).map(|()| Json::Appended),
        Format::Avro | Format::Protobuf | Format::JsonSchema => {
            let framed = wire::split(bytes)?;
            let id = framed.id;
            let schema = schemas
                .get(id)
                .ok_or_else(|| format!("schema id {id} was not fetched from the registry"))?
                .map_err(|e| format!("schema id {id}: {e}"))?;
            match (format, &*schema) {
                (Format::Avro, Decoding::Avro(avro)) => avro.transcode(framed.body, out),
                (Format::Protobuf, Decoding::Protobuf(proto)) => proto.transcode(framed.body, out),
                (Format::JsonSchema, Decoding::Json) => return Ok(Json::Borrowed(framed.body)),
                (_, found) => Err(format!(
                    "it is a {} schema, but the mapping's format is {}",
                    found.kind().name(),
                    format.name()
                )),
            }
            .map_err(|e| format!("schema id {id}: {e}"))?;
            Ok(Json::Appended)
        }
    }
}
