//! The general decoder: the body decoded by `prost-reflect` into a `DynamicMessage`, then
//! written field by field. It reads every valid body (fields in any order or repeated, merged
//! messages, groups, duplicate map keys) and names what is wrong with an invalid one: it is the
//! reference the direct decoder is held to, and where the direct decoder hands over.

use std::borrow::Cow;

use prost_reflect::{DynamicMessage, ReflectMessage as _, Value};

use super::json::{Key, Scalar, Writer};
use super::plan::{FieldPlan, MessagePlan, Shape, Special, ValuePlan};
use super::wellknown::{self, Fields};
use crate::decode::formats::render;

impl Writer<'_> {
    pub(super) fn dynamic_message(
        &mut self,
        message: &DynamicMessage,
        plan: usize,
        depth: usize,
    ) -> Result<(), String> {
        let plan = self.enter(plan, depth)?;
        let fields = Dynamic { message, plan };
        match plan.special {
            Special::None => self.dynamic_fields(message, plan, depth),
            Special::Wrapper => match fields.get(1) {
                Some(value) => {
                    self.scalar(value, &ValuePlan::Plain);
                    Ok(())
                }
                None => Err(wellknown::layout(&fields)),
            },
            Special::Struct | Special::ListValue => match plan.fields.first() {
                Some(field) => self.dynamic_contents(message, field, depth),
                None => Err(wellknown::layout(&fields)),
            },
            Special::Value => {
                match plan.fields.iter().find(|f| message.has_field(&f.field)) {
                    Some(field) if field.field.name() != "null_value" => {
                        self.dynamic_contents(message, field, depth)
                    }
                    // `null_value`, or no kind at all.
                    _ => {
                        render::null(self.out);
                        Ok(())
                    }
                }
            }
            _ => wellknown::write(self.out, plan.special, &fields),
        }
    }

    fn dynamic_fields(
        &mut self,
        message: &DynamicMessage,
        plan: &MessagePlan,
        depth: usize,
    ) -> Result<(), String> {
        self.out.push('{');
        for (i, field) in plan.fields.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(&field.key);
            if field.presence && !message.has_field(&field.field) {
                render::null(self.out);
            } else {
                self.dynamic_contents(message, field, depth)?;
            }
        }
        self.out.push('}');
        Ok(())
    }

    /// A field's value, or its default when absent: a list as an array, a map as an object.
    fn dynamic_contents(
        &mut self,
        message: &DynamicMessage,
        field: &FieldPlan,
        depth: usize,
    ) -> Result<(), String> {
        let value = message.get_field(&field.field);
        match (field.shape, &*value) {
            (Shape::One, value) => self.dynamic_value(value, &field.value, depth),
            (Shape::List, Value::List(items)) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.dynamic_value(item, &field.value, depth)?;
                }
                self.out.push(']');
                Ok(())
            }
            (Shape::Map, Value::Map(entries)) => {
                let mut sorted: Vec<_> = entries.iter().map(|(k, v)| (Key::of(k), v)).collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                self.out.push('{');
                for (i, (key, value)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.key(&key);
                    self.out.push(':');
                    self.dynamic_value(value, &field.value, depth)?;
                }
                self.out.push('}');
                Ok(())
            }
            (shape, _) => Err(format!(
                "field {}: the decoded value does not have its shape ({shape:?})",
                field.field.full_name()
            )),
        }
    }

    fn dynamic_value(
        &mut self,
        value: &Value,
        plan: &ValuePlan,
        depth: usize,
    ) -> Result<(), String> {
        match (value, plan) {
            (Value::Message(m), ValuePlan::Message(p)) => self.dynamic_message(m, *p, depth + 1),
            (Value::Message(m), _) => Err(format!(
                "a {} message where no message belongs",
                m.descriptor().full_name()
            )),
            (value, plan) => match Scalar::of(value) {
                Some(scalar) => {
                    self.scalar(scalar, plan);
                    Ok(())
                }
                None => Err("a list or map where a single value belongs".into()),
            },
        }
    }
}

/// A decoded message's scalar fields, for the well-known types.
struct Dynamic<'m> {
    message: &'m DynamicMessage,
    plan: &'m MessagePlan,
}

impl Fields for Dynamic<'_> {
    fn type_name(&self) -> &str {
        self.plan.descriptor.full_name()
    }

    fn get(&self, number: u32) -> Option<Scalar<'_>> {
        let field = self.plan.fields.iter().find(|f| f.number == number)?;
        // An absent field reads as its default, which the plan keeps to be borrowed.
        match self.message.get_field(&field.field) {
            Cow::Borrowed(value) => Scalar::of(value),
            Cow::Owned(_) => Scalar::of(&field.default),
        }
    }
}
