//! Layer compression, in one place for every crate that reads or writes layers:
//!
//! * [`Compression`]: the kinds a layer or archive can have, found from a stream's magic
//!   number ([`Compression::detect`]) or from an OCI or Docker media type ([`media`]);
//! * [`media`]: the mapping between layer media types and compression;
//! * [`gzip`]: the parallel gzip writer every layer rbuild writes goes through;
//! * [`read`]: the decompressing reader.
//!
//! ```
//! use std::io::{Read, Write};
//! use rbuild_compress::{Compression, ParallelGzip, decompress};
//!
//! let mut gz = ParallelGzip::new(Vec::new(), 2);
//! gz.write_all(b"a layer").unwrap();
//! let blob = gz.finish().unwrap();
//! assert_eq!(Compression::detect(&blob), Compression::Gzip);
//! let mut back = Vec::new();
//! decompress(&blob[..], None).unwrap().read_to_end(&mut back).unwrap();
//! assert_eq!(back, b"a layer");
//! ```
//!
//! The crate depends on no other rbuild crate.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod gzip;
pub mod media;
pub mod read;

pub use gzip::ParallelGzip;
pub use media::{ManifestFormat, MediaTypeError};
pub use read::{Decoder, decompress};

/// How a layer, archive or stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (also several concatenated gzip members).
    Gzip,
    /// zstd.
    Zstd,
    /// bzip2: recognised and read (ADD of a local archive), never written.
    Bzip2,
    /// xz: recognised and read (ADD of a local archive), never written.
    Xz,
}

impl Compression {
    /// The compression a stream starting with `head` has, from its magic number: gzip
    /// (`1f 8b`), zstd (`28 b5 2f fd`), bzip2 (`BZh`), xz (`fd 37 7a 58 5a 00`); anything
    /// else (a tar, too few bytes) is [`Compression::None`].
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else {
            Compression::None
        }
    }

    /// The name used in options and messages: `uncompressed`, `gzip`, `zstd`, `bzip2`, `xz`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_are_recognised() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(Compression::detect(b"ustar"), Compression::None);
        assert_eq!(Compression::detect(b"bin/"), Compression::None);
        // Too short to tell: read as it is.
        assert_eq!(Compression::detect(&[0x1f]), Compression::None);
        assert_eq!(Compression::detect(&[]), Compression::None);
    }

    #[test]
    fn names_are_the_option_values() {
        let names: Vec<String> = [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Bzip2,
            Compression::Xz,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(names, ["uncompressed", "gzip", "zstd", "bzip2", "xz"]);
    }
}
