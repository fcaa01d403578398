//! `import`: a root file system (directory or tarball) becomes a one-layer image.
//!
//! The same input gives the same image: the tar of a directory is deterministic (see
//! [`layer::write_dir_tar`]), a tarball is stored as it is, and the image's creation time
//! is `SOURCE_DATE_EPOCH` when given (file times then clamped to it), else the newest
//! modification time among the files, never the time of the import.

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, MediaType};
use rbuild_compress::{Compression, Decoder};
use rbuild_tarlimits::{LimitError, Limits};
use serde_json::json;

use crate::layer::{self, LayerError, LayerWriter, TarOptions};
use crate::store::{Store, StoreError};
use rbuild_digest::Digest;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The source.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The directory could not be turned into a layer.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The source is compressed in a format rbuild does not read.
    #[error(
        "{path} is compressed with {format}, which is not supported (use plain tar, gzip or zstd)"
    )]
    UnsupportedCompression {
        /// The source.
        path: PathBuf,
        /// The format's name.
        format: &'static str,
    },
    /// The tar archive crossed one of [`ImportOptions::limits`].
    #[error("{path}: {limit}")]
    Limit {
        /// The source.
        path: PathBuf,
        /// The limit it crossed.
        limit: LimitError,
    },
    /// The source is not a tar archive.
    #[error("{path} is not a tar archive")]
    NotTar {
        /// The source.
        path: PathBuf,
    },
    /// The layer could not be written to the store.
    #[error("cannot write the layer of {path} to the store")]
    WriteLayer {
        /// The source.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings of an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The image's creation time, seconds since the epoch (`SOURCE_DATE_EPOCH`); `None`:
    /// the newest modification time of the files imported.
    pub created: Option<i64>,
    /// Clamp file mtimes of a directory source to at most this (`SOURCE_DATE_EPOCH`).
    pub clamp_mtime: Option<u64>,
    /// The history comment, e.g. `imported from rootfs.tar`.
    pub comment: String,
    /// Threads for gzip compression.
    pub threads: usize,
    /// The image's platform (default: the host's).
    pub platform: rbuild_compiler::plan::Platform,
    /// What a tar archive may hold (its uncompressed size, entries, names).
    pub limits: Limits,
}

impl ImportOptions {
    /// Options for the host platform, created at `created` (`None`: at the newest file's
    /// modification time).
    pub fn new(created: Option<i64>, comment: impl Into<String>) -> ImportOptions {
        ImportOptions {
            created,
            clamp_mtime: None,
            comment: comment.into(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            platform: rbuild_compiler::plan::Platform::host(),
            limits: Limits::default(),
        }
    }
}

/// The image an import made.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The manifest descriptor (not yet tagged).
    pub manifest: Descriptor,
    /// The config digest.
    pub config: Digest,
    /// The layer's compressed digest.
    pub layer: Digest,
    /// The digest of the uncompressed layer tar.
    pub diff_id: Digest,
    /// The compressed layer size.
    pub layer_size: u64,
}

fn layer_sink(store: &Store, options: &ImportOptions) -> Result<LayerWriter, ImportError> {
    Ok(LayerWriter::new(store, options.threads)?)
}

/// Imports the tree under `dir` as a one-layer image.
pub fn import_dir(
    store: &Store,
    dir: &Path,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    std::fs::read_dir(dir).map_err(|source| ImportError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let sink = layer_sink(store, options)?;
    let tar_options = TarOptions {
        clamp_mtime: options.clamp_mtime,
        exclude: vec![store.root().to_path_buf()],
    };
    let (sink, newest) = layer::write_dir_tar_newest(dir, sink, tar_options)?;
    finish(store, sink, options, newest)
}

/// Imports a tar archive (plain, gzip or zstd, detected from its content) read from `input`,
/// checked against [`ImportOptions::limits`] as it streams; `path` names it in errors.
pub fn import_tar(
    store: &Store,
    path: &Path,
    input: impl Read,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let rerr = |source: io::Error| match LimitError::of(&source) {
        Some(limit) => ImportError::Limit {
            path: path.to_path_buf(),
            limit: limit.clone(),
        },
        None => ImportError::Read {
            path: path.to_path_buf(),
            source,
        },
    };
    let mut input = BufReader::with_capacity(1 << 20, input);
    let head = io::BufRead::fill_buf(&mut input).map_err(rerr)?.to_vec();
    let tar = match Compression::detect(&head) {
        c @ (Compression::Bzip2 | Compression::Xz) => {
            return Err(ImportError::UnsupportedCompression {
                path: path.into(),
                format: c.name(),
            });
        }
        c => Decoder::new(input, c).map_err(rerr)?,
    };
    let mut tar = TarTimes::new(options.limits.reader(tar));
    let mut first = vec![0u8; 512];
    let mut got = 0;
    while got < first.len() {
        let n = tar.read(&mut first[got..]).map_err(rerr)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got < 512 || !looks_like_tar_header(&first) {
        return Err(ImportError::NotTar {
            path: path.to_path_buf(),
        });
    }
    let mut sink = layer_sink(store, options)?;
    let werr = |source| ImportError::WriteLayer {
        path: path.to_path_buf(),
        source,
    };
    sink.write_all(&first).map_err(werr)?;
    io::copy(&mut tar, &mut sink).map_err(rerr)?;
    let newest = tar.newest;
    finish(store, sink, options, newest)
}

/// Passes a tar stream through, noting the newest modification time of its entries from
/// their headers (octal or base-256 `mtime` fields; the headers of PAX and GNU long-name
/// records are not entries). Nothing is interpreted beyond that: the stream is stored as
/// it came.
struct TarTimes<R> {
    inner: R,
    header: [u8; 512],
    filled: usize,
    /// Bytes of entry data (padded to blocks) still to pass before the next header.
    skip: u64,
    newest: u64,
}

impl<R> TarTimes<R> {
    fn new(inner: R) -> Self {
        TarTimes {
            inner,
            header: [0; 512],
            filled: 0,
            skip: 0,
            newest: 0,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = data
                    .len()
                    .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = data.len().min(512 - self.filled);
            self.header[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled < 512 {
                return;
            }
            self.filled = 0;
            let h = &self.header;
            if h.iter().all(|&b| b == 0) {
                continue;
            }
            let size = tar_number(&h[124..136]);
            if !matches!(h[156], b'x' | b'g' | b'L' | b'K') {
                self.newest = self.newest.max(tar_number(&h[136..148]));
            }
            self.skip = size.div_ceil(512).saturating_mul(512);
        }
    }
}

impl<R: Read> Read for TarTimes<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.feed(&buf[..n]);
        Ok(n)
    }
}

/// A numeric tar header field: octal digits (spaces and NULs around them), or base-256
/// when its first byte has the high bit set.
fn tar_number(field: &[u8]) -> u64 {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return field[1..].iter().fold(u64::from(field[0] & 0x7f), |n, &b| {
            n.saturating_mul(256).saturating_add(u64::from(b))
        });
    }
    field
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, &b| {
            n.saturating_mul(8).saturating_add(u64::from(b - b'0'))
        })
}

/// A valid ustar/gnu header block (checksum right), or the all-zero end-of-archive block.
fn looks_like_tar_header(block: &[u8]) -> bool {
    if block.iter().all(|&b| b == 0) {
        return true;
    }
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(&block[..512]);
    let stored = header.cksum().ok();
    let computed: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    stored == Some(computed)
}

fn finish(
    store: &Store,
    sink: LayerWriter,
    options: &ImportOptions,
    newest: u64,
) -> Result<Imported, ImportError> {
    let layer = sink.finish()?;
    let diff_id = layer.diff_id;
    let created = options
        .created
        .unwrap_or_else(|| i64::try_from(newest).unwrap_or(0));
    let created = jiff::Timestamp::from_second(created)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string();
    let mut config = json!({
        "created": created,
        "architecture": options.platform.architecture,
        "os": options.platform.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": created, "created_by": "rbuild import", "comment": options.comment}],
    });
    if !options.platform.variant.is_empty() {
        config["variant"] = json!(options.platform.variant);
    }
    let config_bytes = serde_json::to_vec(&config).expect("a JSON value serializes");
    let config_desc = store.put_document(MediaType::ImageConfig, &config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_desc.digest().to_string(),
            "size": config_desc.size(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer.digest.to_string(),
            "size": layer.size,
        }],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("a JSON value serializes");
    let manifest_desc = store.put_document(MediaType::ImageManifest, &manifest_bytes)?;
    Ok(Imported {
        manifest: manifest_desc,
        config: crate::store::descriptor_digest(&config_desc)?,
        layer: layer.digest,
        diff_id,
        layer_size: layer.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_times_finds_the_newest_entry() {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, mtime, body) in [
            ("a", 100u64, &b"x"[..]),
            ("b", 300, &[7; 700][..]),
            ("c", 200, &b""[..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mtime(mtime);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append_data(&mut h, name, body).unwrap();
        }
        let bytes = builder.into_inner().unwrap();
        let mut reader = TarTimes::new(&bytes[..]);
        let mut out = Vec::new();
        // Small reads, so headers arrive in pieces.
        let mut buf = [0u8; 37];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, bytes);
        assert_eq!(reader.newest, 300);
        assert_eq!(tar_number(b"0000644\0"), 0o644);
        assert_eq!(tar_number(&[0x80, 0, 0, 1, 0]), 256);
    }
}
