//! Text the human views share: untrusted text made safe to show, widths, times.

use std::time::Duration;

use rbuild_compiler::text::push_escaped;
use unicode_width::UnicodeWidthChar as _;

/// Seconds with one decimal: `1.2s`.
pub(super) fn format_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// `sha256:` and 12 hex digits.
pub(super) fn short_digest(d: &str) -> &str {
    d.get(..19).unwrap_or(d)
}

/// A line of untrusted text (step output, a Dockerfile line, a file name in a miss reason)
/// as the human views show it: a final carriage return dropped, tabs expanded to the next
/// multiple of eight columns (so widths are right), and every other control character shown
/// as a visible escape (`\x1b[2J`), through the one rule of [`rbuild_compiler::text`].
pub(super) fn shown(text: &str) -> String {
    let text = text.strip_suffix('\r').unwrap_or(text);
    let mut out = String::with_capacity(text.len());
    let mut col = 0usize;
    for c in text.chars() {
        if c == '\t' {
            let n = 8 - col % 8;
            out.extend(std::iter::repeat_n(' ', n));
            col += n;
        } else {
            let before = out.len();
            push_escaped(&mut out, c);
            col += out[before..]
                .chars()
                .map(|c| c.width().unwrap_or(0))
                .sum::<usize>();
        }
    }
    out
}

/// A running step's last output line in the tty view: what a terminal would show of a line
/// redrawn with carriage returns (`10%\r50%\r100%` is `100%`), as [`shown`].
pub(super) fn live_line(text: &str) -> String {
    let text = text.strip_suffix('\r').unwrap_or(text);
    shown(text.rsplit('\r').next().unwrap_or(text))
}

/// A step's description on one line: the line breaks of a heredoc shown as `\n`, control
/// characters as escapes.
pub(super) fn one_line(description: &str) -> String {
    let d = description.trim_end_matches('\n');
    shown(&d.replace('\r', "\\r").replace('\n', "\\n"))
}

/// Cuts plain text (no escape sequences) to at most `width` columns.
pub(super) fn truncate(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        out.push(c);
    }
    out
}

pub(super) fn text_width(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// `left` and `right` on one line of `width` columns: `left` cut to fit, `right` aligned to
/// the right edge.
pub(super) fn two_sided(left: &str, right: &str, width: usize) -> String {
    let rw = text_width(right);
    if rw + 1 >= width {
        return truncate(left, width);
    }
    let left = truncate(left, width - rw - 1);
    let pad = width - rw - text_width(&left);
    format!("{left}{}{right}", " ".repeat(pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(shown("a\x1b[31mred\x1b[0m b"), "a\\x1b[31mred\\x1b[0m b");
        assert_eq!(shown("x\x1b[2J\0y"), "x\\x1b[2J\\x00y");
        assert_eq!(shown("10%\r50%\r100%"), "10%\\x0d50%\\x0d100%");
        assert_eq!(live_line("10%\r50%\r100%"), "100%");
        assert_eq!(shown("line\r"), "line");
        assert_eq!(shown("a\tb"), "a       b");
        assert_eq!(shown("\x1b\tb"), "\\x1b    b");
        assert_eq!(shown("é\u{9b}x"), "é\\u{9b}x");
        assert_eq!(one_line("RUN a\nb\n"), "RUN a\\nb");
        assert_eq!(one_line("RUN \x1b[2J"), "RUN \\x1b[2J");
    }

    #[test]
    fn lines_fit_the_width() {
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("日本語", 5), "日本");
        let l = two_sided("=> [stage-0 2/3] RUN a long command", "1.2s", 20);
        assert_eq!(l, "=> [stage-0 2/3 1.2s");
        assert_eq!(text_width(&l), 20);
        assert_eq!(two_sided("ab", "1.2s", 10), "ab    1.2s");
        assert_eq!(two_sided("abcdef", "1.2s", 4), "abcd");
    }
}
