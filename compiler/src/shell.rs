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
//! * Expansion is bounded by [`Limits`] (BuildKit has no such bounds): by default a word may
//!   grow by at most 1 MiB through expansion, `${...}` may nest 128 deep inside modifiers, and one
//!   expansion may do a bounded amount of work (bytes copied and pattern-matching steps).
//!   Crossing a bound is an error naming the word and, for the size, the variable.
//!   Patterns are matched in time linear in the value (leftmost-longest, as Go's regexp
//!   finds them), so `${V//*x/}` on a long value does not take quadratic time.
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

impl<'a> Env for dyn Fn(&str) -> Option<&'a str> + 'a {
    fn lookup(&self, name: &str) -> Option<Cow<'_, str>> {
        self(name).map(Cow::Borrowed)
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

/// Bounds on one expansion, so that a hostile word or environment cannot make it use
/// unbounded memory, stack or time. Crossing one is an error, never a truncated result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many bytes expansion may add to a word beyond its length as written. The same
    /// bound applies to the words inside it (a `${V:-default}`, a pattern, a replacement).
    pub max_growth: usize,
    /// How deep `${...}` may nest inside modifiers (`${A:-${B:-...}}`): the lexer recurses
    /// once per level.
    pub max_depth: usize,
    /// The most work one expansion may do: one unit per byte copied from a variable's
    /// value or a replacement, [`STEP_COST`] units per pattern-matching step (one live
    /// pattern position moved over one character).
    pub max_work: u64,
}

impl Limits {
    /// 1 MiB of growth, 128 levels, 2^28 units of work.
    pub const DEFAULT: Limits = Limits {
        max_growth: 1 << 20,
        max_depth: 128,
        max_work: 1 << 28,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What one pattern-matching step costs in [`Limits::max_work`] units, where a byte copied
/// costs one: a step does far more than a byte of a copy.
pub const STEP_COST: u64 = 16;

/// Words longer than this are shown shortened in error messages.
const SHOWN_WORD: usize = 160;

/// `word` quoted for an error message; a long word (a 60 KB line of nested `${`) is cut, with
/// its length.
pub(crate) fn shown(word: &str) -> String {
    if word.len() <= SHOWN_WORD {
        return format!("{word:?}");
    }
    let mut cut = 100;
    while !word.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}... ({} bytes)", &word[..cut], word.len())
}

/// An expansion failed. Each variant names the word being expanded; the text reads like
/// BuildKit's (`failed to process "<word>": <problem>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// A `'` without its closing quote.
    #[error(
        "failed to process {}: unexpected end of statement while looking for matching single-quote",
        shown(word)
    )]
    UnterminatedSingleQuote {
        /// The word being expanded.
        word: String,
    },
    /// A `"` without its closing quote.
    #[error(
        "failed to process {}: unexpected end of statement while looking for matching double-quote",
        shown(word)
    )]
    UnterminatedDoubleQuote {
        /// The word being expanded.
        word: String,
    },
    /// A `${` without its closing `}`.
    #[error("failed to process {}: syntax error: missing '}}'", shown(word))]
    MissingBrace {
        /// The word being expanded.
        word: String,
    },
    /// A `${V/p` without the `/` that ends the pattern.
    #[error(
        "failed to process {}: syntax error: missing '/' in ${{}}",
        shown(word)
    )]
    MissingSlash {
        /// The word being expanded.
        word: String,
    },
    /// `${}`, `${:...}` or `${{...}`.
    #[error("failed to process {}: syntax error: bad substitution", shown(word))]
    BadSubstitution {
        /// The word being expanded.
        word: String,
    },
    /// A `${V<op>...}` whose operator is not one of the supported ones (`${V=w}`, `${V:#p}`...).
    #[error(
        "failed to process {}: unsupported modifier ({modifier}) in substitution",
        shown(word)
    )]
    UnsupportedModifier {
        /// The word being expanded.
        word: String,
        /// The operator as written (`=`, `:#`, ...).
        modifier: String,
    },
    /// `${V?m}` / `${V:?m}` with `V` unset (or empty).
    #[error("failed to process {}: {name}: {message}", shown(word))]
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
        "failed to process {}: invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'",
        shown(word)
    )]
    InvalidPattern {
        /// The word being expanded.
        word: String,
        /// The pattern after expansion.
        pattern: String,
        /// The escaped character (empty for a trailing backslash).
        escaped: String,
    },
    /// Expanding variable `name` made the word grow past [`Limits::max_growth`].
    #[error(
        "failed to process {}: expanding ${name} makes the word more than {} longer than written",
        shown(word),
        rbuild_options::size::limit(*limit as u64)
    )]
    TooLong {
        /// The word being expanded.
        word: String,
        /// The variable whose value (or whose `${...}` result) crossed the limit.
        name: String,
        /// The limit on growth, in bytes.
        limit: usize,
    },
    /// `${...}` nested deeper than [`Limits::max_depth`].
    #[error(
        "failed to process {}: ${{...}} is nested more than {limit} levels deep",
        shown(word)
    )]
    TooDeep {
        /// The word being expanded.
        word: String,
        /// The limit on nesting.
        limit: usize,
    },
    /// The expansion needed more than [`Limits::max_work`] units of work.
    #[error(
        "failed to process {}: expansion needs more than {limit} units of work (one per byte copied, {STEP_COST} per pattern-matching step)",
        shown(word)
    )]
    TooMuchWork {
        /// The word being expanded.
        word: String,
        /// The limit on work.
        limit: u64,
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
            | ShellError::InvalidPattern { word, .. }
            | ShellError::TooLong { word, .. }
            | ShellError::TooDeep { word, .. }
            | ShellError::TooMuchWork { word, .. } => word,
        }
    }

    /// The problem without the word (`NAME: must be set`), for callers that show the word
    /// themselves, such as a diagnostic pointing at the Dockerfile line.
    pub fn problem(&self) -> String {
        let full = self.to_string();
        let prefix = format!("failed to process {}: ", shown(self.word()));
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
    /// The work the expansion did, in the units of [`Limits::max_work`].
    pub work: u64,
}

/// The result of [`Lexer::process_words`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Words {
    /// The expanded words.
    pub words: Vec<String>,
    /// The variables the text used.
    pub vars: VarUse,
    /// The work the expansion did, in the units of [`Limits::max_work`].
    pub work: u64,
}

/// The shell-word lexer. Cheap to copy; configure it with the builder methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset: bool,
    limits: Limits,
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
            limits: Limits::DEFAULT,
        }
    }

    /// Bounds the expansion (default: [`Limits::DEFAULT`]).
    pub const fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
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
                work: 0,
            });
        }
        let mut state = State::new(*self, word, env);
        let mut out = String::with_capacity(word.len());
        state
            .run(None, self.raw_escapes, &mut out)
            .map_err(|k| k.into_error(word, &self.limits))?;
        Ok(Expansion {
            value: out,
            vars: state.vars(),
            work: state.work.used,
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
            .map_err(|k| k.into_error(text, &self.limits))?;
        out.finish();
        Ok(Words {
            words: out.words,
            vars: state.vars(),
            work: state.work.used,
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
    /// The bytes written so far (separators not counted).
    fn len(&self) -> usize;
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
    fn len(&self) -> usize {
        String::len(self)
    }
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
    /// Bytes in `words` and `cur`.
    total: usize,
}

impl Splitter {
    fn finish(&mut self) {
        if !self.cur.is_empty() {
            self.words.push(std::mem::take(&mut self.cur));
        }
    }
}

impl Sink for Splitter {
    fn len(&self) -> usize {
        self.total
    }
    fn ch(&mut self, c: char) {
        if c.is_whitespace() {
            self.finish();
        } else {
            self.raw_ch(c);
        }
    }
    fn raw_ch(&mut self, c: char) {
        self.cur.push(c);
        self.total += c.len_utf8();
    }
    fn raw_text(&mut self, s: &str) {
        self.cur.push_str(s);
        self.total += s.len();
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
    /// The value of `${name}` made a buffer grow past the limit.
    TooLong {
        name: String,
    },
    TooDeep,
    TooMuchWork,
}

impl ErrKind {
    fn into_error(self, word: &str, limits: &Limits) -> ShellError {
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
            ErrKind::TooLong { name } => ShellError::TooLong {
                word,
                name,
                limit: limits.max_growth,
            },
            ErrKind::TooDeep => ShellError::TooDeep {
                word,
                limit: limits.max_depth,
            },
            ErrKind::TooMuchWork => ShellError::TooMuchWork {
                word,
                limit: limits.max_work,
            },
        }
    }
}

/// Work done so far against [`Limits::max_work`].
#[derive(Debug)]
struct Work {
    used: u64,
    max: u64,
}

impl Work {
    fn spend(&mut self, units: u64) -> Result<(), ErrKind> {
        self.used = self.used.saturating_add(units);
        if self.used > self.max {
            return Err(ErrKind::TooMuchWork);
        }
        Ok(())
    }
}

struct State<'w, 'e, E: ?Sized> {
    lex: Lexer,
    src: &'w str,
    pos: usize,
    env: &'e E,
    raw_escapes: bool,
    matched: BTreeSet<&'w str>,
    unmatched: BTreeSet<&'w str>,
    /// The longest any buffer may grow: the word's length plus the allowed growth.
    max_len: usize,
    /// How many `${...}` modifiers the lexer is inside.
    depth: usize,
    work: Work,
    /// The variable of the expansion being written, for [`ErrKind::TooLong`].
    last_name: &'w str,
}

impl<'w, 'e, E: Env + ?Sized> State<'w, 'e, E> {
    fn new(lex: Lexer, src: &'w str, env: &'e E) -> Self {
        State {
            lex,
            src,
            pos: 0,
            env,
            raw_escapes: lex.raw_escapes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
            max_len: src.len().saturating_add(lex.limits.max_growth),
            depth: 0,
            work: Work {
                used: 0,
                max: lex.limits.max_work,
            },
            last_name: "",
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
        if v.is_some() {
            self.matched.insert(name);
        } else {
            self.unmatched.insert(name);
        }
        v
    }

    /// An error unless a buffer of `len` bytes is within the limit.
    fn fits(&self, len: usize) -> Result<(), ErrKind> {
        if len > self.max_len {
            return Err(ErrKind::TooLong {
                name: self.last_name.to_owned(),
            });
        }
        Ok(())
    }

    /// Writes the value of an expansion, within the limits on size and work.
    fn put<S: Sink>(&mut self, out: &mut S, value: &str, quoted: bool) -> Result<(), ErrKind> {
        self.fits(out.len().saturating_add(value.len()))?;
        self.work.spend(value.len() as u64)?;
        if quoted {
            out.raw_text(value);
        } else {
            out.text(value);
        }
        Ok(())
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

    /// [`State::run`] for the word inside a `${...}` modifier: one level deeper.
    fn nested(&mut self, stop: char, raw_escapes: bool, out: &mut String) -> Result<(), ErrKind> {
        if self.depth >= self.lex.limits.max_depth {
            return Err(ErrKind::TooDeep);
        }
        self.depth += 1;
        let r = self.run(Some(stop), raw_escapes, out);
        self.depth -= 1;
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
                    self.put(out, &v, false)?;
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
                    // Written text is at most the word's length, but it may follow
                    // expansions that filled the buffer.
                    self.fits(out.len())?;
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
        self.fits(out.len())
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
                    return self.fits(out.len());
                }
                Some('$') => {
                    let v = self.dollar()?;
                    self.put(out, &v, true)?;
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
                    self.fits(out.len())?;
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

    /// A `$...` expansion; leaves its variable in `last_name` for the caller's size check.
    fn dollar(&mut self) -> Result<Cow<'e, str>, ErrKind> {
        self.pos += 1; // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            self.last_name = name;
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
        self.last_name = name;
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
                self.nested('}', trims, &mut word)
                    .map_err(|e| self.at_eof(e, ErrKind::MissingBrace))?;
                self.last_name = name;
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
                        let mut m = Matcher::new(compile_shell_pattern(pat)?, &mut self.work)?;
                        let v = value.as_deref().unwrap_or("");
                        let (s, e) = if c == '#' {
                            (m.prefix(v, longest)?.unwrap_or(0), v.len())
                        } else {
                            (0, m.suffix(v, longest)?.unwrap_or(v.len()))
                        };
                        // What is left is a part of the value: borrowed when the value is.
                        Ok(match value {
                            Some(Cow::Borrowed(v)) => Cow::Borrowed(&v[s..e]),
                            Some(Cow::Owned(v)) => Cow::Owned(v[s..e].to_owned()),
                            None => Cow::Borrowed(""),
                        })
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
                self.nested('/', true, &mut pattern)
                    .map_err(|e| self.at_eof(e, ErrKind::MissingSlash))?;
                let mut replacement = String::new();
                self.nested('}', true, &mut replacement)
                    .map_err(|e| self.at_eof(e, ErrKind::MissingBrace))?;
                self.last_name = name;
                let value = self.get(name);
                if value.is_none() && self.lex.skip_unset {
                    return Ok(Cow::Owned(format!("${{{name}/{pattern}/{replacement}}}")));
                }
                // An unset variable is replaced in as the empty string (`${NO/$E/x}` is `x`).
                let value = value.as_deref().unwrap_or("");
                let toks = compile_shell_pattern(&pattern)?;
                let limit = Output {
                    max_len: self.max_len,
                    name: self.last_name,
                };
                let mut m = Matcher::new(toks, &mut self.work)?;
                Ok(Cow::Owned(if all {
                    m.replace_all(value, &replacement, &limit)?
                } else {
                    match m.find(value, 0)? {
                        Some((s, e)) => {
                            let len = value.len() - (e - s) + replacement.len();
                            limit.fits(len)?;
                            m.work.spend(len as u64)?;
                            let mut out = String::with_capacity(len);
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

/// The size bound of a result being built, and the variable to name when it is crossed.
struct Output<'n> {
    max_len: usize,
    name: &'n str,
}

impl Output<'_> {
    fn fits(&self, len: usize) -> Result<(), ErrKind> {
        if len > self.max_len {
            return Err(ErrKind::TooLong {
                name: self.name.to_owned(),
            });
        }
        Ok(())
    }

    fn push(&self, out: &mut String, s: &str) -> Result<(), ErrKind> {
        self.fits(out.len().saturating_add(s.len()))?;
        out.push_str(s);
        Ok(())
    }
}

/// No thread at a position.
const NONE: usize = usize::MAX;

/// The live positions of a pattern during a simulation, each with the earliest start of a
/// thread there: a later start at the same position can only give a later match, so one
/// thread per position is enough and a run is linear in the text.
struct Threads {
    list: Vec<usize>,
    start: Vec<usize>,
}

impl Threads {
    fn new(positions: usize) -> Self {
        Threads {
            list: Vec::new(),
            start: vec![NONE; positions],
        }
    }

    fn clear(&mut self) {
        for &k in &self.list {
            self.start[k] = NONE;
        }
        self.list.clear();
    }

    /// Adds a thread at position `k` started at `s`, and the positions after each `*` it
    /// reaches by letting the `*` match nothing.
    fn add(&mut self, toks: &[PTok], mut k: usize, s: usize) {
        loop {
            if self.start[k] <= s {
                return;
            }
            if self.start[k] == NONE {
                self.list.push(k);
            }
            self.start[k] = s;
            if toks.get(k) != Some(&PTok::Star) {
                return;
            }
            k += 1;
        }
    }

    /// Drops the threads that started after `s`.
    fn keep_started_by(&mut self, s: usize) {
        let start = &mut self.start;
        self.list.retain(|&k| {
            let keep = start[k] <= s;
            if !keep {
                start[k] = NONE;
            }
            keep
        });
    }
}

/// Runs one pattern over values (Thompson simulation), charging every step to the work
/// budget: [`STEP_COST`] per live position per character.
struct Matcher<'b> {
    toks: Vec<PTok>,
    cur: Threads,
    next: Threads,
    work: &'b mut Work,
}

impl<'b> Matcher<'b> {
    fn new(toks: Vec<PTok>, work: &'b mut Work) -> Result<Self, ErrKind> {
        let positions = toks.len() + 1;
        work.spend(STEP_COST * positions as u64)?;
        Ok(Matcher {
            toks,
            cur: Threads::new(positions),
            next: Threads::new(positions),
            work,
        })
    }

    fn accepted(&self) -> usize {
        self.cur.start[self.toks.len()]
    }

    /// Moves every thread over character `c`.
    fn step(&mut self, c: char) -> Result<(), ErrKind> {
        self.work
            .spend(STEP_COST * (self.cur.list.len() as u64 + 1))?;
        self.next.clear();
        let n = self.toks.len();
        for &k in &self.cur.list {
            if k == n {
                continue;
            }
            let to = match self.toks[k] {
                PTok::Lit(l) if l == c => k + 1,
                PTok::Any if c != '\n' => k + 1,
                PTok::Star if c != '\n' => k,
                _ => continue,
            };
            self.next.add(&self.toks, to, self.cur.start[k]);
        }
        std::mem::swap(&mut self.cur, &mut self.next);
        Ok(())
    }

    /// The end of the shortest or longest match anchored at `start`, reading `chars`
    /// (each with the position after it).
    fn anchored(
        &mut self,
        start: usize,
        chars: impl Iterator<Item = (usize, char)>,
        longest: bool,
    ) -> Result<Option<usize>, ErrKind> {
        self.cur.clear();
        self.cur.add(&self.toks, 0, start);
        let mut best = (self.accepted() != NONE).then_some(start);
        if best.is_some() && !longest {
            return Ok(best);
        }
        for (after, c) in chars {
            self.step(c)?;
            if self.cur.list.is_empty() {
                break;
            }
            if self.accepted() != NONE {
                best = Some(after);
                if !longest {
                    break;
                }
            }
        }
        Ok(best)
    }

    /// The end of the shortest/longest prefix of `text` the pattern matches.
    fn prefix(&mut self, text: &str, longest: bool) -> Result<Option<usize>, ErrKind> {
        let chars = text.char_indices().map(|(i, c)| (i + c.len_utf8(), c));
        self.anchored(0, chars, longest)
    }

    /// The start of the shortest/longest suffix of `text` the pattern matches: the pattern
    /// and the text are both read backwards.
    fn suffix(&mut self, text: &str, longest: bool) -> Result<Option<usize>, ErrKind> {
        self.toks.reverse();
        let r = self.anchored(text.len(), text.char_indices().rev(), longest);
        self.toks.reverse();
        r
    }

    /// The leftmost match at or after byte `from`, longest at that position (greedy `*`),
    /// in one pass: a thread starts at every position until something matches, and then
    /// only threads that started no later than the match run on.
    fn find(&mut self, text: &str, from: usize) -> Result<Option<(usize, usize)>, ErrKind> {
        self.cur.clear();
        let mut best: Option<(usize, usize)> = None;
        let mut pos = from;
        let mut chars = text[from..].chars();
        loop {
            if best.is_none() {
                self.cur.add(&self.toks, 0, pos);
            }
            let s = self.accepted();
            if s != NONE && best.is_none_or(|(bs, be)| s < bs || (s == bs && pos > be)) {
                best = Some((s, pos));
            }
            if let Some((bs, _)) = best {
                self.cur.keep_started_by(bs);
                if self.cur.list.is_empty() {
                    break;
                }
            }
            let Some(c) = chars.next() else { break };
            self.step(c)?;
            pos += c.len_utf8();
        }
        Ok(best)
    }

    /// Replaces every match, with Go's `Regexp.ReplaceAllString` rules: an empty match
    /// right after a previous match is skipped, and `$0`/`${0}` in the replacement stand
    /// for the match, `$$` for `$`, other `$name` references for nothing.
    fn replace_all(
        &mut self,
        text: &str,
        replacement: &str,
        limit: &Output<'_>,
    ) -> Result<String, ErrKind> {
        let mut out = String::with_capacity(text.len());
        let mut last_end = 0;
        let mut search = 0;
        while search <= text.len() {
            let Some((s, e)) = self.find(text, search)? else {
                break;
            };
            let before = out.len();
            limit.push(&mut out, &text[last_end..s])?;
            if e > last_end || s == 0 {
                expand_template(&mut out, replacement, &text[s..e], limit)?;
            }
            self.work.spend((out.len() - before) as u64)?;
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
        limit.push(&mut out, &text[last_end..])?;
        Ok(out)
    }
}

/// Go's `Regexp.Expand` for a pattern with no capture groups.
fn expand_template(
    out: &mut String,
    template: &str,
    whole: &str,
    limit: &Output<'_>,
) -> Result<(), ErrKind> {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        limit.push(out, &rest[..i])?;
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            limit.push(out, "$")?;
            rest = r;
            continue;
        }
        let is_name = |c: char| c.is_alphanumeric() || c == '_';
        let (name, after) = if let Some(r) = rest.strip_prefix('{') {
            match r.find('}') {
                Some(j) if j > 0 && r[..j].chars().all(is_name) => (&r[..j], &r[j + 1..]),
                _ => {
                    limit.push(out, "$")?;
                    continue;
                }
            }
        } else {
            let j = rest.find(|c: char| !is_name(c)).unwrap_or(rest.len());
            if j == 0 {
                limit.push(out, "$")?;
                continue;
            }
            (&rest[..j], &rest[j..])
        };
        let group = name.trim_start_matches('0');
        if name.bytes().all(|b| b.is_ascii_digit()) && group.is_empty() {
            limit.push(out, whole)?;
        }
        rest = after;
    }
    limit.push(out, rest)
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

    fn replace_all(pattern: &str, text: &str, replacement: &str) -> String {
        let mut work = Work {
            used: 0,
            max: u64::MAX,
        };
        let limit = Output {
            max_len: usize::MAX,
            name: "V",
        };
        let mut m = Matcher::new(compile_shell_pattern(pattern).unwrap(), &mut work).unwrap();
        m.replace_all(text, replacement, &limit).unwrap()
    }

    #[test]
    fn replace_all_follows_go_empty_match_rules() {
        assert_eq!(replace_all("", "ab", "-"), "-a-b-");
        assert_eq!(replace_all("x*", "axxbx", "<$0>"), "a<xxbx>");
        assert_eq!(replace_all("x*", "ax", "$$${1}$"), "a$$");
        assert_eq!(replace_all("x?", "axxbxy", "<${0}>"), "a<xx>b<xy>");
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

    fn small(max_growth: usize, max_depth: usize, max_work: u64) -> Lexer {
        Lexer::default().limits(Limits {
            max_growth,
            max_depth,
            max_work,
        })
    }

    #[test]
    fn growth_is_bounded_and_names_the_variable() {
        let env = HashMap::from([("A".to_string(), "x".repeat(1000))]);
        let lex = small(4096, 128, u64::MAX);
        assert_eq!(
            lex.process_word("$A$A$A$A", &env).unwrap().value.len(),
            4000
        );
        let e = lex.process_word("$A$A$A$A$A", &env).unwrap_err();
        assert_eq!(
            e,
            ShellError::TooLong {
                word: "$A$A$A$A$A".into(),
                name: "A".into(),
                limit: 4096
            }
        );
        assert_eq!(
            e.to_string(),
            r#"failed to process "$A$A$A$A$A": expanding $A makes the word more than 4 KiB longer than written"#
        );
        // Inside a default, a replacement, a quoted string, and when splitting words.
        for w in [
            "${NO:-$A$A$A$A$A}",
            "${A//x/xxxxx}",
            r#""$A$A$A$A$A""#,
            "${NO:-${NO:-${A}}}${A}${A}${A}${A}",
        ] {
            let e = lex.process_word(w, &env).unwrap_err();
            assert!(
                matches!(&e, ShellError::TooLong { name, .. } if name == "A"),
                "{w}: {e}"
            );
            assert!(lex.process_words(w, &env).is_err(), "{w}");
        }
        // `$0` in a replacement repeats the match.
        let e = lex
            .process_word(r"${A//x/\$0\$0\$0\$0\$0}", &env)
            .unwrap_err();
        assert!(matches!(e, ShellError::TooLong { .. }), "{e}");
        // The bound is on growth: a long word as written (a heredoc body) is fine.
        let body = format!("{}$A", "y".repeat(100_000));
        assert_eq!(lex.process_word(&body, &env).unwrap().value.len(), 101_000);
    }

    #[test]
    fn nesting_is_bounded_without_deep_recursion() {
        let nest = |n: usize| format!("{}x{}", "${a:-".repeat(n), "}".repeat(n));
        let lex = Lexer::default();
        let env = env();
        assert_eq!(lex.process_word(&nest(128), &env).unwrap().value, "x");
        for w in [nest(129), nest(10_000)] {
            let e = lex.process_word(&w, &env).unwrap_err();
            assert_eq!(
                e,
                ShellError::TooDeep {
                    word: w.clone(),
                    limit: 128
                }
            );
            assert!(lex.process_words(&w, &env).is_err());
        }
        // The message shows a long word shortened, with its length.
        let e = lex
            .process_word(&nest(10_000), &env)
            .unwrap_err()
            .to_string();
        assert!(e.len() < 300, "{e}");
        assert!(e.contains("... (60001 bytes)"), "{e}");
        assert!(e.ends_with("is nested more than 128 levels deep"), "{e}");
        // Quotes and patterns nest through the same path.
        let quoted = format!("{}x{}", r#"${a:-""#.repeat(200), r#""}"#.repeat(200));
        assert!(matches!(
            lex.process_word(&quoted, &env),
            Err(ShellError::TooDeep { .. })
        ));
        let patterns = format!("{}x{}", "${A/".repeat(200), "/y}".repeat(200));
        assert!(matches!(
            lex.process_word(&patterns, &env),
            Err(ShellError::TooDeep { .. })
        ));
    }

    #[test]
    fn pattern_matching_is_linear_and_bounded() {
        let v = "a".repeat(200_000);
        let env = HashMap::from([("V".to_string(), v.clone())]);
        // Unanchored patterns that never match: one pass over the value, not one per start.
        for w in ["${V//*z/}", "${V/a*z/}", "${V//?z/}"] {
            let e = Lexer::default().process_word(w, &env).unwrap();
            assert_eq!(e.value, v, "{w}");
            assert!(e.work <= 8 * STEP_COST * v.len() as u64, "{w}: {}", e.work);
        }
        let e = Lexer::default().process_word("${V##*a}", &env).unwrap();
        assert_eq!(e.value, "");
        // A pattern that keeps many positions alive runs out of work instead of time.
        let w = format!("${{V//{}z/}}", "*".repeat(1000));
        let e = small(1 << 20, 128, 1 << 24)
            .process_word(&w, &env)
            .unwrap_err();
        assert_eq!(
            e,
            ShellError::TooMuchWork {
                word: w,
                limit: 1 << 24
            }
        );
        // Copies that are thrown away cost work too.
        let w = "${NO:+$V}".repeat(100);
        let e = small(1 << 20, 128, 1 << 24)
            .process_word(&w, &env)
            .unwrap_err();
        assert!(matches!(e, ShellError::TooMuchWork { .. }), "{e}");
    }

    /// Every end of a match of `toks` at byte `s` of `text`, by backtracking.
    fn naive_ends(toks: &[PTok], text: &str, s: usize) -> Vec<usize> {
        let Some((first, rest)) = toks.split_first() else {
            return vec![s];
        };
        let c = text[s..].chars().next();
        match (first, c) {
            (PTok::Star, _) => {
                let line_end = text[s..].find('\n').map_or(text.len(), |i| s + i);
                (s..=line_end)
                    .filter(|i| text.is_char_boundary(*i))
                    .flat_map(|e| naive_ends(rest, text, e))
                    .collect()
            }
            (PTok::Any, Some(ch)) if ch != '\n' => naive_ends(rest, text, s + ch.len_utf8()),
            (PTok::Lit(l), Some(ch)) if ch == *l => naive_ends(rest, text, s + ch.len_utf8()),
            _ => Vec::new(),
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn small_text() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![Just('a'), Just('b'), Just('\n'), Just('é')],
                0..12,
            )
            .prop_map(|v| v.into_iter().collect())
        }

        fn small_pattern() -> impl Strategy<Value = Vec<PTok>> {
            proptest::collection::vec(
                prop_oneof![
                    Just(PTok::Lit('a')),
                    Just(PTok::Lit('b')),
                    Just(PTok::Lit('é')),
                    Just(PTok::Any),
                    Just(PTok::Star),
                ],
                0..5,
            )
        }

        proptest! {
            #[test]
            fn find_is_leftmost_longest(toks in small_pattern(), text in small_text()) {
                let mut work = Work { used: 0, max: u64::MAX };
                let mut m = Matcher::new(toks.clone(), &mut work).unwrap();
                let starts: Vec<usize> =
                    (0..=text.len()).filter(|i| text.is_char_boundary(*i)).collect();
                for &from in &starts {
                    let want = starts
                        .iter()
                        .filter(|s| **s >= from)
                        .find_map(|&s| naive_ends(&toks, &text, s).into_iter().max().map(|e| (s, e)));
                    prop_assert_eq!(m.find(&text, from).unwrap(), want, "from {}", from);
                }
                let ends = naive_ends(&toks, &text, 0);
                prop_assert_eq!(m.prefix(&text, true).unwrap(), ends.iter().copied().max());
                prop_assert_eq!(m.prefix(&text, false).unwrap(), ends.iter().copied().min());
                let whole: Vec<usize> = starts
                    .iter()
                    .copied()
                    .filter(|&s| naive_ends(&toks, &text, s).contains(&text.len()))
                    .collect();
                prop_assert_eq!(m.suffix(&text, true).unwrap(), whole.first().copied());
                prop_assert_eq!(m.suffix(&text, false).unwrap(), whole.last().copied());
            }
        }

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
