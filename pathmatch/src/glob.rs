//! Go's `filepath.Match` (Unix): the glob syntax of COPY and ADD sources and of
//! `--exclude`, and the syntax check that `.dockerignore` patterns pass first.
//!
//! * `*` matches any run of characters without `/`; `?` one character but `/`.
//! * `[...]` and `[^...]` are character classes with ranges (`[a-z]`); inside a class
//!   `\` escapes, and an unescaped `-` or `]` where a character is expected is an error.
//! * `\` escapes the next character; a trailing `\` is an error.
//!
//! Paths and patterns are bytes: a path need not be UTF-8. Characters are decoded as Go
//! decodes them (an invalid byte is one U+FFFD), so `?` steps over a whole character.
//!
//! ```
//! use rbuild_pathmatch::glob;
//!
//! assert!(glob::matches(b"src/*.rs", b"src/main.rs"));
//! assert!(!glob::matches(b"src/*.rs", b"src/bin/main.rs"));
//! assert!(glob::check("[a-").is_err());
//! ```

use crate::decode;

/// A glob pattern is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// The pattern's brackets or escapes are malformed, as `filepath.Match` says.
    #[error("invalid glob pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Whether `s` holds glob syntax: an unescaped `*`, `?` or `[` (a `\` escapes the next
/// byte).
pub fn has_wildcards(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Checks a pattern's syntax as `filepath.Match` does: only brackets and escapes can be
/// malformed.
pub fn check(pattern: &str) -> Result<(), GlobError> {
    match syntax_error(pattern.as_bytes()) {
        None => Ok(()),
        Some(reason) => Err(GlobError::BadPattern {
            pattern: pattern.to_owned(),
            reason,
        }),
    }
}

/// What is wrong with `pattern`'s syntax, or `None` when it is a valid glob.
pub fn syntax_error(pattern: &[u8]) -> Option<&'static str> {
    let p = pattern;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'\\' => {
                if i + 1 >= p.len() {
                    return Some("trailing backslash escapes nothing");
                }
                i += 2;
            }
            b'[' => match class_end(p, i + 1) {
                Ok(end) => i = end,
                Err(reason) => return Some(reason),
            },
            _ => i += 1,
        }
    }
    None
}

/// The index just past the `]` of a class whose body starts at `i`, checking its syntax.
fn class_end(p: &[u8], mut i: usize) -> Result<usize, &'static str> {
    if p.get(i) == Some(&b'^') {
        i += 1;
    }
    let mut first = true;
    loop {
        if p.get(i) == Some(&b']') && !first {
            return Ok(i + 1);
        }
        first = false;
        i = class_char(p, i)?.1;
        if p.get(i) == Some(&b'-') {
            i = class_char(p, i + 1)?.1;
        }
        if i >= p.len() {
            return Err("unterminated character class");
        }
    }
}

/// One (possibly escaped) character of a class (Go's `getEsc`): its value and the next
/// index.
fn class_char(p: &[u8], i: usize) -> Result<(char, usize), &'static str> {
    let i = match p.get(i) {
        None => return Err("unterminated character class"),
        Some(b'\\') => i + 1,
        Some(b'-') => return Err("character class has '-' where a character is expected"),
        Some(b']') => return Err("character class has ']' where a character is expected"),
        Some(_) => i,
    };
    match decode(&p[i.min(p.len())..]) {
        Some((c, w)) => Ok((c, i + w)),
        None => Err("unterminated character class"),
    }
}

/// Whether `name` matches `pattern` as `filepath.Match` says; a malformed pattern (see
/// [`check`]) matches nothing. `*` and `?` never match `/`.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    if syntax_error(pattern).is_some() {
        return false;
    }
    matches_checked(pattern, name)
}

/// [`matches()`] for a pattern already checked: the work of one match, linear in the name
/// times the pattern at worst (one star is backtracked at a time).
pub fn matches_checked(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    if let Some((c, w)) = decode(&s[si..]) {
                        if c != '/' {
                            pi += 1;
                            si += w;
                            continue;
                        }
                    }
                }
                b'[' => {
                    if let Some((c, w)) = decode(&s[si..]) {
                        if let Some(end) = class_matches(p, pi + 1, c) {
                            pi = end;
                            si += w;
                            continue;
                        }
                    }
                }
                b'\\' => {
                    if si < s.len() && p.get(pi + 1) == Some(&s[si]) {
                        pi += 2;
                        si += 1;
                        continue;
                    }
                }
                c => {
                    if si < s.len() && s[si] == c {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
            }
        } else if si == s.len() {
            return true;
        }
        // Backtrack: let the last `*` take one more character, never a `/`.
        match star {
            Some((sp, ss)) if ss < s.len() && s[ss] != b'/' => {
                let next = ss + decode(&s[ss..]).map_or(1, |(_, w)| w);
                star = Some((sp, next));
                pi = sp + 1;
                si = next;
            }
            _ => return false,
        }
    }
}

/// Whether `c` is in the class whose body starts at `i`: the index past its `]` if so.
fn class_matches(p: &[u8], mut i: usize, c: char) -> Option<usize> {
    let negated = p.get(i) == Some(&b'^');
    if negated {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        if p.get(i) == Some(&b']') && !first {
            i += 1;
            break;
        }
        first = false;
        let (lo, n) = class_char(p, i).ok()?;
        i = n;
        let mut hi = lo;
        if p.get(i) == Some(&b'-') {
            let (h, n) = class_char(p, i + 1).ok()?;
            hi = h;
            i = n;
        }
        hit |= lo <= c && c <= hi;
    }
    (hit != negated).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        assert!(check(p).is_ok(), "{p}");
        matches(p.as_bytes(), s.as_bytes())
    }

    #[test]
    fn globs_follow_filepath_match() {
        for (p, s, want) in [
            ("*.txt", "a.txt", true),
            ("*.txt", "a.txt.bak", false),
            ("*.txt", "d/a.txt", false),
            ("dir/*/x", "dir/a/x", true),
            ("dir/*/x", "dir/a/b/x", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "a/c", false),
            ("[ab]?.c", "ax.c", true),
            ("[ab]?.c", "cx.c", false),
            ("[^ab]?.c", "cx.c", true),
            ("[a-c]*", "bzz", true),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("*a*b*", "xxaybzz", true),
            ("*", "", true),
            ("?", "é", true),
            ("[é]", "é", true),
            ("[^é]", "é", false),
        ] {
            assert_eq!(m(p, s), want, "{p} vs {s}");
        }
    }

    #[test]
    fn non_utf8_names_match_byte_by_byte() {
        assert!(matches(b"a?b", b"a\xffb"));
        assert!(matches(b"*.txt", b"\xfe\xff.txt"));
        assert!(!matches(b"a?b", b"a\xff\xffb"));
    }

    #[test]
    fn syntax_errors_name_the_pattern_and_the_fault() {
        for (p, reason) in [
            ("[a-", "unterminated character class"),
            ("ab\\", "trailing backslash escapes nothing"),
            (
                "[]",
                "character class has ']' where a character is expected",
            ),
            (
                "[]a]",
                "character class has ']' where a character is expected",
            ),
            (
                "[-a]",
                "character class has '-' where a character is expected",
            ),
            (
                "[a-]",
                "character class has ']' where a character is expected",
            ),
            ("[a", "unterminated character class"),
            ("[\\", "unterminated character class"),
        ] {
            let err = check(p).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid glob pattern {p:?}: {reason}")
            );
            assert!(!matches(p.as_bytes(), p.as_bytes()), "{p}");
        }
        assert!(check("[a]").is_ok());
        assert!(check("[^a-z\\]]x").is_ok());
    }

    #[test]
    fn wildcards_are_found_unless_escaped() {
        assert!(has_wildcards(b"a*"));
        assert!(has_wildcards(b"a[b]"));
        assert!(has_wildcards(b"?"));
        assert!(!has_wildcards(b"a\\*"));
        assert!(!has_wildcards(b"plain/path"));
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = "*a".repeat(200) + "*b";
        let name = "a".repeat(5000);
        let start = std::time::Instant::now();
        assert!(!m(&pattern, &name));
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
