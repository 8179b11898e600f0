//! The dead-letter table: bad records, written in the batch's own transaction.
//!
//! Guarantee: a record has at most one dead letter per target table, whatever reads it again
//! (offsets set backwards, an out-of-range reset, a deleted offsets row), and the dead letter
//! keeps every byte of the record, headers included. A dead letter that cannot be written is
//! reported as exactly that, never as the record's own fault.

use serde_json::{json, Value};
use sqlx::PgConnection;

use super::apply::describe;
use crate::decode::convert::format_timestamp_millis;
use crate::decode::Stage;
use crate::error::{classify, Error, ErrorClass};
use crate::ident::Ident;
use crate::record::Record;

/// SQL for the dead-letter table, built once from the configured schema.
#[derive(Clone, Debug)]
pub struct DeadLetterSql {
    pub insert: String,
}

impl DeadLetterSql {
    /// The insert is idempotent per record. The same record dead-lettered again (same key,
    /// value, headers and timestamp) leaves the existing row as it is, its `replayed_at`
    /// included: a replayed record is not replayed twice. A different record at the same
    /// coordinates (the topic was recreated) replaces the stored one, with its own stage and
    /// error, and is pending again: the newest record is never dropped silently. The unique key
    /// holds one record per coordinates, so an older record that was still pending is
    /// overwritten then.
    pub fn new(schema: &Ident) -> Self {
        Self {
            insert: format!(
                "INSERT INTO {}.\"dead_letters\" AS d (group_id, topic, partition, \"offset\", target_table, \
                 stage, error, record_key, record_value, headers, record_timestamp) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::timestamptz) \
                 ON CONFLICT (group_id, topic, partition, \"offset\", target_table) DO UPDATE SET \
                 stage = EXCLUDED.stage, error = EXCLUDED.error, record_key = EXCLUDED.record_key, \
                 record_value = EXCLUDED.record_value, headers = EXCLUDED.headers, \
                 record_timestamp = EXCLUDED.record_timestamp, created_at = now(), replayed_at = NULL \
                 WHERE (d.record_key, d.record_value, d.headers, d.record_timestamp) \
                 IS DISTINCT FROM (EXCLUDED.record_key, EXCLUDED.record_value, EXCLUDED.headers, EXCLUDED.record_timestamp)",
                schema.quoted()
            ),
        }
    }
}

/// A record's headers: `(name, value)` pairs in order, as [`Record::headers`] holds them.
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// Headers as a JSON array of `[name, value]` pairs, order and repeats kept. A name or value is
/// a JSON string when its bytes are UTF-8 without NUL (jsonb cannot hold `\u0000`), `null` for
/// a header without a value, and `{"base64": "<standard base64>"}` otherwise, so every byte is
/// kept. `headers_from_json` reads it back.
pub fn headers_json(record: &Record) -> String {
    let pairs: Vec<Value> = record
        .headers
        .iter()
        .map(|(name, value)| {
            let value = value.as_deref().map_or(Value::Null, bytes_json);
            Value::Array(vec![bytes_json(name.as_bytes()), value])
        })
        .collect();
    Value::Array(pairs).to_string()
}

/// The headers stored by [`headers_json`], byte for byte. Rows written before the base64 form
/// hold plain strings only (invalid UTF-8 was replaced then); they read back as that text.
pub fn headers_from_json(text: &str) -> Result<Headers, String> {
    let pairs: Vec<(Value, Value)> = serde_json::from_str(text)
        .map_err(|e| format!("stored headers are not a list of [name, value] pairs: {e}"))?;
    pairs
        .into_iter()
        .map(|(name, value)| {
            let name = json_bytes(name)?.ok_or("a stored header name is null")?;
            let name = String::from_utf8(name)
                .map_err(|_| "a stored header name is not UTF-8 text".to_string())?;
            Ok((name, json_bytes(value)?))
        })
        .collect()
}

fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => Value::String(text.to_owned()),
        _ => json!({ "base64": base64::encode(bytes) }),
    }
}

fn json_bytes(value: Value) -> Result<Option<Vec<u8>>, String> {
    if let Value::Object(object) = &value {
        if let (1, Some(Value::String(text))) = (object.len(), object.get("base64")) {
            return base64::decode(text)
                .map(Some)
                .map_err(|e| format!("a stored header is not valid base64: {e}"));
        }
    }
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.into_bytes())),
        other => Err(format!(
            "a stored header is not text, null or base64: {other}"
        )),
    }
}

/// Inserts one dead letter inside the caller's transaction (see [`DeadLetterSql::new`] for a
/// record dead-lettered again). A transient error stays as it is, so the batch is retried; any
/// other failure is fatal, since it is not the record's fault and no `on_error` policy covers it.
pub async fn insert(
    tx: &mut PgConnection,
    sql: &DeadLetterSql,
    group: &str,
    record: &Record,
    table: &str,
    stage: Stage,
    error: &str,
) -> Result<(), Error> {
    sqlx::query(&sql.insert)
        .bind(group)
        .bind(&*record.tp.topic)
        .bind(record.tp.partition)
        .bind(record.offset)
        .bind(table)
        .bind(stage.as_str())
        .bind(error)
        .bind(record.key())
        .bind(record.value())
        .bind(headers_json(record))
        .bind(record.timestamp_ms.map(format_timestamp_millis))
        .execute(tx)
        .await
        .map_err(|e| not_written(e.into(), record, table))?;
    Ok(())
}

/// A failure to write the dead letter of `record`, said as such.
fn not_written(error: Error, record: &Record, table: &str) -> Error {
    if classify(&error) == ErrorClass::Transient {
        return error;
    }
    Error::Fatal(format!(
        "cannot write the dead letter of {}/{}@{} for table {table}: {}",
        record.tp.topic,
        record.tp.partition,
        record.offset,
        describe(&error)
    ))
}

/// Standard base64 (RFC 4648, `+/`, padded): enough for header bytes, without a dependency.
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// Strict: padded to a multiple of four, `=` only at the end.
    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        let bytes = text.as_bytes();
        if bytes.len() % 4 != 0 {
            return Err("the length is not a multiple of 4".into());
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        let quads = bytes.chunks(4);
        let last = quads.len().saturating_sub(1);
        for (q, quad) in quads.enumerate() {
            let padding = quad.iter().rev().take_while(|&&c| c == b'=').count();
            if padding > 2 || (padding > 0 && q != last) {
                return Err("misplaced padding".into());
            }
            let mut n = 0u32;
            for (i, &c) in quad[..4 - padding].iter().enumerate() {
                let digit = ALPHABET
                    .iter()
                    .position(|&a| a == c)
                    .ok_or_else(|| format!("{:?} is not a base64 character", char::from(c)))?;
                n |= (digit as u32) << (18 - 6 * i);
            }
            out.extend_from_slice(&n.to_be_bytes()[1..4 - padding]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TopicPartition;

    fn with_headers(headers: Headers) -> Record {
        Record::new(TopicPartition::new("t", 0), 5, None, None, None, headers)
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
            (b"\xfb\xff\x00", "+/8A"),
        ] {
            assert_eq!(base64::encode(bytes), text);
            assert_eq!(base64::decode(text).as_deref(), Ok(bytes), "{text}");
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64::decode(&base64::encode(&all)), Ok(all));
        for bad in ["Zg", "Zg=", "Z===", "Zg==Zg==", "Zm-v", "Zm9v\n"] {
            assert!(base64::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_round_trip_byte_for_byte() {
        let headers = vec![
            ("text".to_string(), Some("plain ü".as_bytes().to_vec())),
            ("nul".to_string(), Some(b"a\0b".to_vec())),
            ("latin1".to_string(), Some(b"caf\xe9".to_vec())),
            ("empty".to_string(), Some(Vec::new())),
            ("absent".to_string(), None),
            ("text".to_string(), Some(b"repeated".to_vec())),
            ("nul\0name".to_string(), Some(b"x".to_vec())),
        ];
        let text = headers_json(&with_headers(headers.clone()));
        let stored: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            stored,
            json!([
                ["text", "plain ü"],
                ["nul", {"base64": "YQBi"}],
                ["latin1", {"base64": "Y2Fm6Q=="}],
                ["empty", ""],
                ["absent", null],
                ["text", "repeated"],
                [{"base64": "bnVsAG5hbWU="}, "x"]
            ])
        );
        assert!(!text.contains("\\u0000"), "jsonb refuses NUL: {text}");
        assert_eq!(headers_from_json(&text), Ok(headers));
        assert_eq!(
            headers_from_json(&headers_json(&with_headers(vec![]))),
            Ok(vec![])
        );
    }

    #[test]
    fn headers_stored_as_plain_strings_still_read() {
        assert_eq!(
            headers_from_json(r#"[["a", "x"], ["b", null], ["a", "caf\ufffd"]]"#),
            Ok(vec![
                ("a".to_string(), Some(b"x".to_vec())),
                ("b".to_string(), None),
                ("a".to_string(), Some("caf\u{fffd}".as_bytes().to_vec())),
            ])
        );
    }

    #[test]
    fn malformed_stored_headers_are_refused() {
        for (text, why) in [
            ("{}", "not a list of [name, value] pairs"),
            (r#"[["a"]]"#, "not a list of [name, value] pairs"),
            (r#"[[null, "x"]]"#, "name is null"),
            (r#"[["a", 1]]"#, "not text, null or base64"),
            (r#"[["a", {"hex": "00"}]]"#, "not text, null or base64"),
            (r#"[["a", {"base64": "%%"}]]"#, "not valid base64"),
            (r#"[[{"base64": "/w=="}, "x"]]"#, "name is not UTF-8"),
        ] {
            let error = headers_from_json(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn a_failed_dead_letter_write_says_so_unless_it_is_transient() {
        let record = with_headers(vec![]);
        let lost = Error::Database(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        let kept = not_written(lost, &record, "public.items");
        assert!(
            matches!(kept, Error::Database(sqlx::Error::Io(_))),
            "{kept:?}"
        );
        assert_eq!(classify(&kept), ErrorClass::Transient);

        let refused = Error::BadRecord {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            reason: "no".into(),
        };
        let fatal = not_written(refused, &record, "public.items");
        assert_eq!(classify(&fatal), ErrorClass::Fatal);
        assert_eq!(
            fatal.to_string(),
            "cannot write the dead letter of t/0@5 for table public.items: bad record t/0@5: no"
        );
    }
}
