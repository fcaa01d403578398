//! Reading one layer: decompress, walk the tar stream once, hash every regular file's content.

use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How far one layer may go: the analysis stops with an error naming the layer and the limit
/// instead of reading a bomb whole or keeping its names in memory. These are the limits (and
/// defaults) every reader of layers in rbuild keeps.
pub use rbuild_tarlimits::Limits;

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
    /// The uncompressed layer is larger than [`Limits::max_layer_bytes`].
    #[error("layer {layer} is larger than {limit} bytes uncompressed")]
    TooLarge {
        /// The layer.
        layer: String,
        /// The limit.
        limit: u64,
    },
    /// The layer has more entries than [`Limits::max_entries`].
    #[error("layer {layer} has more than {limit} entries")]
    TooManyEntries {
        /// The layer.
        layer: String,
        /// The limit.
        limit: u64,
    },
    /// An entry name is longer than [`Limits::max_path_bytes`].
    #[error(
        "layer {layer}: entry {entry} has a name of {bytes} bytes, more than the {limit} allowed"
    )]
    NameTooLong {
        /// The layer.
        layer: String,
        /// The start of the name.
        entry: String,
        /// Its length.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// An entry name has more components than [`Limits::max_path_depth`].
    #[error(
        "layer {layer}: entry {entry} has {depth} path components, more than the {limit} allowed"
    )]
    TooDeep {
        /// The layer.
        layer: String,
        /// The start of the name.
        entry: String,
        /// Its components.
        depth: usize,
        /// The limit.
        limit: usize,
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

/// Counts the bytes that go through it into a shared counter, and fails (an error of kind
/// `FileTooLarge`) once they pass `limit`.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
    limit: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for at most one byte past the limit: enough to know it was passed.
        let room = self
            .limit
            .saturating_sub(self.count.load(Ordering::Relaxed))
            .saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if self.count.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("larger than {} bytes", self.limit),
            ));
        }
        Ok(n)
    }
}

/// A name for messages, cut when long.
fn shorten(name: &[u8]) -> String {
    let text = String::from_utf8_lossy(name);
    if text.chars().count() <= 96 {
        return text.into_owned();
    }
    let head: String = text.chars().take(48).collect();
    format!("{head}...")
}

/// A name for messages: quoted, cut when long.
fn show(name: &[u8]) -> String {
    format!("{:?}", shorten(name))
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
/// `layer` names the layer in errors; past `limits` the layer is refused.
pub fn scan_layer<'a>(
    reader: impl Read + 'a,
    layer: &str,
    limits: &Limits,
) -> Result<LayerScan, ScanError> {
    scan_layer_with(reader, layer, limits, |tar| tar)
}

/// [`scan_layer`], the uncompressed tar stream passed through `check` before it is walked
/// (see [`LayerSource::check`](crate::LayerSource::check)).
pub fn scan_layer_with<'a>(
    reader: impl Read + 'a,
    layer: &str,
    limits: &Limits,
    check: impl FnOnce(Box<dyn Read + 'a>) -> Box<dyn Read + 'a>,
) -> Result<LayerScan, ScanError> {
    let mut changes = Vec::new();
    let (compressed_bytes, tar_bytes) = walk_layer(reader, layer, limits, check, |item| {
        record(item, &mut changes, None)
    })?;
    Ok(LayerScan {
        changes,
        compressed_bytes,
        tar_bytes,
    })
}

/// A second reader of a layer's walk.
pub(crate) type Visitor<'v> = dyn FnMut(Walked<'_>) -> io::Result<()> + 'v;

/// Records one walked change for the size analysis: a regular file's content is hashed
/// and its size counted as the bytes read. `also` sees the change first, with the content
/// behind a reader that hashes what it takes, so that a second reader of the walk (the
/// package inventory) costs no second read of the layer; the analysis hashes the rest.
pub(crate) fn record(
    item: Walked<'_>,
    changes: &mut Vec<Change>,
    also: Option<&mut Visitor<'_>>,
) -> io::Result<()> {
    match item {
        Walked::Opaque(dir) => {
            changes.push(Change::Opaque(dir.clone()));
            also.map_or(Ok(()), |also| also(Walked::Opaque(dir)))
        }
        Walked::Whiteout(path) => {
            changes.push(Change::Whiteout(path.clone()));
            also.map_or(Ok(()), |also| also(Walked::Whiteout(path)))
        }
        Walked::Entry(WalkedEntry {
            mut entry,
            link,
            content,
        }) => {
            let mut hashing = Hashing {
                inner: content,
                hasher: blake3::Hasher::new(),
                read: 0,
            };
            if let Some(also) = also {
                also(Walked::Entry(WalkedEntry {
                    entry: entry.clone(),
                    link,
                    content: &mut hashing,
                }))?;
            }
            // The size counted is the bytes read, not what the header claims.
            let claimed = std::mem::take(&mut entry.size);
            if entry.kind == Kind::File && claimed > 0 {
                io::copy(&mut hashing, &mut io::sink())?;
                entry.size = hashing.read;
                entry.hash = Some(*hashing.hasher.finalize().as_bytes());
            }
            changes.push(Change::Entry(entry));
            Ok(())
        }
    }
}

/// A reader that hashes and counts what goes through it.
struct Hashing<'r> {
    inner: &'r mut dyn Read,
    hasher: blake3::Hasher,
    read: u64,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// One change of a layer as [`walk_layer`] hands it over.
pub(crate) enum Walked<'e> {
    /// A `.wh..wh..opq` marker in this directory ("" is the root).
    Opaque(Box<str>),
    /// A `.wh.NAME` whiteout of this path.
    Whiteout(Box<str>),
    /// An entry.
    Entry(WalkedEntry<'e>),
}

/// An entry of a layer, its content readable while the walk is at it.
pub(crate) struct WalkedEntry<'e> {
    /// The entry as its header gives it: `size` is the header's (regular files; 0
    /// otherwise) and `hash` is `None`.
    pub entry: Entry,
    /// The target of a symbolic or hard link, as the tar gives it.
    pub link: Option<Box<str>>,
    /// The content (regular files).
    pub content: &'e mut dyn Read,
}

/// Walks one layer blob (plain, gzip with any number of members, or zstd) once, keeping the
/// limits, and hands every change to `visit` in tar order; an I/O error `visit` returns
/// (reading the content) fails the walk naming the entry. Returns the compressed and the
/// uncompressed byte counts.
pub(crate) fn walk_layer<'a>(
    reader: impl Read + 'a,
    layer: &str,
    limits: &Limits,
    check: impl FnOnce(Box<dyn Read + 'a>) -> Box<dyn Read + 'a>,
    mut visit: impl FnMut(Walked<'_>) -> io::Result<()>,
) -> Result<(u64, u64), ScanError> {
    let too_large = || ScanError::TooLarge {
        layer: layer.to_string(),
        limit: limits.max_layer_bytes,
    };
    let read_err = |source: io::Error| {
        if source.kind() == io::ErrorKind::FileTooLarge {
            return too_large();
        }
        ScanError::Read {
            layer: layer.to_string(),
            source,
        }
    };
    let compressed = Arc::new(AtomicU64::new(0));
    let uncompressed = Arc::new(AtomicU64::new(0));
    let buffered = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: reader,
            count: compressed.clone(),
            limit: u64::MAX,
        },
    );
    // The compression comes from the first bytes: media types lie (docker archives hold
    // plain tars under `tar.gzip` names once loaded).
    let decoded: Box<dyn Read + 'a> =
        Box::new(rbuild_compress::read::detect_and_decode(buffered).map_err(read_err)?);
    let counted = BufReader::with_capacity(
        256 * 1024,
        Counting {
            inner: check(decoded),
            count: uncompressed.clone(),
            limit: limits.max_layer_bytes,
        },
    );
    let mut archive = tar::Archive::new(counted);
    let mut last = String::new();
    let tar_err = |last: &str, source: io::Error| {
        if source.kind() == io::ErrorKind::FileTooLarge {
            return too_large();
        }
        ScanError::Tar {
            layer: layer.to_string(),
            after: shorten(last.as_bytes()),
            source,
        }
    };
    let mut entries: u64 = 0;
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
        entries += 1;
        if entries > limits.max_entries {
            return Err(ScanError::TooManyEntries {
                layer: layer.to_string(),
                limit: limits.max_entries,
            });
        }
        check_name(&entry.path_bytes(), layer, limits)?;
        let raw = entry.path().map_err(|e| tar_err(&last, e))?;
        let path = normalize(&raw.to_string_lossy());
        last.clone_from(&path);
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (parent, name),
            None => ("", path.as_str()),
        };
        if name == ".wh..wh..opq" {
            visit(Walked::Opaque(parent.into())).map_err(|e| tar_err(&last, e))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            visit(Walked::Whiteout(target.into())).map_err(|e| tar_err(&last, e))?;
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
        let link = match kind {
            Kind::Symlink | Kind::Hardlink => entry
                .link_name()
                .map_err(|e| tar_err(&last, e))?
                .map(|l| l.to_string_lossy().into()),
            _ => None,
        };
        let size = if kind == Kind::File { entry.size() } else { 0 };
        visit(Walked::Entry(WalkedEntry {
            entry: Entry {
                path: path.into(),
                kind,
                size,
                mode,
                uid,
                gid,
                hash: None,
            },
            link,
            content: &mut entry,
        }))
        .map_err(|e| tar_err(&last, e))?;
    }
    // The end-of-archive blocks and the blocking padding are part of the layer's size.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_err)?;
    drop(rest);
    Ok((
        compressed.load(Ordering::Relaxed),
        uncompressed.load(Ordering::Relaxed),
    ))
}

/// Refuses a name past [`Limits::max_path_bytes`] or [`Limits::max_path_depth`].
fn check_name(name: &[u8], layer: &str, limits: &Limits) -> Result<(), ScanError> {
    // A directory's name may end in `/`, which names nothing.
    let bytes = name.len() - name.iter().rev().take_while(|&&b| b == b'/').count();
    if bytes > limits.max_path_bytes {
        return Err(ScanError::NameTooLong {
            layer: layer.to_string(),
            entry: show(name),
            bytes,
            limit: limits.max_path_bytes,
        });
    }
    let depth = name
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .count();
    if depth > limits.max_path_depth {
        return Err(ScanError::TooDeep {
            layer: layer.to_string(),
            entry: show(name),
            depth,
            limit: limits.max_path_depth,
        });
    }
    Ok(())
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
