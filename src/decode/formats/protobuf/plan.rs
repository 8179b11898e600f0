//! What decoding and rendering need of each message type, worked out once per schema: its
//! fields in declaration order with their JSON keys already written, how each
//! field's values render, and which types render as something other than an object (the
//! well-known types).

use std::collections::HashMap;

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, Value,
};

use crate::decode::formats::render;

/// One message type.
pub(super) struct MessagePlan {
    pub descriptor: MessageDescriptor,
    pub special: Special,
    pub fields: Vec<FieldPlan>,
}

/// One field of a message type.
pub(super) struct FieldPlan {
    /// The field's .proto name as a JSON key with its colon (`"name":`), written once.
    pub key: String,
    pub field: FieldDescriptor,
    pub number: u32,
    /// Whether an absent value renders as `null` (messages, `optional`, oneof members, proto2
    /// fields) rather than as the type's default (proto3 scalars, which cannot tell the two apart).
    pub presence: bool,
    pub shape: Shape,
    /// What a missing value reads as: the field's default, or a map entry's missing value.
    pub default: Value,
    /// How a value renders.
    pub value: ValuePlan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    One,
    List,
    Map,
}

pub(super) enum ValuePlan {
    /// Scalars: the decoded value says how (`F32` is a `float`, `Bytes` are bytes, …).
    Plain,
    /// Enums by symbol, which needs the enum's values.
    Enum(EnumDescriptor),
    /// A message, by its index in the plans.
    Message(usize),
}

/// Types rendered as the value they stand for rather than as an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Special {
    None,
    Timestamp,
    Duration,
    /// `google.protobuf.Int64Value` and the other wrappers: their `value`.
    Wrapper,
    Struct,
    Value,
    ListValue,
    Empty,
    Any,
    /// `confluent.type.Decimal`.
    ConfluentDecimal,
    /// `google.type.Date`.
    Date,
    /// `google.type.Decimal`.
    GoogleDecimal,
}

impl Special {
    fn of(full_name: &str) -> Self {
        match full_name {
            "google.protobuf.Timestamp" => Self::Timestamp,
            "google.protobuf.Duration" => Self::Duration,
            "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue" => Self::Wrapper,
            "google.protobuf.Struct" => Self::Struct,
            "google.protobuf.Value" => Self::Value,
            "google.protobuf.ListValue" => Self::ListValue,
            "google.protobuf.Empty" => Self::Empty,
            "google.protobuf.Any" => Self::Any,
            "confluent.type.Decimal" => Self::ConfluentDecimal,
            "google.type.Date" => Self::Date,
            "google.type.Decimal" => Self::GoogleDecimal,
            _ => Self::None,
        }
    }
}

/// A message the message-index list can name: the main file's messages, each with its nested
/// ones, in declaration order. Map entries are left out, as Confluent's serializers count.
pub(super) struct Node {
    pub plan: usize,
    pub nested: Vec<Node>,
}

/// The plans of every message type in `pool`, and the main file's messages as the index list
/// addresses them.
pub(super) fn build(
    pool: &DescriptorPool,
    main: &FileDescriptor,
) -> Result<(Vec<MessagePlan>, Vec<Node>), String> {
    let messages: Vec<MessageDescriptor> = pool.all_messages().collect();
    let index: HashMap<&str, usize> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| (m.full_name(), i))
        .collect();
    let plans = messages
        .iter()
        .map(|m| message_plan(m, &index))
        .collect::<Result<Vec<_>, _>>()?;
    let tree = main
        .messages()
        .map(|m| node(&m, &index))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((plans, tree))
}

fn message_plan(
    message: &MessageDescriptor,
    index: &HashMap<&str, usize>,
) -> Result<MessagePlan, String> {
    // The descriptor's own field list is in declaration order (`fields()` is by number).
    let fields = message
        .descriptor_proto()
        .field
        .iter()
        .map(|raw| {
            let field = u32::try_from(raw.number())
                .ok()
                .and_then(|n| message.get_field(n))
                .ok_or_else(|| {
                    format!(
                        "{}: field {} is not in the pool",
                        message.full_name(),
                        raw.name()
                    )
                })?;
            field_plan(field, index)
        })
        .collect::<Result<Vec<_>, String>>()?;
    if fields.len() > usize::from(u16::MAX) {
        return Err(format!(
            "{} has more fields than supported",
            message.full_name()
        ));
    }
    Ok(MessagePlan {
        descriptor: message.clone(),
        special: Special::of(message.full_name()),
        fields,
    })
}

fn field_plan(field: FieldDescriptor, index: &HashMap<&str, usize>) -> Result<FieldPlan, String> {
    let mut key = String::new();
    render::string(&mut key, field.name());
    key.push(':');
    let (shape, kind, default) = if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Err(format!("map field {} has no entry type", field.full_name()));
        };
        let value = entry.map_entry_value_field();
        (Shape::Map, value.kind(), value.default_value())
    } else {
        let shape = if field.is_list() {
            Shape::List
        } else {
            Shape::One
        };
        let kind = field.kind();
        let default = match shape {
            Shape::List => Value::default_value(&kind),
            _ => field.default_value(),
        };
        (shape, kind, default)
    };
    let value = match kind {
        Kind::Enum(e) => ValuePlan::Enum(e),
        Kind::Message(m) => ValuePlan::Message(plan_of(&m, index)?),
        _ => ValuePlan::Plain,
    };
    Ok(FieldPlan {
        key,
        number: field.number(),
        presence: field.supports_presence(),
        field,
        shape,
        default,
        value,
    })
}

fn node(message: &MessageDescriptor, index: &HashMap<&str, usize>) -> Result<Node, String> {
    Ok(Node {
        plan: plan_of(message, index)?,
        nested: message
            .child_messages()
            .filter(|m| !m.is_map_entry())
            .map(|m| node(&m, index))
            .collect::<Result<Vec<_>, _>>()?,
    })
}

fn plan_of(message: &MessageDescriptor, index: &HashMap<&str, usize>) -> Result<usize, String> {
    index
        .get(message.full_name())
        .copied()
        .ok_or_else(|| format!("message type {} is not in the pool", message.full_name()))
}
