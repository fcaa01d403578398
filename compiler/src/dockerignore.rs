//! `.dockerignore` files: reading them, choosing which one applies, and matching context
//! paths against their patterns with Docker's semantics (moby/patternmatcher), which are
//! not gitignore's.
//!
//! * Patterns are trimmed, empty ones dropped, then cleaned lexically (`a//b/../c/` is
//!   `a/c`). A leading `!` makes an exception pattern.
//! * `*` matches a run of characters without `/`, `?` one character but `/`, `[...]` and
//!   `[^...]` are character classes, `\` escapes. `**` matches any number of directories,
//!   including none (`**/foo` matches `foo`); `dir/**` matches everything below `dir`.
//! * A pattern that matches a directory matches everything below it.
//! * The patterns are evaluated in order from "not excluded": while not excluded only normal
//!   patterns are tried, while excluded only exceptions; a hit flips the state. So the last
//!   pattern that can apply wins.
//!
//! ```
//! use rbuild_compiler::dockerignore::{read_ignore_file, Matcher};
//!
//! let patterns = read_ignore_file("# build output\n/target\n*.log\n!keep.log\n");
//! assert_eq!(patterns, ["target", "*.log", "!keep.log"]);
//! let m = Matcher::new(&patterns).unwrap();
//! assert!(m.matches("target/debug/rbuild").unwrap());
//! assert!(m.matches("error.log").unwrap());
//! assert!(!m.matches("keep.log").unwrap());
//! assert!(!m.matches("src/main.rs").unwrap());
//! ```
//!
//! # Implementation
//!
//! Docker turns each pattern into a Go regular expression, except that patterns without
//! wildcards compare as strings, `prefix**` as a prefix test and `**suffix` as a suffix
//! test. This module compiles each pattern once into the same classification, and the
//! regular-expression case into a small token program run by a position-set (Thompson)
//! simulation: linear in the path, no recursion, no backtracking blow-up on hostile
//! patterns, and no allocation for ordinary path lengths.
//!
//! Neither `globset` nor `regex` is used: `globset` has gitignore-style rules (its `**`,
//! classes and escapes differ from Docker's), and generating a `regex` pattern would need
//! the same translation of Go-regexp quirks done here anyway (Go's `\d` is ASCII-only,
//! `.` stops at newlines, `^` mid-pattern is an anchor because Docker does not escape it),
//! plus a compiled automaton per pattern that costs more to build than these patterns do to
//! run.
//!
//! Deliberate choices where Docker's behaviour is an accident of that translation:
//!
//! * A pattern that passes Go's `filepath.Match` syntax check but not the regular-expression
//!   compiler (a reversed range such as `[Local-Only]`, an invalid escape such as `\y`) is
//!   accepted by [`Matcher::new`] and fails every evaluation that tries it, naming the
//!   pattern: exactly Docker's behaviour (its build fails on the first context path, unless
//!   the pattern is an exception that is never tried). Rejecting it up front would refuse
//!   contexts that Docker builds.
//! * Go-regexp constructs that a pattern can smuggle through `\` or `[` and that have no
//!   glob meaning are emulated where cheap (`\d \s \w \D \S \W`, `\b \B \A \z`, `\t \n` and
//!   the other control escapes, POSIX classes such as `[[:alpha:]]`, `^` as a start anchor)
//!   and otherwise fail like an invalid pattern, with a message saying so: octal and `\x`
//!   escapes, `\p{..}` Unicode classes, `\Q..\E`, and `*` or `?` inside a character class
//!   (which Docker turns into a different, broken expression).

use std::borrow::Cow;

/// A `.dockerignore` pattern is malformed, or a path cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A pattern that is only `!`.
    #[error("illegal exclusion pattern {pattern:?}: '!' must be followed by a pattern")]
    IllegalExclusion {
        /// The pattern as given.
        pattern: String,
    },
    /// A pattern that is not a valid pattern.
    #[error("invalid .dockerignore pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`Matcher::matches_with_parent`] got results recorded by a different matcher.
    #[error(
        "cannot evaluate {path:?}: its parent's results cover {found} patterns, the matcher has {expected}"
    )]
    ParentMismatch {
        /// The path being evaluated.
        path: String,
        /// The number of patterns of the matcher.
        expected: usize,
        /// The number of results in the parent's record.
        found: usize,
    },
}

/// Reads the text of a `.dockerignore` file into its list of patterns, as Docker does:
/// a leading BOM is dropped; lines starting with `#` (in the first column) are comments;
/// other lines are trimmed and empty ones dropped; a pattern is cleaned lexically and loses
/// one leading `/` (a `!` is split off first, and the rest trimmed again). A lone `!` stays
/// `!`: reading does not fail, [`Matcher::new`] does.
///
/// Docker also fails on a line longer than 64 KiB; this reader has no such limit.
pub fn read_ignore_file(text: &str) -> Vec<String> {
    read_ignore_file_lines(text)
        .into_iter()
        .map(|(_, pattern)| pattern)
        .collect()
}

/// [`read_ignore_file`], each pattern with its 1-based line number in the file (to say
/// which line excluded a path).
pub fn read_ignore_file_lines(text: &str) -> Vec<(usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (invert, rest) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let mut pattern = String::with_capacity(rest.len() + 1);
        if invert {
            pattern.push('!');
        }
        if !rest.is_empty() {
            let cleaned = clean_path(rest);
            match cleaned.strip_prefix('/') {
                Some(tail) if !tail.is_empty() => pattern.push_str(tail),
                _ => pattern.push_str(&cleaned),
            }
        }
        out.push((index + 1, pattern));
    }
    out
}

/// The ignore files that can apply to a build, in precedence order, as paths relative to
/// the same directory as `dockerfile` is: `<dockerfile>.dockerignore` beside the
/// Dockerfile, then `.dockerignore` at the context root. The first that exists applies;
/// the others are not read. A Dockerfile read from standard input (`-`) has only the
/// second.
pub fn ignore_file_candidates(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    let df = clean_path(dockerfile);
    if !(df == "." || df == "-" || df == "/" || df.ends_with("/..") || df == "..") {
        out.push(format!("{df}.dockerignore"));
    }
    out.push(".dockerignore".to_owned());
    out
}

/// The ignore file that applies to a build of `dockerfile`: the first of
/// [`ignore_file_candidates`] for which `exists` is true, or `None` when there is none.
pub fn select_ignore_file(
    dockerfile: &str,
    mut exists: impl FnMut(&str) -> bool,
) -> Option<String> {
    ignore_file_candidates(dockerfile)
        .into_iter()
        .find(|c| exists(c))
}

/// Cleans a slash-separated path lexically, like Go's `filepath.Clean` on Unix: repeated
/// slashes, `.` components and `..` after a name collapse, a trailing slash goes; an empty
/// path is `.`. Borrowed when the path is already clean.
pub fn clean_path(path: &str) -> Cow<'_, str> {
    match clean_bytes(path.as_bytes()) {
        Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).unwrap_or(path)),
        // Cleaning only removes whole components and adds ASCII, so this stays UTF-8.
        Cow::Owned(b) => Cow::Owned(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
    }
}

fn is_clean(b: &[u8]) -> bool {
    if b == b"/" {
        return true;
    }
    if b.is_empty() || b.last() == Some(&b'/') {
        return false;
    }
    let body = b.strip_prefix(b"/").unwrap_or(b);
    body.split(|&c| c == b'/')
        .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

fn clean_bytes(b: &[u8]) -> Cow<'_, [u8]> {
    if is_clean(b) {
        return Cow::Borrowed(b);
    }
    if b.len() > 1 && b.last() == Some(&b'/') && is_clean(&b[..b.len() - 1]) {
        return Cow::Borrowed(&b[..b.len() - 1]);
    }
    if b.is_empty() {
        return Cow::Borrowed(b".");
    }
    let n = b.len();
    let rooted = b[0] == b'/';
    let mut out = Vec::with_capacity(n);
    let (mut r, mut dotdot) = (0, 0);
    if rooted {
        out.push(b'/');
        r = 1;
        dotdot = 1;
    }
    while r < n {
        if b[r] == b'/' || (b[r] == b'.' && (r + 1 == n || b[r + 1] == b'/')) {
            // An empty or `.` component.
            r += 1;
        } else if b[r] == b'.' && b[r + 1] == b'.' && (r + 2 == n || b[r + 2] == b'/') {
            r += 2;
            if out.len() > dotdot {
                let mut w = out.len() - 1;
                while w > dotdot && out[w] != b'/' {
                    w -= 1;
                }
                out.truncate(w);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while r < n && b[r] != b'/' {
                out.push(b[r]);
                r += 1;
            }
        }
    }
    if out.is_empty() {
        out.push(b'.');
    }
    Cow::Owned(out)
}

/// One compiled pattern of a [`Matcher`].
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    text: String,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    /// The pattern as given (trimmed), with its `!`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The cleaned pattern without its `!`.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True for an exception (`!`) pattern.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// How the pattern is evaluated (Docker's classification).
    pub fn match_kind(&self) -> MatchKind {
        match self.kind {
            Kind::Exact => MatchKind::Exact,
            Kind::Prefix => MatchKind::Prefix,
            Kind::Suffix => MatchKind::Suffix,
            Kind::Program(_) | Kind::Invalid(_) => MatchKind::Wildcard,
        }
    }

    /// Whether this pattern alone matches `path` (not its parents).
    fn hit(&self, path: &[u8]) -> Result<bool, IgnoreError> {
        let t = self.text.as_bytes();
        Ok(match &self.kind {
            Kind::Exact => path == t,
            Kind::Prefix => path.starts_with(&t[..t.len() - 2]),
            Kind::Suffix => {
                let suffix = &t[2..];
                path.ends_with(suffix) || (suffix.first() == Some(&b'/') && path == &suffix[1..])
            }
            Kind::Program(p) => p.matches(path),
            Kind::Invalid(reason) => {
                return Err(IgnoreError::BadPattern {
                    pattern: self.source.clone(),
                    reason: reason.clone(),
                });
            }
        })
    }
}

/// How a [`Pattern`] is evaluated; Docker classifies patterns the same way, and the
/// classification decides how characters such as `^` read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// No wildcard: the path must equal the pattern.
    Exact,
    /// `<literal>**`: the path must start with the text before `**`.
    Prefix,
    /// `**<literal>`: the path must end with the text after `**` (`**/x` also matches `x`).
    Suffix,
    /// Anything else: a full wildcard match.
    Wildcard,
}

#[derive(Debug, Clone)]
enum Kind {
    /// No wildcard: string equality.
    Exact,
    /// `<literal>**`: a prefix test on the text before `**`.
    Prefix,
    /// `**<literal>`: a suffix test on the text after `**` (`**/x` also matches `x`).
    Suffix,
    /// Anything else.
    Program(Program),
    /// Passed the syntax check but cannot be evaluated (see the module docs).
    Invalid(String),
}

/// Evaluates context paths against `.dockerignore` patterns. Build it once, share it.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
    /// Some exception pattern has a wildcard or escape.
    wild_exclusions: bool,
}

/// Per-pattern results recorded for a directory, handed to the evaluation of its entries
/// by [`Matcher::matches_with_parent`]. The default value means "no parent information"
/// (an entry of the context root, or a path evaluated on its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParentMatches {
    len: usize,
    bits: Bits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Bits {
    Inline(u64),
    Heap(Box<[u64]>),
}

impl Default for Bits {
    fn default() -> Self {
        Bits::Inline(0)
    }
}

impl Bits {
    fn new(len: usize) -> Self {
        if len <= 64 {
            Bits::Inline(0)
        } else {
            Bits::Heap(vec![0; len.div_ceil(64)].into_boxed_slice())
        }
    }
    fn get(&self, i: usize) -> bool {
        match self {
            Bits::Inline(w) => i < 64 && w >> i & 1 == 1,
            Bits::Heap(ws) => ws.get(i / 64).is_some_and(|w| w >> (i % 64) & 1 == 1),
        }
    }
    fn set(&mut self, i: usize) {
        match self {
            Bits::Inline(w) => *w |= 1u64.checked_shl(i as u32).unwrap_or(0),
            Bits::Heap(ws) => {
                if let Some(w) = ws.get_mut(i / 64) {
                    *w |= 1 << (i % 64);
                }
            }
        }
    }
}

impl ParentMatches {
    /// Whether pattern number `index` matched the recorded directory (or, through the
    /// record handed down, one of its parents).
    pub fn pattern_matched(&self, index: usize) -> bool {
        index < self.len && self.bits.get(index)
    }
}

impl Matcher {
    /// Compiles `patterns` (as [`read_ignore_file`] returns them). Fails on a lone `!` and on
    /// a pattern that is not a valid glob (unclosed `[`, `[]`, `[a-]`, trailing `\`...).
    pub fn new<I>(patterns: I) -> Result<Self, IgnoreError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut out = Matcher::default();
        for p in patterns {
            let source = p.as_ref().trim();
            if source.is_empty() {
                continue;
            }
            let cleaned = clean_path(source);
            let (exclusion, text) = match cleaned.strip_prefix('!') {
                Some("") => {
                    return Err(IgnoreError::IllegalExclusion {
                        pattern: source.to_owned(),
                    });
                }
                Some(rest) => (true, rest),
                None => (false, &*cleaned),
            };
            check_syntax(text).map_err(|reason| IgnoreError::BadPattern {
                pattern: source.to_owned(),
                reason: reason.to_owned(),
            })?;
            out.exclusions |= exclusion;
            out.wild_exclusions |= exclusion && text.contains(['*', '?', '[', '\\']);
            out.patterns.push(Pattern {
                source: source.to_owned(),
                text: text.to_owned(),
                exclusion,
                kind: compile(text),
            });
        }
        Ok(out)
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// True when some pattern is an exception (`!`): then an excluded directory may still
    /// have entries that are not excluded, and a walker must look inside it.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// During a walk, whether the entries of `dir`, a directory found excluded, can be
    /// skipped without evaluating them, by BuildKit's rule: yes when there is no exception
    /// pattern; no when some exception has a wildcard (it could match anything below);
    /// otherwise yes unless an exception names a path inside `dir`.
    pub fn can_skip_excluded_dir(&self, dir: &str) -> bool {
        if !self.exclusions {
            return true;
        }
        if self.wild_exclusions {
            return false;
        }
        !self.patterns.iter().any(|p| {
            p.exclusion
                && p.text
                    .strip_prefix(dir)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// True when there is no pattern (nothing is excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (slash-separated, relative to the context root) is excluded, checking
    /// each pattern against the path and against each of its parent directories. The path
    /// is used as given; see [`Matcher::is_excluded`] for arbitrary user input.
    pub fn matches(&self, path: impl AsRef<[u8]>) -> Result<bool, IgnoreError> {
        Ok(self.deciding_pattern(path)?.is_some())
    }

    /// The index of the pattern that excludes `path`, or `None` when the path is not
    /// excluded: patterns apply in order from "not excluded", each checked against the path
    /// and each of its parent directories, and only those that can change the state are
    /// tried; the last that applied decides.
    pub fn deciding_pattern(&self, path: impl AsRef<[u8]>) -> Result<Option<usize>, IgnoreError> {
        let path = path.as_ref();
        let parent = parent_dir(path);
        let mut decided = None;
        for (i, p) in self.patterns.iter().enumerate() {
            if p.exclusion != decided.is_some() {
                continue;
            }
            let hit = p.hit(path)?
                || parent
                    .as_deref()
                    .is_some_and(|d| prefixes(d).any(|pre| p.hit(pre).unwrap_or(false)));
            if hit {
                decided = (!p.exclusion).then_some(i);
            }
        }
        Ok(decided)
    }

    /// Like [`Matcher::matches`], after cleaning `path` lexically; the context root itself
    /// (`.`, `./`, empty) is never excluded.
    pub fn is_excluded(&self, path: &str) -> Result<bool, IgnoreError> {
        let path = clean_path(path);
        if path == "." {
            return Ok(false);
        }
        self.matches(path.as_bytes())
    }

    /// Evaluates `path` during a walk of the context: `parent` is what this call returned
    /// for the path's directory (or the default value for an entry of the root). Patterns
    /// that matched a parent are not evaluated again, and parents are never re-checked, so
    /// each path costs one evaluation of the patterns that can still apply. Returns whether
    /// `path` is excluded and the record to hand to its entries if it is a directory.
    ///
    /// This is how BuildKit's context transfer evaluates paths. It agrees with
    /// [`Matcher::matches`] except for lists where a pattern that was not tried at a
    /// directory (the state already excluded it) would match that directory: the walk then
    /// does not count the directory's match (`a`, `!a/b`, `a` keeps `a/b`).
    pub fn matches_with_parent(
        &self,
        path: impl AsRef<[u8]>,
        parent: &ParentMatches,
    ) -> Result<(bool, ParentMatches), IgnoreError> {
        let path = path.as_ref();
        let n = self.patterns.len();
        let known = parent.len != 0;
        if known && parent.len != n {
            return Err(IgnoreError::ParentMismatch {
                path: String::from_utf8_lossy(path).into_owned(),
                expected: n,
                found: parent.len,
            });
        }
        let mut record = ParentMatches {
            len: n,
            bits: Bits::new(n),
        };
        let parent_dir = if known { None } else { parent_dir(path) };
        let mut excluded = false;
        for (i, p) in self.patterns.iter().enumerate() {
            let mut hit = known && parent.bits.get(i);
            if !hit {
                if p.exclusion != excluded {
                    continue;
                }
                hit = p.hit(path)?
                    || parent_dir
                        .as_deref()
                        .is_some_and(|d| prefixes(d).any(|pre| p.hit(pre).unwrap_or(false)));
            }
            if hit {
                record.bits.set(i);
                excluded = !p.exclusion;
            }
        }
        Ok((excluded, record))
    }
}

/// Go's `filepath.Dir(path)`, or `None` when that is `.`.
fn parent_dir(path: &[u8]) -> Option<Cow<'_, [u8]>> {
    let i = path.iter().rposition(|&b| b == b'/')?;
    let dir = clean_bytes(&path[..=i]);
    (&*dir != b".").then_some(dir)
}

/// `a`, `a/b`, `a/b/c` for `a/b/c` (and ``, `/` for `/`).
fn prefixes(dir: &[u8]) -> impl Iterator<Item = &[u8]> {
    dir.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(move |(i, _)| &dir[..i])
        .chain(std::iter::once(dir))
}

/// Go's `filepath.Match` syntax check (Unix): Docker runs it on every pattern and rejects
/// what it rejects. Only brackets and escapes can be malformed.
fn check_syntax(p: &str) -> Result<(), &'static str> {
    let mut rest = p;
    while let Some(c) = pop(&mut rest) {
        match c {
            '\\' if pop(&mut rest).is_none() => {
                return Err("trailing backslash escapes nothing");
            }
            '[' => {
                if let Some(r) = rest.strip_prefix('^') {
                    rest = r;
                }
                let mut ranges = 0;
                loop {
                    if ranges > 0 {
                        if let Some(r) = rest.strip_prefix(']') {
                            rest = r;
                            break;
                        }
                    }
                    class_member(&mut rest)?;
                    if let Some(r) = rest.strip_prefix('-') {
                        rest = r;
                        class_member(&mut rest)?;
                    }
                    ranges += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One character of a class in the syntax check (Go's `getEsc`).
fn class_member(rest: &mut &str) -> Result<(), &'static str> {
    match rest.chars().next() {
        None => return Err("unterminated character class"),
        Some('-') => return Err("character class has '-' where a character is expected"),
        Some(']') => return Err("character class has ']' where a character is expected"),
        Some('\\') => {
            *rest = &rest[1..];
        }
        Some(_) => {}
    }
    if pop(rest).is_none() || rest.is_empty() {
        return Err("unterminated character class");
    }
    Ok(())
}

fn pop(rest: &mut &str) -> Option<char> {
    let c = rest.chars().next()?;
    *rest = &rest[c.len_utf8()..];
    Some(c)
}

/// Classifies a (syntax-checked) pattern the way Docker does and compiles the
/// regular-expression case.
fn compile(text: &str) -> Kind {
    #[derive(PartialEq)]
    enum Mt {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let mut mt = Mt::Exact;
    let mut b = ProgramBuilder::default();
    let mut invalid: Option<String> = None;
    let mut rest = text;
    let mut first = true;
    while let Some(c) = pop(&mut rest) {
        match c {
            '*' if rest.starts_with('*') => {
                rest = &rest[1..];
                if let Some(r) = rest.strip_prefix('/') {
                    rest = r;
                }
                if rest.is_empty() {
                    if mt == Mt::Exact {
                        mt = Mt::Prefix;
                    } else {
                        b.push(Tok::AnyTail);
                        mt = Mt::Regexp;
                    }
                } else {
                    b.push(Tok::AnyDirs);
                    mt = Mt::Regexp;
                }
                if first {
                    mt = Mt::Suffix;
                }
            }
            '*' => {
                b.push(Tok::Star);
                mt = Mt::Regexp;
            }
            '?' => {
                b.push(Tok::AnyOne);
                mt = Mt::Regexp;
            }
            '\\' => {
                mt = Mt::Regexp;
                match escape_outside_class(&mut rest) {
                    Ok(Atom::Char(c)) => b.lit(c),
                    Ok(Atom::Tok(t)) => b.push(t),
                    Err(e) => {
                        invalid.get_or_insert(e);
                    }
                }
            }
            '[' => {
                mt = Mt::Regexp;
                match parse_class(&mut rest) {
                    Ok(class) => b.push(Tok::Class(class)),
                    Err(e) => {
                        invalid.get_or_insert(e);
                    }
                }
            }
            ']' => {
                mt = Mt::Regexp;
                b.lit(']');
            }
            // Docker leaves `^` unescaped: in its regular expression it anchors at the start.
            '^' => b.push(Tok::Begin),
            c => b.lit(c),
        }
        first = false;
    }
    match mt {
        Mt::Exact => Kind::Exact,
        Mt::Prefix => Kind::Prefix,
        Mt::Suffix => Kind::Suffix,
        Mt::Regexp => match invalid {
            Some(reason) => Kind::Invalid(reason),
            None => Kind::Program(b.finish()),
        },
    }
}

enum Atom {
    Char(char),
    Tok(Tok),
}

/// A `\x` escape outside a class, read as Go's regexp parser reads it.
fn escape_outside_class(rest: &mut &str) -> Result<Atom, String> {
    let Some(c) = pop(rest) else {
        return Err("trailing backslash escapes nothing".to_owned());
    };
    Ok(match c {
        'A' => Atom::Tok(Tok::Begin),
        'z' => Atom::Tok(Tok::End),
        'b' => Atom::Tok(Tok::WordBoundary(false)),
        'B' => Atom::Tok(Tok::WordBoundary(true)),
        'd' | 'D' | 's' | 'S' | 'w' | 'W' => Atom::Tok(Tok::Class(perl_class(c))),
        c => Atom::Char(escaped_char(c)?),
    })
}

/// The character an escape inside or outside a class stands for.
fn escaped_char(c: char) -> Result<char, String> {
    Ok(match c {
        'a' => '\x07',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => c,
        '0'..='7' | 'x' | 'p' | 'P' | 'Q' => {
            return Err(format!(
                "the escape \\{c} has a regular-expression meaning in Docker that is not supported"
            ));
        }
        c => return Err(format!("invalid escape sequence \\{c}")),
    })
}

fn perl_class(c: char) -> Class {
    let ranges: &[(char, char)] = match c.to_ascii_lowercase() {
        'd' => &[('0', '9')],
        's' => &[('\t', '\n'), ('\x0c', '\r'), (' ', ' ')],
        _ => &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
    };
    Class {
        negated: c.is_ascii_uppercase(),
        ranges: ranges.iter().map(|&(a, b)| (a as u32, b as u32)).collect(),
    }
}

fn posix_class(name: &str) -> Option<&'static [(char, char)]> {
    Some(match name {
        "alnum" => &[('0', '9'), ('A', 'Z'), ('a', 'z')],
        "alpha" => &[('A', 'Z'), ('a', 'z')],
        "ascii" => &[('\0', '\x7f')],
        "blank" => &[('\t', '\t'), (' ', ' ')],
        "cntrl" => &[('\0', '\x1f'), ('\x7f', '\x7f')],
        "digit" => &[('0', '9')],
        "graph" => &[('!', '~')],
        "lower" => &[('a', 'z')],
        "print" => &[(' ', '~')],
        "punct" => &[('!', '/'), (':', '@'), ('[', '`'), ('{', '~')],
        "space" => &[('\t', '\r'), (' ', ' ')],
        "upper" => &[('A', 'Z')],
        "word" => &[('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
        "xdigit" => &[('0', '9'), ('A', 'F'), ('a', 'f')],
        _ => return None,
    })
}

/// The complement of sorted, non-overlapping ranges over all code points.
fn complement(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut out = Vec::new();
    let mut next = 0u32;
    for (lo, hi) in sorted {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = next.max(hi.saturating_add(1));
    }
    if next <= 0x10_ffff {
        out.push((next, 0x10_ffff));
    }
    out
}

/// A character class after `[`, read as Go's regexp parser reads the text Docker generates.
fn parse_class(rest: &mut &str) -> Result<Class, String> {
    let mut class = Class::default();
    if let Some(r) = rest.strip_prefix('^') {
        class.negated = true;
        *rest = r;
    }
    let mut first = true;
    loop {
        let Some(c) = rest.chars().next() else {
            return Err("missing closing ] of a character class".to_owned());
        };
        if c == ']' && !first {
            *rest = &rest[1..];
            return Ok(class);
        }
        first = false;
        match c {
            '*' | '?' => {
                return Err(format!(
                    "a '{c}' inside a character class is not a literal in Docker's matcher; escape it as \\{c}"
                ));
            }
            '[' if rest[1..].starts_with(':') => {
                if let Some(end) = rest[2..].find(":]") {
                    let name = &rest[2..2 + end];
                    if name.contains(['*', '?', '\\']) {
                        return Err(format!("unsupported character class [:{name}:]"));
                    }
                    let (neg, bare) = match name.strip_prefix('^') {
                        Some(n) => (true, n),
                        None => (false, name),
                    };
                    let Some(ranges) = posix_class(bare) else {
                        return Err(format!("invalid character class range [:{name}:]"));
                    };
                    let ranges: Vec<(u32, u32)> =
                        ranges.iter().map(|&(a, b)| (a as u32, b as u32)).collect();
                    class
                        .ranges
                        .extend(if neg { complement(&ranges) } else { ranges });
                    *rest = &rest[2 + end + 2..];
                    continue;
                }
            }
            '\\' => {
                let mut look = &rest[1..];
                if let Some(p @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) = pop(&mut look) {
                    let pc = perl_class(p);
                    class.ranges.extend(if pc.negated {
                        complement(&pc.ranges)
                    } else {
                        pc.ranges
                    });
                    *rest = look;
                    continue;
                }
            }
            _ => {}
        }
        let lo = class_char(rest)?;
        let hi = match rest.strip_prefix('-') {
            Some(r) if !r.is_empty() && !r.starts_with(']') => {
                *rest = r;
                let hi = class_char(rest)?;
                if hi < lo {
                    return Err(format!("invalid character class range {lo}-{hi}"));
                }
                hi
            }
            _ => lo,
        };
        class.ranges.push((lo as u32, hi as u32));
    }
}

fn class_char(rest: &mut &str) -> Result<char, String> {
    match pop(rest) {
        None => Err("missing closing ] of a character class".to_owned()),
        Some('\\') => match pop(rest) {
            None => Err("trailing backslash escapes nothing".to_owned()),
            Some(c) => escaped_char(c),
        },
        Some(c) => Ok(c),
    }
}

#[derive(Debug, Clone, Default)]
struct Class {
    negated: bool,
    ranges: Vec<(u32, u32)>,
}

impl Class {
    fn contains(&self, c: char) -> bool {
        let c = c as u32;
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

#[derive(Debug, Clone)]
enum Tok {
    Lit(Box<[u8]>),
    /// `?` (`[^/]`): one character but `/`.
    AnyOne,
    /// `*` (`[^/]*`).
    Star,
    /// `**` before more pattern (`(.*/)?`): nothing, or anything without a newline that
    /// ends with `/`.
    AnyDirs,
    /// `**` at the end after wildcards (`.*`): anything without a newline.
    AnyTail,
    Class(Class),
    /// `^` or `\A`: the start of the path.
    Begin,
    /// `\z`: the end of the path.
    End,
    /// `\b` (false) or `\B` (true): an ASCII word boundary, or not one.
    WordBoundary(bool),
}

#[derive(Default)]
struct ProgramBuilder {
    toks: Vec<Tok>,
    lit: Vec<u8>,
}

impl ProgramBuilder {
    fn lit(&mut self, c: char) {
        let mut buf = [0; 4];
        self.lit
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    fn flush(&mut self) {
        if !self.lit.is_empty() {
            let lit = std::mem::take(&mut self.lit);
            self.toks.push(Tok::Lit(lit.into_boxed_slice()));
        }
    }
    fn push(&mut self, t: Tok) {
        self.flush();
        self.toks.push(t);
    }
    fn finish(mut self) -> Program {
        self.flush();
        let lit = |t: Option<&Tok>| match t {
            Some(Tok::Lit(l)) => l.clone(),
            _ => Box::default(),
        };
        Program {
            prefix: lit(self.toks.first()),
            suffix: lit(self.toks.last()),
            toks: self.toks,
        }
    }
}

/// A compiled regular-expression pattern: tokens matched against the whole path.
#[derive(Debug, Clone)]
struct Program {
    toks: Vec<Tok>,
    /// The literal the path must start with (the first token's), or empty.
    prefix: Box<[u8]>,
    /// The literal the path must end with (the last token's), or empty.
    suffix: Box<[u8]>,
}

/// Decodes one character as Go does: an invalid byte is U+FFFD of width 1.
fn decode(s: &[u8]) -> Option<(char, usize)> {
    let b0 = *s.first()?;
    if b0 < 0x80 {
        return Some((b0 as char, 1));
    }
    let w = match b0 {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Some(('\u{fffd}', 1)),
    };
    match s
        .get(..w)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.chars().next())
    {
        Some(c) => Some((c, w)),
        None => Some(('\u{fffd}', 1)),
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// State sets for each path position, on the stack for ordinary sizes.
enum Sets {
    Stack([u64; 128]),
    Heap(Vec<u64>),
}

impl Program {
    /// Runs the program over the whole of `s`. State `t` (0..=n) is "before token t"; state
    /// `n + 1 + t` is "inside the `(.*/)?` of token t". Each position's set is closed over
    /// the empty moves, then advanced; moves only go forward, so one pass suffices.
    fn matches(&self, s: &[u8]) -> bool {
        // The program spans the whole path, so a leading or trailing literal must be there:
        // this rejects most paths (`*.log` against `src/main.rs`) without running anything.
        if !s.starts_with(&self.prefix) || !s.ends_with(&self.suffix) {
            return false;
        }
        if let Some(Tok::Class(class)) = self.toks.first() {
            if !decode(s).is_some_and(|(c, _)| class.contains(c)) {
                return false;
            }
        }
        let n = self.toks.len();
        let states = 2 * (n + 1);
        let words = states.div_ceil(64);
        let total = words * (s.len() + 1);
        let mut storage = if total <= 128 {
            Sets::Stack([0; 128])
        } else {
            Sets::Heap(vec![0; total])
        };
        let sets: &mut [u64] = match &mut storage {
            Sets::Stack(a) => &mut a[..total],
            Sets::Heap(v) => v,
        };
        let set =
            |sets: &mut [u64], pos: usize, st: usize| sets[pos * words + st / 64] |= 1 << (st % 64);
        let get =
            |sets: &[u64], pos: usize, st: usize| sets[pos * words + st / 64] >> (st % 64) & 1 == 1;
        set(sets, 0, 0);
        for pos in 0..=s.len() {
            if sets[pos * words..(pos + 1) * words].iter().all(|&w| w == 0) {
                continue;
            }
            let here = &s[pos..];
            // Empty moves, in token order.
            for t in 0..n {
                if !get(sets, pos, t) {
                    continue;
                }
                let pass = match &self.toks[t] {
                    Tok::Star | Tok::AnyTail => true,
                    Tok::AnyDirs => {
                        set(sets, pos, n + 1 + t);
                        true
                    }
                    Tok::Begin => pos == 0,
                    Tok::End => pos == s.len(),
                    Tok::WordBoundary(negated) => {
                        let before = pos > 0 && is_word(s[pos - 1]);
                        let after = pos < s.len() && is_word(s[pos]);
                        (before != after) != *negated
                    }
                    _ => false,
                };
                if pass {
                    set(sets, pos, t + 1);
                }
            }
            if pos == s.len() {
                return get(sets, pos, n);
            }
            let Some((c, w)) = decode(here) else {
                return false;
            };
            for t in 0..n {
                if get(sets, pos, t) {
                    match &self.toks[t] {
                        Tok::Lit(l) if here.starts_with(l) => set(sets, pos + l.len(), t + 1),
                        Tok::AnyOne if c != '/' => set(sets, pos + w, t + 1),
                        Tok::Class(class) if class.contains(c) => set(sets, pos + w, t + 1),
                        Tok::Star if c != '/' => set(sets, pos + w, t),
                        Tok::AnyTail if c != '\n' => set(sets, pos + w, t),
                        _ => {}
                    }
                }
                if get(sets, pos, n + 1 + t) && c != '\n' {
                    set(sets, pos + w, n + 1 + t);
                    if c == '/' {
                        set(sets, pos + w, t + 1);
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deciding_pattern_and_its_line() {
        let lines = read_ignore_file_lines("# comment\n\n*.json\n!package.json\nsecret/\n");
        assert_eq!(
            lines,
            [
                (3, "*.json".to_string()),
                (4, "!package.json".to_string()),
                (5, "secret".to_string())
            ]
        );
        let m = Matcher::new(lines.iter().map(|(_, p)| p)).unwrap();
        assert_eq!(m.deciding_pattern("config.json").unwrap(), Some(0));
        assert_eq!(m.deciding_pattern("package.json").unwrap(), None);
        assert_eq!(m.deciding_pattern("secret/key").unwrap(), Some(2));
        assert_eq!(m.deciding_pattern("src/main.rs").unwrap(), None);
        for path in ["config.json", "package.json", "secret/key", "src/main.rs"] {
            assert_eq!(
                m.deciding_pattern(path).unwrap().is_some(),
                m.matches(path).unwrap(),
                "{path}"
            );
        }
    }

    fn m(patterns: &[&str], path: &str) -> bool {
        Matcher::new(patterns).unwrap().matches(path).unwrap()
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./", "."),
            ("a/./b/", "a/b"),
            ("a//b", "a/b"),
            ("a/../..", ".."),
            ("../a/../../b", "../../b"),
            ("/..", "/"),
            ("/a/../b/./c//", "/b/c"),
            ("!a/../b", "b"),
            ("abc", "abc"),
        ] {
            assert_eq!(clean_path(input), want, "clean({input:?})");
        }
        assert!(matches!(clean_path("a/b/"), Cow::Borrowed("a/b")));
    }

    #[test]
    fn read_handles_crlf_bom_and_comments() {
        let got =
            read_ignore_file("\u{feff}# c\r\n  a/b/  \r\n #not-comment\r\n!  ./x/../y\r\n/\n");
        assert_eq!(got, ["a/b", "#not-comment", "!y", "/"]);
    }

    #[test]
    fn candidates_follow_buildkit_precedence() {
        assert_eq!(
            ignore_file_candidates("Dockerfile"),
            ["Dockerfile.dockerignore", ".dockerignore"]
        );
        assert_eq!(
            ignore_file_candidates("./build/prod.Dockerfile"),
            ["build/prod.Dockerfile.dockerignore", ".dockerignore"]
        );
        assert_eq!(ignore_file_candidates("-"), [".dockerignore"]);
        let present = ["build/x.dockerignore", ".dockerignore"];
        assert_eq!(
            select_ignore_file("build/x", |p| present.contains(&p)).as_deref(),
            Some("build/x.dockerignore")
        );
        assert_eq!(
            select_ignore_file("y", |p| present.contains(&p)).as_deref(),
            Some(".dockerignore")
        );
        assert_eq!(select_ignore_file("y", |_| false), None);
    }

    #[test]
    fn regexp_quirks_are_emulated() {
        assert!(m(&[r"a\d*"], "a123"));
        assert!(!m(&[r"a\d*"], "ab"));
        assert!(m(&["[[:upper:]]*.md"], "README.md"));
        assert!(!m(&["[[:upper:]]*.md"], "readme.md"));
        assert!(m(&["[^[:digit:]]?"], "ab"));
        assert!(!m(&["[^[:digit:]]?"], "1b"));
        // `^` is an anchor in a regexp-type pattern, a literal in an exact one.
        assert!(!m(&["a^*"], "a^b"));
        assert!(m(&["^a*"], "ab"));
        assert!(m(&["a^b"], "a^b"));
        // `.` in `**` does not cross newlines; `[^/]` does.
        assert!(!m(&["x/**/*.txt"], "x/a\nb/c.txt"));
        assert!(m(&["x/*.txt"], "x/a\nb.txt"));
        assert!(m(&[r"a\tb"], "a\tb"));
        assert!(m(&[r"\bfoo\b*"], "foo.c"));
    }

    #[test]
    fn unsupported_and_invalid_patterns_fail_when_tried() {
        for p in [r"a\x41", r"\pL*", "[*]", r"a\y", "[z-a]"] {
            let matcher = Matcher::new([p]).unwrap_or_else(|e| panic!("{p}: {e}"));
            let err = matcher.matches("a").unwrap_err();
            assert!(err.to_string().contains(&format!("{p:?}")), "{err}");
        }
        // An exception that is never tried never fails, as in Docker.
        let matcher = Matcher::new(["!x[z-a]"]).unwrap();
        assert!(!matcher.matches("x").unwrap());
    }

    #[test]
    fn syntax_errors_name_the_pattern() {
        let err = Matcher::new(["ok", "a["]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid .dockerignore pattern "a[": unterminated character class"#
        );
        let err = Matcher::new(["  !  "]).unwrap_err();
        assert!(matches!(err, IgnoreError::IllegalExclusion { .. }));
    }

    #[test]
    fn walk_matches_whole_path_evaluation() {
        let patterns = [
            "**",
            "!src",
            "src/**/*.o",
            "!src/keep/*.o",
            "*.md",
            "!README*",
        ];
        let matcher = Matcher::new(patterns).unwrap();
        let tree = [
            "README.md",
            "NOTES.md",
            "src",
            "src/a.c",
            "src/a.o",
            "src/keep",
            "src/keep/b.o",
            "src/keep/deep",
            "src/keep/deep/c.o",
            "target",
            "target/x",
        ];
        let mut records: Vec<(String, ParentMatches)> = Vec::new();
        for path in tree {
            let parent = match path.rsplit_once('/') {
                Some((dir, _)) => records
                    .iter()
                    .find(|(p, _)| p == dir)
                    .map(|(_, r)| r.clone())
                    .unwrap(),
                None => ParentMatches::default(),
            };
            let (walk, record) = matcher.matches_with_parent(path, &parent).unwrap();
            assert_eq!(walk, matcher.matches(path).unwrap(), "{path}");
            records.push((path.to_owned(), record));
        }
        let excluded: Vec<&str> = tree
            .iter()
            .copied()
            .filter(|p| matcher.matches(p).unwrap())
            .collect();
        assert_eq!(
            excluded,
            [
                "NOTES.md",
                "src/a.o",
                "src/keep/deep/c.o",
                "target",
                "target/x"
            ]
        );
    }

    #[test]
    fn walk_skips_patterns_the_parent_did_not_try_like_docker() {
        // At `a`, the third pattern is not tried (already excluded), so its record is a
        // miss, and at `a/b` only `a/b` itself is checked against it. BuildKit's context
        // transfer walks this way; whole-path evaluation also checks the parent `a`.
        let matcher = Matcher::new(["a", "!a/b", "a"]).unwrap();
        let (dir, rec) = matcher
            .matches_with_parent("a", &ParentMatches::default())
            .unwrap();
        assert!(dir);
        assert!(!matcher.matches_with_parent("a/b", &rec).unwrap().0);
        assert!(matcher.matches("a/b").unwrap());
    }

    #[test]
    fn excluded_dirs_are_skipped_only_when_no_exception_can_reach_inside() {
        let plain = Matcher::new(["build", "vendor", "!vendor/keep.txt"]).unwrap();
        assert!(plain.can_skip_excluded_dir("build"));
        assert!(!plain.can_skip_excluded_dir("vendor"));
        assert!(plain.can_skip_excluded_dir("vend"));
        assert!(Matcher::new(["x"]).unwrap().can_skip_excluded_dir("x"));
        let wild = Matcher::new(["build", "!**/*.keep"]).unwrap();
        assert!(!wild.can_skip_excluded_dir("build"));
    }

    #[test]
    fn parent_records_from_another_matcher_are_rejected() {
        let a = Matcher::new(["a", "b"]).unwrap();
        let b = Matcher::new(["a"]).unwrap();
        let (_, rec) = a
            .matches_with_parent("x", &ParentMatches::default())
            .unwrap();
        assert!(matches!(
            b.matches_with_parent("x/y", &rec),
            Err(IgnoreError::ParentMismatch { .. })
        ));
    }

    #[test]
    fn many_patterns_use_heap_records() {
        let mut patterns: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
        patterns.push("deep".into());
        let matcher = Matcher::new(&patterns).unwrap();
        let (hit, rec) = matcher
            .matches_with_parent("deep", &ParentMatches::default())
            .unwrap();
        assert!(hit && rec.pattern_matched(100) && !rec.pattern_matched(99));
        assert!(matcher.matches_with_parent("deep/x", &rec).unwrap().0);
    }

    #[test]
    fn long_paths_and_patterns_stay_linear() {
        let pattern = "*a".repeat(200) + "*b";
        let path = "a".repeat(5000);
        let matcher = Matcher::new([pattern.as_str()]).unwrap();
        let start = std::time::Instant::now();
        assert!(!matcher.matches(&path).unwrap());
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        let qs = "?".repeat(100_000);
        assert!(Matcher::new([qs.as_str()]).unwrap().matches("abc").is_ok());
    }

    #[test]
    fn invalid_utf8_paths_decode_like_go() {
        let matcher = Matcher::new(["a?b", "*[^é]"]).unwrap();
        assert!(matcher.matches(b"a\xffb").unwrap());
        // `*` steps over whole characters: no false hit in the middle of `é`.
        assert!(!Matcher::new(["*[^é]"]).unwrap().matches("é").unwrap());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn pieces() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just("*"),
                    Just("**"),
                    Just("?"),
                    Just("/"),
                    Just("["),
                    Just("]"),
                    Just("^"),
                    Just("-"),
                    Just("\\"),
                    Just("!"),
                    Just("a"),
                    Just("b"),
                    Just("."),
                    Just(":"),
                    Just("é"),
                    Just("\n"),
                    Just(" "),
                ],
                0..16,
            )
            .prop_map(|v| v.concat())
        }

        proptest! {
            #[test]
            fn random_patterns_never_panic(p in pieces(), q in pieces(), path in pieces()) {
                if let Ok(m) = Matcher::new([p.as_str(), q.as_str()]) {
                    let whole = m.matches(&path);
                    let (walk, _) = match m.matches_with_parent(&path, &ParentMatches::default()) {
                        Ok((b, r)) => (Ok(b), Some(r)),
                        Err(e) => (Err(e), None),
                    };
                    prop_assert_eq!(whole.is_ok(), walk.is_ok());
                    if let (Ok(a), Ok(b)) = (whole, walk) {
                        prop_assert_eq!(a, b);
                    }
                    let _ = m.is_excluded(&path);
                }
                let _ = read_ignore_file(&p);
            }
        }
    }
}
