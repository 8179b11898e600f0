//! COPY's text format: escaping a value for a text row.

/// Whether `bytes` holds a backslash or a control character up to `\r` (a superset of what
/// COPY text must escape), tested eight bytes at a time.
fn may_need_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().unwrap_or_default());
        // Exact "some byte is below n" and "some byte is zero" tests (no false answers for the
        // word as a whole, whatever the neighbouring bytes).
        let below_cr = x.wrapping_sub(ONES * 14) & !x & HIGHS;
        let y = x ^ (ONES * u64::from(b'\\'));
        let backslash = y.wrapping_sub(ONES) & !y & HIGHS;
        if below_cr | backslash != 0 {
            return true;
        }
    }
    words.remainder().iter().any(|&b| b <= b'\r' || b == b'\\')
}

/// Appends `text` escaped for COPY's text format.
pub(super) fn copy_escape(out: &mut Vec<u8>, text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    if !may_need_escape(bytes) {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0 => {
                return Err(
                    "text contains a NUL character, which PostgreSQL text cannot store".into(),
                )
            }
            _ => out.push(b),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_test_finds_every_special_byte_at_every_position() {
        let naive = |b: &[u8]| b.iter().any(|&c| c <= b'\r' || c == b'\\');
        for len in 0..20 {
            for at in 0..len {
                for special in 0..=255u8 {
                    let mut text = vec![b'a'; len];
                    text[at] = special;
                    assert_eq!(may_need_escape(&text), naive(&text), "{text:?}");
                }
            }
        }
        // Neighbouring high bytes (UTF-8) must not hide or fake a special byte.
        for text in ["é\\é", "ééééééé\n", "ééééééééé", "\u{7f}\u{80}\u{ff}ñ"] {
            assert_eq!(
                may_need_escape(text.as_bytes()),
                naive(text.as_bytes()),
                "{text:?}"
            );
        }
        let mut out = Vec::new();
        copy_escape(&mut out, "a\tb\\c\nd\re\u{1}").unwrap();
        assert_eq!(out, b"a\\tb\\\\c\\nd\\re\x01");
    }
}
