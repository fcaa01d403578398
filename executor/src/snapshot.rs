//! Snapshotters: the writable root file system of one step, made from
//! unpacked layer snapshots.
//!
//! - Overlay: the snapshots are overlayfs lower dirs; the sandbox mounts
//!   overlayfs inside its user namespace with an upper and a work dir in the
//!   step directory. Mount points the sandbox needs (/proc, /dev, /etc/hosts
//!   ...) are provided by a small extra lower dir (the "init" dir), so nothing
//!   is ever created in the upper dir for them.
//! - Copy: the snapshots are copied into one tree; mount points that are
//!   missing are created before the run and removed after it, restoring their
//!   parents' times; the diff walks the tree and compares it with the lowers.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use crate::diff::{self, DiffError, DiffOptions, LayerInfo, is_opaque, is_whiteout};
use crate::rootfs::{self, Root};

/// Whether an xattr name is one of overlayfs' own markers.
pub(crate) fn is_overlay_xattr(name: &str) -> bool {
    name.starts_with("user.overlay.") || name.starts_with("trusted.overlay.")
}

/// Which snapshotter prepares root file systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotterKind {
    /// Kernel overlayfs inside the sandbox's user namespace.
    Overlay,
    /// A full copy of the lowers.
    Copy,
}

/// Environment variable that forces a snapshotter (`overlay` or `copy`).
pub const SNAPSHOTTER_ENV: &str = "RBUILD_SNAPSHOTTER";

impl SnapshotterKind {
    /// `RBUILD_SNAPSHOTTER` when set to `overlay` or `copy`; otherwise overlay
    /// when a probe mount in a user namespace works (probed once per process).
    pub fn detect() -> Self {
        match Self::from_env_value(std::env::var(SNAPSHOTTER_ENV).ok().as_deref()) {
            Some(k) => k,
            None => {
                static PROBE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
                if *PROBE.get_or_init(crate::sandbox::probe_overlay) {
                    SnapshotterKind::Overlay
                } else {
                    tracing::warn!(
                        "overlayfs is not usable in a user namespace here: using the copy snapshotter"
                    );
                    SnapshotterKind::Copy
                }
            }
        }
    }
}

impl SnapshotterKind {
    /// The kind a `RBUILD_SNAPSHOTTER` value asks for, if any.
    pub fn from_env_value(v: Option<&str>) -> Option<Self> {
        match v.map(str::trim) {
            Some("copy") => Some(SnapshotterKind::Copy),
            Some("overlay") => Some(SnapshotterKind::Overlay),
            _ => None,
        }
    }
}

/// A mount point the sandbox will mount on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    /// Absolute path inside the container.
    pub path: PathBuf,
    /// A directory (true) or a file (false).
    pub dir: bool,
}

/// Errors of the snapshotters; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A directory of the step could not be made.
    #[error("cannot create {path}")]
    Create {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A lower snapshot could not be read or copied.
    #[error("cannot copy snapshot {path}")]
    Copy {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A mount point could not be prepared.
    #[error("cannot prepare mount point {path}")]
    MountPoint {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layer diff failed.
    #[error(transparent)]
    Diff(#[from] DiffError),
}

/// How the sandbox gets its root file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// Mount overlayfs: lowers topmost first.
    Overlay {
        /// Lower dirs, topmost first (the init dir first).
        lowers: Vec<PathBuf>,
        /// The upper dir.
        upper: PathBuf,
        /// The work dir.
        work: PathBuf,
    },
    /// Bind-mount a prepared tree.
    Bind {
        /// The tree.
        tree: PathBuf,
    },
}

/// A directory's path, its times before the mount point stubs were made,
/// and its times after.
type ParentTimes = (PathBuf, (i64, i64), (i64, i64));

/// The root file system of one step, ready for [`crate::sandbox::Sandbox`].
#[derive(Debug)]
pub struct PreparedRoot {
    /// The snapshotter used.
    pub kind: SnapshotterKind,
    /// What the sandbox mounts as `/`.
    pub source: RootSource,
    /// Where the sandbox mounts it (an empty dir in the step dir).
    pub mountpoint: PathBuf,
    /// The image's snapshots, topmost first.
    lowers: Vec<PathBuf>,
    /// Copy snapshotter: stubs made for mount points (removed in reverse) and
    /// parent dirs whose times must be restored.
    stubs: Vec<(PathBuf, bool)>,
    parent_times: Vec<ParentTimes>,
    since: (i64, i64),
}

/// Prepares a root file system in `step_dir` (created if missing) from the
/// image's snapshots `layers` (bottom first, as in an image manifest).
pub fn prepare(
    kind: SnapshotterKind,
    layers: &[PathBuf],
    step_dir: &Path,
    mountpoints: &[MountPoint],
) -> Result<PreparedRoot, SnapshotError> {
    // What is made here belongs to the step dir's owner: the caller, or the container
    // root of a remapped sandbox, whose mounts must write the upper and work dirs.
    let owner = step_dir
        .ancestors()
        .find_map(|p| fs::metadata(p).ok())
        .map(|m| (m.uid(), m.gid()))
        .ok_or_else(|| SnapshotError::Create {
            path: step_dir.to_owned(),
            source: io::ErrorKind::NotFound.into(),
        })?;
    let me = rustix::process::geteuid().as_raw();
    let mk = |p: &Path| {
        fs::create_dir_all(p)
            .and_then(|()| {
                if owner.0 == me {
                    return Ok(());
                }
                std::os::unix::fs::chown(p, Some(owner.0), Some(owner.1))
            })
            .map_err(|source| SnapshotError::Create {
                path: p.to_owned(),
                source,
            })
    };
    let lowers: Vec<PathBuf> = layers.iter().rev().cloned().collect();
    let mountpoint = step_dir.join("rootfs");
    mk(&mountpoint)?;
    let view = LowerView::new(lowers.clone());
    match kind {
        SnapshotterKind::Overlay => {
            let init = step_dir.join("init");
            let upper = step_dir.join("upper");
            let work = step_dir.join("work");
            for d in [&init, &upper, &work] {
                mk(d)?;
            }
            copy_root_meta(&view, &upper);
            copy_root_meta(&view, &init);
            for mp in mountpoints {
                make_init_entry(&view, &init, mp).map_err(|source| SnapshotError::MountPoint {
                    path: mp.path.clone(),
                    source,
                })?;
            }
            let mut all = vec![init];
            all.extend(lowers.iter().cloned());
            Ok(PreparedRoot {
                kind,
                source: RootSource::Overlay {
                    lowers: all,
                    upper,
                    work,
                },
                mountpoint,
                lowers,
                stubs: Vec::new(),
                parent_times: Vec::new(),
                since: (0, 0),
            })
        }
        SnapshotterKind::Copy => {
            let tree = step_dir.join("tree");
            mk(&tree)?;
            let root = Root::open(&tree).map_err(|source| SnapshotError::Create {
                path: tree.clone(),
                source,
            })?;
            for l in layers {
                copy_snapshot(l, &root).map_err(|source| SnapshotError::Copy {
                    path: l.clone(),
                    source,
                })?;
            }
            let mut prepared = PreparedRoot {
                kind,
                source: RootSource::Bind { tree: tree.clone() },
                mountpoint,
                lowers,
                stubs: Vec::new(),
                parent_times: Vec::new(),
                since: (0, 0),
            };
            for mp in mountpoints {
                prepared
                    .make_stub(&view, &root, &tree, mp)
                    .map_err(|source| SnapshotError::MountPoint {
                        path: mp.path.clone(),
                        source,
                    })?;
            }
            // The parents' times after the stubs exist: a parent whose time
            // differs after the run was changed by the command too.
            for (p, _, after) in &mut prepared.parent_times {
                if let Ok(md) = fs::symlink_metadata(&*p) {
                    *after = (md.mtime(), md.mtime_nsec());
                }
            }
            let marker = step_dir.join("ready");
            File::create(&marker).map_err(|source| SnapshotError::Create {
                path: marker.clone(),
                source,
            })?;
            let md = fs::metadata(&marker).map_err(|source| SnapshotError::Create {
                path: marker.clone(),
                source,
            })?;
            prepared.since = (md.ctime(), md.ctime_nsec());
            Ok(prepared)
        }
    }
}

fn copy_root_meta(view: &LowerView, dir: &Path) {
    if let Some(top) = view.lowers.first() {
        if let Ok(md) = fs::metadata(top) {
            let _ = std::os::unix::fs::chown(dir, Some(md.uid()), Some(md.gid()));
            let _ = rustix::fs::chmod(dir, Mode::from_raw_mode(md.mode() & 0o7777));
        }
    }
}

fn set_times(path: &Path, t: (i64, i64)) -> io::Result<()> {
    let ts = Timespec {
        tv_sec: t.0,
        tv_nsec: t.1,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

impl PreparedRoot {
    /// A read-only view of the image's file system before the run.
    pub fn view(&self) -> LowerView {
        LowerView::new(self.lowers.clone())
    }

    fn make_stub(
        &mut self,
        view: &LowerView,
        root: &Root,
        tree: &Path,
        mp: &MountPoint,
    ) -> io::Result<()> {
        let comps = view.resolve_mountpoint(&mp.path);
        let refs: Vec<&OsStr> = comps.iter().map(|c| c.as_os_str()).collect();
        let Some((last, parents)) = refs.split_last() else {
            return Ok(());
        };
        // Remember the times of the deepest existing parent.
        let mut existing = parents.len();
        while existing > 0 && root.open_dir(&parents[..existing], OFlags::PATH).is_err() {
            existing -= 1;
        }
        let top: PathBuf = parents[..existing].iter().collect();
        let top_path = tree.join(&top);
        if let Ok(md) = fs::symlink_metadata(&top_path) {
            let t = (md.mtime(), md.mtime_nsec());
            self.parent_times.push((top_path, t, t));
        }
        let mut created = Vec::new();
        let parent = root.ensure_dir(parents, Some(&mut created))?;
        for c in created {
            self.stubs.push((tree.join(OsStr::from_bytes(&c)), true));
        }
        if rootfs::lstat_at(&parent, last)?.is_none() {
            if mp.dir {
                rustix::fs::mkdirat(&parent, *last, Mode::from_raw_mode(0o755))?;
            } else {
                drop(rustix::fs::openat(
                    &parent,
                    *last,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )?);
            }
            let p: PathBuf = refs.iter().collect();
            self.stubs.push((tree.join(p), mp.dir));
        }
        Ok(())
    }

    /// Removes what [`prepare`] created for mount points (copy snapshotter).
    /// Call after the sandbox has exited and before [`Self::write_layer`].
    pub fn remove_stubs(&mut self) -> io::Result<()> {
        let untouched: Vec<bool> = self
            .parent_times
            .iter()
            .map(|(p, _, after)| {
                fs::symlink_metadata(p).is_ok_and(|md| (md.mtime(), md.mtime_nsec()) == *after)
            })
            .collect();
        for (p, dir) in self.stubs.drain(..).rev() {
            let r = if dir {
                fs::remove_dir(&p)
            } else {
                fs::remove_file(&p)
            };
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
                Err(e) => return Err(e),
            }
        }
        for ((p, before, _), untouched) in self.parent_times.drain(..).zip(untouched).rev() {
            if untouched {
                set_times(&p, before)?;
            }
        }
        Ok(())
    }

    /// Writes what the step changed as a layer.
    pub fn write_layer(
        &mut self,
        opts: &DiffOptions,
        out: impl io::Write,
    ) -> Result<LayerInfo, SnapshotError> {
        match &self.source {
            RootSource::Overlay { upper, lowers, .. } => {
                Ok(diff::write_layer(upper, lowers, opts, out)?)
            }
            RootSource::Bind { tree } => {
                let tree = tree.clone();
                self.remove_stubs()
                    .map_err(|source| SnapshotError::MountPoint {
                        path: tree.clone(),
                        source,
                    })?;
                Ok(diff::write_copy_layer(
                    &tree,
                    &self.lowers,
                    self.since,
                    opts,
                    out,
                )?)
            }
        }
    }
}

fn make_init_entry(view: &LowerView, init: &Path, mp: &MountPoint) -> io::Result<()> {
    let comps = view.resolve_mountpoint(&mp.path);
    let mut cur = init.to_path_buf();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let last = i + 1 == comps.len();
        if fs::symlink_metadata(&cur).is_ok() {
            continue;
        }
        let lower = view.lookup(&comps[..=i])?;
        if last && !mp.dir {
            File::create(&cur)?;
        } else {
            fs::create_dir(&cur)?;
        }
        if let Some((_, md)) = lower.filter(|(_, md)| md.is_dir() == (!last || mp.dir)) {
            let _ = std::os::unix::fs::lchown(&cur, Some(md.uid()), Some(md.gid()));
            rustix::fs::chmod(&cur, Mode::from_raw_mode(md.mode() & 0o7777))?;
            set_times(&cur, (md.mtime(), md.mtime_nsec()))?;
        }
    }
    Ok(())
}

/// A read-only merged view of overlay-format snapshots (topmost first), used
/// to look paths up the way overlayfs would.
#[derive(Debug, Clone)]
pub struct LowerView {
    lowers: Vec<PathBuf>,
}

enum InLayer {
    Found(PathBuf, fs::Metadata),
    Hidden,
    Absent { opaque_above: bool },
}

impl LowerView {
    /// A view of `lowers`, topmost first.
    pub fn new(lowers: Vec<PathBuf>) -> Self {
        LowerView { lowers }
    }

    fn in_layer(layer: &Path, comps: &[OsString]) -> io::Result<InLayer> {
        let mut cur = layer.to_path_buf();
        let mut opaque_above = false;
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            let md = match fs::symlink_metadata(&cur) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(InLayer::Absent { opaque_above });
                }
                Err(e) => return Err(e),
            };
            if is_whiteout(&cur, &md) {
                return Ok(InLayer::Hidden);
            }
            if i + 1 == comps.len() {
                return Ok(InLayer::Found(cur, md));
            }
            if !md.is_dir() {
                return Ok(InLayer::Hidden);
            }
            if is_opaque(&cur) {
                opaque_above = true;
            }
        }
        Ok(InLayer::Found(cur.clone(), fs::symlink_metadata(&cur)?))
    }

    /// The real path and metadata of `comps` in the merged view.
    pub fn lookup(&self, comps: &[OsString]) -> io::Result<Option<(PathBuf, fs::Metadata)>> {
        for l in &self.lowers {
            match Self::in_layer(l, comps)? {
                InLayer::Found(p, md) => return Ok(Some((p, md))),
                InLayer::Hidden => return Ok(None),
                InLayer::Absent { opaque_above: true } => return Ok(None),
                InLayer::Absent {
                    opaque_above: false,
                } => {}
            }
        }
        Ok(None)
    }

    /// Names in the merged directory `comps`, sorted.
    pub fn list(&self, comps: &[OsString]) -> io::Result<Vec<OsString>> {
        let mut seen: HashMap<OsString, bool> = HashMap::new();
        for l in &self.lowers {
            let (dir, stop) = match Self::in_layer(l, comps)? {
                InLayer::Found(p, md) if md.is_dir() => {
                    let opaque = is_opaque(&p);
                    (p, opaque)
                }
                InLayer::Found(..) | InLayer::Hidden => break,
                InLayer::Absent { opaque_above } => {
                    if opaque_above {
                        break;
                    }
                    continue;
                }
            };
            for e in fs::read_dir(&dir)? {
                let e = e?;
                let name = e.file_name();
                if seen.contains_key(&name) {
                    continue;
                }
                let md = fs::symlink_metadata(e.path())?;
                seen.insert(name, !is_whiteout(&e.path(), &md));
            }
            if stop {
                break;
            }
        }
        let mut out: Vec<OsString> = seen
            .into_iter()
            .filter(|(_, present)| *present)
            .map(|(n, _)| n)
            .collect();
        out.sort();
        Ok(out)
    }

    /// Resolves a mount point: its parent like [`Self::resolve`], its last
    /// component as it is, so that a mount point is never a symlink.
    pub fn resolve_mountpoint(&self, path: &Path) -> Vec<OsString> {
        let comps = path_comps(path);
        match comps.split_last() {
            Some((last, parent)) if last != ".." => {
                let parent: PathBuf = std::iter::once(OsString::from("/"))
                    .chain(parent.iter().cloned())
                    .collect();
                let mut v = self.resolve(&parent);
                v.push(last.clone());
                v
            }
            _ => self.resolve(path),
        }
    }

    /// Resolves an absolute container path to its components, following
    /// symlinks of the merged view inside the root (like `RESOLVE_IN_ROOT`).
    pub fn resolve(&self, path: &Path) -> Vec<OsString> {
        let mut todo: Vec<OsString> = path_comps(path).into_iter().rev().collect();
        let mut done: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                done.pop();
                continue;
            }
            done.push(c);
            if hops < 40 {
                if let Ok(Some((p, md))) = self.lookup(&done) {
                    if md.file_type().is_symlink() {
                        if let Ok(target) = fs::read_link(&p) {
                            hops += 1;
                            done.pop();
                            if target.is_absolute() {
                                done.clear();
                            }
                            todo.extend(path_comps(&target).into_iter().rev());
                        }
                    }
                }
            }
        }
        done
    }
}

fn path_comps(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_owned()),
            std::path::Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Applies an overlay-format snapshot `src` onto the tree `dst` the way
/// overlayfs would show it: whiteouts delete, opaque dirs hide what was below.
pub(crate) fn copy_snapshot(src: &Path, dst: &Root) -> io::Result<()> {
    let top = dst.open_dir(&[], OFlags::RDONLY)?;
    let mut links = HashMap::new();
    copy_dir(src, &top, dst, &mut Vec::new(), &mut links)
}

fn copy_dir(
    src: &Path,
    dst: &OwnedFd,
    root: &Root,
    rel: &mut Vec<OsString>,
    links: &mut HashMap<(u64, u64), Vec<OsString>>,
) -> io::Result<()> {
    let mut names: Vec<OsString> = fs::read_dir(src)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for name in names {
        let spath = src.join(&name);
        let md = fs::symlink_metadata(&spath)?;
        if is_whiteout(&spath, &md) {
            rootfs::remove_all_at(dst, &name)?;
            continue;
        }
        let existing = rootfs::lstat_at(dst, &name)?;
        let ft = md.file_type();
        let mode = Mode::from_raw_mode(md.mode() & 0o7777);
        let (uid, gid) = (
            Some(rustix::process::Uid::from_raw(md.uid())),
            Some(rustix::process::Gid::from_raw(md.gid())),
        );
        let ts = Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        };
        let times = Timestamps {
            last_access: ts,
            last_modification: ts,
        };
        if ft.is_dir() {
            if !existing.as_ref().is_some_and(rootfs::is_dir) {
                rootfs::remove_all_at(dst, &name)?;
                rustix::fs::mkdirat(dst, &name, Mode::from_raw_mode(0o700))?;
            }
            let sub = rustix::fs::openat(
                dst,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            if is_opaque(&spath) {
                for c in rootfs::list_dir(&sub)? {
                    rootfs::remove_all_at(&sub, &c)?;
                }
            }
            rel.push(name.clone());
            copy_dir(&spath, &sub, root, rel, links)?;
            rel.pop();
            let _ = rustix::fs::fchown(&sub, uid, gid);
            rustix::fs::fchmod(&sub, mode)?;
            copy_xattrs(&spath, &sub);
            rustix::fs::futimens(&sub, &times)?;
            continue;
        }
        if existing.is_some() {
            rootfs::remove_all_at(dst, &name)?;
        }
        if ft.is_file() {
            let key = (md.dev(), md.ino());
            if md.nlink() > 1 {
                if let Some(first) = links.get(&key) {
                    let refs: Vec<&OsStr> = first.iter().map(|c| c.as_os_str()).collect();
                    if let Some((l, p)) = refs.split_last() {
                        let pfd = root.open_dir(p, OFlags::PATH)?;
                        rustix::fs::linkat(&pfd, *l, dst, &name, AtFlags::empty())?;
                        continue;
                    }
                }
                let mut p = rel.clone();
                p.push(name.clone());
                links.insert(key, p);
            }
            let fd = rustix::fs::openat(
                dst,
                &name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let mut out = File::from(fd);
            io::copy(&mut File::open(&spath)?, &mut out)?;
            let _ = rustix::fs::fchown(&out, uid, gid);
            rustix::fs::fchmod(&out, mode)?;
            copy_xattrs(&spath, &out);
            rustix::fs::futimens(&out, &times)?;
        } else if ft.is_symlink() {
            rustix::fs::symlinkat(fs::read_link(&spath)?.as_os_str(), dst, &name)?;
            let _ = rustix::fs::chownat(dst, &name, uid, gid, AtFlags::SYMLINK_NOFOLLOW);
            rustix::fs::utimensat(dst, &name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        } else {
            let kind = if ft.is_char_device() {
                FileType::CharacterDevice
            } else if ft.is_block_device() {
                FileType::BlockDevice
            } else if ft.is_fifo() {
                FileType::Fifo
            } else {
                continue;
            };
            match rustix::fs::mknodat(dst, &name, kind, mode, md.rdev()) {
                Ok(()) => {}
                Err(rustix::io::Errno::PERM) => continue,
                Err(e) => return Err(e.into()),
            }
            let _ = rustix::fs::chownat(dst, &name, uid, gid, AtFlags::SYMLINK_NOFOLLOW);
            rustix::fs::utimensat(dst, &name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        }
    }
    Ok(())
}

fn copy_xattrs(src: &Path, dst: impl std::os::fd::AsFd) {
    let Ok(names) = diff::list_xattrs(src) else {
        return;
    };
    for n in names.iter().filter(|n| !is_overlay_xattr(n)) {
        if let Ok(Some(v)) = diff::get_xattr(src, n) {
            let _ = rustix::fs::fsetxattr(&dst, n.as_str(), &v, rustix::fs::XattrFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_selects_the_snapshotter() {
        assert_eq!(
            SnapshotterKind::from_env_value(Some("copy")),
            Some(SnapshotterKind::Copy)
        );
        assert_eq!(
            SnapshotterKind::from_env_value(Some("overlay")),
            Some(SnapshotterKind::Overlay)
        );
        assert_eq!(SnapshotterKind::from_env_value(Some("auto")), None);
        assert_eq!(SnapshotterKind::from_env_value(None), None);
    }
}
