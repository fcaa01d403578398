//! Parse errors and warnings with their Dockerfile location, rendered rustc-style:
//! `file:line:col: message`, the source line, a caret under the column, and an optional
//! `hint:` line.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::text::{escape_controls, excerpt, push_escaped};

/// A point in the Dockerfile: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// A range of the Dockerfile, from `start` to `end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Span {
    /// Where the range begins.
    pub start: Position,
    /// Where the range ends (the column after its last character).
    pub end: Position,
}

impl Span {
    /// A span covering `line` from `column` on, `len` characters long (at least one).
    pub fn on_line(line: usize, column: usize, len: usize) -> Span {
        Span {
            start: Position { line, column },
            end: Position {
                line,
                column: column + len.max(1),
            },
        }
    }
}

/// What went wrong while parsing a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The file holds no instruction at all (empty, or only comments and blank lines).
    #[error("file with no instructions")]
    NoInstructions,
    /// A physical line is longer than BuildKit's scanner allows.
    #[error("dockerfile line greater than max allowed size of {max}")]
    LineTooLong {
        /// The largest accepted line length in bytes.
        max: usize,
    },
    /// A parser directive appears twice.
    #[error("only one {name} parser directive can be used")]
    DuplicateDirective {
        /// The directive name (lower case).
        name: String,
    },
    /// The `escape` directive names a character other than `` ` `` or `\`.
    #[error("invalid escape token '{value}' does not match ` or \\")]
    InvalidEscape {
        /// The value given to the directive.
        value: String,
    },
    /// A JSON-form argument list holds something other than strings.
    #[error("{keyword}: when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings {
        /// The instruction keyword as written.
        keyword: String,
    },
    /// `ENV`/`LABEL` in the old `KEY value` form without a value.
    #[error("{keyword} must have two arguments")]
    NameValueMissingValue {
        /// The instruction keyword (upper case).
        keyword: String,
    },
    /// `ENV`/`LABEL` in the `name=value` form with a word lacking `=`.
    #[error("{keyword}: can't find = in {word:?}, must be of the form name=value")]
    NameValueMissingEquals {
        /// The instruction keyword (upper case).
        keyword: String,
        /// The word without `=`.
        word: String,
    },
    /// A heredoc body reaches the end of the file before its terminator line.
    #[error("unterminated heredoc {name:?}")]
    UnterminatedHeredoc {
        /// The heredoc delimiter that was never found.
        name: String,
    },
    /// A heredoc delimiter word could not be lexed (an unterminated quote, a bad `${`).
    #[error("invalid heredoc delimiter in {}: {reason}", crate::shell::shown(line))]
    InvalidHeredocWord {
        /// The instruction line holding the delimiter.
        line: String,
        /// What the lexer found wrong.
        reason: String,
    },
    /// Nesting deeper than the parser follows ([`super::MAX_NESTING`]).
    #[error("{what} is nested more than {limit} levels deep")]
    TooDeep {
        /// What nests: `${...}` or `ONBUILD`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// An instruction keyword that Dockerfiles do not know.
    #[error("unknown instruction: {keyword}")]
    UnknownInstruction {
        /// The keyword as written.
        keyword: String,
    },
}

/// A parse error with the location it applies to and an optional hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// What went wrong.
    pub kind: ParseErrorKind,
    /// Where: the offending instruction, line, or word.
    pub span: Span,
    /// A suggestion shown as `hint:`.
    pub hint: Option<String>,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, span: Span) -> Self {
        ParseError {
            kind,
            span,
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Renders `file:line:col: message`, the source line with a caret under the
    /// column, and the hint if there is one (no final line end).
    pub fn render(&self, file_name: &str, source: &str) -> String {
        render(
            &self.to_string(),
            self.span,
            self.hint.as_deref(),
            file_name,
            source,
        )
    }
}

/// A warning: the file parses, but something in it is deprecated or suspicious.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// One-line description (BuildKit's wording, so tools that grep for it still work).
    pub short: String,
    /// Further lines of explanation.
    pub detail: Vec<String>,
    /// A page that explains the rule.
    pub url: String,
    /// Where it applies.
    pub span: Span,
}

impl Warning {
    /// Renders `file:line:col: message`, the source line with a caret, and the
    /// detail lines as `note:`.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let mut out = render(&self.short, self.span, None, file_name, source);
        for line in &self.detail {
            let _ = write!(out, "\n  = note: {}", note_text(line));
        }
        if !self.url.is_empty() {
            let _ = write!(out, "\n  = see: {}", escape_controls(&self.url));
        }
        out
    }
}

/// The most characters of a message, hint or note shown: they quote Dockerfile text, which
/// may be a line of 65,535 bytes.
const MAX_MESSAGE: usize = 300;

/// Renders a located message: `file:line:col: message`, the source line with a caret under
/// the span, and an optional `hint:` line. Every Dockerfile diagnostic (parse, lowering,
/// planning) goes through here so they all look alike. The Dockerfile is untrusted text: the
/// file name, message, source line and hint have their control characters shown as escapes
/// ([`crate::text::escape_controls`]), the message and hint are cut to 300 characters and
/// the source line to 120 around the column, so a diagnostic is always a short excerpt.
pub fn render(
    message: &str,
    span: Span,
    hint: Option<&str>,
    file_name: &str,
    source: &str,
) -> String {
    let line_no = span.start.line.max(1);
    let column = span.start.column.max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}:{line_no}:{column}: {}",
        escape_controls(file_name),
        excerpt(message, MAX_MESSAGE)
    );
    // The source line, without its BOM or line end; long lines are cut around the column.
    let text = source.split('\n').nth(line_no - 1).map(|l| {
        l.strip_prefix('\u{feff}')
            .unwrap_or(l)
            .trim_end_matches(['\r', '\n'])
    });
    if let Some(text) = text {
        let gutter = line_no.to_string();
        let pad = " ".repeat(gutter.len());
        let end = (span.end.line == span.start.line && span.end.column > column)
            .then_some(span.end.column);
        let (shown, caret_col, width) = window(text, column, end);
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{gutter} | {shown}");
        let _ = writeln!(
            out,
            "{pad} | {}{}",
            " ".repeat(caret_col - 1),
            "^".repeat(width.max(1))
        );
    }
    if let Some(hint) = hint {
        let _ = writeln!(out, "hint: {}", excerpt(hint, MAX_MESSAGE));
    }
    out.truncate(out.trim_end().len());
    out
}

/// A `note:` line of a diagnostic: escaped and cut like the message.
fn note_text(note: &str) -> Cow<'_, str> {
    excerpt(note, MAX_MESSAGE)
}

/// A diagnostic without a location: `file: message`, escaped and cut like [`render`]'s.
pub fn render_unlocated(message: &str, file_name: &str) -> String {
    format!(
        "{}: {}\n",
        escape_controls(file_name),
        excerpt(message, MAX_MESSAGE)
    )
}

/// Cuts a long line to at most 120 shown characters around `column`; returns the shown
/// text, the caret column within it, and the caret's width (up to `end`, the column after
/// the span, or one character). Tabs become spaces so the caret lines up; control
/// characters are shown as escapes, each as wide as its escape.
fn window(text: &str, column: usize, end: Option<usize>) -> (String, usize, usize) {
    const MAX: usize = 120;
    let units: Vec<String> = text
        .chars()
        .map(|c| {
            let mut s = String::new();
            if c == '\t' {
                s.push(' ');
            } else {
                push_escaped(&mut s, c);
            }
            s
        })
        .collect();
    let widths: Vec<usize> = units.iter().map(|u| u.chars().count()).collect();
    let total: usize = widths.iter().sum();
    let col0 = (column - 1).min(units.len());
    let (start, stop) = if total <= MAX {
        (0, units.len())
    } else {
        // Half the room before the column, the rest after it.
        let mut start = col0;
        let mut used = 0;
        while start > 0 && used + widths[start - 1] <= MAX / 2 {
            start -= 1;
            used += widths[start];
        }
        let mut stop = start;
        let mut used = 0;
        while stop < units.len() && used + widths[stop] <= MAX {
            used += widths[stop];
            stop += 1;
        }
        (start, stop.max(col0.min(units.len())))
    };
    let mut shown = String::new();
    if start > 0 {
        shown.push_str("...");
    }
    let mut caret = shown.chars().count() + widths[start..col0].iter().sum::<usize>() + 1;
    for u in &units[start..stop] {
        shown.push_str(u);
    }
    if stop < units.len() {
        shown.push_str("...");
    }
    let shown_len = shown.chars().count();
    caret = caret.min(shown_len + 1);
    let width = match end {
        Some(end) => {
            let to = (end - 1).min(stop).max(col0);
            widths[col0.min(to)..to].iter().sum::<usize>()
        }
        None => 1,
    };
    let width = width.min(shown_len.saturating_sub(caret - 1).max(1));
    (shown, caret, width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_caret_follows_them() {
        let source = "FROM a\nRUN \x1b[2J\0 --bad\n";
        let out = render(
            "unknown flag \x1b[2J",
            Span::on_line(2, 11, 5),
            Some("hint \x07"),
            "Docker\x1bfile",
            source,
        );
        assert_eq!(
            out,
            "Docker\\x1bfile:2:11: unknown flag \\x1b[2J\n  |\n2 | RUN \\x1b[2J\\x00 --bad\n  |                 ^^^^^\nhint: hint \\x07"
        );
    }

    #[test]
    fn long_lines_and_messages_are_cut() {
        let line = format!("RUN {}\x1b{}", "a".repeat(200), "b".repeat(200));
        let out = render(
            &"m".repeat(1000),
            Span::on_line(1, 205, 1),
            None,
            "D",
            &line,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0].len(), "D:1:205: ".len() + MAX_MESSAGE + 3);
        assert!(lines[2].starts_with("1 | ...") && lines[2].ends_with("..."));
        assert!(lines[2].chars().count() <= 120 + 6 + 4);
        // The caret is under the escape.
        let caret = lines[3].find('^').unwrap();
        assert_eq!(&lines[2][caret..caret + 4], "\\x1b");
    }
}
