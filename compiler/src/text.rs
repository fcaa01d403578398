//! Untrusted text made safe to show on a terminal.
//!
//! A Dockerfile, the file names of a layer, a registry's error message and a build step's
//! output can hold control characters. Printed as they are, `ESC [ 2 J` clears the screen,
//! `ESC ] 0 ;` sets the window title, a carriage return hides what came before it on the
//! line and a NUL confuses the tools that read logs. Every view meant for people
//! (diagnostics, error messages, progress, reports) passes such text through
//! [`escape_controls`]: each control character other than tab and line feed is shown as a
//! visible escape, `\x1b`, `\x00`, `\x7f`, or `\u{9b}` for the C1 controls, so nothing is
//! hidden and the terminal interprets nothing. Views meant for programs (JSON) keep the
//! exact text; their own encoding escapes it.
//!
//! Escaping is idempotent: an escape is made of printable characters only.
//!
//! ```
//! use rbuild_compiler::text::escape_controls;
//!
//! assert_eq!(escape_controls("a\x1b[2Jb\0\tc\n"), "a\\x1b[2Jb\\x00\tc\n");
//! assert_eq!(escape_controls("\u{9b}31m"), "\\u{9b}31m");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is shown escaped: C0 controls but tab and line feed, DEL, and C1 controls.
pub fn is_escaped(c: char) -> bool {
    (c.is_control() && c != '\t' && c != '\n') || c == '\u{7f}'
}

/// Appends `c` to `out`, as a visible escape when [`is_escaped`] says so.
pub fn push_escaped(out: &mut String, c: char) {
    if !is_escaped(c) {
        out.push(c);
    } else if c.is_ascii() {
        let _ = write!(out, "\\x{:02x}", u32::from(c));
    } else {
        let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
    }
}

/// `text` with every control character other than tab and line feed shown as a visible
/// escape; borrowed when there is none.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// [`escape_controls`] of an owned string, reusing it when there is nothing to escape.
pub fn escape_owned(text: String) -> String {
    match escape_controls(&text) {
        Cow::Borrowed(_) => text,
        Cow::Owned(escaped) => escaped,
    }
}

/// [`escape_controls`], then cut to at most `max` characters (the cut marked `...`): for a
/// message that quotes untrusted text of any length.
pub fn excerpt(text: &str, max: usize) -> Cow<'_, str> {
    let escaped = escape_controls(text);
    match escaped.char_indices().nth(max) {
        None => escaped,
        Some((at, _)) => Cow::Owned(format!("{}...", &escaped[..at])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_shown_and_the_rest_kept() {
        assert_eq!(
            escape_controls("plain text\twith tab\n"),
            "plain text\twith tab\n"
        );
        assert!(matches!(escape_controls("abc"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("\x1b]0;title\x07\r\0\x7f\u{85}é"),
            "\\x1b]0;title\\x07\\x0d\\x00\\x7f\\u{85}é"
        );
        let once = escape_controls("\x1b[31m\0");
        assert_eq!(escape_controls(&once), once, "idempotent");
    }

    #[test]
    fn excerpts_are_cut() {
        assert_eq!(excerpt("abcdef", 3), "abc...");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("\x1bxyz", 5), "\\x1bx...");
    }
}
