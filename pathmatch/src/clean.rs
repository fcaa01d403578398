//! Lexical cleaning of slash-separated paths, as Go's `filepath.Clean` does on Unix.

use std::borrow::Cow;

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

pub(crate) fn clean_bytes(b: &[u8]) -> Cow<'_, [u8]> {
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

/// Go's `filepath.Dir(path)`, or `None` when that is `.`.
pub(crate) fn parent_dir(path: &[u8]) -> Option<Cow<'_, [u8]>> {
    let i = path.iter().rposition(|&b| b == b'/')?;
    let dir = clean_bytes(&path[..=i]);
    (&*dir != b".").then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn parent_dirs_are_cleaned_and_dot_is_none() {
        assert_eq!(parent_dir(b"a/b//c").as_deref(), Some(&b"a/b"[..]));
        assert_eq!(parent_dir(b"a").as_deref(), None);
        assert_eq!(parent_dir(b"./a").as_deref(), None);
        assert_eq!(parent_dir(b"/a").as_deref(), Some(&b"/"[..]));
    }
}
