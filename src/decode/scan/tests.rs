//! [`super::split`] against serde_json on valid, hand-picked invalid and randomly mutated texts.

use serde::de::IgnoredAny;
use testkit::rng::Rng;

use super::*;

fn accepts(text: &str) -> bool {
    split(text, &mut Vec::new()).is_ok()
}

fn serde_accepts(text: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(text).is_ok()
}

#[test]
fn splits_objects_into_exact_member_texts() {
    let mut members = Vec::new();
    let text = r#" { "id" : 12.50e+3 , "a\"b": {"x": [1, "y\n", null]}, "id": true, "": "" } "#;
    assert!(split(text, &mut members).unwrap());
    let got: Vec<(&str, &str)> = members.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
    assert_eq!(
        got,
        [
            ("id", "12.50e+3"),
            ("a\"b", r#"{"x": [1, "y\n", null]}"#),
            ("id", "true"),
            ("", r#""""#)
        ]
    );
    assert!(matches!(members[0].0, Cow::Borrowed(_)));
    members.clear();
    assert!(!split("[1, 2]", &mut members).unwrap());
    assert!(members.is_empty());
    assert!(!split("  \"text\" ", &mut members).unwrap());
}

#[test]
fn rejects_what_json_forbids() {
    for text in [
        "",
        " ",
        "{",
        "}",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{a:1}",
        "[1,]",
        "[1 2]",
        "01",
        "-",
        "1.",
        ".5",
        "1e",
        "1e+",
        "+1",
        "NaN",
        "tru",
        "nul",
        "\"abc",
        "\"a\tb\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "{\"a\":1} x",
        "[1] [2]",
        "{'a':1}",
    ] {
        assert!(!accepts(text), "accepted {text:?}");
        assert!(!serde_accepts(text), "serde_json accepts {text:?}");
    }
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert!(split(&deep, &mut Vec::new())
        .unwrap_err()
        .contains("nested too deeply"));
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(accepts(&ok));
}

/// Random documents from a small grammar, then random byte edits: both parsers must agree on
/// every text, and on the member split of every object.
#[test]
fn agrees_with_serde_json_on_random_and_mutated_texts() {
    let mut rng = Rng::new(7);
    let (mut agreed_invalid, mut compared, mut escaped) = (0, 0, 0);
    for round in 0..20_000 {
        let mut text = String::new();
        document(&mut rng, 0, &mut text);
        if round % 2 == 1 {
            mutate(&mut rng, &mut text);
        }
        let ours = accepts(&text);
        assert_eq!(ours, serde_accepts(&text), "disagree on {text:?}");
        if let Ok(found) = split_escapes(&text, &mut Vec::new()) {
            assert_eq!(found.escapes, text.contains('\\'), "escapes in {text:?}");
            escaped += usize::from(found.escapes);
        }
        agreed_invalid += usize::from(!ours);
        if ours && text.trim_start().starts_with('{') {
            let mut members = Vec::new();
            split(&text, &mut members).unwrap();
            // Valid JSON that serde_json cannot turn into strings (a lone surrogate escape) is
            // accepted by both; there is nothing to compare the split with.
            let Ok(theirs) =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text)
            else {
                continue;
            };
            // serde_json keeps the last of duplicate names; so does the decoder (it reads from the end).
            for (name, value) in &theirs {
                let last = members.iter().rev().find(|(k, _)| k == name).unwrap();
                let parsed: serde_json::Value = serde_json::from_str(last.1).unwrap();
                compared += 1;
                assert_eq!(&parsed, value, "member {name:?} of {text:?}");
            }
        }
    }
    assert!(
        agreed_invalid > 2_000,
        "too few invalid texts tried: {agreed_invalid}"
    );
    assert!(
        compared > 2_000,
        "too few member splits compared: {compared}"
    );
    assert!(escaped > 500, "too few valid texts with escapes: {escaped}");
}

fn document(rng: &mut Rng, depth: usize, out: &mut String) {
    let ws = |rng: &mut Rng, out: &mut String| {
        for _ in 0..rng.index(3) {
            out.push([' ', '\n', '\t', '\r'][rng.index(4)]);
        }
    };
    ws(rng, out);
    let pick = if depth > 4 {
        rng.index(5)
    } else {
        rng.index(7)
    };
    match pick {
        0 => out.push_str(["true", "false", "null"][rng.index(3)]),
        1 => out.push_str(
            [
                "0",
                "-0",
                "12",
                "-3.25",
                "1e9",
                "2.5E-3",
                "12345678901234567890.123",
            ][rng.index(7)],
        ),
        2 | 3 => {
            out.push('"');
            for _ in 0..rng.index(6) {
                out.push_str(
                    [
                        "a",
                        "é",
                        "\\n",
                        "\\\"",
                        "\\\\",
                        "\\u00e9",
                        "\\ud83d\\ude00",
                        " ",
                        "/",
                        "\\/",
                    ][rng.index(10)],
                );
            }
            out.push('"');
        }
        4 => out.push_str(["\"x\"", "[]", "{}"][rng.index(3)]),
        5 => {
            out.push('[');
            for i in 0..rng.index(4) {
                if i > 0 {
                    out.push(',');
                }
                document(rng, depth + 1, out);
            }
            out.push(']');
        }
        _ => {
            out.push('{');
            for i in 0..rng.index(4) {
                if i > 0 {
                    out.push(',');
                }
                ws(rng, out);
                out.push_str(
                    ["\"id\"", "\"a\"", "\"\"", "\"k\\u0041\"", "\"n\\\"q\""][rng.index(5)],
                );
                ws(rng, out);
                out.push(':');
                document(rng, depth + 1, out);
            }
            out.push('}');
        }
    }
    ws(rng, out);
}

fn mutate(rng: &mut Rng, text: &mut String) {
    let pieces = [
        "", "\"", "\\", ",", ":", "{", "}", "[", "]", "0", "-", ".", "e", "\u{1}", "\t", "x",
        "\\u", "n",
    ];
    for _ in 0..1 + rng.index(2) {
        let mut at = rng.index(text.len() + 1);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        if rng.chance(0.5) && at < text.len() {
            let end = text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
            text.replace_range(at..end, pieces[rng.index(pieces.len())]);
        } else {
            text.insert_str(at, pieces[rng.index(pieces.len())]);
        }
    }
}

#[test]
fn plain_runs_stop_exactly_at_the_first_special_byte() {
    let naive = |b: &[u8]| {
        b.iter()
            .position(|&c| c < 0x20 || c == b'"' || c == b'\\')
            .unwrap_or(b.len())
    };
    for len in 0..24 {
        for at in 0..len {
            for special in 0..=255u8 {
                for filler in [b'a', 0xC3, 0x21, 0x5D] {
                    let mut text = vec![filler; len];
                    text[at] = special;
                    if at + 1 < len {
                        // A second special byte right after the first must not move the stop.
                        text[at + 1] = b'"';
                    }
                    assert_eq!(plain_run(&text, 0), naive(&text), "{text:?}");
                }
            }
        }
    }
}

#[test]
fn a_failed_split_says_where_and_leaves_the_members_as_they_were() {
    let mut members = vec![(Cow::Borrowed("kept"), "1")];
    for (text, what) in [
        (
            r#"{"a": 1, "\ud800": 2}"#,
            "member name is not a valid string (lone surrogate escape) at line 1, byte 9",
        ),
        (r#"{"a": 1, "b" 2}"#, "expected `:` at line 1, byte 13"),
        ("{\"a\": \"x\ny\"}", "control character in a string"),
        (r#"{"a": [1, 2}"#, "expected `,` or `]`"),
    ] {
        let error = split(text, &mut members).unwrap_err();
        assert!(error.contains(what), "{text}: {error}");
        assert_eq!(members.len(), 1, "{text}");
    }
    // The lone surrogate is valid JSON syntax; only as a name it must become a string.
    assert!(split(r#"{"a": "\ud800"}"#, &mut members).is_ok());
}
