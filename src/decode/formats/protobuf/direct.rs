//! The direct decoder: the wire format read straight into JSON with the plans, no message built
//! in between, which is most of the cost of a record. It takes the shape serializers write: each
//! singular field at most once, one member per oneof, distinct map keys, no groups. On anything
//! else, valid or not, it gives up (`None`) and the general decoder ([`dynamic`](super::dynamic))
//! takes the body, so a body's result never depends on which decoder read it. Where it succeeds
//! it writes exactly what the general decoder writes; a test holds the two to that.

use super::json::{Key, Scalar, Writer};
use super::plan::{FieldPlan, MessagePlan, Shape, Special, Ty, ValuePlan};
use super::wellknown::{self, Fields};
use crate::decode::formats::render;

/// Where a field's occurrences lie in its message's bytes, found in one pass.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Slot {
    count: usize,
    /// The first occurrence's tag: lists and maps read their occurrences again from here.
    first: usize,
    /// The last occurrence's value.
    start: usize,
    end: usize,
}

impl Writer<'_> {
    /// Writes the message in `bytes`, or gives up having written part of it.
    pub(super) fn direct_message(&mut self, bytes: &[u8], plan: usize, depth: usize) -> Option<()> {
        let plan = self.enter(plan, depth).ok()?;
        if plan.special == Special::Any {
            return None;
        }
        let base = self.slots.len();
        self.slots.resize(base + plan.fields.len(), Slot::default());
        let written = self
            .scan(bytes, plan, base)
            .and_then(|()| self.direct_body(bytes, plan, base, depth));
        self.slots.truncate(base);
        written
    }

    /// Finds each field's occurrences; `None` on a shape the direct decoder does not take.
    fn scan(&mut self, bytes: &[u8], plan: &MessagePlan, base: usize) -> Option<()> {
        let mut reader = Reader::new(bytes);
        while !reader.done() {
            let tag = reader.pos;
            let (number, wire, start, end) = reader.field()?;
            // Fields a newer writer added are read past.
            let Some(i) = plan.lookup.get(number) else {
                continue;
            };
            let field = &plan.fields[i];
            let fits = match field.shape {
                Shape::One => wire == field.ty.wire_type(),
                Shape::List => wire == field.ty.wire_type() || (wire == 2 && field.ty.packable()),
                Shape::Map => wire == 2,
            };
            let slot = self.slots.get_mut(base + i)?;
            if !fits || (field.shape == Shape::One && slot.count > 0) {
                return None;
            }
            if slot.count == 0 {
                slot.first = tag;
            }
            slot.count += 1;
            slot.start = start;
            slot.end = end;
        }
        for members in &plan.oneofs {
            let set = members.iter().filter(|&&i| self.slots[base + i].count > 0);
            if set.count() > 1 {
                return None;
            }
        }
        Some(())
    }

    fn direct_body(
        &mut self,
        bytes: &[u8],
        plan: &MessagePlan,
        base: usize,
        depth: usize,
    ) -> Option<()> {
        let slots = &self.slots[base..base + plan.fields.len()];
        let fields = Direct { bytes, plan, slots };
        match plan.special {
            Special::None => self.direct_fields(bytes, plan, base, depth),
            Special::Wrapper => {
                let value = field_scalar(bytes, plan, slots, 1)?;
                self.scalar(value, &ValuePlan::Plain);
                Some(())
            }
            Special::Struct | Special::ListValue => {
                let field = plan.fields.first()?;
                let slot = *slots.first()?;
                self.direct_contents(bytes, field, slot, depth)
            }
            Special::Value => {
                // `Value`'s fields are the members of its oneof: present when written. Another
                // layout is the general decoder's to read.
                if !plan.fields.iter().all(|f| f.presence) {
                    return None;
                }
                match plan.fields.iter().zip(slots).find(|(_, s)| s.count > 0) {
                    Some((field, slot)) if field.field.name() != "null_value" => {
                        let slot = *slot;
                        self.direct_contents(bytes, field, slot, depth)
                    }
                    // `null_value`, or no kind at all.
                    _ => {
                        render::null(self.out);
                        Some(())
                    }
                }
            }
            _ => wellknown::write(self.out, plan.special, &fields).ok(),
        }
    }

    fn direct_fields(
        &mut self,
        bytes: &[u8],
        plan: &MessagePlan,
        base: usize,
        depth: usize,
    ) -> Option<()> {
        self.out.push('{');
        for (i, field) in plan.fields.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(&field.key);
            let slot = self.slots[base + i];
            if field.shape != Shape::One || slot.count > 0 {
                self.direct_contents(bytes, field, slot, depth)?;
            } else if field.presence {
                render::null(self.out);
            } else {
                self.scalar(Scalar::of(&field.default)?, &field.value);
            }
        }
        self.out.push('}');
        Some(())
    }

    /// A present field's value, a list as an array, a map as an object.
    fn direct_contents(
        &mut self,
        bytes: &[u8],
        field: &FieldPlan,
        slot: Slot,
        depth: usize,
    ) -> Option<()> {
        match field.shape {
            Shape::One => self.direct_value(bytes.get(slot.start..slot.end)?, field, depth),
            Shape::List => {
                self.out.push('[');
                let mut first = true;
                for occurrence in occurrences(bytes, field, slot)? {
                    let (wire, value) = occurrence?;
                    if wire == 2 && field.ty.packable() {
                        let mut packed = Reader::new(value);
                        while !packed.done() {
                            let element = packed.scalar(field.ty)?;
                            if !std::mem::take(&mut first) {
                                self.out.push(',');
                            }
                            self.scalar(element, &field.value);
                        }
                    } else {
                        if !std::mem::take(&mut first) {
                            self.out.push(',');
                        }
                        self.direct_value(value, field, depth)?;
                    }
                }
                self.out.push(']');
                Some(())
            }
            Shape::Map => self.direct_map(bytes, field, slot, depth),
        }
    }

    /// A map, its entries sorted by key; `None` when a key repeats.
    fn direct_map(
        &mut self,
        bytes: &[u8],
        field: &FieldPlan,
        slot: Slot,
        depth: usize,
    ) -> Option<()> {
        let mut entries = Vec::with_capacity(slot.count);
        for occurrence in occurrences(bytes, field, slot)? {
            entries.push(map_entry(occurrence?.1, field)?);
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        self.out.push('{');
        for (i, (key, value)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.key(&key);
            self.out.push(':');
            match value {
                Some(value) => self.direct_value(value, field, depth)?,
                // An entry without its value holds the value type's default.
                None if field.ty == Ty::Message => self.direct_value(&[], field, depth)?,
                None => self.scalar(Scalar::of(&field.default)?, &field.value),
            }
        }
        self.out.push('}');
        Some(())
    }

    /// One value of `field` (not packed): a scalar, or a message one level deeper.
    fn direct_value(&mut self, value: &[u8], field: &FieldPlan, depth: usize) -> Option<()> {
        match (field.ty, &field.value) {
            (Ty::Message, ValuePlan::Message(plan)) => self.direct_message(value, *plan, depth + 1),
            (Ty::Message | Ty::Group, _) => None,
            (ty, plan) => {
                self.scalar(scalar(ty, value)?, plan);
                Some(())
            }
        }
    }
}

/// The occurrences of `field` (wire type and value) from its first to its last, in order; an
/// item `None` (then the end) where the bytes do not read, which the scan has ruled out.
fn occurrences<'b>(
    bytes: &'b [u8],
    field: &FieldPlan,
    slot: Slot,
) -> Option<impl Iterator<Item = Option<(u8, &'b [u8])>>> {
    let mut reader = Reader::new(bytes.get(..slot.end)?);
    reader.pos = slot.first;
    let number = field.number;
    Some(std::iter::from_fn(move || loop {
        if reader.done() {
            return None;
        }
        let Some((n, wire, start, end)) = reader.field() else {
            reader.pos = reader.bytes.len();
            return Some(None);
        };
        if n == number {
            return Some(bytes.get(start..end).map(|value| (wire, value)));
        }
    }))
}

/// A map entry's key and value (`None` for a missing value); `None` when it is not the plain
/// shape (each at most once, nothing else).
fn map_entry<'b>(entry: &'b [u8], field: &FieldPlan) -> Option<(Key<'b>, Option<&'b [u8]>)> {
    let mut key = None;
    let mut value = None;
    let mut reader = Reader::new(entry);
    while !reader.done() {
        let (number, wire, start, end) = reader.field()?;
        let bytes = &entry[start..end];
        match number {
            1 if wire == field.key_ty.wire_type() && key.is_none() => {
                key = Some(Key::from_scalar(scalar(field.key_ty, bytes)?)?);
            }
            2 if wire == field.ty.wire_type() && value.is_none() => value = Some(bytes),
            _ => return None,
        }
    }
    let key = match key {
        Some(key) => key,
        None => Key::from_scalar(default_key(field.key_ty)?)?,
    };
    Some((key, value))
}

fn default_key(ty: Ty) -> Option<Scalar<'static>> {
    Some(match ty {
        Ty::Bool => Scalar::Bool(false),
        Ty::String => Scalar::Str(""),
        Ty::Int32 | Ty::Sint32 | Ty::Sfixed32 => Scalar::I32(0),
        Ty::Int64 | Ty::Sint64 | Ty::Sfixed64 => Scalar::I64(0),
        Ty::Uint32 | Ty::Fixed32 => Scalar::U32(0),
        Ty::Uint64 | Ty::Fixed64 => Scalar::U64(0),
        _ => return None,
    })
}

/// The scalar a single (not packed) value of type `ty` holds.
fn scalar(ty: Ty, value: &[u8]) -> Option<Scalar<'_>> {
    match ty {
        Ty::String => std::str::from_utf8(value).ok().map(Scalar::Str),
        Ty::Bytes => Some(Scalar::Bytes(value)),
        _ => {
            let mut reader = Reader::new(value);
            let scalar = reader.scalar(ty)?;
            reader.done().then_some(scalar)
        }
    }
}

/// A message's scalar fields, for the well-known types.
struct Direct<'b> {
    bytes: &'b [u8],
    plan: &'b MessagePlan,
    slots: &'b [Slot],
}

impl Fields for Direct<'_> {
    fn type_name(&self) -> &str {
        self.plan.descriptor.full_name()
    }

    fn get(&self, number: u32) -> Option<Scalar<'_>> {
        field_scalar(self.bytes, self.plan, self.slots, number)
    }
}

/// Field `number`'s value, its default when absent; `None` when it is not a singular scalar.
fn field_scalar<'b>(
    bytes: &'b [u8],
    plan: &'b MessagePlan,
    slots: &[Slot],
    number: u32,
) -> Option<Scalar<'b>> {
    let i = plan.lookup.get(number)?;
    let (field, slot) = (plan.fields.get(i)?, slots.get(i)?);
    if field.shape != Shape::One {
        return None;
    }
    match slot.count {
        0 => Scalar::of(&field.default),
        _ => scalar(field.ty, bytes.get(slot.start..slot.end)?),
    }
}

/// Reads the wire format as prost does, more strictly: `None` also for the shapes the direct
/// decoder leaves to prost (groups).
struct Reader<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl<'b> Reader<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// A varint of at most 10 bytes that fits in 64 bits.
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = *self.bytes.get(self.pos + i)?;
            if i == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.pos += i + 1;
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'b [u8]> {
        let taken = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(taken)
    }

    /// A field: its number, wire type, and where its value lies.
    fn field(&mut self) -> Option<(u32, u8, usize, usize)> {
        let key = u32::try_from(self.varint()?).ok()?;
        let (number, wire) = (key >> 3, (key & 7) as u8);
        if number == 0 {
            return None;
        }
        let start = match wire {
            0 => {
                let start = self.pos;
                self.varint()?;
                start
            }
            1 => self.take(8).map(|_| self.pos - 8)?,
            5 => self.take(4).map(|_| self.pos - 4)?,
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                self.take(len).map(|_| self.pos - len)?
            }
            _ => return None,
        };
        Some((number, wire, start, self.pos))
    }

    /// One value of a packable type, as prost converts it.
    fn scalar(&mut self, ty: Ty) -> Option<Scalar<'b>> {
        let fixed4 = |r: &mut Self| r.take(4).and_then(|b| <[u8; 4]>::try_from(b).ok());
        let fixed8 = |r: &mut Self| r.take(8).and_then(|b| <[u8; 8]>::try_from(b).ok());
        Some(match ty {
            Ty::Int32 => Scalar::I32(self.varint()? as i32),
            Ty::Int64 => Scalar::I64(self.varint()? as i64),
            Ty::Uint32 => Scalar::U32(self.varint()? as u32),
            Ty::Uint64 => Scalar::U64(self.varint()?),
            Ty::Sint32 => {
                let n = self.varint()? as u32;
                Scalar::I32((n >> 1) as i32 ^ -((n & 1) as i32))
            }
            Ty::Sint64 => {
                let n = self.varint()?;
                Scalar::I64((n >> 1) as i64 ^ -((n & 1) as i64))
            }
            Ty::Bool => Scalar::Bool(self.varint()? != 0),
            Ty::Enum => Scalar::Enum(self.varint()? as i32),
            Ty::Fixed32 => Scalar::U32(u32::from_le_bytes(fixed4(self)?)),
            Ty::Sfixed32 => Scalar::I32(i32::from_le_bytes(fixed4(self)?)),
            Ty::Float => Scalar::F32(f32::from_le_bytes(fixed4(self)?)),
            Ty::Fixed64 => Scalar::U64(u64::from_le_bytes(fixed8(self)?)),
            Ty::Sfixed64 => Scalar::I64(i64::from_le_bytes(fixed8(self)?)),
            Ty::Double => Scalar::F64(f64::from_le_bytes(fixed8(self)?)),
            Ty::String | Ty::Bytes | Ty::Message | Ty::Group => return None,
        })
    }
}
