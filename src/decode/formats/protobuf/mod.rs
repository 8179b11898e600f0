//! Protobuf bodies in the Confluent wire format, decoded with the writer's schema (compiled by
//! `protox`) and rendered as JSON.
//!
//! The body is the message-index list (a zigzag varint count, then that many zigzag varint
//! indexes; the single byte 0 stands for `[0]`) naming the message type within the schema's file,
//! then the message. The rendering is exact and stable (see [`json`] and
//! [`render`](super::render)): an object with the .proto field names; absent proto3 scalars as
//! their default and absent fields with presence as `null`; enums by symbol; maps sorted by key;
//! `Timestamp`, `Duration`, the wrappers, `Struct`/`Value`/`ListValue`, `Empty`,
//! `confluent.type.Decimal`, `google.type.Date` and `google.type.Decimal` as the value they stand
//! for. `google.protobuf.Any` is refused. Fields unknown to the schema are ignored.
//!
//! The message is decoded by `prost-reflect`'s `DynamicMessage` ([`dynamic`]), a maintained
//! decoder, not one of our own: a hand-written wire reader was measured at half the cost per
//! record and left out for that reason.
//!
//! Guarantee: decoding arbitrary bytes never panics, nests at most [`json::MAX_DEPTH`] messages
//! deep, and renders at most a bounded multiple of the body's size.

mod dynamic;
mod json;
mod plan;
mod sources;
mod wellknown;

use std::fmt;

use prost_reflect::DynamicMessage;

use super::schemas::RegisteredSchema;
use plan::{MessagePlan, Node};

/// The rendered JSON may be this many times the body's size (plus [`MIN_OUTPUT`]); beyond that
/// the body is refused. A message of many default fields renders long from a short body, so a
/// hostile body of repeated empty messages could otherwise take far more memory than its size.
const MAX_EXPANSION: usize = 64;

/// The JSON any body may render to, however short.
const MIN_OUTPUT: usize = 4 << 20;

/// A writer's schema, compiled once: every message type's rendering plan, and the messages the
/// message-index list can name.
pub struct ProtoSchema {
    plans: Vec<MessagePlan>,
    tree: Vec<Node>,
    /// The plan of `[0]`, the file's first message, which nearly every record names.
    top: usize,
}

impl fmt::Debug for ProtoSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtoSchema")
            .field("message", &self.plans[self.top].descriptor.full_name())
            .field("types", &self.plans.len())
            .finish_non_exhaustive()
    }
}

impl ProtoSchema {
    /// Parses a registered schema (`.proto` source, or the base64 of a serialized
    /// `FileDescriptorProto`) with its references, which are its imports by path. The well-known
    /// `google/protobuf/*` files, `confluent/meta.proto`, `confluent/type/decimal.proto`,
    /// `google/type/date.proto` and `google/type/decimal.proto` need no reference.
    pub fn parse(schema: &RegisteredSchema) -> Result<Self, String> {
        let invalid = |e: String| format!("not a valid Protobuf schema: {e}");
        let (pool, main) = sources::compile(schema).map_err(invalid)?;
        let file = pool
            .get_file_by_name(&main)
            .ok_or_else(|| invalid(format!("{main} is missing from the compiled schema")))?;
        let (plans, tree) = plan::build(&pool, &file).map_err(invalid)?;
        let top = tree
            .first()
            .map(|node| node.plan)
            .ok_or("the schema declares no message type")?;
        Ok(Self { plans, tree, top })
    }

    /// Decodes a body (after the 5-byte header: the message-index list, then the message) and
    /// appends it to `out` as one JSON document.
    pub fn transcode(&self, body: &[u8], out: &mut String) -> Result<(), String> {
        let (plan, bytes) = self.select(body)?;
        let start = out.len();
        let limit = start + MIN_OUTPUT + body.len().saturating_mul(MAX_EXPANSION);
        // Most messages render to two or three times their size: one allocation, not several.
        out.reserve(2 * bytes.len() + 64);
        let mut writer = json::Writer::new(&self.plans, out, limit);
        self.dynamic(bytes, plan, &mut writer)
    }

    /// The general decoder's reading of a message (see [`dynamic`]).
    fn dynamic(&self, bytes: &[u8], plan: usize, writer: &mut json::Writer) -> Result<(), String> {
        let descriptor = &self.plans[plan].descriptor;
        let message = DynamicMessage::decode(descriptor.clone(), bytes).map_err(|e| {
            format!(
                "body is not a valid {} message: {e}",
                descriptor.full_name()
            )
        })?;
        writer.dynamic_message(&message, plan, 0)
    }

    /// The plan of the message type the body's index list names, and the message's bytes.
    fn select<'b>(&self, body: &'b [u8]) -> Result<(usize, &'b [u8]), String> {
        if let [0, message @ ..] = body {
            return Ok((self.top, message));
        }
        let mut rest = body;
        let count = zigzag_varint(&mut rest).ok_or(TRUNCATED)?;
        if count < 0 {
            return Err(format!(
                "message-index list with a negative count ({count})"
            ));
        }
        let mut nodes = &self.tree[..];
        let mut plan = self.top;
        for _ in 0..count {
            let index = zigzag_varint(&mut rest).ok_or(TRUNCATED)?;
            let node = usize::try_from(index)
                .ok()
                .and_then(|i| nodes.get(i))
                .ok_or_else(|| self.no_such_message(body))?;
            plan = node.plan;
            nodes = &node.nested;
        }
        Ok((plan, rest))
    }

    /// The error for an index list naming no message: the list, and what the file declares.
    fn no_such_message(&self, body: &[u8]) -> String {
        let mut rest = body;
        let count = zigzag_varint(&mut rest).unwrap_or(0);
        let indexes: Vec<String> = (0..count)
            .map_while(|_| zigzag_varint(&mut rest))
            .map(|i| i.to_string())
            .collect();
        let top: Vec<&str> = self
            .tree
            .iter()
            .map(|n| self.plans[n.plan].descriptor.name())
            .collect();
        format!(
            "message indexes [{}] name no message of the schema (its messages: {})",
            indexes.join(", "),
            top.join(", ")
        )
    }
}

const TRUNCATED: &str = "truncated message-index list";

/// A zigzag-encoded varint from the front of `buf`; `None` when truncated or longer than 64 bits.
fn zigzag_varint(buf: &mut &[u8]) -> Option<i64> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

#[cfg(test)]
mod tests;
