//! Applying an OCI layer (an uncompressed tar stream) to a directory.
//!
//! Nothing is ever written outside the destination: every name is resolved
//! inside it with [`crate::rootfs::Root`], `..` components are refused,
//! absolute names are taken relative to the destination, and symlinks met on
//! the way (including `l -> /`) resolve inside it too.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rbuild_tarlimits::{LimitError, Limits};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use tar::EntryType;

use crate::idmap::{IdMap, MappingKind};
use crate::rootfs::{self, Root};

/// How whiteout entries (`.wh.NAME`, `.wh..wh..opq`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The destination is an overlay lower dir of its own: deletions become
    /// 0/0 character devices and opaque dirs get `<prefix>.overlay.opaque=y`.
    Overlay(OverlayXattr),
    /// The destination holds the layers below: deletions are carried out.
    Delete,
}

/// Which xattr namespace overlayfs reads its markers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayXattr {
    /// `user.overlay.*` (overlay mounted with `userxattr`, as in a user namespace).
    User,
    /// `trusted.overlay.*` (overlay mounted by real root).
    Trusted,
}

impl OverlayXattr {
    /// The opaque-dir xattr name.
    pub fn opaque(self) -> &'static str {
        match self {
            OverlayXattr::User => "user.overlay.opaque",
            OverlayXattr::Trusted => "trusted.overlay.opaque",
        }
    }
}

/// Options for [`apply_layer`].
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Names the layer in errors (a digest, usually).
    pub label: String,
    /// How whiteouts are applied.
    pub whiteouts: WhiteoutMode,
    /// Maps the tar's uids/gids to host ids for `chown`.
    pub id_map: IdMap,
    /// When `chown` is not permitted: count it in [`Stats::chown_failures`] and
    /// go on (true), or fail (false).
    pub ignore_chown_errors: bool,
    /// What the tar stream may hold: its size (the sizes its headers claim are checked
    /// against it too, before their data is written), entries, names.
    pub limits: Limits,
}

impl UnpackOptions {
    /// Defaults: overlay whiteouts with `user.overlay.*`, identity ids,
    /// chown failures fatal, the default [`Limits`].
    pub fn new(label: impl Into<String>) -> Self {
        UnpackOptions {
            label: label.into(),
            whiteouts: WhiteoutMode::Overlay(OverlayXattr::User),
            id_map: IdMap::identity(),
            ignore_chown_errors: false,
            limits: Limits::default(),
        }
    }
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries applied (whiteouts included).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Whiteouts applied.
    pub whiteouts: u64,
    /// Opaque directory markers applied.
    pub opaque_dirs: u64,
    /// `chown` calls refused and ignored.
    pub chown_failures: u64,
    /// Device nodes not created for lack of privilege.
    pub skipped_devices: u64,
    /// Extended attributes that could not be set.
    pub skipped_xattrs: u64,
}

/// Errors of [`apply_layer`]; each names the layer and, where there is one, the entry.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The destination could not be opened.
    #[error("layer {layer}: cannot open destination {path}")]
    Dest {
        /// The layer, as the caller names it.
        layer: String,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The tar stream could not be read.
    #[error("layer {layer}: cannot read tar stream")]
    Read {
        /// The layer, as the caller names it.
        layer: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry name would leave the destination.
    #[error("layer {layer}: entry {entry:?} has an unsafe name ({reason})")]
    UnsafeName {
        /// The layer, as the caller names it.
        layer: String,
        /// The entry's name in the layer.
        entry: String,
        /// Why.
        reason: &'static str,
    },
    /// An entry could not be applied.
    #[error("layer {layer}: cannot apply entry {entry:?}")]
    Entry {
        /// The layer, as the caller names it.
        layer: String,
        /// The entry's name in the layer.
        entry: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An entry type rbuild does not apply.
    #[error("layer {layer}: entry {entry:?} has unsupported type {kind:?}")]
    Unsupported {
        /// The layer, as the caller names it.
        layer: String,
        /// The entry's name in the layer.
        entry: String,
        /// The entry's tar type byte.
        kind: u8,
    },
    /// An id with no mapping.
    #[error("layer {layer}: entry {entry:?} has owner {uid}:{gid} outside the id mapping")]
    Unmapped {
        /// The layer, as the caller names it.
        layer: String,
        /// The entry's name in the layer.
        entry: String,
        /// The entry's user id.
        uid: u64,
        /// The entry's group id.
        gid: u64,
    },
    /// The stream crossed one of [`UnpackOptions::limits`].
    #[error("layer {layer}: {limit}")]
    Limit {
        /// The layer, as the caller names it.
        layer: String,
        /// The limit it crossed.
        limit: LimitError,
    },
    /// The entries' headers claim more content than the layer may have.
    #[error("layer {layer}: content larger than {limit} bytes")]
    TooLarge {
        /// The layer, as the caller names it.
        layer: String,
        /// The most content allowed, in bytes.
        limit: u64,
    },
}

impl UnpackError {
    /// A read error of `layer`'s tar stream; the limit it crossed, when it is one.
    fn read(layer: String, source: io::Error) -> UnpackError {
        match LimitError::of(&source) {
            Some(limit) => UnpackError::Limit {
                layer,
                limit: limit.clone(),
            },
            None => UnpackError::Read { layer, source },
        }
    }
}

const WH_PREFIX: &[u8] = b".wh.";
const WH_OPAQUE: &[u8] = b".wh..wh..opq";

struct Ctx<'a> {
    opts: &'a UnpackOptions,
    root: Root,
    stats: Stats,
    /// Paths (and their ancestors) written by this layer, for opaque dirs in Delete mode.
    written: HashSet<Vec<u8>>,
    dir_times: Vec<(Vec<u8>, i64)>,
}

/// Applies one layer, read as an uncompressed tar from `reader`, to `dest`. The stream is
/// read through [`UnpackOptions::limits`].
pub fn apply_layer(
    reader: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<Stats, UnpackError> {
    let layer = || opts.label.clone();
    let root = Root::open(dest).map_err(|source| UnpackError::Dest {
        layer: layer(),
        path: dest.to_owned(),
        source,
    })?;
    let mut ctx = Ctx {
        opts,
        root,
        stats: Stats::default(),
        written: HashSet::new(),
        dir_times: Vec::new(),
    };
    let mut archive = tar::Archive::new(opts.limits.reader(reader));
    let entries = archive
        .entries()
        .map_err(|source| UnpackError::read(layer(), source))?;
    let mut total: u64 = 0;
    for entry in entries {
        let mut entry = entry.map_err(|source| UnpackError::read(layer(), source))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        ctx.stats.entries += 1;
        total = total.saturating_add(entry.size());
        if total > opts.limits.max_layer_bytes {
            return Err(UnpackError::TooLarge {
                layer: layer(),
                limit: opts.limits.max_layer_bytes,
            });
        }
        let name = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&name).into_owned();
        ctx.apply(&mut entry, &name)
            .map_err(|e| e.with(opts, &display))?;
    }
    // Directory times last: creating children changes them.
    for (path, mtime) in std::mem::take(&mut ctx.dir_times).into_iter().rev() {
        let comps = rootfs::components(&path).unwrap_or_default();
        let display = String::from_utf8_lossy(&path).into_owned();
        let fd = ctx
            .root
            .open_nofollow(&comps, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|source| UnpackError::Entry {
                layer: layer(),
                entry: display.clone(),
                source,
            })?;
        rustix::fs::futimens(&fd, &times(mtime)).map_err(|e| UnpackError::Entry {
            layer: layer(),
            entry: display,
            source: e.into(),
        })?;
    }
    Ok(ctx.stats)
}

/// An entry failure before the layer and entry names are attached.
enum Fail {
    Io(io::Error),
    Name(&'static str),
    Unsupported(u8),
    Unmapped(u64, u64),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}
impl From<rustix::io::Errno> for Fail {
    fn from(e: rustix::io::Errno) -> Self {
        Fail::Io(e.into())
    }
}

impl Fail {
    fn with(self, opts: &UnpackOptions, entry: &str) -> UnpackError {
        let layer = opts.label.clone();
        let entry = entry.to_owned();
        match self {
            Fail::Io(source) if LimitError::of(&source).is_some() => {
                UnpackError::read(layer, source)
            }
            Fail::Io(source) => UnpackError::Entry {
                layer,
                entry,
                source,
            },
            Fail::Name(reason) => UnpackError::UnsafeName {
                layer,
                entry,
                reason,
            },
            Fail::Unsupported(kind) => UnpackError::Unsupported { layer, entry, kind },
            Fail::Unmapped(uid, gid) => UnpackError::Unmapped {
                layer,
                entry,
                uid,
                gid,
            },
        }
    }
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn checked_components(name: &[u8]) -> Result<Vec<&OsStr>, Fail> {
    rootfs::components(name).map_err(|e| match e {
        rootfs::BadName::DotDot => Fail::Name("contains '..'"),
        rootfs::BadName::Nul => Fail::Name("contains a NUL byte"),
    })
}

fn join_bytes(comps: &[&OsStr]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            v.push(b'/');
        }
        v.extend_from_slice(c.as_bytes());
    }
    v
}

impl Ctx<'_> {
    fn mark_written(&mut self, comps: &[&OsStr]) {
        for i in 1..=comps.len() {
            self.written.insert(join_bytes(&comps[..i]));
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, name: &[u8]) -> Result<(), Fail> {
        let comps = checked_components(name)?;
        let Some((last, parents)) = comps.split_last() else {
            return Ok(()); // the root itself: its metadata belongs to the snapshot
        };
        let last_bytes = last.as_bytes();
        if last_bytes == WH_OPAQUE {
            return self.opaque(parents);
        }
        if let Some(target) = last_bytes.strip_prefix(WH_PREFIX) {
            return self.whiteout(parents, OsStr::from_bytes(target));
        }
        let header = entry.header().clone();
        let kind = header.entry_type();
        let parent = self.root.ensure_dir(parents, None)?;
        let existing = rootfs::lstat_at(&parent, last)?;
        // Replace whatever is there, except a directory by a directory.
        if let Some(st) = &existing {
            let keep = kind == EntryType::Directory && rootfs::is_dir(st);
            if !keep {
                rootfs::remove_all_at(&parent, last)?;
            }
        }
        let mode = header.mode()? & 0o7777;
        let (uid, gid) = (header.uid()?, header.gid()?);
        let mtime = header.mtime()? as i64;
        let xattrs = collect_xattrs(entry)?;
        match kind {
            EntryType::Directory => {
                if existing.as_ref().is_none_or(|s| !rootfs::is_dir(s)) {
                    rustix::fs::mkdirat(&parent, *last, Mode::from_raw_mode(0o700))?;
                }
                let fd = rustix::fs::openat(
                    &parent,
                    *last,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                self.chown_fd(&fd, uid, gid)?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
                self.set_xattrs(&fd, &xattrs);
                self.dir_times.push((join_bytes(&comps), mtime));
            }
            EntryType::Regular | EntryType::Continuous => {
                let fd = rustix::fs::openat(
                    &parent,
                    *last,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut file = File::from(fd);
                let expected = entry.size();
                let written = io::copy(entry, &mut file)?;
                if written != expected {
                    // The stream ended inside the entry's data: name the entry now rather than
                    // fail on the next header.
                    return Err(Fail::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the tar stream ends after {written} of its {expected} bytes"),
                    )));
                }
                self.stats.bytes += written;
                self.chown_fd(&file, uid, gid)?;
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
                self.set_xattrs(&file, &xattrs);
                rustix::fs::futimens(&file, &times(mtime))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(Fail::Name("symlink without a target"))?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, *last)?;
                self.chown_at(&parent, last, uid, gid)?;
                rustix::fs::utimensat(&parent, *last, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(Fail::Name("hard link without a target"))?;
                let tcomps = checked_components(&target)?;
                let Some((tlast, tparents)) = tcomps.split_last() else {
                    return Err(Fail::Name("hard link to the root"));
                };
                let tparent = self.root.open_dir(tparents, OFlags::PATH)?;
                rustix::fs::linkat(&tparent, *tlast, &parent, *last, AtFlags::empty())?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                // A fifo has no device numbers; writers may leave those fields empty.
                let dev = if ft == FileType::Fifo {
                    0
                } else {
                    rustix::fs::makedev(
                        header.device_major()?.unwrap_or(0),
                        header.device_minor()?.unwrap_or(0),
                    )
                };
                match rustix::fs::mknodat(&parent, *last, ft, Mode::from_raw_mode(mode), dev) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::PERM) if ft != FileType::Fifo => {
                        tracing::warn!(layer = %self.opts.label, entry = %String::from_utf8_lossy(name), "device node not created: not permitted");
                        self.stats.skipped_devices += 1;
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
                self.chown_at(&parent, last, uid, gid)?;
                rustix::fs::chmodat(&parent, *last, Mode::from_raw_mode(mode), AtFlags::empty())?;
                rustix::fs::utimensat(&parent, *last, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)?;
            }
            other => return Err(Fail::Unsupported(other.as_byte())),
        }
        self.mark_written(&comps);
        Ok(())
    }

    fn whiteout(&mut self, parents: &[&OsStr], target: &OsStr) -> Result<(), Fail> {
        if target.is_empty() || target.as_bytes().contains(&b'/') || target == ".." || target == "."
        {
            return Err(Fail::Name("whiteout of an invalid name"));
        }
        self.stats.whiteouts += 1;
        match self.opts.whiteouts {
            WhiteoutMode::Delete => match self.root.open_dir(parents, OFlags::PATH) {
                Ok(dir) => rootfs::remove_all_at(&dir, target)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            },
            WhiteoutMode::Overlay(_) => {
                let dir = self.root.ensure_dir(parents, None)?;
                rootfs::remove_all_at(&dir, target)?;
                rustix::fs::mknodat(&dir, target, FileType::CharacterDevice, Mode::empty(), 0)?;
                let mut comps = parents.to_vec();
                comps.push(target);
                self.mark_written(&comps);
            }
        }
        Ok(())
    }

    fn opaque(&mut self, dir: &[&OsStr]) -> Result<(), Fail> {
        self.stats.opaque_dirs += 1;
        match self.opts.whiteouts {
            WhiteoutMode::Delete => {
                let d = self.root.ensure_dir(dir, None)?;
                let rd = rustix::fs::openat(
                    &d,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let prefix = join_bytes(dir);
                for child in rootfs::list_dir(&rd)? {
                    let mut p = prefix.clone();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(child.as_bytes());
                    if !self.written.contains(&p) {
                        rootfs::remove_all_at(&rd, &child)?;
                    }
                }
            }
            WhiteoutMode::Overlay(x) => {
                self.root.ensure_dir(dir, None)?;
                let fd = self.root.open_dir(dir, OFlags::RDONLY)?;
                rustix::fs::fsetxattr(&fd, x.opaque(), b"y", rustix::fs::XattrFlags::empty())?;
            }
        }
        self.mark_written(dir);
        Ok(())
    }

    /// Host ids for an entry's owner; `Ok(None)` when unmapped and ignored.
    fn map_ids(&mut self, uid: u64, gid: u64) -> Result<Option<(u32, u32)>, Fail> {
        let m = &self.opts.id_map;
        let hu = u32::try_from(uid).ok().and_then(|u| m.host_uid(u));
        let hg = u32::try_from(gid).ok().and_then(|g| m.host_gid(g));
        match (hu, hg) {
            (Some(u), Some(g)) => Ok(Some((u, g))),
            _ if self.opts.ignore_chown_errors => {
                self.stats.chown_failures += 1;
                Ok(None)
            }
            _ => Err(Fail::Unmapped(uid, gid)),
        }
    }

    fn chown_result(&mut self, r: rustix::io::Result<()>) -> Result<(), Fail> {
        match r {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::PERM | rustix::io::Errno::INVAL)
                if self.opts.ignore_chown_errors =>
            {
                self.stats.chown_failures += 1;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn chown_fd(&mut self, fd: impl std::os::fd::AsFd, uid: u64, gid: u64) -> Result<(), Fail> {
        if self.opts.id_map.kind == MappingKind::Single && (uid, gid) != (0, 0) {
            // One id on disk: the owner is recorded on the file (a regular file or a
            // directory here), as the sandbox records a step's chown.
            if let (Ok(u), Ok(g)) = (u32::try_from(uid), u32::try_from(gid)) {
                let value = crate::owner::format(u, g);
                let r = rustix::fs::fsetxattr(
                    &fd,
                    crate::owner::OWNER_XATTR,
                    value.as_bytes(),
                    rustix::fs::XattrFlags::empty(),
                );
                if r.is_err() {
                    // No user.* attributes on this file system: the owner is lost, as a
                    // refused chown's is.
                    self.stats.chown_failures += 1;
                }
                return Ok(());
            }
        }
        let Some((u, g)) = self.map_ids(uid, gid)? else {
            return Ok(());
        };
        let r = rustix::fs::fchown(
            fd,
            Some(rustix::process::Uid::from_raw(u)),
            Some(rustix::process::Gid::from_raw(g)),
        );
        self.chown_result(r)
    }

    fn chown_at(
        &mut self,
        dir: impl std::os::fd::AsFd,
        name: &OsStr,
        uid: u64,
        gid: u64,
    ) -> Result<(), Fail> {
        let Some((u, g)) = self.map_ids(uid, gid)? else {
            return Ok(());
        };
        let r = rustix::fs::chownat(
            dir,
            name,
            Some(rustix::process::Uid::from_raw(u)),
            Some(rustix::process::Gid::from_raw(g)),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        self.chown_result(r)
    }

    fn set_xattrs(&mut self, fd: impl std::os::fd::AsFd, xattrs: &[(String, Vec<u8>)]) {
        for (k, v) in xattrs {
            if crate::owner::is_reserved_xattr(k) {
                // rbuild's own bookkeeping is never taken from a layer.
                tracing::warn!(layer = %self.opts.label, xattr = %k, "reserved extended attribute not set");
                self.stats.skipped_xattrs += 1;
                continue;
            }
            if rustix::fs::fsetxattr(&fd, k.as_str(), v, rustix::fs::XattrFlags::empty()).is_err() {
                tracing::warn!(layer = %self.opts.label, xattr = %k, "extended attribute not set");
                self.stats.skipped_xattrs += 1;
            }
        }
    }
}

/// Extended attributes of an entry from its PAX `SCHILY.xattr.*` records.
/// Overlay's own markers are never taken from a layer.
fn collect_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if name.contains(".overlay.") || name.starts_with("overlay.") {
                    continue;
                }
                out.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}
