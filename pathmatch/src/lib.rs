//! Path matching as Docker and BuildKit do it, over slash-separated paths given as bytes:
//!
//! * [`glob`]: Go's `filepath.Match`, the glob syntax of COPY and ADD sources;
//! * [`ignore`]: `.dockerignore` files and their rules (exceptions, `**`, parents, the
//!   pattern that decides), used for the build context and `COPY --exclude`;
//! * [`pattern`]: the engine that compiles one ignore pattern the way Docker translates it
//!   into a Go regular expression, and runs it;
//! * [`clean`]: lexical path cleaning (Go's `filepath.Clean`).
//!
//! The crate has no I/O and depends on no other rbuild crate.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clean;
pub mod glob;
pub mod ignore;
pub mod pattern;

pub use clean::clean_path;

/// Decodes one character as Go does: an invalid byte is U+FFFD of width 1.
pub(crate) fn decode(s: &[u8]) -> Option<(char, usize)> {
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
