//! Parse errors and warnings with their Dockerfile location, rendered rustc-style:
//! `file:line:col: message`, the source line, a caret under the column, and an optional
//! `hint:` line.

use std::fmt::Write as _;

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
            let _ = write!(out, "\n  = note: {line}");
        }
        if !self.url.is_empty() {
            let _ = write!(out, "\n  = see: {}", self.url);
        }
        out
    }
}

/// Renders a located message: `file:line:col: message`, the source line with a caret under
/// the span, and an optional `hint:` line. Every Dockerfile diagnostic (parse, lowering,
/// planning) goes through here so they all look alike.
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
    let _ = writeln!(out, "{file_name}:{line_no}:{column}: {}", cut(message));
    // The source line, without its BOM or line end; long lines are cut around the column.
    let text = source.split('\n').nth(line_no - 1).map(|l| {
        l.strip_prefix('\u{feff}')
            .unwrap_or(l)
            .trim_end_matches(['\r', '\n'])
    });
    if let Some(text) = text {
        let gutter = line_no.to_string();
        let pad = " ".repeat(gutter.len());
        let (shown, caret_col, shown_len) = window(text, column);
        let width = if span.end.line == span.start.line && span.end.column > column {
            (span.end.column - column).min(shown_len.saturating_sub(caret_col - 1).max(1))
        } else {
            1
        };
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
        let _ = writeln!(out, "hint: {hint}");
    }
    out.truncate(out.trim_end().len());
    out
}

/// Messages longer than this are cut: one can quote an expanded value of up to a MiB.
const MAX_MESSAGE: usize = 1000;

/// `message`, or its start and its length when it is longer than [`MAX_MESSAGE`].
fn cut(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_MESSAGE {
        return message.into();
    }
    let mut end = MAX_MESSAGE / 2;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}... (a message of {} bytes)",
        &message[..end],
        message.len()
    )
    .into()
}

/// Cuts a long line to at most 120 characters around `column`; returns the shown text,
/// the caret column within it, and its length in characters. Tabs become spaces so the
/// caret lines up.
fn window(text: &str, column: usize) -> (String, usize, usize) {
    const MAX: usize = 120;
    let chars: Vec<char> = text
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect();
    if chars.len() <= MAX {
        return (
            chars.iter().collect(),
            column.min(chars.len() + 1),
            chars.len(),
        );
    }
    let col0 = (column - 1).min(chars.len());
    let start = col0.saturating_sub(MAX / 2);
    let end = (start + MAX).min(chars.len());
    let mut shown = String::new();
    let mut caret = col0 - start + 1;
    if start > 0 {
        shown.push_str("...");
        caret += 3;
    }
    shown.extend(&chars[start..end]);
    if end < chars.len() {
        shown.push_str("...");
    }
    let len = shown.chars().count();
    (shown, caret, len)
}
