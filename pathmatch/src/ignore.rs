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
//! use rbuild_pathmatch::ignore::{read_ignore_file, Matcher};
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
//! Each pattern is checked with Go's `filepath.Match` syntax ([`crate::glob`]) and compiled
//! once by the pattern engine ([`crate::pattern`]); this module holds the rules of the
//! file: reading it, choosing which file applies, and the order patterns apply in.
//!
//! Docker turns each pattern into a Go regular expression. A deliberate choice where its
//! behaviour is an accident of that translation:
//!
//! * A pattern that passes Go's `filepath.Match` syntax check but not the regular-expression
//!   compiler (a reversed range such as `[Local-Only]`, an invalid escape such as `\y`) is
//!   accepted by [`Matcher::new`] and fails every evaluation that tries it, naming the
//!   pattern: exactly Docker's behaviour (its build fails on the first context path, unless
//!   the pattern is an exception that is never tried). Rejecting it up front would refuse
//!   contexts that Docker builds. The constructs the engine emulates and those it rejects
//!   are listed in [`crate::pattern`].

pub use crate::clean::clean_path;
use crate::clean::parent_dir;
use crate::glob;
pub use crate::pattern::MatchKind;
use crate::pattern::{Compiled, PatternError};

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

/// One compiled pattern of a [`Matcher`].
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    exclusion: bool,
    compiled: Compiled,
}

impl Pattern {
    /// The pattern as given (trimmed), with its `!`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The cleaned pattern without its `!`.
    pub fn text(&self) -> &str {
        self.compiled.text()
    }

    /// True for an exception (`!`) pattern.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// How the pattern is evaluated (Docker's classification).
    pub fn match_kind(&self) -> MatchKind {
        self.compiled.match_kind()
    }

    /// Whether this pattern alone matches `path` (not its parents).
    fn hit(&self, path: &[u8]) -> Result<bool, IgnoreError> {
        self.compiled
            .hit(path)
            .map_err(
                |PatternError::Unsupported { reason, .. }| IgnoreError::BadPattern {
                    pattern: self.source.clone(),
                    reason,
                },
            )
    }
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
            if let Some(reason) = glob::syntax_error(text.as_bytes()) {
                return Err(IgnoreError::BadPattern {
                    pattern: source.to_owned(),
                    reason: reason.to_owned(),
                });
            }
            out.exclusions |= exclusion;
            out.wild_exclusions |= exclusion && text.contains(['*', '?', '[', '\\']);
            out.patterns.push(Pattern {
                source: source.to_owned(),
                exclusion,
                compiled: Compiled::new(text),
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
                && p.text()
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

/// `a`, `a/b`, `a/b/c` for `a/b/c` (and ``, `/` for `/`).
fn prefixes(dir: &[u8]) -> impl Iterator<Item = &[u8]> {
    dir.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'/')
        .map(move |(i, _)| &dir[..i])
        .chain(std::iter::once(dir))
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
