//! Layer diffs: the changes of a run written as a normalised OCI layer.
//!
//! Entries are written in a fixed order (a pre-order walk with names sorted
//! bytewise) with normalised headers: PAX format, numeric ids only, whole
//! seconds, mtimes clamped to `SOURCE_DATE_EPOCH` when given. The same change
//! therefore gives the same bytes and the same digests. The uncompressed
//! digest (diff_id) and the compressed digest are computed while the layer is
//! written, in one pass.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rbuild_digest::Digest;
use sha2::{Digest as _, Sha256};

use crate::idmap::IdMap;
use crate::snapshot::{LowerView, is_overlay_xattr};
use rbuild_compress::{Compression, ManifestFormat, ParallelGzip};

/// Options for writing a layer.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// Compression of the blob.
    pub compression: Compression,
    /// Clamp mtimes to this (seconds since the epoch), as `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// Maps host owners of the changed files back to ids inside the image.
    pub id_map: IdMap,
    /// Compression threads (gzip); 0 means the number of CPUs.
    pub threads: usize,
    /// The sink hashes what it receives itself (a store blob writer, which verifies every
    /// blob): an uncompressed layer is then not hashed a second time here, and
    /// [`LayerInfo::digests`] is `None`: the sink's digest is both. Compressed layers are always hashed (their diff_id
    /// is not the blob's digest).
    pub sink_hashes: bool,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            compression: Compression::Gzip,
            source_date_epoch: None,
            id_map: IdMap::identity(),
            threads: 0,
            sink_hashes: false,
        }
    }
}

/// The digests and size of a written layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The layer's digests; `None` when the sink hashed it alone (an uncompressed layer
    /// written with [`DiffOptions::sink_hashes`]: its digest is its diff_id).
    pub digests: Option<LayerDigests>,
    /// Size of the blob as written.
    pub size: u64,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Media type of the blob.
    pub media_type: &'static str,
    /// Number of tar entries (whiteouts included).
    pub entries: u64,
}

/// The two digests of a written layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerDigests {
    /// Digest of the uncompressed tar (the image config's diff_id).
    pub diff_id: Digest,
    /// Digest of the blob as written (the manifest's layer digest).
    pub digest: Digest,
}

/// Errors while writing a layer; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A file of the change set could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layer could not be written.
    #[error("cannot write layer entry {entry}")]
    Write {
        /// The entry being written.
        entry: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An owner has no id inside the image.
    #[error("{path} is owned by host id {uid}:{gid}, which is outside the id mapping")]
    Unmapped {
        /// The path.
        path: PathBuf,
        /// The owner's host user id.
        uid: u32,
        /// The owner's host group id.
        gid: u32,
    },
    /// A file changed size while it was being read.
    #[error("{path} changed while it was being read")]
    Changed {
        /// The path.
        path: PathBuf,
    },
    /// Finishing the compressed stream failed.
    #[error("cannot finish the layer stream")]
    Finish(#[source] io::Error),
}

struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    n: u64,
    /// False when another writer hashes the same bytes (an uncompressed blob
    /// is its own tar: one hash serves both digests).
    active: bool,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.active {
            self.hash.update(&buf[..n]);
        }
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Encoder<W: Write> {
    Plain(W),
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Encoder<W> {
    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

/// Metadata of one entry to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Permission bits with setuid/setgid/sticky (`0o7777` at most).
    pub(crate) mode: u32,
    /// Owner inside the image.
    pub(crate) uid: u32,
    /// Group inside the image.
    pub(crate) gid: u32,
    /// Modification time, seconds since the epoch.
    pub(crate) mtime: i64,
}

/// Writes tar entries with normalised headers into a hashed, compressed stream.
pub(crate) struct LayerWriter<W: Write> {
    tar: tar::Builder<HashWriter<Encoder<HashWriter<W>>>>,
    opts: DiffOptions,
    media_type: &'static str,
    entries: u64,
    links: HashMap<(u64, u64), String>,
}

fn sha(h: Sha256) -> Digest {
    Digest::from_bytes(h.finalize().into())
}

impl<W: Write> LayerWriter<W> {
    pub(crate) fn new(out: W, opts: &DiffOptions) -> io::Result<Self> {
        let media_type = opts
            .compression
            .media_type(ManifestFormat::Oci)
            .map_err(io::Error::other)?;
        let counted = HashWriter {
            inner: out,
            hash: Sha256::new(),
            n: 0,
            active: opts.compression != Compression::None,
        };
        let threads = if opts.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            opts.threads
        };
        let enc = match opts.compression {
            Compression::None => Encoder::Plain(counted),
            Compression::Gzip => Encoder::Gzip(ParallelGzip::new(counted, threads)),
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(counted, 3)?;
                z.include_checksum(false)?;
                Encoder::Zstd(z)
            }
            c @ (Compression::Bzip2 | Compression::Xz) => {
                return Err(io::Error::other(format!("cannot write {c} layers")));
            }
        };
        let mut tar = tar::Builder::new(HashWriter {
            inner: enc,
            hash: Sha256::new(),
            n: 0,
            active: !(opts.sink_hashes && opts.compression == Compression::None),
        });
        tar.mode(tar::HeaderMode::Complete);
        Ok(LayerWriter {
            tar,
            opts: opts.clone(),
            media_type,
            entries: 0,
            links: HashMap::new(),
        })
    }

    fn owner(&self, path: &Path, md: &Metadata) -> Result<(u32, u32), DiffError> {
        let (hu, hg) = (md.uid(), md.gid());
        match (
            self.opts.id_map.container_uid(hu),
            self.opts.id_map.container_gid(hg),
        ) {
            (Some(u), Some(g)) => Ok((u, g)),
            _ => Err(DiffError::Unmapped {
                path: path.to_owned(),
                uid: hu,
                gid: hg,
            }),
        }
    }

    fn meta(&self, path: &Path, md: &Metadata) -> Result<Meta, DiffError> {
        let (uid, gid) = self.owner(path, md)?;
        let mut mtime = md.mtime();
        if let Some(e) = self.opts.source_date_epoch {
            mtime = mtime.min(e);
        }
        Ok(Meta {
            mode: md.mode() & 0o7777,
            uid,
            gid,
            mtime: mtime.max(0),
        })
    }

    /// Appends one entry from explicit metadata (ids already inside the
    /// image; the mtime is clamped to `source_date_epoch` here) and, for a
    /// regular file, exactly `size` bytes of `data`. Fails naming `name` when
    /// `data` ends early or holds more.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn entry(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        meta: &Meta,
        size: u64,
        link: Option<&[u8]>,
        dev: Option<(u32, u32)>,
        xattrs: &[(String, Vec<u8>)],
        data: &mut dyn Read,
    ) -> Result<(), DiffError> {
        let mut meta = *meta;
        if let Some(e) = self.opts.source_date_epoch {
            meta.mtime = meta.mtime.min(e);
        }
        meta.mtime = meta.mtime.max(0);
        meta.mode &= 0o7777;
        let mut counted = CountingReader {
            inner: data.take(size),
            n: 0,
        };
        self.append(name, kind, &meta, size, link, dev, xattrs, &mut counted)?;
        let mut extra = [0u8; 1];
        if counted.n != size || counted.inner.into_inner().read(&mut extra).unwrap_or(0) != 0 {
            return Err(DiffError::Changed {
                path: PathBuf::from(std::ffi::OsStr::from_bytes(name)),
            });
        }
        Ok(())
    }

    /// Appends an opaque-directory marker for `dir` (which ends with `/`).
    pub(crate) fn opaque_dir(&mut self, dir: &str) -> Result<(), DiffError> {
        self.opaque(dir)
    }

    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        meta: &Meta,
        size: u64,
        link: Option<&[u8]>,
        dev: Option<(u32, u32)>,
        xattrs: &[(String, Vec<u8>)],
        data: &mut dyn Read,
    ) -> Result<(), DiffError> {
        let werr = |source| DiffError::Write {
            entry: String::from_utf8_lossy(name).into_owned(),
            source,
        };
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        if name.len() > 100 || !name.is_ascii() {
            pax.push(("path".into(), name.to_vec()));
        }
        if let Some(l) = link {
            if l.len() > 100 || !l.is_ascii() {
                pax.push(("linkpath".into(), l.to_vec()));
            }
        }
        for (k, v) in xattrs {
            pax.push((format!("SCHILY.xattr.{k}"), v.clone()));
        }
        if !pax.is_empty() {
            self.tar
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(werr)?;
        }
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            let n = name.len().min(100);
            old.name[..n].copy_from_slice(&name[..n]);
            if let Some(l) = link {
                let n = l.len().min(100);
                old.linkname[..n].copy_from_slice(&l[..n]);
            }
        }
        h.set_entry_type(kind);
        h.set_mode(meta.mode);
        h.set_uid(u64::from(meta.uid));
        h.set_gid(u64::from(meta.gid));
        h.set_mtime(meta.mtime as u64);
        h.set_size(size);
        if let Some((maj, min)) = dev {
            h.set_device_major(maj).map_err(werr)?;
            h.set_device_minor(min).map_err(werr)?;
        }
        h.set_cksum();
        self.tar.append(&h, data).map_err(werr)?;
        self.entries += 1;
        Ok(())
    }

    fn whiteout(&mut self, parent: &str, name: &str) -> Result<(), DiffError> {
        self.marker(&format!("{parent}.wh.{name}"))
    }

    fn opaque(&mut self, dir: &str) -> Result<(), DiffError> {
        self.marker(&format!("{dir}.wh..wh..opq"))
    }

    /// An empty regular file owned by root with mode 0 and time 0: a whiteout or an opaque
    /// marker.
    fn marker(&mut self, name: &str) -> Result<(), DiffError> {
        let meta = Meta {
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
        };
        self.append(
            name.as_bytes(),
            tar::EntryType::Regular,
            &meta,
            0,
            None,
            None,
            &[],
            &mut io::empty(),
        )
    }

    /// Writes the file at `path` (not following symlinks) as `name`.
    fn file(&mut self, path: &Path, name: &str, md: &Metadata) -> Result<(), DiffError> {
        let rerr = |source| DiffError::Read {
            path: path.to_owned(),
            source,
        };
        let mut meta = self.meta(path, md)?;
        let ft = md.file_type();
        let mut xattrs = read_xattrs(path).map_err(rerr)?;
        if let Some((uid, gid)) = crate::owner::take_recorded(&mut xattrs, &self.opts.id_map) {
            (meta.uid, meta.gid) = (uid, gid);
        }
        if ft.is_dir() {
            let n = format!("{name}/");
            return self.append(
                n.as_bytes(),
                tar::EntryType::Directory,
                &meta,
                0,
                None,
                None,
                &xattrs,
                &mut io::empty(),
            );
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(rerr)?;
            let t = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()).to_vec();
            return self.append(
                name.as_bytes(),
                tar::EntryType::Symlink,
                &meta,
                0,
                Some(&t),
                None,
                &[],
                &mut io::empty(),
            );
        }
        if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = self.links.get(&key).cloned() {
                    return self.append(
                        name.as_bytes(),
                        tar::EntryType::Link,
                        &meta,
                        0,
                        Some(first.as_bytes()),
                        None,
                        &[],
                        &mut io::empty(),
                    );
                }
                self.links.insert(key, name.to_owned());
            }
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(rerr)?;
            let size = md.len();
            let mut counted = CountingReader {
                inner: f.take(size),
                n: 0,
            };
            self.append(
                name.as_bytes(),
                tar::EntryType::Regular,
                &meta,
                size,
                None,
                None,
                &xattrs,
                &mut counted,
            )?;
            if counted.n != size {
                return Err(DiffError::Changed {
                    path: path.to_owned(),
                });
            }
            return Ok(());
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else if ft.is_fifo() {
            tar::EntryType::Fifo
        } else {
            return Ok(()); // sockets are not carried in layers
        };
        let rdev = md.rdev();
        let dev = Some((rustix::fs::major(rdev), rustix::fs::minor(rdev)));
        self.append(
            name.as_bytes(),
            kind,
            &meta,
            0,
            None,
            dev,
            &[],
            &mut io::empty(),
        )
    }

    pub(crate) fn finish(self) -> Result<LayerInfo, DiffError> {
        let entries = self.entries;
        let media_type = self.media_type;
        let tar_hw = self.tar.into_inner().map_err(DiffError::Finish)?;
        let diff_id = tar_hw.active.then(|| sha(tar_hw.hash));
        let uncompressed_size = tar_hw.n;
        let counted = tar_hw.inner.finish().map_err(DiffError::Finish)?;
        let digest = if counted.active {
            Some(sha(counted.hash))
        } else {
            diff_id
        };
        Ok(LayerInfo {
            digests: diff_id
                .zip(digest)
                .map(|(diff_id, digest)| LayerDigests { diff_id, digest }),
            size: counted.n,
            uncompressed_size,
            media_type,
            entries,
        })
    }
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}
impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Extended attributes of `path` (not following symlinks), sorted, without
/// overlayfs' own.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in list_xattrs(path)? {
        if is_overlay_xattr(&name) {
            continue;
        }
        if let Some(v) = get_xattr(path, &name)? {
            out.push((name, v));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn list_xattrs(path: &Path) -> io::Result<Vec<String>> {
    let mut buf = vec![0u8; 1024];
    loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect());
            }
            Err(rustix::io::Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
}

pub(crate) fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => return Ok(Some(buf[..n].to_vec())),
            Err(rustix::io::Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, DiffError> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).map_err(|source| DiffError::Read {
        path: dir.to_owned(),
        source,
    })? {
        names.push(
            e.map_err(|source| DiffError::Read {
                path: dir.to_owned(),
                source,
            })?
            .file_name(),
        );
    }
    names.sort();
    Ok(names)
}

fn lstat(path: &Path) -> Result<Metadata, DiffError> {
    fs::symlink_metadata(path).map_err(|source| DiffError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Whether `path` (with metadata `md`) is an overlay whiteout: a 0/0
/// character device, or an empty file with an `overlay.whiteout` xattr.
pub(crate) fn is_whiteout(path: &Path, md: &Metadata) -> bool {
    let ft = md.file_type();
    if ft.is_char_device() && md.rdev() == 0 {
        return true;
    }
    ft.is_file()
        && md.len() == 0
        && ["user.overlay.whiteout", "trusted.overlay.whiteout"]
            .iter()
            .any(|x| matches!(get_xattr(path, x), Ok(Some(_))))
}

/// Whether the directory `path` is marked opaque for overlayfs.
pub(crate) fn is_opaque(path: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|x| matches!(get_xattr(path, x), Ok(Some(v)) if v == b"y"))
}

/// Writes the changes recorded in an overlay upper directory as a layer to
/// `out`. Cost is proportional to the size of the upper directory, that is,
/// to what changed.
pub fn write_layer(
    upper: &Path,
    opts: &DiffOptions,
    out: impl Write,
) -> Result<LayerInfo, DiffError> {
    let mut w = LayerWriter::new(out, opts).map_err(DiffError::Finish)?;
    walk_upper(&mut w, upper, "")?;
    w.finish()
}

fn walk_upper<W: Write>(w: &mut LayerWriter<W>, dir: &Path, prefix: &str) -> Result<(), DiffError> {
    for name in sorted_names(dir)? {
        let path = dir.join(&name);
        let md = lstat(&path)?;
        let name = name.to_string_lossy();
        if is_whiteout(&path, &md) {
            w.whiteout(prefix, &name)?;
            continue;
        }
        let rel = format!("{prefix}{name}");
        w.file(&path, &rel, &md)?;
        if md.is_dir() {
            let sub = format!("{rel}/");
            if is_opaque(&path) {
                w.opaque(&sub)?;
            }
            walk_upper(w, &path, &sub)?;
        }
    }
    Ok(())
}

/// Writes the differences between the working tree `tree` of a copy
/// snapshot and the snapshots it was copied from (`lowers`, topmost first).
/// Files whose ctime is older than `since` (the moment the tree was ready)
/// are unchanged; others are compared by type, mode, owner, size, mtime,
/// xattrs and, when all of these match, content.
pub fn write_copy_layer(
    tree: &Path,
    lowers: &[PathBuf],
    since: (i64, i64),
    opts: &DiffOptions,
    out: impl Write,
) -> Result<LayerInfo, DiffError> {
    let view = LowerView::new(lowers.to_vec());
    let mut w = LayerWriter::new(out, opts).map_err(DiffError::Finish)?;
    walk_copy(&mut w, &view, tree, &mut Vec::new(), true, since)?;
    w.finish()
}

fn walk_copy<W: Write>(
    w: &mut LayerWriter<W>,
    view: &LowerView,
    dir: &Path,
    rel: &mut Vec<std::ffi::OsString>,
    lower_is_dir: bool,
    since: (i64, i64),
) -> Result<(), DiffError> {
    let prefix: String = rel
        .iter()
        .map(|c| format!("{}/", c.to_string_lossy()))
        .collect();
    let mut names = sorted_names(dir)?;
    let lower_names = if lower_is_dir {
        view.list(rel).map_err(|source| DiffError::Read {
            path: dir.to_owned(),
            source,
        })?
    } else {
        Vec::new()
    };
    for n in &lower_names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        rel.push(name.clone());
        let lower = if lower_is_dir {
            view.lookup(rel).map_err(|source| DiffError::Read {
                path: path.clone(),
                source,
            })?
        } else {
            None
        };
        let md = match fs::symlink_metadata(&path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(DiffError::Read { path, source }),
        };
        let sname = name.to_string_lossy().into_owned();
        match (md, lower) {
            (None, Some(_)) => w.whiteout(&prefix, &sname)?,
            (None, None) => {}
            (Some(md), lower) => {
                let relname = format!("{prefix}{sname}");
                let same_type_dir = md.is_dir() && lower.as_ref().is_some_and(|(_, l)| l.is_dir());
                let changed = match &lower {
                    None => true,
                    Some((lpath, lmd)) => {
                        differs(&path, &md, lpath, lmd, since).map_err(|source| {
                            DiffError::Read {
                                path: path.clone(),
                                source,
                            }
                        })?
                    }
                };
                if changed {
                    w.file(&path, &relname, &md)?;
                }
                if md.is_dir() {
                    walk_copy(w, view, &path, rel, same_type_dir, since)?;
                }
            }
        }
        rel.pop();
    }
    Ok(())
}

fn differs(
    path: &Path,
    md: &Metadata,
    lpath: &Path,
    lmd: &Metadata,
    since: (i64, i64),
) -> io::Result<bool> {
    if md.file_type() != lmd.file_type() {
        return Ok(true);
    }
    if (md.ctime(), md.ctime_nsec()) < since {
        return Ok(false);
    }
    if md.mode() != lmd.mode()
        || md.uid() != lmd.uid()
        || md.gid() != lmd.gid()
        || md.mtime() != lmd.mtime()
    {
        return Ok(true);
    }
    if md.is_dir() {
        return Ok(read_xattrs(path)? != read_xattrs(lpath)?);
    }
    if md.len() != lmd.len() || md.rdev() != lmd.rdev() {
        return Ok(true);
    }
    if read_xattrs(path)? != read_xattrs(lpath)? {
        return Ok(true);
    }
    if md.file_type().is_symlink() {
        return Ok(fs::read_link(path)? != fs::read_link(lpath)?);
    }
    if md.is_file() {
        return Ok(!same_content(path, lpath)?);
    }
    Ok(false)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let mut fa = File::open(a)?;
    let mut fb = File::open(b)?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}
