//! ADD's archives: recognising a tar (plain, gzip, bzip2, xz or zstd, by
//! content) and extracting it into the destination tree.
//!
//! Extraction follows Docker, which unpacks inside a chroot at the
//! destination directory: entry names are taken relative to the destination
//! (`/abs` lands in `dest/abs`, `..` stops at the destination), and symlinks,
//! whether the archive made them or the parent image had them, resolve as if
//! the destination were `/`. Nothing can land outside the destination.
//!
//! The first pass reads the headers only and records where each file's data
//! lies in the uncompressed stream; the layer writer later writes those files
//! in archive order, reading the data through [`ArchiveReader`] in a second
//! and last pass. Memory stays proportional to the number of entries.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rbuild_tarlimits::{LimitError, Limits};

use super::model::{At, Content, Model, Node, NodeKind, show};
use super::source::{FileKind, comps_of};
use super::{FileOpError, check_name};
use crate::diff::Meta;

/// Opens a decompressing reader over `raw`, recognising gzip, bzip2, xz and
/// zstd by their magic bytes (anything else is read as it is).
pub(crate) fn decompress(raw: Box<dyn Read + Send>) -> io::Result<Box<dyn Read + Send>> {
    Ok(Box::new(rbuild_compress::decompress(raw, None)?))
}

/// Whether the stream is a tar archive: its (decompressed) first header is
/// valid. Docker decides the same way. A first entry past `limits` counts as
/// an archive (whose extraction then fails naming the limit).
pub(crate) fn is_archive(raw: Box<dyn Read + Send>, limits: &Limits) -> bool {
    let Ok(r) = decompress(raw) else {
        return false;
    };
    let mut a = tar::Archive::new(limits.reader(r));
    let Ok(mut entries) = a.entries() else {
        return false;
    };
    match entries.next() {
        Some(Ok(_)) => true,
        Some(Err(e)) => LimitError::of(&e).is_some(),
        None => false,
    }
}

/// What an extraction needs besides the archive.
pub(crate) struct Extract<'a> {
    /// Index of the archive for [`Content::Archive`].
    pub(crate) index: usize,
    /// Names the archive in errors.
    pub(crate) label: &'a str,
    /// The destination directory (resolved, existing in the model).
    pub(crate) root: &'a [OsString],
    /// `--chown`, replacing the entries' owners.
    pub(crate) owner: Option<(u32, u32)>,
    /// Time for directories made for entries whose parent is missing.
    pub(crate) now: i64,
    /// What the archive may hold.
    pub(crate) limits: &'a Limits,
}

fn bad(x: &Extract<'_>, entry: &[u8], reason: &'static str) -> FileOpError {
    FileOpError::ArchiveEntry {
        archive: x.label.to_owned(),
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason,
    }
}

/// `filepath.Join("/", name)`: components, `..` stopping at the root.
fn clean(name: &[u8]) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for c in comps_of(Path::new(std::ffi::OsStr::from_bytes(name))) {
        if c == ".." {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

/// Extracts the archive read from `r` (decompressed) into `model` below `x.root`.
pub(crate) fn extract(
    model: &mut Model<'_>,
    r: impl Read,
    x: &Extract<'_>,
) -> Result<(), FileOpError> {
    let rerr = |source: io::Error| match LimitError::of(&source) {
        Some(limit) => FileOpError::ArchiveLimit {
            archive: x.label.to_owned(),
            limit: limit.clone(),
        },
        None => FileOpError::ReadArchive {
            archive: x.label.to_owned(),
            source,
        },
    };
    let mut a = tar::Archive::new(x.limits.reader(r));
    for entry in a.entries().map_err(rerr)? {
        let mut e = entry.map_err(rerr)?;
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().map_err(rerr)? {
            for ext in pax {
                let ext = ext.map_err(rerr)?;
                if let Some(k) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    let k = String::from_utf8_lossy(k).into_owned();
                    if !crate::snapshot::is_overlay_xattr(&k) {
                        xattrs.push((k, ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        xattrs.sort();
        let name = e.path_bytes().into_owned();
        let h = e.header();
        let kind = h.entry_type();
        let rel = clean(&name);
        let Some((last, dir)) = rel.split_last() else {
            continue; // the root itself: the destination already exists
        };
        check_name(last).map_err(|reason| bad(x, &name, reason))?;
        // Empty numeric fields read as 0, as Go's archive/tar (which Docker
        // uses) reads them.
        let mtime = h.mtime().unwrap_or(0) as i64;
        let mode = h.mode().unwrap_or(0) & 0o7777;
        let (uid, gid) = match x.owner {
            Some(o) => o,
            None => {
                let u = h.uid().unwrap_or(0);
                let g = h.gid().unwrap_or(0);
                match (u32::try_from(u), u32::try_from(g)) {
                    (Ok(u), Ok(g)) => (u, g),
                    _ => return Err(bad(x, &name, "has an owner id larger than 32 bits")),
                }
            }
        };
        let meta = Meta {
            mode,
            uid,
            gid,
            mtime,
        };
        let parent = model.resolve(x.root, dir, true)?;
        let made = Meta {
            mode: 0o755,
            uid: x.owner.map_or(0, |o| o.0),
            gid: x.owner.map_or(0, |o| o.1),
            mtime: x.now,
        };
        let pid = model.ensure_dir(&parent, made)?;
        let mut target = parent;
        target.push(last.clone());
        let existing = model.at(&target)?;
        let node = match kind {
            tar::EntryType::Directory => {
                if model.at_is_dir(&existing) {
                    // Merge: the entry's metadata replaces the directory's.
                    let id = model.ensure_dir(&target, meta)?;
                    let n = model.node_mut(id);
                    n.meta = meta;
                    n.xattrs = xattrs;
                    continue;
                }
                Node::new(
                    NodeKind::Dir {
                        merge: false,
                        opaque: false,
                    },
                    meta,
                )
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = e.size();
                Node::new(
                    NodeKind::File {
                        content: Content::Archive {
                            archive: x.index,
                            ordinal: e.raw_file_position(),
                        },
                        size,
                        group: None,
                    },
                    meta,
                )
            }
            tar::EntryType::Symlink => {
                let t = e
                    .link_name_bytes()
                    .ok_or_else(|| bad(x, &name, "is a symlink without a target"))?;
                // A symlink's mode is always 0777 on Linux, whatever the header says.
                let meta = Meta {
                    mode: 0o777,
                    ..meta
                };
                Node::new(NodeKind::Symlink(t.into_owned()), meta)
            }
            tar::EntryType::Link => {
                let t = e
                    .link_name_bytes()
                    .ok_or_else(|| bad(x, &name, "is a hard link without a target"))?;
                let tc = clean(&t);
                let Some((tl, td)) = tc.split_last() else {
                    return Err(bad(x, &name, "is a hard link to the destination directory"));
                };
                let mut to = model.resolve(x.root, td, true)?;
                to.push(tl.clone());
                link_node(model, &to).ok_or_else(|| {
                    bad(
                        x,
                        &name,
                        "is a hard link to a file that is neither in the archive nor in the image",
                    )
                })??
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let maj = h.device_major().map_err(rerr)?.unwrap_or(0);
                let min = h.device_minor().map_err(rerr)?.unwrap_or(0);
                Node::new(NodeKind::Special(kind, (maj, min)), meta)
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink => continue,
            _ => return Err(bad(x, &name, "has an entry type that cannot be extracted")),
        };
        let node = if kind != tar::EntryType::Link
            && matches!(node.kind, NodeKind::Dir { .. } | NodeKind::File { .. })
        {
            node.with_xattrs(xattrs)
        } else {
            node
        };
        model.replace(pid, &target, node)?;
    }
    Ok(())
}

/// A node sharing the file at `to` (as a hard link): the same content and
/// metadata. `None` when `to` is not a regular file.
fn link_node(model: &mut Model<'_>, to: &[OsString]) -> Option<Result<Node, FileOpError>> {
    match model.at(to) {
        Err(e) => Some(Err(e)),
        Ok(At::Node(id)) => {
            let n = model.node(id).clone();
            let NodeKind::File {
                content,
                size,
                group,
            } = n.kind
            else {
                return None;
            };
            let g = match group {
                Some(g) => g,
                None => {
                    let g = model.new_group();
                    if let NodeKind::File { group, .. } = &mut model.node_mut(id).kind {
                        *group = Some(g);
                    }
                    g
                }
            };
            Some(Ok(Node::new(
                NodeKind::File {
                    content,
                    size,
                    group: Some(g),
                },
                n.meta,
            )
            .with_xattrs(n.xattrs)))
        }
        Ok(At::Parent(m)) if m.kind == FileKind::File => Some(Ok(Node::new(
            NodeKind::File {
                content: Content::Parent(to.to_vec()),
                size: m.size,
                group: None,
            },
            Meta {
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
                mtime: m.mtime,
            },
        ))),
        Ok(_) => None,
    }
}

/// Reads entries' data out of an archive: forward by skipping, backward
/// (not needed when data is read in archive order, as the layer writer
/// does) by decompressing again from the start.
pub(crate) struct ArchiveReader<'a> {
    open: Opener<'a>,
    cur: Option<Box<dyn Read + Send>>,
    pos: u64,
    /// Names the archive in errors.
    pub(crate) label: PathBuf,
}

/// Opens an archive's decompressed stream (again).
pub(crate) type Opener<'a> = Box<dyn FnMut() -> io::Result<Box<dyn Read + Send>> + Send + 'a>;

impl std::fmt::Debug for ArchiveReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("label", &self.label)
            .field("pos", &self.pos)
            .finish()
    }
}

impl<'a> ArchiveReader<'a> {
    /// A reader that gets the decompressed stream from `open` (called again
    /// to go back).
    pub(crate) fn new(label: PathBuf, open: Opener<'a>) -> Self {
        ArchiveReader {
            open,
            cur: None,
            pos: 0,
            label,
        }
    }

    /// The data at position `offset` (`size` bytes).
    pub(crate) fn read_at(&mut self, offset: u64, size: u64) -> io::Result<Box<dyn Read + '_>> {
        if self.cur.is_none() || offset < self.pos {
            self.cur = Some((self.open)()?);
            self.pos = 0;
        }
        let r = self.cur.as_mut().expect("opened above");
        let n = io::copy(&mut r.by_ref().take(offset - self.pos), &mut io::sink())?;
        self.pos += n;
        if self.pos != offset {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ended early",
            ));
        }
        Ok(Box::new(Tracked {
            r,
            pos: &mut self.pos,
            left: size,
        }))
    }
}

struct Tracked<'a> {
    r: &'a mut Box<dyn Read + Send>,
    pos: &'a mut u64,
    left: u64,
}

impl Read for Tracked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = (buf.len() as u64).min(self.left) as usize;
        if max == 0 {
            return Ok(0);
        }
        let n = self.r.read(&mut buf[..max])?;
        *self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// The label of an archive entry for errors.
pub(crate) fn entry_label(archive: &Path, dest: &[OsString]) -> PathBuf {
    PathBuf::from(format!(
        "{} (extracted to {})",
        archive.display(),
        show(dest).display()
    ))
}
