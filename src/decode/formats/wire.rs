//! The Confluent wire format: magic byte 0, the schema's registry id as 4 bytes big-endian, then
//! the body (for Protobuf, preceded by the message-index list).

/// A framed payload: the writer's schema id and the encoded body.
#[derive(Debug, PartialEq, Eq)]
pub struct Framed<'a> {
    pub id: u32,
    pub body: &'a [u8],
}

/// Splits a payload into its schema id and body.
pub fn split(bytes: &[u8]) -> Result<Framed<'_>, String> {
    match bytes {
        [] => Err("empty payload: the Confluent wire format needs a magic byte and a schema id".into()),
        [0, a, b, c, d, body @ ..] => Ok(Framed {
            id: u32::from_be_bytes([*a, *b, *c, *d]),
            body,
        }),
        [0, rest @ ..] => Err(format!(
            "truncated: {} byte(s) after the magic byte, where a 4-byte schema id must follow",
            rest.len()
        )),
        [magic, ..] => Err(format!(
            "unknown magic byte 0x{magic:02x}: not the Confluent wire format (magic byte 0, then a 4-byte schema id){}",
            if matches!(magic, b'{' | b'[' | b'"') {
                "; it looks like plain JSON (format = \"json\")"
            } else {
                ""
            }
        )),
    }
}

/// The schema id of a framed payload, without validating the body.
pub fn schema_id(bytes: &[u8]) -> Option<u32> {
    split(bytes).ok().map(|f| f.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_id_and_refuses_what_is_not_framed() {
        assert_eq!(
            split(&[0, 0, 0, 1, 2, 9, 9]).unwrap(),
            Framed {
                id: 258,
                body: &[9, 9]
            }
        );
        assert_eq!(split(&[0, 0, 0, 0, 7]).unwrap().body, &[] as &[u8]);
        assert!(split(&[]).unwrap_err().contains("empty"));
        assert!(split(&[0, 0, 1])
            .unwrap_err()
            .contains("truncated: 2 byte(s)"));
        let json = split(b"{\"a\":1}").unwrap_err();
        assert!(
            json.contains("magic byte 0x7b") && json.contains("plain JSON"),
            "{json}"
        );
        assert!(split(&[1, 0, 0, 0, 1]).unwrap_err().contains("0x01"));
        assert_eq!(schema_id(&[0, 0, 0, 0, 42]), Some(42));
        assert_eq!(schema_id(&[2]), None);
    }
}
