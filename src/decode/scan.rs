//! A strict JSON validator (RFC 8259) that also splits a top-level object into its members, in
//! one pass and without building values: the decoder's hot path, where a general deserializer
//! spent most of its time in per-token dispatch.
//!
//! Guarantee: [`split`] accepts exactly the texts that are one valid JSON value (surrounded by
//! optional whitespace), nested at most [`MAX_DEPTH`] deep; member values are returned as the
//! exact text of each value. Input is `&str`, so UTF-8 validity is already established.

use std::borrow::Cow;

/// Nesting limit (serde_json's default recursion limit is 128 as well).
pub const MAX_DEPTH: usize = 128;

/// A top-level member: its name (unescaped; borrowed when it had no escapes) and value text.
pub type Member<'a> = (Cow<'a, str>, &'a str);

/// Validates `text` as one JSON value. For an object, its members are appended to `members`
/// (in document order, duplicates kept) and `Ok(true)` is returned; for anything else `Ok(false)`.
/// An invalid text leaves `members` as it was.
pub fn split<'a>(text: &'a str, members: &mut Vec<Member<'a>>) -> Result<bool, String> {
    split_escapes(text, members).map(|split| split.object)
}

/// What [`split_escapes`] found in a valid text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// The text is an object (its members were appended).
    pub object: bool,
    /// Some string in the text has an escape. Valid JSON has a backslash nowhere else, so when
    /// this is false the text holds no backslash at all, and no value in it needs unescaping.
    pub escapes: bool,
}

/// [`split`], also telling whether any string in the text has an escape.
pub fn split_escapes<'a>(text: &'a str, members: &mut Vec<Member<'a>>) -> Result<Split, String> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
        escapes: false,
    };
    let start = members.len();
    let outcome = s.document(members);
    if outcome.is_err() {
        members.truncate(start);
    }
    outcome
        .map(|object| Split {
            object,
            escapes: s.escapes,
        })
        .map_err(|fault| s.message(fault))
}

/// Why a scan stopped. One byte, so that every step returns its outcome in a register; the
/// message (with the position) is written once, by [`Scanner::message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    ExpectedValue,
    NestedTooDeeply,
    ExpectedName,
    ExpectedColon,
    ExpectedCommaOrBrace,
    ExpectedCommaOrBracket,
    InvalidUnicodeEscape,
    InvalidEscape,
    ControlCharacter,
    UnterminatedString,
    InvalidNumber,
    TrailingCharacters,
    /// A member name whose escapes do not make a string (a lone surrogate).
    InvalidName,
}

type Step<T = ()> = Result<T, Fault>;

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    /// A string with an escape was scanned.
    escapes: bool,
}

impl<'a> Scanner<'a> {
    fn document(&mut self, members: &mut Vec<Member<'a>>) -> Step<bool> {
        self.ws();
        let object = self.peek() == Some(b'{');
        if object {
            self.object(1, Some(members))?;
        } else {
            self.value(0)?;
        }
        self.ws();
        if self.i != self.b.len() {
            return Err(Fault::TrailingCharacters);
        }
        Ok(object)
    }

    /// The text from `from` to the scan's position, both just before or after an ASCII byte the
    /// scan matched (a quote, a value's first or last byte).
    #[inline]
    fn slice(&self, from: usize) -> &'a str {
        debug_assert!(from <= self.i && self.text.is_char_boundary(from));
        debug_assert!(self.text.is_char_boundary(self.i));
        // SAFETY: `from <= self.i <= len`, and a position next to an ASCII byte is a char
        // boundary (continuation bytes only follow bytes >= 0x80).
        unsafe { self.text.get_unchecked(from..self.i) }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.i += usize::from(hit);
        hit
    }

    #[inline]
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    // Out of the hot path: only bad payloads get here.
    #[cold]
    #[inline(never)]
    fn message(&self, fault: Fault) -> String {
        let what = match fault {
            Fault::ExpectedValue => "expected a value",
            Fault::NestedTooDeeply => "nested too deeply",
            Fault::ExpectedName => "expected a member name in double quotes",
            Fault::ExpectedColon => "expected `:`",
            Fault::ExpectedCommaOrBrace => "expected `,` or `}`",
            Fault::ExpectedCommaOrBracket => "expected `,` or `]`",
            Fault::InvalidUnicodeEscape => "invalid \\u escape",
            Fault::InvalidEscape => "invalid escape",
            Fault::ControlCharacter => "control character in a string",
            Fault::UnterminatedString => "unterminated string",
            Fault::InvalidNumber => "invalid number",
            Fault::TrailingCharacters => "trailing characters",
            Fault::InvalidName => "member name is not a valid string (lone surrogate escape)",
        };
        let line = 1 + self.b[..self.i.min(self.b.len())]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        match self.peek() {
            None => format!(
                "{what} at the end of the input (line {line}, byte {})",
                self.i
            ),
            Some(c) => format!(
                "{what} at line {line}, byte {} (found {:?})",
                self.i,
                char::from(c)
            ),
        }
    }

    fn value(&mut self, depth: usize) -> Step {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, None),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => {
                self.i += 1;
                self.string().map(|_| ())
            }
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Fault::ExpectedValue),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Fault::ExpectedValue)
        }
    }

    /// An object at nesting `depth`; with `members`, its members are appended there.
    fn object(&mut self, depth: usize, mut members: Option<&mut Vec<Member<'a>>>) -> Step {
        if depth > MAX_DEPTH {
            return Err(Fault::NestedTooDeeply);
        }
        self.i += 1;
        self.ws();
        if self.eat(b'}') {
            return Ok(());
        }
        loop {
            let name_start = self.i;
            if !self.eat(b'"') {
                return Err(Fault::ExpectedName);
            }
            let escaped = self.string()?;
            let name = match members {
                Some(_) => match unquote(self.slice(name_start), escaped) {
                    Some(name) => Some(name),
                    None => {
                        // Reported at the name, not after it.
                        self.i = name_start;
                        return Err(Fault::InvalidName);
                    }
                },
                None => None,
            };
            self.ws();
            if !self.eat(b':') {
                return Err(Fault::ExpectedColon);
            }
            self.ws();
            let value_start = self.i;
            self.value(depth)?;
            if let (Some(members), Some(name)) = (members.as_deref_mut(), name) {
                members.push((name, self.slice(value_start)));
            }
            self.ws();
            if self.eat(b',') {
                self.ws();
                continue;
            }
            if self.eat(b'}') {
                return Ok(());
            }
            return Err(Fault::ExpectedCommaOrBrace);
        }
    }

    fn array(&mut self, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err(Fault::NestedTooDeeply);
        }
        self.i += 1;
        self.ws();
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            self.value(depth)?;
            self.ws();
            if self.eat(b',') {
                self.ws();
                continue;
            }
            if self.eat(b']') {
                return Ok(());
            }
            return Err(Fault::ExpectedCommaOrBracket);
        }
    }

    /// The rest of a string after its opening quote; true when it had escapes.
    #[inline(always)]
    fn string(&mut self) -> Step<bool> {
        let b = self.b;
        let mut i = self.i;
        let mut escaped = false;
        let fault = loop {
            i += plain_run(b, i);
            match b.get(i) {
                Some(b'"') => {
                    self.i = i + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escapes = true;
                    i += 1;
                    match b.get(i) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 1,
                        Some(b'u') => {
                            let hex = b.get(i + 1..i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                break Fault::InvalidUnicodeEscape;
                            }
                            i += 5;
                        }
                        _ => break Fault::InvalidEscape,
                    }
                }
                Some(_) => break Fault::ControlCharacter,
                None => break Fault::UnterminatedString,
            }
        };
        // The error's position: where the scan stopped.
        self.i = i;
        Err(fault)
    }

    fn number(&mut self) -> Step {
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Fault::InvalidNumber),
        }
        if self.eat(b'.') {
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(Fault::InvalidNumber);
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(Fault::InvalidNumber);
            }
            self.digits();
        }
        Ok(())
    }

    #[inline]
    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

/// A scanned string literal's content: borrowed when it had no escapes; `None` when its escapes
/// do not make a string.
fn unquote(quoted: &str, escaped: bool) -> Option<Cow<'_, str>> {
    if escaped {
        serde_json::from_str::<String>(quoted).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(&quoted[1..quoted.len() - 1]))
    }
}

/// Length of the run of bytes from `b[from..]` that a string may hold as they are (no quote,
/// backslash or control character), tested eight bytes at a time.
#[inline]
fn plain_run(b: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(word) = b.get(i..i + 8) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes);
        // Each test flags its lowest matching byte exactly (a borrow only runs upwards, so
        // wrong flags can appear only above a true one): the lowest flag of all is the stop.
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
        let q = x ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q & HIGHS;
        let s = x ^ (ONES * u64::from(b'\\'));
        let backslash = s.wrapping_sub(ONES) & !s & HIGHS;
        let stops = control | quote | backslash;
        if stops != 0 {
            return i - from + (stops.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b
        .get(i)
        .is_some_and(|&c| c >= 0x20 && c != b'"' && c != b'\\')
    {
        i += 1;
    }
    i - from
}

#[cfg(test)]
mod tests;
