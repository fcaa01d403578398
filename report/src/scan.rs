//! Reading one layer: decompress, walk the tar stream once, hash every regular file's content.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a layer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The compressed stream could not be read or decompressed.
    #[error("cannot read layer {layer}")]
    Read {
        /// The layer (its digest, or its position when it has none).
        layer: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A tar entry is malformed.
    #[error("layer {layer}: bad tar entry after {after:?}")]
    Tar {
        /// The layer.
        layer: String,
        /// The path of the last good entry (empty at the start).
        after: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to a path earlier in the same layer (its bytes are not shipped again).
    Hardlink,
    /// A device node or a fifo.
    Special,
}

/// One entry of a layer.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The path, relative to the root, without `./`, leading or trailing `/`.
    pub path: Box<str>,
    /// What it is.
    pub kind: Kind,
    /// Content bytes (regular files only; 0 otherwise).
    pub size: u64,
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// BLAKE3 of the content (regular files with content).
    pub hash: Option<[u8; 32]>,
}

/// A change a layer makes to the file system below it.
#[derive(Debug, Clone)]
pub enum Change {
    /// A path (and, for a directory, its content) is added or replaced.
    Entry(Entry),
    /// A `.wh.NAME` whiteout: the path (and everything under it) is deleted from the lower
    /// layers.
    Whiteout(Box<str>),
    /// A `.wh..wh..opq` marker: the content the lower layers have in this directory is hidden.
    /// The empty string is the root.
    Opaque(Box<str>),
}

/// Everything read from one layer.
#[derive(Debug, Clone, Default)]
pub struct LayerScan {
    /// The changes, in tar order.
    pub changes: Vec<Change>,
    /// Bytes read from the (compressed) blob.
    pub compressed_bytes: u64,
    /// Bytes of the uncompressed tar stream, padding and end blocks included.
    pub tar_bytes: u64,
}

/// How a layer blob is compressed, found from its first bytes (media types lie: docker
/// archives hold plain tars under `tar.gzip` names once loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Zstd,
}

fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Counts the bytes that go through it into a shared counter.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Normalizes a tar path: no `./`, no leading or trailing `/`, no empty or `.` components.
/// `..` components are kept as they are (they cannot be resolved without the file system;
/// such entries are reported under the name the tar gives).
pub fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for part in path.split('/') {
        if part.is_empty() || part == "." {
            continue;
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(part);
    }
    out
}

/// Reads one layer blob (plain, gzip with any number of members, or zstd) and returns its
/// changes. Streams: nothing is written to disk and file contents are only hashed.
/// `layer` names the layer in errors.
pub fn scan_layer(reader: impl Read, layer: &str) -> Result<LayerScan, ScanError> {
    let read_err = |source| ScanError::Read {
        layer: layer.to_string(),
        source,
    };
    let compressed = Arc::new(AtomicU64::new(0));
    let uncompressed = Arc::new(AtomicU64::new(0));
    let mut buffered = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: reader,
            count: compressed.clone(),
        },
    );
    let kind = detect(buffered.fill_buf().map_err(read_err)?);
    let decoded: Box<dyn Read> = match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(read_err)?)
        }
    };
    let counted = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: decoded,
            count: uncompressed.clone(),
        },
    );
    let mut archive = tar::Archive::new(counted);
    let mut changes = Vec::new();
    let mut last = String::new();
    let tar_err = |last: &str, source| ScanError::Tar {
        layer: layer.to_string(),
        after: last.to_string(),
        source,
    };
    for entry in archive.entries().map_err(|e| tar_err(&last, e))? {
        let mut entry = entry.map_err(|e| tar_err(&last, e))?;
        let header_type = entry.header().entry_type();
        let kind = match header_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::Hardlink,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => Kind::Special,
            // Extension headers the tar crate did not fold into the next entry.
            _ => continue,
        };
        let raw = entry.path().map_err(|e| tar_err(&last, e))?;
        let path = normalize(&raw.to_string_lossy());
        last.clone_from(&path);
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (parent, name),
            None => ("", path.as_str()),
        };
        if name == ".wh..wh..opq" {
            changes.push(Change::Opaque(parent.into()));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            changes.push(Change::Whiteout(target.into()));
            continue;
        }
        if path.is_empty() {
            // The root directory itself ("./"): its metadata only.
            continue;
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0) & 0o7777;
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let (size, hash) = if kind == Kind::File {
            let size = entry.size();
            if size == 0 {
                (0, None)
            } else {
                let mut hasher = blake3::Hasher::new();
                let copied = io::copy(&mut entry, &mut hasher).map_err(|e| tar_err(&last, e))?;
                (copied, Some(*hasher.finalize().as_bytes()))
            }
        } else {
            (0, None)
        };
        changes.push(Change::Entry(Entry {
            path: path.into(),
            kind,
            size,
            mode,
            uid,
            gid,
            hash,
        }));
    }
    // The end-of-archive blocks and the blocking padding are part of the layer's size.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_err)?;
    drop(rest);
    Ok(LayerScan {
        changes,
        compressed_bytes: compressed.load(Ordering::Relaxed),
        tar_bytes: uncompressed.load(Ordering::Relaxed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_dots_and_slashes() {
        assert_eq!(normalize("./usr/bin/"), "usr/bin");
        assert_eq!(normalize("/a//b/./c"), "a/b/c");
        assert_eq!(normalize("./"), "");
    }
}
