//! Reading fields out of a JSON payload without building a document tree.
//!
//! The whole payload is validated once ([`super::scan`]); the top-level object is split into
//! (name, value text) pairs that borrow from the record in the same pass; nested objects and
//! arrays are only split along the paths a mapping reads. Numbers are never parsed: their text
//! is passed on exactly as written.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan::{split, split_escapes, Member};
use crate::config::PathSegment;

/// A parsed payload.
pub struct Doc<'a> {
    /// The whole payload (valid JSON).
    text: &'a str,
    /// The top-level object's members, when the payload is an object.
    top: Option<&'a [Member<'a>]>,
    /// No string in the payload has an escape: it holds no backslash at all.
    unescaped: bool,
}

/// A validated payload whose top-level members sit in a buffer shared by a whole batch (one
/// allocation per batch instead of one per record); [`Scanned::doc`] reads them back.
pub struct Scanned<'a> {
    text: &'a str,
    top: Option<std::ops::Range<usize>>,
    unescaped: bool,
}

impl<'a> Scanned<'a> {
    /// Validates `bytes` as one JSON value; an object's members are appended to `members` in
    /// the same pass (each member value is validated as it is read).
    pub fn new(bytes: &'a [u8], members: &mut Vec<Member<'a>>) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let start = members.len();
        let found = split_escapes(text, members)?;
        Ok(Self {
            text,
            top: found.object.then_some(start..members.len()),
            unescaped: !found.escapes,
        })
    }

    /// The document, with its members from the buffer it was scanned into.
    pub fn doc<'m>(&self, members: &'m [Member<'a>]) -> Doc<'m>
    where
        'a: 'm,
    {
        Doc {
            text: self.text,
            top: self.top.clone().map(|range| &members[range]),
            unescaped: self.unescaped,
        }
    }
}

/// A JSON value, read as far as a column needs it.
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A number's exact text.
    Number(&'a str),
    /// A string, unescaped (borrowed when it had no escapes).
    Text(Cow<'a, str>),
    /// An object or array, as its JSON text.
    Composite(&'a str),
}

impl<'a> Doc<'a> {
    /// No string in the payload has an escape, so no value read from it has a backslash:
    /// [`scalar_with`] and `jsonb_as_is_with` can skip their searches for one.
    pub fn unescaped(&self) -> bool {
        self.unescaped
    }

    /// The whole payload (valid JSON), without surrounding whitespace.
    fn whole(&self) -> &'a str {
        self.text.trim_matches([' ', '\n', '\r', '\t'])
    }

    /// The text of the value at `path` (the whole document for an empty path); `None` when
    /// absent. The text is valid JSON.
    pub fn get(&self, path: &[PathSegment]) -> Option<&'a str> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self.whole());
        };
        let mut current = match first {
            PathSegment::Field(name) => self.top?.iter().rev().find(|(k, _)| same_name(k, name))?.1,
            PathSegment::Index(i) => element(self.whole(), *i)?,
        };
        for segment in rest {
            current = match segment {
                PathSegment::Field(name) => member(current, name)?,
                PathSegment::Index(i) => element(current, *i)?,
            };
        }
        Some(current)
    }
}

/// Classifies a value's text by its first character (it is already valid JSON).
pub fn scalar(raw: &str) -> Scalar<'_> {
    scalar_with(raw, true)
}

/// [`scalar`]; with `may_escape` false (a value of a payload without escapes,
/// [`Doc::unescaped`]) a string is its own content without a search for a backslash.
#[inline(always)]
pub fn scalar_with(raw: &str, may_escape: bool) -> Scalar<'_> {
    debug_assert!(may_escape || !raw.contains('\\'));
    // Member values come without surrounding whitespace: trim only when there is some.
    let text = match raw.as_bytes().first() {
        Some(b' ' | b'\n' | b'\r' | b'\t') => raw.trim_start(),
        _ => raw,
    };
    match text.as_bytes().first() {
        // Valid JSON: a string without a backslash is its own content, quotes aside.
        Some(b'"')
            if text.len() >= 2 && text.ends_with('"') && !(may_escape && has_backslash(text)) =>
        {
            Scalar::Text(Cow::Borrowed(&text[1..text.len() - 1]))
        }
        Some(b'"') => match serde_json::from_str::<Str<'_>>(text) {
            Ok(Str(s)) => Scalar::Text(s),
            Err(_) => Scalar::Composite(text),
        },
        Some(b'{' | b'[') => Scalar::Composite(text),
        Some(b't') => Scalar::Bool(true),
        Some(b'f') => Scalar::Bool(false),
        Some(b'n') => Scalar::Null,
        _ => Scalar::Number(text),
    }
}

/// Whether `text` holds a backslash: a loop in line for the short strings most values are,
/// `memchr` for long ones (its set-up cost more than the search on the benchmark's values).
#[inline]
#[allow(clippy::manual_contains)]
fn has_backslash(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() <= 32 {
        b.iter().any(|&c| c == b'\\')
    } else {
        b.contains(&b'\\')
    }
}

fn member<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    if !raw.trim_start().starts_with('{') {
        return None;
    }
    let mut members = Vec::new();
    split(raw, &mut members).ok()?;
    members
        .into_iter()
        .rev()
        .find(|(k, _)| same_name(k, name))
        .map(|(_, v)| v)
}

/// Name equality for member lookups, compared in line: names are short, and a call to `memcmp`
/// per candidate member was 6 % of the decoder's time.
#[inline]
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn element(raw: &str, index: usize) -> Option<&str> {
    if !raw.trim_start().starts_with('[') {
        return None;
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    de.deserialize_seq(ElementVisitor(index))
        .ok()
        .flatten()
        .map(RawValue::get)
}

/// A string that borrows from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(V)
    }
}

struct ElementVisitor(usize);

impl<'de> Visitor<'de> for ElementVisitor {
    type Value = Option<&'de RawValue>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0;
        while let Some(v) = seq.next_element::<&'de RawValue>()? {
            if i == self.0 {
                found = Some(v);
            }
            i += 1;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathSegment::{Field, Index};

    fn text(raw: Option<&str>) -> Option<String> {
        raw.map(str::to_owned)
    }

    /// Scans `bytes` into `members` and binds `doc` to the result.
    macro_rules! doc {
        ($doc:ident = $bytes:expr) => {
            let mut members = Vec::new();
            let scanned = Scanned::new($bytes, &mut members).unwrap();
            let $doc = scanned.doc(&members);
        };
    }

    fn parses(bytes: &[u8]) -> bool {
        Scanned::new(bytes, &mut Vec::new()).is_ok()
    }

    #[test]
    fn reads_nested_paths_without_a_tree() {
        doc!(
            doc = br#"{"id": 12345678901234567890.120, "a": {"b": [10, {"c": "x\ty"}]}, "id": 7}"#
        );
        assert_eq!(
            text(doc.get(&[Field("id".into())])),
            Some("7".into()),
            "the last duplicate wins"
        );
        assert_eq!(
            text(doc.get(&[Field("a".into()), Field("b".into()), Index(0)])),
            Some("10".into())
        );
        let c = doc
            .get(&[
                Field("a".into()),
                Field("b".into()),
                Index(1),
                Field("c".into()),
            ])
            .unwrap();
        assert!(matches!(scalar(c), Scalar::Text(Cow::Owned(ref s)) if s == "x\ty"));
        assert!(doc.get(&[Field("a".into()), Index(0)]).is_none());
        assert!(doc.get(&[Field("nope".into())]).is_none());
        assert!(doc
            .get(&[Field("a".into()), Field("b".into()), Index(5)])
            .is_none());
    }

    #[test]
    fn numbers_keep_their_text_and_plain_strings_borrow() {
        doc!(doc = br#"{"n": 12345678901234567890.120, "s": "plain", "t": true, "z": null, "o": {"k": [1]}}"#);
        assert!(matches!(
            scalar(doc.get(&[Field("n".into())]).unwrap()),
            Scalar::Number("12345678901234567890.120")
        ));
        assert!(matches!(
            scalar(doc.get(&[Field("s".into())]).unwrap()),
            Scalar::Text(Cow::Borrowed("plain"))
        ));
        assert!(matches!(
            scalar(doc.get(&[Field("t".into())]).unwrap()),
            Scalar::Bool(true)
        ));
        assert!(matches!(
            scalar(doc.get(&[Field("z".into())]).unwrap()),
            Scalar::Null
        ));
        assert!(matches!(
            scalar(doc.get(&[Field("o".into())]).unwrap()),
            Scalar::Composite("{\"k\": [1]}")
        ));
    }

    #[test]
    fn invalid_json_is_an_error_anywhere_in_the_payload() {
        assert!(!parses(br#"{"a": 1, "b": [1, 2}"#));
        assert!(!parses(b"{\"a\": 1} trailing"));
        assert!(!parses(b""));
        assert!(parses(b"[1, 2]"));
        // A failed scan leaves nothing behind in the shared buffer.
        let mut members = vec![(Cow::Borrowed("kept"), "1")];
        assert!(Scanned::new(br#"{"a": 1, "b": x}"#, &mut members).is_err());
        assert_eq!(members.len(), 1);
        let second = Scanned::new(br#"{"b": 2}"#, &mut members).unwrap();
        assert_eq!(second.doc(&members).get(&[Field("b".into())]), Some("2"));
    }
}
