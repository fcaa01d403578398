//! BuildKit's AST dump format (`(from "alpine")`), with Go's `strconv.Quote` string
//! rendering.

use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

use super::Node;

/// Appends `s` quoted the way Go's `strconv.Quote` does.
pub(crate) fn go_quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
}

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and the ASCII
/// space.
fn is_go_printable(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter
            | GeneralCategoryGroup::Mark
            | GeneralCategoryGroup::Number
            | GeneralCategoryGroup::Punctuation
            | GeneralCategoryGroup::Symbol
    )
}

/// Go's `strings.ToLower` (per character, no context rules).
pub(crate) fn go_lower(s: &str) -> String {
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        // Go uses the simple (one-to-one) mapping; U+0130 is the one character whose
        // full lower case differs from it.
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Writes one instruction's dump (without the surrounding parentheses).
pub(crate) fn dump_node(out: &mut String, node: &Node) {
    let start = out.len();
    out.push_str(&node.keyword_lower);
    if !node.flags.is_empty() {
        out.push_str(" [");
        for (i, flag) in node.flags.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            go_quote(out, &flag.raw);
        }
        out.push(']');
    }
    for arg in &node.args {
        out.push(' ');
        go_quote(out, arg);
    }
    if let Some(sub) = &node.onbuild {
        out.push_str(" (");
        dump_node(out, sub);
        out.push(')');
    }
    // Go trims the rendered node; only an empty keyword leaves leading space.
    let trimmed = out[start..].trim();
    if trimmed.len() != out.len() - start {
        let trimmed = trimmed.to_string();
        out.truncate(start);
        out.push_str(&trimmed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> String {
        let mut out = String::new();
        go_quote(&mut out, s);
        out
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(q("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(q("\t\0\x7f"), r#""\t\x00\x7f""#);
        assert_eq!(q("♥ 한"), "\"♥ 한\"");
        assert_eq!(q("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
        assert_eq!(q("\u{e0001}"), r#""\U000e0001""#);
    }

    #[test]
    fn lowers_like_go() {
        assert_eq!(go_lower("RUN"), "run");
        assert_eq!(go_lower("\u{130}X\u{212a}"), "ixk");
    }
}
