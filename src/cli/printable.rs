//! Text from disk or a runtime, made safe to print: every name, path and
//! message on a screen goes through [`printable`], so a table row stays one
//! line, no escape sequence reaches the terminal, and comfy-table measures
//! exactly what is printed. `--json` does not: serde escapes there.

use std::borrow::Cow;

/// `s` as a screen shows it: control characters (C0, DEL, C1) and bidi
/// controls written out (`\n`, `\x1b`, `\u{9b}`, `\u{202e}`), and a
/// backslash doubled so that a name holding a literal `\n` stays told
/// apart. Borrowed when nothing needs it, as almost always.
pub(super) fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if c.is_ascii_control() => out.push_str(&format!(r"\x{:02x}", u32::from(c))),
            c if needs_escape(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control() || is_bidi_control(c)
}

/// The bidi formatting characters of Unicode's UAX #9: embeddings,
/// overrides and isolates reorder the rest of the line ("Trojan Source"),
/// and the marks, invisible, move what is around them.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_printable_writes_out_what_a_terminal_would_act_on() {
        for (raw, shown) in [
            ("plain name-0:1.25", "plain name-0:1.25"),
            ("a\nb\rc\td", r"a\nb\rc\td"),
            ("\x1b[31mred\x07\x7f", r"\x1b[31mred\x07\x7f"),
            ("\u{9b}2J", r"\u{9b}2J"),
            (
                "abc\u{202e}fed\u{2066}\u{200f}",
                r"abc\u{202e}fed\u{2066}\u{200f}",
            ),
            (r"C:\n", r"C:\\n"),
            ("naïve 日本", "naïve 日本"),
        ] {
            assert_eq!(printable(raw), shown, "{raw:?}");
        }
        assert!(matches!(printable("web-0"), Cow::Borrowed(_)));
    }
}
