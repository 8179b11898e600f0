//! What the decoder writes with: the output and its limits, scalars and map keys rendered with
//! [`render`]. The JSON of a message is every field of its type under its .proto name, in
//! declaration order; absent fields as proto3 reads them (the default, or `null` for a field with
//! presence); lists as arrays; maps as objects sorted by key; the well-known types as
//! [`wellknown`](super::wellknown) writes them.

use prost_reflect::{MapKey, Value};

use super::plan::{MessagePlan, ValuePlan};
use crate::decode::formats::render;

/// Messages nested deeper than this are refused (prost stops decoding at the same depth).
pub(super) const MAX_DEPTH: usize = 100;

pub(super) struct Writer<'a> {
    pub plans: &'a [MessagePlan],
    pub out: &'a mut String,
    /// `out` may not grow past this: a few body bytes can stand for a message of many default
    /// fields, so a hostile body could otherwise render to far more than its size.
    limit: usize,
}

impl<'a> Writer<'a> {
    pub(super) fn new(plans: &'a [MessagePlan], out: &'a mut String, limit: usize) -> Self {
        Self { plans, out, limit }
    }

    /// The plan of a message about to be written at `depth`; an error when it nests too deep or
    /// the output has outgrown its limit.
    pub(super) fn enter(&self, plan: usize, depth: usize) -> Result<&'a MessagePlan, String> {
        if depth > MAX_DEPTH {
            return Err(format!("messages nest deeper than {MAX_DEPTH} levels"));
        }
        if self.out.len() > self.limit {
            return Err(format!(
                "the JSON grows past {} bytes: far more than the body holds",
                self.limit
            ));
        }
        let plans = self.plans;
        plans
            .get(plan)
            .ok_or_else(|| "a message type missing from the schema's plans".into())
    }

    pub(super) fn scalar(&mut self, value: Scalar<'_>, plan: &ValuePlan) {
        let out = &mut *self.out;
        match value {
            Scalar::Bool(b) => render::boolean(out, b),
            Scalar::I32(n) => render::integer(out, n),
            Scalar::I64(n) => render::integer(out, n),
            Scalar::U32(n) => render::integer(out, n),
            Scalar::U64(n) => render::integer(out, n),
            Scalar::F32(f) => render::float(out, f64::from(f), true),
            Scalar::F64(f) => render::float(out, f, false),
            Scalar::Str(s) => render::string(out, s),
            Scalar::Bytes(b) => render::bytes(out, b),
            Scalar::Enum(n) => match plan {
                ValuePlan::Enum(e) => match e.get_value(n) {
                    Some(symbol) => render::string(out, symbol.name()),
                    // A value added after the reader's schema: the number is all there is.
                    None => render::integer(out, n),
                },
                _ => render::integer(out, n),
            },
        }
    }

    /// A map key as a JSON object key: the key's text.
    pub(super) fn key(&mut self, key: &Key<'_>) {
        let out = &mut *self.out;
        match key {
            Key::Str(s) => render::string(out, s),
            Key::Bool(b) => out.push_str(if *b { "\"true\"" } else { "\"false\"" }),
            Key::Int(n) => {
                out.push('"');
                render::integer(out, *n);
                out.push('"');
            }
            Key::Uint(n) => {
                out.push('"');
                render::integer(out, *n);
                out.push('"');
            }
        }
    }
}

/// A scalar value, borrowed from where it was decoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Scalar<'a> {
    Bool(bool),
    I32(i32),
    I64(i64),
    U32(u32),
    U64(u64),
    F32(f32),
    F64(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    Enum(i32),
}

impl<'a> Scalar<'a> {
    /// `None` for messages, lists and maps.
    pub(super) fn of(value: &'a Value) -> Option<Self> {
        Some(match value {
            Value::Bool(b) => Self::Bool(*b),
            Value::I32(n) => Self::I32(*n),
            Value::I64(n) => Self::I64(*n),
            Value::U32(n) => Self::U32(*n),
            Value::U64(n) => Self::U64(*n),
            Value::F32(f) => Self::F32(*f),
            Value::F64(f) => Self::F64(*f),
            Value::String(s) => Self::Str(s),
            Value::Bytes(b) => Self::Bytes(b),
            Value::EnumNumber(n) => Self::Enum(*n),
            Value::Message(_) | Value::List(_) | Value::Map(_) => return None,
        })
    }
}

/// A map key. Ordered as the map renders: numbers by value, strings by their bytes (the keys of
/// one map are all of one kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Key<'a> {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Str(&'a str),
}

impl<'a> Key<'a> {
    pub(super) fn of(key: &'a MapKey) -> Self {
        match key {
            MapKey::Bool(b) => Self::Bool(*b),
            MapKey::I32(n) => Self::Int(i64::from(*n)),
            MapKey::I64(n) => Self::Int(*n),
            MapKey::U32(n) => Self::Uint(u64::from(*n)),
            MapKey::U64(n) => Self::Uint(*n),
            MapKey::String(s) => Self::Str(s),
        }
    }
}
