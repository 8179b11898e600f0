//! A serialized `google.protobuf.FileDescriptorProto` read into the parts a `.proto` file is
//! written from: syntax, package, imports, messages (fields, oneofs, maps, nested types,
//! reserved numbers and names) and enums. Options, services and extensions are skipped: they
//! do not change how a message is decoded. Field numbers are those of `descriptor.proto`.

/// One `.proto` file.
#[derive(Debug, Default)]
pub struct File {
    pub syntax: String,
    pub package: String,
    pub imports: Vec<String>,
    /// Indexes into `imports` of the `import public` ones.
    pub public_imports: Vec<usize>,
    pub messages: Vec<Message>,
    pub enums: Vec<Enum>,
}

#[derive(Debug, Default)]
pub struct Message {
    pub name: String,
    pub fields: Vec<Field>,
    pub nested: Vec<Message>,
    pub enums: Vec<Enum>,
    pub oneofs: Vec<String>,
    /// A synthesized `map<K, V>` entry type, written as the map field instead.
    pub map_entry: bool,
    /// Reserved field numbers, end exclusive as in the descriptor.
    pub reserved: Vec<(i32, i32)>,
    pub reserved_names: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Field {
    pub name: String,
    pub number: i32,
    /// 1 optional, 2 required, 3 repeated.
    pub label: i32,
    /// `FieldDescriptorProto.Type`: 1 double ... 11 message, 14 enum, 18 sint64.
    pub kind: i32,
    /// Fully qualified with a leading dot, for message and enum fields.
    pub type_name: String,
    pub default_value: Option<String>,
    pub oneof_index: Option<usize>,
    /// proto3 `optional`: its oneof is synthetic and not written.
    pub proto3_optional: bool,
}

#[derive(Debug, Default)]
pub struct Enum {
    pub name: String,
    pub values: Vec<(String, i32)>,
}

/// One field of a protobuf message on the wire.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of one encoded message, in order; None when the bytes are not a message.
fn fields(mut buf: &[u8]) -> Option<Vec<(u32, Wire<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let number = u32::try_from(key >> 3).ok()?;
        let value = match key & 7 {
            0 => Wire::Varint(varint(&mut buf)?),
            1 => {
                buf = buf.get(8..)?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let (bytes, rest) = (buf.get(..len)?, buf.get(len..)?);
                buf = rest;
                Wire::Bytes(bytes)
            }
            5 => {
                buf = buf.get(4..)?;
                Wire::Fixed
            }
            _ => return None,
        };
        out.push((number, value));
    }
    Some(out)
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// An `int32` field's value (negative numbers are ten-byte varints).
fn int32(value: u64) -> i32 {
    value as i64 as i32
}

/// Reads a `FileDescriptorProto`; None when `bytes` is not one.
pub fn parse_file(bytes: &[u8]) -> Option<File> {
    let mut file = File::default();
    let mut named = false;
    for (number, value) in fields(bytes)? {
        match (number, value) {
            (1, Wire::Bytes(b)) => named = !text(b)?.is_empty(),
            (2, Wire::Bytes(b)) => file.package = text(b)?,
            (3, Wire::Bytes(b)) => file.imports.push(text(b)?),
            (4, Wire::Bytes(b)) => file.messages.push(parse_message(b)?),
            (5, Wire::Bytes(b)) => file.enums.push(parse_enum(b)?),
            (10, Wire::Varint(v)) => file.public_imports.push(usize::try_from(v).ok()?),
            (12, Wire::Bytes(b)) => file.syntax = text(b)?,
            _ => {}
        }
    }
    named.then_some(file)
}

fn parse_message(bytes: &[u8]) -> Option<Message> {
    let mut message = Message::default();
    for (number, value) in fields(bytes)? {
        match (number, value) {
            (1, Wire::Bytes(b)) => message.name = text(b)?,
            (2, Wire::Bytes(b)) => message.fields.push(parse_field(b)?),
            (3, Wire::Bytes(b)) => message.nested.push(parse_message(b)?),
            (4, Wire::Bytes(b)) => message.enums.push(parse_enum(b)?),
            (7, Wire::Bytes(b)) => message.map_entry = is_map_entry(b)?,
            (8, Wire::Bytes(b)) => message.oneofs.push(name_of(b)?),
            (9, Wire::Bytes(b)) => message.reserved.push(range(b)?),
            (10, Wire::Bytes(b)) => message.reserved_names.push(text(b)?),
            _ => {}
        }
    }
    Some(message)
}

fn parse_field(bytes: &[u8]) -> Option<Field> {
    let mut field = Field::default();
    for (number, value) in fields(bytes)? {
        match (number, value) {
            (1, Wire::Bytes(b)) => field.name = text(b)?,
            (3, Wire::Varint(v)) => field.number = int32(v),
            (4, Wire::Varint(v)) => field.label = int32(v),
            (5, Wire::Varint(v)) => field.kind = int32(v),
            (6, Wire::Bytes(b)) => field.type_name = text(b)?,
            (7, Wire::Bytes(b)) => field.default_value = Some(text(b)?),
            (9, Wire::Varint(v)) => field.oneof_index = Some(usize::try_from(v).ok()?),
            (17, Wire::Varint(v)) => field.proto3_optional = v != 0,
            _ => {}
        }
    }
    Some(field)
}

fn parse_enum(bytes: &[u8]) -> Option<Enum> {
    let mut parsed = Enum::default();
    for (number, value) in fields(bytes)? {
        match (number, value) {
            (1, Wire::Bytes(b)) => parsed.name = text(b)?,
            (2, Wire::Bytes(b)) => {
                let mut name = String::new();
                let mut value_number = 0;
                for (n, v) in fields(b)? {
                    match (n, v) {
                        (1, Wire::Bytes(b)) => name = text(b)?,
                        (2, Wire::Varint(v)) => value_number = int32(v),
                        _ => {}
                    }
                }
                parsed.values.push((name, value_number));
            }
            _ => {}
        }
    }
    Some(parsed)
}

/// `MessageOptions.map_entry` (field 7).
fn is_map_entry(options: &[u8]) -> Option<bool> {
    let set = fields(options)?
        .into_iter()
        .any(|(n, v)| n == 7 && matches!(v, Wire::Varint(1)));
    Some(set)
}

/// The `name` (field 1) of a `OneofDescriptorProto`.
fn name_of(bytes: &[u8]) -> Option<String> {
    fields(bytes)?.into_iter().find_map(|(n, v)| match (n, v) {
        (1, Wire::Bytes(b)) => text(b),
        _ => None,
    })
}

/// A `ReservedRange` (start inclusive, end exclusive).
fn range(bytes: &[u8]) -> Option<(i32, i32)> {
    let (mut start, mut end) = (0, 0);
    for (n, v) in fields(bytes)? {
        match (n, v) {
            (1, Wire::Varint(v)) => start = int32(v),
            (2, Wire::Varint(v)) => end = int32(v),
            _ => {}
        }
    }
    Some((start, end))
}
