//! Content digests: the `sha256:<64 hex>` names of blobs, images and build steps, and
//! hashing adapters.
//!
//! One type names every sha256 digest rbuild handles: the store's blobs, image ids,
//! layer diff ids, and the compiler's op digests. It parses only the canonical text
//! (`sha256:` and 64 lowercase hex digits), prints it back unchanged, and serializes as that
//! text, so records written with plain strings read back as digests.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Why a string is not a digest the store accepts.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The algorithm is not `sha256`.
    #[error("digest {digest:?} uses an unsupported algorithm (only sha256 is supported)")]
    UnsupportedAlgorithm {
        /// The rejected digest text.
        digest: String,
    },
    /// The encoded part is not 64 lowercase hexadecimal digits.
    #[error("digest {digest:?} is not sha256 followed by 64 lowercase hexadecimal digits")]
    Malformed {
        /// The rejected digest text.
        digest: String,
    },
}

/// A validated sha256 digest.
///
/// The only way to build one is from 32 hash bytes or from text that is exactly `sha256:`
/// followed by 64 lowercase hexadecimal digits, so a `Digest` is always safe to use as a file
/// name: it can never contain `/`, `..` or anything else a hostile string could smuggle in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Parses 64 lowercase hexadecimal digits (no `sha256:` prefix).
    pub fn from_hex(hex_digits: &str) -> Result<Digest, DigestError> {
        let malformed = || DigestError::Malformed {
            digest: hex_digits.to_string(),
        };
        if hex_digits.len() != 64
            || !hex_digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(malformed());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| malformed())?;
        Ok(Digest(bytes))
    }

    /// The 64 hexadecimal digits, without the algorithm.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hexadecimal digits: the short image id docker shows.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest whose 32 hash bytes are `bytes` (a hash computed elsewhere).
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        match s.split_once(':') {
            Some(("sha256", hex_digits)) => {
                Digest::from_hex(hex_digits).map_err(|_| DigestError::Malformed {
                    digest: s.to_string(),
                })
            }
            Some(_) => Err(DigestError::UnsupportedAlgorithm {
                digest: s.to_string(),
            }),
            None => Err(DigestError::Malformed {
                digest: s.to_string(),
            }),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(feature = "oci-spec")]
impl From<Digest> for oci_spec::image::Digest {
    fn from(d: Digest) -> oci_spec::image::Digest {
        let sha = oci_spec::image::Sha256Digest::from_str(&d.hex())
            .expect("64 lowercase hex digits are a valid sha256 digest");
        sha.into()
    }
}

#[cfg(feature = "oci-spec")]
impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;

    fn try_from(d: &oci_spec::image::Digest) -> Result<Digest, DigestError> {
        Digest::from_str(d.as_ref())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(d)?;
        Digest::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// A running sha256 computation.
#[derive(Clone, Default)]
pub struct Hasher {
    state: Sha256,
    len: u64,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").field("len", &self.len).finish()
    }
}

impl Hasher {
    /// A new, empty computation.
    pub fn new() -> Hasher {
        Hasher::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.state.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// How many bytes went in.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte went in yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest of everything that went in.
    pub fn finish(self) -> Digest {
        Digest(self.state.finalize().into())
    }
}

/// A writer that hashes everything passed through it to an inner writer.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Returns the inner writer, the digest and the length of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes everything read through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Returns the inner reader, the digest and the length of what was read.
    pub fn finish(self) -> (R, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let text = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d: Digest = text.parse().unwrap();
        assert_eq!(d.to_string(), text);
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(Digest::from_bytes(*d.as_bytes()), d);
    }

    #[cfg(feature = "oci-spec")]
    #[test]
    fn converts_to_and_from_oci_spec() {
        let d = Digest::of(b"");
        let oci: oci_spec::image::Digest = d.into();
        assert_eq!(oci.as_ref(), d.to_string());
        assert_eq!(Digest::try_from(&oci).unwrap(), d);
    }

    #[test]
    fn serializes_as_its_text() {
        let d = Digest::of(b"");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let err = serde_json::from_str::<Digest>("\"sha256:../x\"").unwrap_err();
        assert!(err.to_string().contains("sha256:../x"), "{err}");
    }

    #[test]
    fn rejects_anything_that_could_form_a_path() {
        for bad in [
            "",
            "sha256:",
            "sha256:../../../../etc/passwd",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b/../855",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} was accepted");
        }
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn hashing_adapters_agree() {
        let data = b"hello world".repeat(1000);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (out, d, n) = w.finish();
        assert_eq!(out, data);
        assert_eq!(n, data.len() as u64);
        assert_eq!(d, Digest::of(&data));
        let mut r = HashingReader::new(&data[..]);
        io::copy(&mut r, &mut io::sink()).unwrap();
        assert_eq!(r.finish().1, d);
    }
}
