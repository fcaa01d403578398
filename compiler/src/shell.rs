//! Shell-word expansion as Dockerfiles use it: `$VAR`, `${VAR}` and its modifiers, quotes
//! and escapes, without running a shell.
//!
//! This follows the word lexer of BuildKit's Dockerfile frontend (`frontend/dockerfile/shell`),
//! which is not POSIX `sh`: there is no command substitution, no arithmetic, no field
//! splitting on `IFS`, and only these parameter forms:
//!
//! | form | value |
//! | --- | --- |
//! | `$V`, `${V}` | the value of `V`, or empty when unset |
//! | `${V:-w}` / `${V-w}` | `w` when `V` is unset or empty / unset |
//! | `${V:+w}` / `${V+w}` | `w` when `V` is set and not empty / set |
//! | `${V:?m}` / `${V?m}` | an error with message `m` when `V` is unset or empty / unset |
//! | `${V#p}` / `${V##p}` | `V` without its shortest / longest prefix matching `p` |
//! | `${V%p}` / `${V%%p}` | `V` without its shortest / longest suffix matching `p` |
//! | `${V/p/r}` / `${V//p/r}` | `V` with the first / every match of `p` replaced by `r` |
//!
//! Patterns `p` are shell patterns with `*`, `?` and `\` escapes (no bracket classes);
//! as in BuildKit, `*` and `?` do not match a newline, and in `${V//p/r}` a `$0` in `r`
//! stands for the match (Go's replacement templates) while `${V/p/r}` inserts `r` as it is.
//! Positional and special parameters (`$1`, `$@`, `$#`, ...) are never set.
//!
//! Where this lexer knowingly differs from BuildKit:
//!
//! * [`Lexer::process_words`] keeps the text before a `${V:-...}`-style expansion in its
//!   word (`ab${X:-c}d` is `abcd`); BuildKit's current lexer reuses one buffer for the
//!   nested word and drops that text, which is a bug there, not a behaviour to copy.
//! * An unterminated `${NAME` reports a missing `}` rather than an odd "unsupported
//!   modifier" error.
//! * Variable names are case-sensitive (Unix rules); BuildKit folds case for Windows images.
//!
//! ```
//! use std::collections::HashMap;
//! use rbuild_compiler::shell::Lexer;
//!
//! let env = HashMap::from([("NAME".to_string(), "world".to_string())]);
//! let lexer = Lexer::new('\\');
//! let out = lexer.process_word("hello-${NAME:-nobody}-$MISSING", &env).unwrap();
//! assert_eq!(out.value, "hello-world-");
//! assert!(out.vars.matched.contains("NAME"));
//! assert!(out.vars.unmatched.contains("MISSING"));
//!
//! let words = lexer.process_words("a 'b c' $NAME", &env).unwrap();
//! assert_eq!(words.words, ["a", "b c", "world"]);
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

/// Where the lexer looks variables up: the caller's ARG and ENV scopes.
///
/// Implemented for maps from `String` to `String`, for slices of name/value pairs (the last
/// pair with a name wins, as in an environment list), for `dyn Fn(&str) -> Option<String>`,
/// and for closures returning borrowed values through [`env_fn`].
pub trait Env {
    /// The value of `name`, or `None` when it is unset. An empty value is set.
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl<E: Env + ?Sized> Env for &E {
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        (**self).lookup(name)
    }
}

impl Env for dyn Fn(&str) -> Option<String> + '_ {
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        self(name).map(Cow::Owned)
    }
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Cow::Borrowed(v.as_str()))
    }
}

impl Env for [(&str, &str)] {
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        self.iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| Cow::Borrowed(*v))
    }
}

/// An [`Env`] backed by a closure; build it with [`env_fn`].
#[derive(Clone, Copy)]
pub struct EnvFn<'e, F>(F, std::marker::PhantomData<fn() -> &'e str>);

impl<F> std::fmt::Debug for EnvFn<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvFn(..)")
    }
}

impl<'e, F> Env for EnvFn<'e, F>
where
    F: Fn(&str) -> Option<&'e str>,
{
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        (self.0)(name).map(Cow::Borrowed)
    }
}

/// Wraps a lookup closure (name -> value) as an [`Env`], for layered scopes such as
/// "build args, then the stage's ENV".
pub fn env_fn<'e, F>(lookup: F) -> EnvFn<'e, F>
where
    F: Fn(&str) -> Option<&'e str>,
{
    EnvFn(lookup, std::marker::PhantomData)
}

/// An expansion failed. Each variant names the word being expanded; the text reads like
/// BuildKit's (`failed to process "<word>": <problem>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// A `'` without its closing quote.
    #[error(
        "failed to process {word:?}: unexpected end of statement while looking for matching single-quote"
    )]
    UnterminatedSingleQuote {
        /// The word being expanded.
        word: String,
    },
    /// A `"` without its closing quote.
    #[error(
        "failed to process {word:?}: unexpected end of statement while looking for matching double-quote"
    )]
    UnterminatedDoubleQuote {
        /// The word being expanded.
        word: String,
    },
    /// A `${` without its closing `}`.
    #[error("failed to process {word:?}: syntax error: missing '}}'")]
    MissingBrace {
        /// The word being expanded.
        word: String,
    },
    /// A `${V/p` without the `/` that ends the pattern.
    #[error("failed to process {word:?}: syntax error: missing '/' in ${{}}")]
    MissingSlash {
        /// The word being expanded.
        word: String,
    },
    /// `${}`, `${:...}` or `${{...}`.
    #[error("failed to process {word:?}: syntax error: bad substitution")]
    BadSubstitution {
        /// The word being expanded.
        word: String,
    },
    /// A `${V<op>...}` whose operator is not one of the supported ones (`${V=w}`, `${V:#p}`...).
    #[error("failed to process {word:?}: unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier {
        /// The word being expanded.
        word: String,
        /// The operator as written (`=`, `:#`, ...).
        modifier: String,
    },
    /// `${V?m}` / `${V:?m}` with `V` unset (or empty).
    #[error("failed to process {word:?}: {name}: {message}")]
    Required {
        /// The word being expanded.
        word: String,
        /// The variable that must be set.
        name: String,
        /// The message from the word, or the default one.
        message: String,
    },
    /// A `#`, `%` or `/` pattern with an escape other than `\*`, `\?`, `\\`, `\}`, `\/`.
    #[error(
        "failed to process {word:?}: invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'"
    )]
    InvalidPattern {
        /// The word being expanded.
        word: String,
        /// The pattern after expansion.
        pattern: String,
        /// The escaped character (empty for a trailing backslash).
        escaped: String,
    },
}

impl ShellError {
    /// The word whose expansion failed.
    pub fn word(&self) -> &str {
        match self {
            ShellError::UnterminatedSingleQuote { word }
            | ShellError::UnterminatedDoubleQuote { word }
            | ShellError::MissingBrace { word }
            | ShellError::MissingSlash { word }
            | ShellError::BadSubstitution { word }
            | ShellError::UnsupportedModifier { word, .. }
            | ShellError::Required { word, .. }
            | ShellError::InvalidPattern { word, .. } => word,
        }
    }

    /// The problem without the word (`NAME: must be set`), for callers that show the word
    /// themselves, such as a diagnostic pointing at the Dockerfile line.
    pub fn problem(&self) -> String {
        let full = self.to_string();
        let prefix = format!("failed to process {:?}: ", self.word());
        match full.strip_prefix(&prefix) {
            Some(p) => p.to_owned(),
            None => full,
        }
    }
}

/// The variables an expansion looked up: found ones and missing ones.
///
/// A variable counts when the lexer looked it up, even inside an alternative that was not
/// used (`${A:-$B}` looks up both), which is what BuildKit reports for cache keys and for
/// "unused build argument" warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarUse {
    /// Looked up and set (possibly empty).
    pub matched: BTreeSet<String>,
    /// Looked up and unset.
    pub unmatched: BTreeSet<String>,
}

/// The result of [`Lexer::process_word`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word: quotes removed, escapes applied, variables substituted.
    pub value: String,
    /// The variables the word used.
    pub vars: VarUse,
}

/// The result of [`Lexer::process_words`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words {
    /// The expanded words.
    pub words: Vec<String>,
    /// The variables the text used.
    pub vars: VarUse,
}

/// The shell-word lexer. Cheap to copy; configure it with the builder methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer whose escape character is `escape` (`\`, or `` ` `` from `# escape=`` ` ``).
    pub const fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset: false,
        }
    }

    /// Keep quote characters in the output (they still group and protect their content).
    pub const fn raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (they still protect the next character).
    pub const fn raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treat quotes as ordinary characters (heredoc bodies).
    pub const fn skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Leave references to unset variables as written (`$X`, `${X}`, `${X:-w}`) instead of
    /// expanding them to empty or to their alternative.
    pub const fn skip_unset(mut self, on: bool) -> Self {
        self.skip_unset = on;
        self
    }

    /// The escape character.
    pub const fn escape(&self) -> char {
        self.escape
    }

    /// Expands `word` into one string: whitespace is kept as it is.
    pub fn process_word<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Expansion, ShellError> {
        if self.is_plain(word) {
            return Ok(Expansion {
                value: word.to_owned(),
                vars: VarUse::default(),
            });
        }
        let mut state = State::new(*self, word, env);
        let mut out = String::with_capacity(word.len());
        state
            .run(None, self.raw_escapes, &mut out)
            .map_err(|k| k.into_error(word))?;
        Ok(Expansion {
            value: out,
            vars: state.vars(),
        })
    }

    /// Expands `text` and splits it into words on unquoted whitespace, including whitespace
    /// that unquoted expansions produce. Quoted text stays in one word; empty words are
    /// dropped.
    pub fn process_words<E: Env + ?Sized>(&self, text: &str, env: &E) -> Result<Words, ShellError> {
        let mut state = State::new(*self, text, env);
        let mut out = Splitter::default();
        state
            .run(None, self.raw_escapes, &mut out)
            .map_err(|k| k.into_error(text))?;
        out.finish();
        Ok(Words {
            words: out.words,
            vars: state.vars(),
        })
    }

    /// True when `word` has nothing to expand, unquote or unescape.
    fn is_plain(&self, word: &str) -> bool {
        let quotes = !self.skip_process_quotes;
        !word
            .chars()
            .any(|c| c == '$' || c == self.escape || (quotes && (c == '\'' || c == '"')))
    }
}

/// Where expanded text goes: one string, or a word splitter.
trait Sink {
    /// An unquoted literal character (a space here splits words).
    fn ch(&mut self, c: char);
    /// A quoted or escaped character (never splits).
    fn raw_ch(&mut self, c: char);
    /// The value of an unquoted expansion (its whitespace splits words).
    fn text(&mut self, s: &str) {
        s.chars().for_each(|c| self.ch(c));
    }
    /// Quoted text.
    fn raw_text(&mut self, s: &str) {
        s.chars().for_each(|c| self.raw_ch(c));
    }
}

impl Sink for String {
    fn ch(&mut self, c: char) {
        self.push(c);
    }
    fn raw_ch(&mut self, c: char) {
        self.push(c);
    }
    fn text(&mut self, s: &str) {
        self.push_str(s);
    }
    fn raw_text(&mut self, s: &str) {
        self.push_str(s);
    }
}

/// Splits into words the way BuildKit's `ProcessWords` does.
#[derive(Default)]
struct Splitter {
    words: Vec<String>,
    cur: String,
}

impl Splitter {
    fn finish(&mut self) {
        if !self.cur.is_empty() {
            self.words.push(std::mem::take(&mut self.cur));
        }
    }
}

impl Sink for Splitter {
    fn ch(&mut self, c: char) {
        if c.is_whitespace() {
            self.finish();
        } else {
            self.cur.push(c);
        }
    }
    fn raw_ch(&mut self, c: char) {
        self.cur.push(c);
    }
    fn raw_text(&mut self, s: &str) {
        self.cur.push_str(s);
    }
}

/// A failure before the word is known to the caller; [`ErrKind::into_error`] adds it.
#[derive(Debug)]
enum ErrKind {
    SingleQuote,
    DoubleQuote,
    MissingBrace,
    MissingSlash,
    BadSubstitution,
    Unsupported(String),
    Required {
        name: String,
        message: String,
    },
    InvalidPattern {
        pattern: String,
        escaped: String,
    },
    /// A stop character was not found (turned into a more precise error by the caller).
    Unterminated,
}

impl ErrKind {
    fn into_error(self, word: &str) -> ShellError {
        let word = word.to_owned();
        match self {
            ErrKind::SingleQuote => ShellError::UnterminatedSingleQuote { word },
            ErrKind::DoubleQuote => ShellError::UnterminatedDoubleQuote { word },
            ErrKind::MissingBrace | ErrKind::Unterminated => ShellError::MissingBrace { word },
            ErrKind::MissingSlash => ShellError::MissingSlash { word },
            ErrKind::BadSubstitution => ShellError::BadSubstitution { word },
            ErrKind::Unsupported(modifier) => ShellError::UnsupportedModifier { word, modifier },
            ErrKind::Required { name, message } => ShellError::Required {
                word,
                name,
                message,
            },
            ErrKind::InvalidPattern { pattern, escaped } => ShellError::InvalidPattern {
                word,
                pattern,
                escaped,
            },
        }
    }
}

struct State<'w, 'e, E: ?Sized> {
    lex: Lexer,
    src: &'w str,
    pos: usize,
    env: &'e E,
    raw_escapes: bool,
    matched: Vec<&'w str>,
    unmatched: Vec<&'w str>,
}

impl<'w, 'e, E: Env + ?Sized> State<'w, 'e, E> {
    fn new(lex: Lexer, src: &'w str, env: &'e E) -> Self {
        State {
            lex,
            src,
            pos: 0,
            env,
            raw_escapes: lex.raw_escapes,
            matched: Vec::new(),
            unmatched: Vec::new(),
        }
    }

    fn vars(&self) -> VarUse {
        VarUse {
            matched: self.matched.iter().map(|s| (*s).to_owned()).collect(),
            unmatched: self.unmatched.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn get(&mut self, name: &'w str) -> Option<Cow<'e, str>> {
        let v = self.env.lookup(name);
        let set = if v.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        if !set.contains(&name) {
            set.push(name);
        }
        v
    }

    /// Processes text up to `stop` (consumed) or the end of the word. Errors with
    /// `Unterminated` when a stop character was asked for and not found.
    fn run<S: Sink>(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        out: &mut S,
    ) -> Result<(), ErrKind> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let r = self.run_inner(stop, out);
        self.raw_escapes = saved;
        r
    }

    fn run_inner<S: Sink>(&mut self, stop: Option<char>, out: &mut S) -> Result<(), ErrKind> {
        let quotes = !self.lex.skip_process_quotes;
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += c.len_utf8();
                return Ok(());
            }
            match c {
                '$' => {
                    let v = self.dollar()?;
                    out.text(&v);
                }
                '\'' if quotes => self.single_quote(out)?,
                '"' if quotes => self.double_quote(out)?,
                _ => {
                    self.pos += c.len_utf8();
                    if c == self.lex.escape {
                        if self.raw_escapes {
                            out.raw_ch(c);
                        }
                        // An escape character at the end of the word is dropped.
                        match self.next() {
                            Some(n) => out.raw_ch(n),
                            None => break,
                        }
                    } else {
                        out.ch(c);
                    }
                }
            }
        }
        if stop.is_some() {
            return Err(ErrKind::Unterminated);
        }
        Ok(())
    }

    fn single_quote<S: Sink>(&mut self, out: &mut S) -> Result<(), ErrKind> {
        self.pos += 1;
        let rest = &self.src[self.pos..];
        let Some(end) = rest.find('\'') else {
            return Err(ErrKind::SingleQuote);
        };
        if self.lex.raw_quotes {
            out.raw_ch('\'');
        }
        out.raw_text(&rest[..end]);
        if self.lex.raw_quotes {
            out.raw_ch('\'');
        }
        self.pos += end + 1;
        Ok(())
    }

    fn double_quote<S: Sink>(&mut self, out: &mut S) -> Result<(), ErrKind> {
        self.pos += 1;
        if self.lex.raw_quotes {
            out.raw_ch('"');
        }
        loop {
            match self.peek() {
                None => return Err(ErrKind::DoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        out.raw_ch('"');
                    }
                    return Ok(());
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.raw_text(&v);
                }
                Some(c) => {
                    self.pos += c.len_utf8();
                    if c == self.lex.escape {
                        if self.raw_escapes {
                            out.raw_ch(c);
                        }
                        match self.peek() {
                            // An escape at the end is dropped; the missing quote errors next.
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                self.pos += n.len_utf8();
                                out.raw_ch(n);
                            }
                            // Other escapes stay literal inside double quotes; with raw
                            // escapes that literal comes out escaped (`\\`), so text that is
                            // parsed again (a `${V#"a\x"}` pattern) still reads it as literal.
                            Some(_) => out.raw_ch(c),
                        }
                    } else {
                        out.raw_ch(c);
                    }
                }
            }
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits (positional); or one
    /// special parameter character.
    fn name(&mut self) -> &'w str {
        let src: &'w str = self.src;
        let start = self.pos;
        let rest = &src[start..];
        let Some(first) = rest.chars().next() else {
            return "";
        };
        let len = if is_digit(first) {
            rest.find(|c: char| !is_digit(c)).unwrap_or(rest.len())
        } else if matches!(first, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
            1
        } else {
            rest.find(|c: char| !(is_letter(c) || is_digit(c) || c == '_'))
                .unwrap_or(rest.len())
        };
        self.pos += len;
        &src[start..start + len]
    }

    fn dollar(&mut self) -> Result<Cow<'e, str>, ErrKind> {
        self.pos += 1; // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok(Cow::Borrowed("$"));
            }
            return Ok(match self.get(name) {
                Some(v) => v,
                None if self.lex.skip_unset => Cow::Owned(format!("${name}")),
                None => Cow::Borrowed(""),
            });
        }
        self.pos += 1; // '{'
        match self.peek() {
            None => return Err(ErrKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ErrKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let Some(op) = self.next() else {
            return Err(ErrKind::MissingBrace);
        };
        match op {
            '}' => Ok(match self.get(name) {
                Some(v) => v,
                None if self.lex.skip_unset => Cow::Owned(format!("${{{name}}}")),
                None => Cow::Borrowed(""),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let (colon, op) = if op == ':' {
                    (true, self.next())
                } else {
                    (false, Some(op))
                };
                let mut modifier = String::new();
                if colon {
                    modifier.push(':');
                }
                modifier.extend(op);
                let trims = matches!(op, Some('#' | '%'));
                if colon && trims {
                    return Err(ErrKind::Unsupported(modifier));
                }
                let mut word = String::new();
                self.run(Some('}'), trims, &mut word)
                    .map_err(|e| self.at_eof(e, ErrKind::MissingBrace))?;
                let value = self.get(name);
                if value.is_none() && self.lex.skip_unset {
                    return Ok(Cow::Owned(format!("${{{name}{modifier}{word}}}")));
                }
                let unset = match value.as_deref() {
                    None => true,
                    Some(v) => colon && v.is_empty(),
                };
                match op {
                    Some('-') => Ok(match value {
                        Some(v) if !unset => v,
                        _ => Cow::Owned(word),
                    }),
                    Some('+') => Ok(if unset {
                        Cow::Borrowed("")
                    } else {
                        Cow::Owned(word)
                    }),
                    Some('?') => match value {
                        None => Err(required(name, word, "is not allowed to be unset")),
                        Some(_) if unset => Err(required(name, word, "is not allowed to be empty")),
                        Some(v) => Ok(v),
                    },
                    Some(c @ ('#' | '%')) => {
                        let (longest, pat) = match word.strip_prefix(c) {
                            Some(p) => (true, p),
                            None => (false, word.as_str()),
                        };
                        let toks = compile_shell_pattern(pat)?;
                        let v = value.as_deref().unwrap_or("");
                        Ok(Cow::Owned(if c == '#' {
                            match match_at(&toks, v, 0, longest) {
                                Some(end) => v[end..].to_owned(),
                                None => v.to_owned(),
                            }
                        } else {
                            match match_suffix(&toks, v, longest) {
                                Some(start) => v[..start].to_owned(),
                                None => v.to_owned(),
                            }
                        }))
                    }
                    _ => Err(ErrKind::Unsupported(modifier)),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let mut pattern = String::new();
                self.run(Some('/'), true, &mut pattern)
                    .map_err(|e| self.at_eof(e, ErrKind::MissingSlash))?;
                let mut replacement = String::new();
                self.run(Some('}'), true, &mut replacement)
                    .map_err(|e| self.at_eof(e, ErrKind::MissingBrace))?;
                let value = self.get(name);
                if value.is_none() && self.lex.skip_unset {
                    return Ok(Cow::Owned(format!("${{{name}/{pattern}/{replacement}}}")));
                }
                // An unset variable is replaced in as the empty string (`${NO/$E/x}` is `x`).
                let value = value.as_deref().unwrap_or("");
                let toks = compile_shell_pattern(&pattern)?;
                Ok(Cow::Owned(if all {
                    replace_all(&toks, value, &replacement)
                } else {
                    match find(&toks, value, 0) {
                        Some((s, e)) => {
                            let mut out = String::with_capacity(value.len() + replacement.len());
                            out.push_str(&value[..s]);
                            out.push_str(&replacement);
                            out.push_str(&value[e..]);
                            out
                        }
                        None => value.to_owned(),
                    }
                }))
            }
            other => Err(ErrKind::Unsupported(other.to_string())),
        }
    }

    /// Turns "stop character not found" at the end of the word into `eof`.
    fn at_eof(&self, e: ErrKind, eof: ErrKind) -> ErrKind {
        match e {
            ErrKind::Unterminated if self.at_end() => eof,
            ErrKind::Unterminated => ErrKind::MissingBrace,
            e => e,
        }
    }
}

fn required(name: &str, word: String, default: &str) -> ErrKind {
    ErrKind::Required {
        name: name.to_owned(),
        message: if word.is_empty() {
            default.to_owned()
        } else {
            word
        },
    }
}

// Names use Rust's Alphabetic and Numeric properties. They agree with Go's `unicode.IsLetter`
// (category L) and `unicode.IsDigit` (Nd) on ASCII and on almost every other character;
// they differ only for combining marks, letter numbers and other numbers (`²`), where
// BuildKit would end the name one character earlier.
fn is_letter(c: char) -> bool {
    c.is_alphabetic()
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// One element of a `${V#p}` / `${V/p/r}` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PTok {
    Lit(char),
    /// `?`: any character but a newline.
    Any,
    /// `*`: any run of characters without a newline.
    Star,
}

/// Parses a shell pattern. `\*`, `\?` and `\\` are literal; `\}` and `\/` are the escaped
/// delimiters and stand for `}` and `/`; any other escape is an error, as in BuildKit.
fn compile_shell_pattern(pattern: &str) -> Result<Vec<PTok>, ErrKind> {
    let mut toks = Vec::with_capacity(pattern.len());
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        toks.push(match c {
            '*' => PTok::Star,
            '?' => PTok::Any,
            '\\' => match it.peek() {
                Some('}' | '/') => continue,
                Some(&n @ ('*' | '?' | '\\')) => {
                    it.next();
                    PTok::Lit(n)
                }
                other => {
                    return Err(ErrKind::InvalidPattern {
                        pattern: pattern.to_owned(),
                        escaped: other.map(|c| c.to_string()).unwrap_or_default(),
                    });
                }
            },
            c => PTok::Lit(c),
        });
    }
    Ok(toks)
}

/// Runs the pattern anchored at `chars` (an iterator of (position after the character,
/// character)) from position `start`, and returns the end of the shortest or the longest
/// match. Thompson simulation: linear in the text for a given pattern.
fn anchored<I>(toks: &[PTok], start: usize, chars: I, longest: bool) -> Option<usize>
where
    I: Iterator<Item = (usize, char)>,
{
    let n = toks.len();
    let mut cur = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    cur[0] = true;
    closure(toks, &mut cur);
    let mut best = cur[n].then_some(start);
    if best.is_some() && !longest {
        return best;
    }
    for (after, c) in chars {
        next.iter_mut().for_each(|s| *s = false);
        let mut any = false;
        for i in 0..n {
            if !cur[i] {
                continue;
            }
            match toks[i] {
                PTok::Lit(l) if l == c => next[i + 1] = true,
                PTok::Any if c != '\n' => next[i + 1] = true,
                PTok::Star if c != '\n' => next[i] = true,
                _ => continue,
            }
            any = true;
        }
        if !any {
            break;
        }
        closure(toks, &mut next);
        std::mem::swap(&mut cur, &mut next);
        if cur[n] {
            best = Some(after);
            if !longest {
                return best;
            }
        }
    }
    best
}

/// Adds the states reachable by letting `*` match nothing.
fn closure(toks: &[PTok], set: &mut [bool]) {
    for i in 0..toks.len() {
        if set[i] && toks[i] == PTok::Star {
            set[i + 1] = true;
        }
    }
}

/// The end of the shortest/longest match of `toks` starting at byte `start` of `text`.
fn match_at(toks: &[PTok], text: &str, start: usize, longest: bool) -> Option<usize> {
    let chars = text[start..]
        .char_indices()
        .map(move |(i, c)| (start + i + c.len_utf8(), c));
    anchored(toks, start, chars, longest)
}

/// The start of the shortest/longest suffix of `text` that `toks` matches: the pattern and
/// the text are both read backwards.
fn match_suffix(toks: &[PTok], text: &str, longest: bool) -> Option<usize> {
    let rev: Vec<PTok> = toks.iter().rev().copied().collect();
    anchored(&rev, text.len(), text.char_indices().rev(), longest)
}

/// The leftmost match at or after byte `from`, longest at that position (greedy `*`).
fn find(toks: &[PTok], text: &str, from: usize) -> Option<(usize, usize)> {
    let mut s = from;
    loop {
        if let Some(e) = match_at(toks, text, s, true) {
            return Some((s, e));
        }
        let c = text[s..].chars().next()?;
        s += c.len_utf8();
    }
}

/// Replaces every match, with Go's `Regexp.ReplaceAllString` rules: an empty match right
/// after a previous match is skipped, and `$0`/`${0}` in the replacement stand for the
/// match, `$$` for `$`, other `$name` references for nothing.
fn replace_all(toks: &[PTok], text: &str, replacement: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_end = 0;
    let mut search = 0;
    while search <= text.len() {
        let Some((s, e)) = find(toks, text, search) else {
            break;
        };
        out.push_str(&text[last_end..s]);
        if e > last_end || s == 0 {
            expand_template(&mut out, replacement, &text[s..e]);
        }
        last_end = e;
        let width = text[search..].chars().next().map_or(0, char::len_utf8);
        if search + width > e {
            search += width;
        } else if search + 1 > e {
            search += 1;
        } else {
            search = e;
        }
    }
    out.push_str(&text[last_end..]);
    out
}

/// Go's `Regexp.Expand` for a pattern with no capture groups.
fn expand_template(out: &mut String, template: &str, whole: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let is_name = |c: char| c.is_alphanumeric() || c == '_';
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(j) if j > 0 && r[..j].chars().all(is_name) => (&r[..j], &r[j + 1..]),
                _ => {
                    out.push('$');
                    continue;
                }
            }
        } else {
            let j = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            if j == 0 {
                out.push('$');
                continue;
            }
            (&rest[..j], &rest[j..])
        };
        let group = name.trim_start_matches('0');
        if name.bytes().all(|b| b.is_ascii_digit()) && group.is_empty() {
            out.push_str(whole);
        }
        rest = after;
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("A".to_string(), "alpha".to_string()),
            ("E".to_string(), String::new()),
            ("SP".to_string(), " x  y ".to_string()),
        ])
    }

    fn word(lex: Lexer, w: &str) -> Result<String, ShellError> {
        lex.process_word(w, &env()).map(|e| e.value)
    }

    #[test]
    fn backtick_escape() {
        let lex = Lexer::new('`');
        assert_eq!(word(lex, r"a`$A\b").unwrap(), r"a$A\b");
        assert_eq!(word(lex, r#""x`"y""#).unwrap(), r#"x"y"#);
        assert_eq!(word(lex, r#""x\y""#).unwrap(), r"x\y");
        assert_eq!(word(lex, "a`").unwrap(), "a");
    }

    #[test]
    fn raw_quotes_keep_quotes() {
        let lex = Lexer::default().raw_quotes(true);
        assert_eq!(word(lex, r#"'a b' "$A""#).unwrap(), r#"'a b' "alpha""#);
        let words = lex.process_words(r#"x 'a b' "$SP""#, &env()).unwrap().words;
        assert_eq!(words, ["x", "'a b'", "\" x  y \""]);
    }

    #[test]
    fn skip_unset_leaves_references() {
        let lex = Lexer::default().skip_unset(true);
        assert_eq!(
            word(lex, "$A-$NO-${NO}-${NO:-d}-${A:-d}").unwrap(),
            "alpha-$NO-${NO}-${NO:-d}-alpha"
        );
        assert_eq!(word(lex, "${NO/a/b}").unwrap(), "${NO/a/b}");
    }

    #[test]
    fn skip_process_quotes() {
        let lex = Lexer::default().skip_process_quotes(true);
        assert_eq!(word(lex, r#"'$A' "$A""#).unwrap(), r#"'alpha' "alpha""#);
    }

    #[test]
    fn raw_escapes_keep_escapes() {
        let lex = Lexer::default().raw_escapes(true);
        assert_eq!(word(lex, r#"a\$A "\$A\x""#).unwrap(), r#"a\$A \$A\\x"#);
        // Inside a `#` pattern (read with raw escapes), a quoted backslash stays literal.
        let env = HashMap::from([("V".to_string(), r"a\xyz".to_string())]);
        let out = Lexer::default()
            .process_word(r#"${V#"a\x"}"#, &env)
            .unwrap();
        assert_eq!(out.value, "yz");
    }

    #[test]
    fn errors_name_word_and_problem() {
        let e = word(Lexer::default(), "x${NO:?must be set}").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"failed to process "x${NO:?must be set}": NO: must be set"#
        );
        let e = word(Lexer::default(), "${E:?}").unwrap_err();
        assert!(
            e.to_string().ends_with("E: is not allowed to be empty"),
            "{e}"
        );
        let e = word(Lexer::default(), "a${}").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"failed to process "a${}": syntax error: bad substitution"#
        );
        let e = word(Lexer::default(), "${A=b}").unwrap_err();
        assert!(
            matches!(e, ShellError::UnsupportedModifier { ref modifier, .. } if modifier == "=")
        );
        let e = word(Lexer::default(), r"${A#\x}").unwrap_err();
        assert!(e.to_string().contains(r"invalid escape '\x'"), "{e}");
        let e = word(Lexer::default(), "${A/b").unwrap_err();
        assert!(matches!(e, ShellError::MissingSlash { .. }));
        let e = word(Lexer::default(), "${A/b/c").unwrap_err();
        assert!(matches!(e, ShellError::MissingBrace { .. }));
    }

    #[test]
    fn words_split_unquoted_expansions_only() {
        let lex = Lexer::default();
        let w = lex
            .process_words("a${SP}b \"$SP\" ${NO:-p q}", &env())
            .unwrap();
        assert_eq!(w.words, ["a", "x", "y", "b", " x  y ", "p", "q"]);
        assert_eq!(w.vars.unmatched, BTreeSet::from(["NO".to_string()]));
        // Text before a modifier expansion stays in its word.
        let w = lex.process_words("ab${NO:-c}d", &env()).unwrap();
        assert_eq!(w.words, ["abcd"]);
        assert_eq!(
            lex.process_words(r#"a "" b"#, &env()).unwrap().words,
            ["a", "b"]
        );
    }

    #[test]
    fn trims_and_replacements() {
        let lex = Lexer::default();
        let env = HashMap::from([("P".to_string(), "a/b/c.tar.gz".to_string())]);
        let w = |s: &str| lex.process_word(s, &env).unwrap().value;
        assert_eq!(w("${P#*/}"), "b/c.tar.gz");
        assert_eq!(w("${P##*/}"), "c.tar.gz");
        assert_eq!(w("${P%.*}"), "a/b/c.tar");
        assert_eq!(w("${P%%.*}"), "a/b/c");
        assert_eq!(w("${P/?/X}"), "X/b/c.tar.gz");
        assert_eq!(w("${P//[/X}"), "a/b/c.tar.gz");
        assert_eq!(w("${P//\\//-}"), "a-b-c.tar.gz");
        assert_eq!(w("${P//b*/}"), "a/");
    }

    #[test]
    fn replace_all_follows_go_empty_match_rules() {
        let toks = compile_shell_pattern("").unwrap();
        assert_eq!(replace_all(&toks, "ab", "-"), "-a-b-");
        let toks = compile_shell_pattern("x*").unwrap();
        assert_eq!(replace_all(&toks, "axxbx", "<$0>"), "a<xxbx>");
        assert_eq!(replace_all(&toks, "ax", "$$${1}$"), "a$$");
        let toks = compile_shell_pattern("x?").unwrap();
        assert_eq!(replace_all(&toks, "axxbxy", "<${0}>"), "a<xx>b<xy>");
    }

    #[test]
    fn star_does_not_cross_newlines() {
        let env = HashMap::from([("N".to_string(), "a\nb/c".to_string())]);
        let v = Lexer::default()
            .process_word("${N##*/}", &env)
            .unwrap()
            .value;
        assert_eq!(v, "a\nb/c");
    }

    #[test]
    fn closure_env_and_slices() {
        let base = [("A", "1"), ("A", "2")];
        let e = env_fn(|n: &str| {
            if n == "Z" {
                Some("z")
            } else {
                base.iter().rev().find(|(k, _)| *k == n).map(|(_, v)| *v)
            }
        });
        let out = Lexer::default().process_word("$A$Z$Q", &e).unwrap();
        assert_eq!(out.value, "2z");
        assert_eq!(out.vars.matched.len(), 2);
        assert_eq!(out.vars.unmatched, BTreeSet::from(["Q".to_string()]));
        assert_eq!(base[..].lookup("A").as_deref(), Some("2"));
        // An owning lookup, as a planner holding layered scopes passes it.
        let owned = |n: &str| (n == "O").then(|| "owned".to_string());
        let dynamic: &dyn Fn(&str) -> Option<String> = &owned;
        let out = Lexer::default()
            .process_word("${O}-${P:-d}", dynamic)
            .unwrap();
        assert_eq!(out.value, "owned-d");
    }

    #[test]
    fn plain_words_take_the_fast_path() {
        let out = Lexer::default().process_word("plain word", &env()).unwrap();
        assert_eq!(out.value, "plain word");
        assert_eq!(out.vars, VarUse::default());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn alphabet() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just('$'),
                    Just('{'),
                    Just('}'),
                    Just(':'),
                    Just('-'),
                    Just('+'),
                    Just('?'),
                    Just('#'),
                    Just('%'),
                    Just('/'),
                    Just('\\'),
                    Just('`'),
                    Just('\''),
                    Just('"'),
                    Just('*'),
                    Just(' '),
                    Just('A'),
                    Just('E'),
                    Just('1'),
                    Just('@'),
                    Just('\n'),
                    Just('é'),
                    any::<char>(),
                ],
                0..40,
            )
            .prop_map(|v| v.into_iter().collect())
        }

        proptest! {
            #[test]
            fn random_words_never_panic(w in alphabet(), raw in any::<bool>(), skip in any::<bool>(), tick in any::<bool>()) {
                let lex = Lexer::new(if tick { '`' } else { '\\' }).raw_quotes(raw).skip_unset(skip);
                let env = env();
                let one = lex.process_word(&w, &env);
                let many = lex.process_words(&w, &env);
                prop_assert_eq!(one.is_ok(), many.is_ok());
                if let Err(e) = one {
                    let quoted = format!("{:?}", w);
                    let text = e.to_string();
                    prop_assert!(text.contains(&quoted));
                }
            }
        }
    }
}
