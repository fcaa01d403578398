//! `.dockerignore` reading and matching never panics, cleaning is idempotent, matching is
//! deterministic, the context root is never excluded, and a directory that the walker may
//! skip (`can_skip_excluded_dir`) has every path below it excluded.
//!
//! A pattern may fail when it is first used (a bad character range), as in Docker.
//!
//! Input: the ignore file's text, then a NUL byte, then one path to evaluate per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_pathmatch::clean_path;
use rbuild_pathmatch::ignore::{Matcher, ParentMatches, read_ignore_file};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (ignore, paths) = text.split_once('\0').unwrap_or((text, ""));
    let patterns = read_ignore_file(ignore);
    assert_eq!(patterns, read_ignore_file(ignore), "reading is not stable");
    for p in &patterns {
        let once = clean_path(p);
        assert_eq!(clean_path(&once), once, "cleaning {p:?} is not idempotent");
    }
    let Ok(matcher) = Matcher::new(&patterns) else {
        return;
    };
    for pattern in matcher.patterns() {
        let _ = (pattern.source(), pattern.text(), pattern.match_kind());
    }
    assert!(
        !matcher.is_excluded(".").unwrap_or(true),
        "the root is excluded"
    );
    assert!(
        !matcher.is_excluded("").unwrap_or(true),
        "the root is excluded"
    );
    for path in paths.lines().take(16) {
        let first = matcher.is_excluded(path);
        assert_eq!(
            first,
            matcher.is_excluded(path),
            "matching {path:?} is not stable"
        );
        let clean = clean_path(path);
        if clean == "." || clean.starts_with('/') || clean.starts_with("..") {
            continue;
        }
        // Walk the path from the root as the context walker does.
        let mut parent = ParentMatches::default();
        let mut prefix = String::new();
        let mut skipped_at: Option<String> = None;
        for comp in clean.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
            // A pattern is compiled when first used, as Docker does: a bad character range
            // (`[z-a]`) fails then, in both ways of matching alike.
            let walked = matcher.matches_with_parent(prefix.as_bytes(), &parent);
            let direct = matcher.matches(prefix.as_bytes());
            let (Ok((excluded, record)), Ok(direct)) = (walked, direct) else {
                break;
            };
            if let Some(dir) = &skipped_at {
                assert!(
                    direct,
                    "{dir:?} is excluded and may be skipped, but {prefix:?} below it is not excluded"
                );
            } else if excluded && direct && matcher.can_skip_excluded_dir(&prefix) {
                skipped_at = Some(prefix.clone());
            }
            parent = record;
        }
    }
});
