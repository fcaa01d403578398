//! The pattern engine behind `.dockerignore` matching: Docker turns each pattern into a Go
//! regular expression, except that patterns without wildcards compare as strings,
//! `prefix**` as a prefix test and `**suffix` as a suffix test. [`Compiled::new`] makes the
//! same classification, and compiles the regular-expression case into a small token
//! program run by a position-set (Thompson) simulation: linear in the path, no recursion,
//! no backtracking blow-up on hostile patterns, and no allocation for ordinary path
//! lengths. The ignore-file rules (which patterns apply, exceptions, parents) are in
//! [`crate::ignore`]; this module only answers "does this one pattern match this path".
//!
//! Neither `globset` nor `regex` is used: `globset` has gitignore-style rules (its `**`,
//! classes and escapes differ from Docker's), and generating a `regex` pattern would need
//! the same translation of Go-regexp quirks done here anyway (Go's `\d` is ASCII-only,
//! `.` stops at newlines, `^` mid-pattern is an anchor because Docker does not escape it),
//! plus a compiled automaton per pattern that costs more to build than these patterns do to
//! run.
//!
//! Go-regexp constructs that a pattern can smuggle through `\` or `[` and that have no glob
//! meaning are emulated where cheap (`\d \s \w \D \S \W`, `\b \B \A \z`, `\t \n` and
//! the other control escapes, POSIX classes such as `[[:alpha:]]`, `^` as a start anchor)
//! and otherwise make the pattern [`Compiled::hit`] fail with a reason: octal and `\x`
//! escapes, `\p{..}` Unicode classes, `\Q..\E`, and `*` or `?` inside a character class
//! (which Docker turns into a different, broken expression).

use crate::decode;

/// How a pattern is evaluated; Docker classifies patterns the same way, and the
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
    /// Passed the glob syntax check but cannot be evaluated: why.
    Invalid(String),
}

/// A pattern passed the glob syntax check but Docker's regular-expression compiler would
/// reject it, so it cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern and why it cannot be evaluated.
    #[error("pattern {pattern:?} cannot be evaluated: {reason}")]
    Unsupported {
        /// The pattern's text.
        pattern: String,
        /// What Docker's translation cannot compile.
        reason: String,
    },
}

/// One pattern (cleaned, without its `!`, its glob syntax already checked), compiled once.
#[derive(Debug, Clone)]
pub struct Compiled {
    text: String,
    kind: Kind,
}

impl Compiled {
    /// Classifies and compiles `text`.
    pub fn new(text: &str) -> Compiled {
        Compiled {
            text: text.to_owned(),
            kind: classify(text),
        }
    }

    /// The pattern's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Docker's classification of the pattern.
    pub fn match_kind(&self) -> MatchKind {
        match self.kind {
            Kind::Exact => MatchKind::Exact,
            Kind::Prefix => MatchKind::Prefix,
            Kind::Suffix => MatchKind::Suffix,
            Kind::Program(_) | Kind::Invalid(_) => MatchKind::Wildcard,
        }
    }

    /// Whether the pattern matches the whole of `path`; an error when the pattern cannot be
    /// evaluated (Docker's regular-expression compiler rejects it).
    pub fn hit(&self, path: &[u8]) -> Result<bool, PatternError> {
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
                return Err(PatternError::Unsupported {
                    pattern: self.text.clone(),
                    reason: reason.clone(),
                });
            }
        })
    }
}

fn pop(rest: &mut &str) -> Option<char> {
    let c = rest.chars().next()?;
    *rest = &rest[c.len_utf8()..];
    Some(c)
}

/// Classifies a (syntax-checked) pattern the way Docker does and compiles the
/// regular-expression case.
fn classify(text: &str) -> Kind {
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

    fn hit(pattern: &str, path: &str) -> bool {
        Compiled::new(pattern).hit(path.as_bytes()).unwrap()
    }

    #[test]
    fn patterns_are_classified_as_docker_does() {
        for (p, kind) in [
            ("a/b", MatchKind::Exact),
            ("a^b", MatchKind::Exact),
            ("dir/**", MatchKind::Prefix),
            ("**/x.o", MatchKind::Suffix),
            ("**", MatchKind::Suffix),
            ("*.o", MatchKind::Wildcard),
            ("a/**/b", MatchKind::Wildcard),
            ("[z-a]", MatchKind::Wildcard),
        ] {
            assert_eq!(Compiled::new(p).match_kind(), kind, "{p}");
        }
        assert!(hit("dir/**", "dir/x/y"));
        assert!(hit("**/x.o", "x.o"));
        assert!(hit("**/x.o", "a/b/x.o"));
        assert!(!hit("**/x.o", "a/bx.o"));
        assert!(hit("a/**/b", "a/b"));
        assert!(hit("a/**/b", "a/x/y/b"));
    }

    #[test]
    fn regexp_quirks_are_emulated() {
        assert!(hit(r"a\d*", "a123"));
        assert!(!hit(r"a\d*", "ab"));
        assert!(hit("[[:upper:]]*.md", "README.md"));
        assert!(!hit("[[:upper:]]*.md", "readme.md"));
        assert!(hit("[^[:digit:]]?", "ab"));
        assert!(!hit("[^[:digit:]]?", "1b"));
        // `^` is an anchor in a regexp-type pattern, a literal in an exact one.
        assert!(!hit("a^*", "a^b"));
        assert!(hit("^a*", "ab"));
        assert!(hit("a^b", "a^b"));
        // `.` in `**` does not cross newlines; `[^/]` does.
        assert!(!hit("x/**/*.txt", "x/a\nb/c.txt"));
        assert!(hit("x/*.txt", "x/a\nb.txt"));
        assert!(hit(r"a\tb", "a\tb"));
        assert!(hit(r"\bfoo\b*", "foo.c"));
    }

    #[test]
    fn constructs_docker_cannot_compile_fail_with_a_reason() {
        for (p, reason) in [
            (r"a\x41", "has a regular-expression meaning"),
            (r"\pL*", "has a regular-expression meaning"),
            ("[*]", "inside a character class"),
            (r"a\y", "invalid escape sequence"),
            ("[z-a]", "invalid character class range"),
        ] {
            let err = Compiled::new(p).hit(b"a").unwrap_err().to_string();
            assert!(err.contains(reason), "{p}: {err}");
            assert!(err.contains(&format!("{p:?}")), "{err}");
        }
    }

    #[test]
    fn invalid_utf8_paths_decode_like_go() {
        assert!(Compiled::new("a?b").hit(b"a\xffb").unwrap());
        // `*` steps over whole characters: no false hit in the middle of `é`.
        assert!(!hit("*[^é]", "é"));
    }

    #[test]
    fn long_paths_and_patterns_stay_linear() {
        let pattern = "*a".repeat(200) + "*b";
        let path = "a".repeat(5000);
        let start = std::time::Instant::now();
        assert!(!hit(&pattern, &path));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        let qs = "?".repeat(100_000);
        assert!(Compiled::new(&qs).hit(b"abc").is_ok());
    }
}
