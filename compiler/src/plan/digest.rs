//! Canonical encoding and digests of op definitions.
//!
//! Every op definition is written by an [`Encoder`] as a sequence of length-prefixed,
//! named fields after a header holding the schema version and the op type, then hashed
//! with SHA-256. The encoding depends only on the values written, never on `Debug`
//! output, serde field order or `std::hash`, so digests are stable across builds,
//! platforms and compiler versions. Changing what an op writes means bumping
//! [`SCHEMA_VERSION`].

use std::fmt;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// The version of the canonical encoding; it starts every digested message.
pub const SCHEMA_VERSION: u32 = 1;

/// A SHA-256 digest, shown as `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Digest {
    /// The first 12 hex digits, for people.
    pub fn short(&self) -> String {
        self.0[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Writes a canonical, length-prefixed encoding and hashes it.
#[derive(Debug, Clone)]
pub struct Encoder {
    hasher: Sha256,
}

impl Encoder {
    /// Starts a message of type `kind` (`"exec"`, `"copy"`, `"op"`, ...).
    pub fn new(kind: &str) -> Self {
        let mut e = Encoder {
            hasher: Sha256::new(),
        };
        e.raw(b"rbuild-plan");
        e.hasher.update(SCHEMA_VERSION.to_be_bytes());
        e.raw(kind.as_bytes());
        e
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_be_bytes());
        self.hasher.update(bytes);
    }

    /// Writes a named string field.
    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        self.raw(name.as_bytes());
        self.hasher.update([b's']);
        self.raw(value.as_bytes());
        self
    }

    /// Writes a named optional string field (absent and empty differ).
    pub fn opt(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        self.raw(name.as_bytes());
        match value {
            None => self.hasher.update([b'n']),
            Some(v) => {
                self.hasher.update([b's']);
                self.raw(v.as_bytes());
            }
        }
        self
    }

    /// Writes a named integer field.
    pub fn u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.raw(name.as_bytes());
        self.hasher.update([b'u']);
        self.hasher.update(value.to_be_bytes());
        self
    }

    /// Writes a named boolean field.
    pub fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.raw(name.as_bytes());
        self.hasher.update([b'b', u8::from(value)]);
        self
    }

    /// Writes a named list of strings (its length first).
    pub fn list<S: AsRef<str>>(&mut self, name: &str, values: &[S]) -> &mut Self {
        self.raw(name.as_bytes());
        self.hasher.update([b'l']);
        self.hasher.update((values.len() as u64).to_be_bytes());
        for v in values {
            self.raw(v.as_ref().as_bytes());
        }
        self
    }

    /// Writes a named digest.
    pub fn digest(&mut self, name: &str, value: &Digest) -> &mut Self {
        self.raw(name.as_bytes());
        self.hasher.update([b'd']);
        self.hasher.update(value.0);
        self
    }

    /// Opens a nested group (a list element, a mount): written as a marker and a count.
    pub fn group(&mut self, name: &str, count: usize) -> &mut Self {
        self.raw(name.as_bytes());
        self.hasher.update([b'g']);
        self.hasher.update((count as u64).to_be_bytes());
        self
    }

    /// Finishes the message.
    pub fn finish(&self) -> Digest {
        Digest(self.hasher.clone().finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixes_separate_fields() {
        let a = Encoder::new("t").str("a", "bc").str("d", "").finish();
        let b = Encoder::new("t").str("a", "b").str("cd", "").finish();
        assert_ne!(a, b);
        let c = Encoder::new("t").opt("x", None).finish();
        let d = Encoder::new("t").opt("x", Some("")).finish();
        assert_ne!(c, d);
        let e = Encoder::new("t").list("l", &["a", "b"]).finish();
        let f = Encoder::new("t").list("l", &["ab"]).finish();
        assert_ne!(e, f);
    }

    #[test]
    fn digest_is_stable() {
        // A fixed message has a fixed digest: this guards the encoding against accidental
        // changes (bump SCHEMA_VERSION and update this value when it changes on purpose).
        let d = Encoder::new("exec")
            .list("argv", &["/bin/sh", "-c", "true"])
            .finish();
        // Checked independently: sha256 of the byte layout described in the module doc.
        assert_eq!(
            d.to_string(),
            "sha256:34dbc53143d7fc164796bb0a9e4f7954432e08bbc4cdefe166f616b25d89fe95"
        );
        assert_eq!(d.short(), d.to_string()[7..19]);
    }
}
