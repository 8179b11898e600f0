//! Protobuf schemas as Confluent's registry keeps them: `.proto` text. Confluent's serializers
//! register a file as a base64 `FileDescriptorProto`; the registry parses it and stores and
//! answers text, so a connector reading schemas by id sees `.proto` text either way. This
//! renders such a descriptor as text ([`super::descriptor`] reads it). Type names are written
//! fully qualified (`.pkg.Msg`), and options, services and extensions are left out: the text
//! differs from Confluent's in spelling, not in what it decodes.

use std::fmt::Write;

use super::descriptor::{parse_file, Enum, Field, Message};

/// `.proto` text for `schema` when it is a base64 `FileDescriptorProto` (proto2 or proto3);
/// None for anything else, which is stored as given.
pub fn from_serialized(schema: &str) -> Option<String> {
    let bytes = super::base64::decode(schema.trim())?;
    let file = parse_file(&bytes)?;
    let syntax = match file.syntax.as_str() {
        "" | "proto2" => "proto2",
        "proto3" => "proto3",
        _ => return None,
    };
    let mut out = format!("syntax = \"{syntax}\";\n");
    if !file.package.is_empty() {
        let _ = writeln!(out, "package {};", file.package);
    }
    if !file.imports.is_empty() {
        out.push('\n');
    }
    for (index, import) in file.imports.iter().enumerate() {
        let public = if file.public_imports.contains(&index) {
            "public "
        } else {
            ""
        };
        let _ = writeln!(out, "import {public}\"{}\";", escape(import));
    }
    let scope = if file.package.is_empty() {
        String::new()
    } else {
        format!(".{}", file.package)
    };
    let writer = Writer {
        proto3: syntax == "proto3",
    };
    for message in &file.messages {
        out.push('\n');
        writer.message(&mut out, message, &scope, 0)?;
    }
    for parsed in &file.enums {
        out.push('\n');
        write_enum(&mut out, parsed, 0);
    }
    Some(out)
}

struct Writer {
    proto3: bool,
}

impl Writer {
    /// Writes `message` (whose enclosing scope is `scope`, e.g. `.pkg`) at `depth`.
    fn message(
        &self,
        out: &mut String,
        message: &Message,
        scope: &str,
        depth: usize,
    ) -> Option<()> {
        let pad = "  ".repeat(depth);
        let full_name = format!("{scope}.{}", message.name);
        let _ = writeln!(out, "{pad}message {} {{", message.name);
        let inner = "  ".repeat(depth + 1);
        for field in message.fields.iter().filter(|f| self.outside_oneof(f)) {
            self.field(out, field, message, &full_name, &inner)?;
        }
        for (index, oneof) in message.oneofs.iter().enumerate() {
            let members: Vec<&Field> = message
                .fields
                .iter()
                .filter(|f| f.oneof_index == Some(index) && !f.proto3_optional)
                .collect();
            if members.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{inner}oneof {oneof} {{");
            for field in members {
                self.field(out, field, message, &full_name, &"  ".repeat(depth + 2))?;
            }
            let _ = writeln!(out, "{inner}}}");
        }
        for nested in message.nested.iter().filter(|n| !n.map_entry) {
            self.message(out, nested, &full_name, depth + 1)?;
        }
        for nested in &message.enums {
            write_enum(out, nested, depth + 1);
        }
        for &(start, end) in &message.reserved {
            match end - 1 {
                last if last == start => writeln!(out, "{inner}reserved {start};"),
                last => writeln!(out, "{inner}reserved {start} to {last};"),
            }
            .ok()?;
        }
        for name in &message.reserved_names {
            let _ = writeln!(out, "{inner}reserved \"{}\";", escape(name));
        }
        let _ = writeln!(out, "{pad}}}");
        Some(())
    }

    fn outside_oneof(&self, field: &Field) -> bool {
        field.oneof_index.is_none() || field.proto3_optional
    }

    fn field(
        &self,
        out: &mut String,
        field: &Field,
        parent: &Message,
        parent_name: &str,
        pad: &str,
    ) -> Option<()> {
        let (number, name) = (field.number, &field.name);
        if let Some(entry) = map_entry(field, parent, parent_name) {
            let key = entry.fields.iter().find(|f| f.number == 1)?;
            let value = entry.fields.iter().find(|f| f.number == 2)?;
            let (key, value) = (type_of(key)?, type_of(value)?);
            let _ = writeln!(out, "{pad}map<{key}, {value}> {name} = {number};");
            return Some(());
        }
        let label = match (field.label, self.proto3, field.proto3_optional) {
            (3, _, _) => "repeated ",
            (_, true, true) => "optional ",
            (_, true, false) => "",
            _ if field.oneof_index.is_some() => "",
            (2, false, _) => "required ",
            _ => "optional ",
        };
        let mut line = format!("{pad}{label}{} {name} = {number}", type_of(field)?);
        if let Some(default) = &field.default_value {
            let default = match field.kind {
                9 => format!("\"{}\"", escape(default)),
                // The descriptor holds a bytes default C-escaped already.
                12 => format!("\"{default}\""),
                _ => default.clone(),
            };
            let _ = write!(line, " [default = {default}]");
        }
        let _ = writeln!(out, "{line};");
        Some(())
    }
}

/// The map entry type `field` stands for, when it is a map field.
fn map_entry<'a>(field: &Field, parent: &'a Message, parent_name: &str) -> Option<&'a Message> {
    if field.label != 3 || field.kind != 11 {
        return None;
    }
    let entry_name = field
        .type_name
        .strip_prefix(parent_name)?
        .strip_prefix('.')?;
    parent
        .nested
        .iter()
        .find(|n| n.map_entry && n.name == entry_name)
}

/// The type of `field` as written in `.proto` text; None for groups (not written here).
fn type_of(field: &Field) -> Option<String> {
    let scalar = match field.kind {
        1 => "double",
        2 => "float",
        3 => "int64",
        4 => "uint64",
        5 => "int32",
        6 => "fixed64",
        7 => "fixed32",
        8 => "bool",
        9 => "string",
        11 | 14 => return Some(field.type_name.clone()),
        12 => "bytes",
        13 => "uint32",
        15 => "sfixed32",
        16 => "sfixed64",
        17 => "sint32",
        18 => "sint64",
        _ => return None,
    };
    Some(scalar.to_owned())
}

fn write_enum(out: &mut String, parsed: &Enum, depth: usize) {
    let pad = "  ".repeat(depth);
    let _ = writeln!(out, "{pad}enum {} {{", parsed.name);
    let mut numbers: Vec<i32> = parsed.values.iter().map(|(_, n)| *n).collect();
    numbers.sort_unstable();
    if numbers.windows(2).any(|w| w[0] == w[1]) {
        // The one option that changes whether the file compiles.
        let _ = writeln!(out, "{pad}  option allow_alias = true;");
    }
    for (name, number) in &parsed.values {
        let _ = writeln!(out, "{pad}  {name} = {number};");
    }
    let _ = writeln!(out, "{pad}}}");
}

/// `text` as the inside of a `.proto` string literal.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::from_serialized;

    // testdata/*.b64: the FileDescriptorProto protoc (grpcio-tools 1.85.1) makes of the .proto
    // file of the same name, base64 as Confluent's serializers register it.

    #[test]
    fn renders_a_proto3_file_with_maps_oneofs_nesting_enums_and_reserved_numbers() {
        let text = from_serialized(include_str!("testdata/rich.b64")).expect("a descriptor");
        let expected = r#"syntax = "proto3";
package shop.v1;

import "google/protobuf/timestamp.proto";

message Order {
  string id = 1;
  repeated int64 line_ids = 2;
  map<string, .shop.v1.Order.Item> items = 3;
  optional double discount = 6;
  .google.protobuf.Timestamp placed_at = 7;
  .shop.v1.Order.Status status = 8;
  oneof payment {
    string card = 4;
    .shop.v1.Order.Bank bank = 5;
  }
  message Item {
    sint32 quantity = 1;
    bytes sku = 2;
  }
  message Bank {
    fixed64 iban_hash = 1;
  }
  enum Status {
    option allow_alias = true;
    STATUS_UNSPECIFIED = 0;
    NEW = 1;
    FRESH = 1;
    SHIPPED = -1;
  }
  reserved 10 to 12;
  reserved 15;
  reserved "legacy";
}

enum Channel {
  CHANNEL_UNSPECIFIED = 0;
  WEB = 2;
}
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn renders_proto2_labels_and_defaults() {
        let text = from_serialized(include_str!("testdata/p2.b64")).expect("a descriptor");
        assert!(text.starts_with("syntax = \"proto2\";\n"), "{text}");
        assert!(
            text.contains("  required string name = 1 [default = \"a \\\"q\\\"\"];\n"),
            "{text}"
        );
        assert!(
            text.contains("  optional int32 n = 2 [default = -3];\n"),
            "{text}"
        );
        assert!(text.contains("  repeated bool flags = 3;\n"), "{text}");
    }

    #[test]
    fn leaves_text_and_other_base64_alone() {
        for schema in [
            "syntax = \"proto3\"; message A { int32 x = 1; }",
            "abcd",
            "",
            "AAAA",
        ] {
            assert_eq!(from_serialized(schema), None, "{schema}");
        }
    }
}
