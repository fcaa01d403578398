//! The decompressing reader: a layer or archive stream in, its uncompressed bytes out.

use std::io::{self, BufRead, BufReader, Read};

use crate::Compression;

/// The read buffer put in front of a compressed stream.
const BUFFER: usize = 256 * 1024;

/// A reader of the uncompressed bytes of a stream compressed with one [`Compression`].
/// It is `Send` when its source is.
pub enum Decoder<R: BufRead> {
    /// Not compressed: the source as it is.
    Plain(R),
    /// gzip, every member of a multi-member stream.
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    /// zstd, every frame.
    Zstd(zstd::stream::read::Decoder<'static, R>),
    /// bzip2, every stream.
    Bzip2(bzip2::bufread::MultiBzDecoder<R>),
    /// xz, every stream.
    Xz(liblzma::bufread::XzDecoder<R>),
}

impl<R: BufRead> Decoder<R> {
    /// A decoder of `kind` over `reader`.
    pub fn new(reader: R, kind: Compression) -> io::Result<Decoder<R>> {
        Ok(match kind {
            Compression::None => Decoder::Plain(reader),
            Compression::Gzip => Decoder::Gzip(flate2::bufread::MultiGzDecoder::new(reader)),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(reader)?),
            Compression::Bzip2 => Decoder::Bzip2(bzip2::bufread::MultiBzDecoder::new(reader)),
            Compression::Xz => Decoder::Xz(liblzma::bufread::XzDecoder::new_multi_decoder(reader)),
        })
    }

    /// The compression being decoded.
    pub fn compression(&self) -> Compression {
        match self {
            Decoder::Plain(_) => Compression::None,
            Decoder::Gzip(_) => Compression::Gzip,
            Decoder::Zstd(_) => Compression::Zstd,
            Decoder::Bzip2(_) => Compression::Bzip2,
            Decoder::Xz(_) => Compression::Xz,
        }
    }
}

impl<R: BufRead> std::fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Decoder").field(&self.compression()).finish()
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
            Decoder::Bzip2(r) => r.read(buf),
            Decoder::Xz(r) => r.read(buf),
        }
    }
}

/// A reader of the uncompressed bytes inside `reader`: the compression comes from
/// `media_type` when given and it names one, else from the stream's magic number
/// ([`Compression::detect`]).
pub fn decompress<R: Read>(
    reader: R,
    media_type: Option<&str>,
) -> io::Result<Decoder<BufReader<R>>> {
    let mut buf = BufReader::with_capacity(BUFFER, reader);
    let kind = match media_type.and_then(Compression::from_media_type) {
        Some(kind) => kind,
        None => Compression::detect(buf.fill_buf()?),
    };
    Decoder::new(buf, kind)
}

/// A reader of the uncompressed bytes of `reader` (buffered already), the compression
/// found from its magic number.
pub fn detect_and_decode<R: BufRead>(mut reader: R) -> io::Result<Decoder<R>> {
    let kind = Compression::detect(reader.fill_buf()?);
    Decoder::new(reader, kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const DATA: &[u8] = b"the bytes of a layer, the bytes of a layer, the bytes of a layer";

    fn encoded(kind: Compression) -> Vec<u8> {
        match kind {
            Compression::None => DATA.to_vec(),
            Compression::Gzip => {
                // Two members: a multi-member stream reads as one.
                let mut out = Vec::new();
                for part in [&DATA[..10], &DATA[10..]] {
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    enc.write_all(part).unwrap();
                    out.extend(enc.finish().unwrap());
                }
                out
            }
            Compression::Zstd => zstd::encode_all(DATA, 3).unwrap(),
            Compression::Bzip2 => {
                let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                enc.write_all(DATA).unwrap();
                enc.finish().unwrap()
            }
            Compression::Xz => {
                let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
                enc.write_all(DATA).unwrap();
                enc.finish().unwrap()
            }
        }
    }

    #[test]
    fn every_kind_is_decoded_from_its_magic_number() {
        for kind in [
            Compression::None,
            Compression::Gzip,
            Compression::Zstd,
            Compression::Bzip2,
            Compression::Xz,
        ] {
            let blob = encoded(kind);
            let mut r = decompress(&blob[..], None).unwrap();
            assert_eq!(r.compression(), kind);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, DATA, "{kind}");
            let mut back = Vec::new();
            detect_and_decode(&blob[..])
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, DATA, "{kind}");
        }
    }

    #[test]
    fn a_known_media_type_decides_over_the_magic_number() {
        // A layer that says it is a plain tar is read as it is, whatever its first bytes.
        let blob = encoded(Compression::Gzip);
        let r = decompress(&blob[..], Some("application/vnd.oci.image.layer.v1.tar")).unwrap();
        assert_eq!(r.compression(), Compression::None);
        // An unknown media type falls back to the magic number.
        let r = decompress(&blob[..], Some("application/octet-stream")).unwrap();
        assert_eq!(r.compression(), Compression::Gzip);
    }

    #[test]
    fn a_corrupt_stream_fails_to_read() {
        let mut blob = encoded(Compression::Gzip);
        let n = blob.len();
        blob[n - 6] ^= 0xff;
        let mut back = Vec::new();
        assert!(
            decompress(&blob[..], None)
                .unwrap()
                .read_to_end(&mut back)
                .is_err()
        );
    }

    #[test]
    fn decoders_of_send_sources_are_send() {
        fn send<T: Send>(_: &T) {}
        let blob = encoded(Compression::Zstd);
        send(&decompress(&blob[..], None).unwrap());
    }
}
