//! Protobuf bodies (placeholder: being written).

use super::schemas::RegisteredSchema;

/// A parsed Protobuf schema.
#[derive(Debug)]
pub struct ProtoSchema {}

impl ProtoSchema {
    pub fn parse(_schema: &RegisteredSchema) -> Result<Self, String> {
        Err("Protobuf is not supported yet".into())
    }

    /// Decodes a body (after the 5-byte header: the message-index list, then the message) and
    /// appends it to `out` as JSON.
    pub fn transcode(&self, _body: &[u8], _out: &mut String) -> Result<(), String> {
        Err("Protobuf is not supported yet".into())
    }
}
