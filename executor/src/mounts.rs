//! The mount plan of a sandbox and the kernel interface it runs against.
//!
//! [`plan`] is a pure function from the sandbox's inputs to a list of
//! [`Step`]s; [`execute`] carries them out through a [`Kernel`]. The real
//! kernel ([`HostKernel`]) is used inside the sandbox; tests use a recording
//! fake to check the plan without privileges.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use crate::snapshot::RootSource;

/// Host devices bind-mounted into the sandbox's /dev.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Kernel interfaces hidden in every sandbox (Docker's default list): a directory gets an
/// empty read-only tmpfs over it, a file `/dev/null`. They leak host details (`kcore`,
/// `keys`, timers) or reach hardware.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Kernel interfaces that every sandbox sees read-only (Docker's default list). `/proc/sys`
/// holds the global sysctls: with container root mapped to host root, a writable
/// `/proc/sys/kernel/core_pattern` would let a build step run a program as host root.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// An extra mount requested by the caller (`RUN --mount`, `run -v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraMount {
    /// What is mounted.
    pub kind: ExtraMountKind,
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// The kind of an [`ExtraMount`].
#[derive(Clone, PartialEq, Eq)]
pub enum ExtraMountKind {
    /// A bind mount of a host path (file, directory or Unix socket).
    Bind {
        /// Host path.
        source: PathBuf,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Size limit in bytes (0: the kernel's default).
        size: u64,
    },
    /// A merged view of directories: a stage's or an image's snapshots, or a
    /// host directory such as the build context. The lowers are never written.
    ///
    /// Without `scratch` (or with [`ExtraMount::readonly`]) the mount is
    /// read-only: an overlay of the lowers, or a read-only bind when there is
    /// only one. With `scratch`, it is writable: overlayfs keeps its upper and
    /// work dirs in `scratch/upper` and `scratch/work`, and the caller discards
    /// the writes by deleting `scratch` after the run.
    ///
    /// With the copy snapshotter (no overlayfs in the kernel) the lowers are
    /// merged by copying them, inside the sandbox's user namespace, into
    /// `scratch/tree` (or into the step's private directory when read-only),
    /// which is then bound on the target; a single read-only lower is bound
    /// directly. Correct, but it costs a copy per run.
    ///
    /// Mount targets nested in another extra mount are not supported: every
    /// mount point is made in the root file system.
    Overlay {
        /// Directories, topmost first (overlay lower dirs; whiteouts and
        /// opaque markers in them are honoured when there are several).
        lowers: Vec<PathBuf>,
        /// An empty directory of the caller's, for the writes of a writable
        /// mount (deleted by the caller afterwards). It must be on a file
        /// system overlayfs takes as upper (the store's, not an overlay).
        scratch: Option<PathBuf>,
        /// The path inside the merged view that is mounted (`source=` of
        /// `RUN --mount`); empty for its root. Resolved inside the view: a
        /// symlink in it never leads out.
        subpath: PathBuf,
    },
    /// A file whose content never touches the disk: written into a small
    /// tmpfs private to the sandbox and bound read-only on the target. It is
    /// never part of a layer.
    Secret {
        /// The content.
        content: Vec<u8>,
        /// Owner inside the container.
        uid: u32,
        /// Group inside the container.
        gid: u32,
        /// Permission bits (BuildKit's default is 0400).
        mode: u32,
    },
}

/// Never shows a secret's content.
impl fmt::Debug for ExtraMountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtraMountKind::Bind { source } => {
                f.debug_struct("Bind").field("source", source).finish()
            }
            ExtraMountKind::Tmpfs { size } => f.debug_struct("Tmpfs").field("size", size).finish(),
            ExtraMountKind::Overlay {
                lowers,
                scratch,
                subpath,
            } => f
                .debug_struct("Overlay")
                .field("lowers", lowers)
                .field("scratch", scratch)
                .field("subpath", subpath)
                .finish(),
            ExtraMountKind::Secret {
                content,
                uid,
                gid,
                mode,
            } => f
                .debug_struct("Secret")
                .field("content", &SecretBytes(content.clone()))
                .field("uid", uid)
                .field("gid", gid)
                .field("mode", &format_args!("{mode:#o}"))
                .finish(),
        }
    }
}

impl ExtraMountKind {
    /// Whether the mount point of this kind is a directory (else a file),
    /// looking at the host when needed: a bind's source (a Unix socket or a
    /// file needs a file), an overlay's subpath in its lowers.
    pub fn mountpoint_is_dir(&self) -> bool {
        match self {
            ExtraMountKind::Bind { source } => source.is_dir(),
            ExtraMountKind::Tmpfs { .. } => true,
            ExtraMountKind::Secret { .. } => false,
            ExtraMountKind::Overlay {
                lowers, subpath, ..
            } => {
                if !has_normal_component(subpath) {
                    return true;
                }
                let view = crate::snapshot::LowerView::new(lowers.clone());
                match view.lookup(&view.resolve(&Path::new("/").join(subpath))) {
                    Ok(Some((_, md))) => md.is_dir(),
                    // Missing or unreadable: the mount fails later, naming it.
                    _ => true,
                }
            }
        }
    }
}

fn has_normal_component(p: &Path) -> bool {
    p.components()
        .any(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Bytes that are never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(pub Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes redacted>", self.0.len())
    }
}

/// One step of the sandbox's mount setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make every mount private so nothing propagates back to the host.
    MakePrivate,
    /// Mount overlayfs at `target`: writable with `upper` (upper and work
    /// dir), read-only without.
    Overlay {
        /// The lower directories, topmost first.
        lowers: Vec<PathBuf>,
        /// The upper and work directories of a writable mount.
        upper: Option<(PathBuf, PathBuf)>,
        /// Where to mount it.
        target: PathBuf,
    },
    /// Bind `subpath`, resolved inside `root` (symlinks stay inside it), on `target`.
    BindIn {
        /// The directory `subpath` is resolved in.
        root: PathBuf,
        /// The path inside `root`.
        subpath: PathBuf,
        /// Where to bind it.
        target: PathBuf,
        /// Whether the bind is read-only.
        readonly: bool,
    },
    /// Give `to` the owner, permission bits and modification time of `from`.
    CopyMeta {
        /// Where the metadata comes from.
        from: PathBuf,
        /// What gets it.
        to: PathBuf,
    },
    /// Copy the merged view of `lowers` (topmost first) into the empty dir `dest`.
    CopyTree {
        /// The directories to merge, topmost first.
        lowers: Vec<PathBuf>,
        /// The empty directory to copy into.
        dest: PathBuf,
    },
    /// Create the file `path` with `content`, owner and mode.
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Its content (redacted when shown).
        content: SecretBytes,
        /// Its owner.
        uid: u32,
        /// Its group.
        gid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// Bind `source` on `target`.
    Bind {
        /// What to bind.
        source: PathBuf,
        /// Where to bind it.
        target: PathBuf,
        /// Whether the mounts below `source` come along.
        recursive: bool,
        /// Whether the bind is read-only (with `recursive`, every mount below it too).
        readonly: bool,
    },
    /// Mount a file system of type `fstype`.
    Mount {
        /// The file system type (`proc`, `tmpfs`, ...).
        fstype: &'static str,
        /// Where to mount it.
        target: PathBuf,
        /// The mount flags.
        flags: MountFlags,
        /// The file system options.
        data: String,
    },
    /// Create a directory.
    Mkdir {
        /// The directory.
        path: PathBuf,
    },
    /// Create an empty file (a bind mount point).
    Touch {
        /// The file.
        path: PathBuf,
    },
    /// Create a symlink `link` -> `target`.
    Symlink {
        /// What the link points to.
        target: PathBuf,
        /// The link.
        link: PathBuf,
    },
    /// pivot_root into `new_root` and detach the old root.
    PivotRoot {
        /// The new root.
        new_root: PathBuf,
    },
    /// Set the UTS host name.
    Hostname {
        /// The host name.
        name: String,
    },
    /// Bring up `lo` in the new network namespace.
    LoopbackUp,
    /// Hide `path` (when it exists): an empty read-only tmpfs on a directory,
    /// `/dev/null` on a file.
    Mask {
        /// The path to hide.
        path: PathBuf,
    },
    /// Make `path` (when it exists) and every mount below it read-only.
    ReadOnly {
        /// The path to make read-only.
        path: PathBuf,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::MakePrivate => write!(f, "make / private"),
            Step::Overlay {
                lowers,
                upper,
                target,
            } => write!(
                f,
                "mount overlay ({} lowers{}) on {}",
                lowers.len(),
                if upper.is_some() { "" } else { ", ro" },
                target.display()
            ),
            Step::BindIn {
                root,
                subpath,
                target,
                readonly,
            } => write!(
                f,
                "bind {} of {} on {}{}",
                subpath.display(),
                root.display(),
                target.display(),
                if *readonly { " (ro)" } else { "" }
            ),
            Step::CopyMeta { from, to } => {
                write!(
                    f,
                    "copy owner and mode of {} to {}",
                    from.display(),
                    to.display()
                )
            }
            Step::CopyTree { lowers, dest } => {
                write!(f, "copy {} dirs into {}", lowers.len(), dest.display())
            }
            Step::WriteFile { path, .. } => write!(f, "write file {}", path.display()),
            Step::Bind {
                source,
                target,
                readonly,
                ..
            } => {
                write!(
                    f,
                    "bind {} on {}{}",
                    source.display(),
                    target.display(),
                    if *readonly { " (ro)" } else { "" }
                )
            }
            Step::Mount { fstype, target, .. } => {
                write!(f, "mount {fstype} on {}", target.display())
            }
            Step::Mkdir { path } => write!(f, "mkdir {}", path.display()),
            Step::Touch { path } => write!(f, "create {}", path.display()),
            Step::Symlink { target, link } => {
                write!(f, "symlink {} -> {}", link.display(), target.display())
            }
            Step::PivotRoot { new_root } => write!(f, "pivot_root into {}", new_root.display()),
            Step::Hostname { name } => write!(f, "set hostname {name}"),
            Step::LoopbackUp => write!(f, "bring up lo"),
            Step::Mask { path } => write!(f, "mask {}", path.display()),
            Step::ReadOnly { path } => write!(f, "make {} read-only", path.display()),
        }
    }
}

/// The kernel operations the plan needs.
pub trait Kernel {
    /// `mount --make-rprivate /`.
    fn make_private(&mut self) -> io::Result<()>;
    /// Mounts overlayfs (lowers topmost first); read-only without `upper`
    /// (upper dir, work dir).
    fn overlay(
        &mut self,
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        target: &Path,
    ) -> io::Result<()>;
    /// Bind mount of `subpath` resolved inside `root`.
    fn bind_in(
        &mut self,
        root: &Path,
        subpath: &Path,
        target: &Path,
        readonly: bool,
    ) -> io::Result<()>;
    /// Copies the owner, permission bits and mtime of `from` to `to`.
    fn copy_meta(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Copies the merged view of `lowers` (topmost first) into `dest`.
    fn copy_tree(&mut self, lowers: &[PathBuf], dest: &Path) -> io::Result<()>;
    /// Creates a new file with `content`, owner and mode.
    fn write_file(
        &mut self,
        path: &Path,
        content: &[u8],
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> io::Result<()>;
    /// Bind mount, optionally recursive and read-only.
    fn bind(
        &mut self,
        source: &Path,
        target: &Path,
        recursive: bool,
        readonly: bool,
    ) -> io::Result<()>;
    /// Mounts a pseudo file system.
    fn mount(
        &mut self,
        fstype: &str,
        target: &Path,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()>;
    /// Creates a directory (existing ones are fine).
    fn mkdir(&mut self, path: &Path) -> io::Result<()>;
    /// Creates an empty file (existing ones are fine).
    fn touch(&mut self, path: &Path) -> io::Result<()>;
    /// Creates a symlink.
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()>;
    /// pivot_root into `new_root` and unmount the old root.
    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()>;
    /// Sets the host name.
    fn hostname(&mut self, name: &str) -> io::Result<()>;
    /// Brings up the loopback interface.
    fn loopback_up(&mut self) -> io::Result<()>;
    /// Hides `path` when it exists: an empty read-only tmpfs on a directory,
    /// `/dev/null` bound on anything else.
    fn mask(&mut self, path: &Path) -> io::Result<()>;
    /// Makes `path`, when it exists, read-only with every mount below it.
    fn readonly(&mut self, path: &Path) -> io::Result<()>;
}

/// A plan step that failed.
#[derive(Debug, thiserror::Error)]
#[error("sandbox setup failed at step {index} ({step})")]
pub struct PlanError {
    /// Index of the step.
    pub index: usize,
    /// The step, described.
    pub step: String,
    /// The kernel's error.
    #[source]
    pub source: io::Error,
}

/// Inputs of [`plan`].
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// The root file system source.
    pub root: &'a RootSource,
    /// Where the root is mounted (host path).
    pub rootfs: &'a Path,
    /// Generated files: the contents of hosts, hostname and resolv.conf, with their targets
    /// resolved inside the root (relative). They are written into a tmpfs of the sandbox's
    /// own and bound from there, so `/proc/self/mountinfo` names no host path as their
    /// source.
    pub etc_files: [(&'a [u8], PathBuf); 3],
    /// Extra mounts with their targets already resolved inside the root (relative).
    pub extra: Vec<(ExtraMount, PathBuf)>,
    /// An empty host directory of the step, outside the root, for what the
    /// mounts need privately: the tmpfs of the generated `/etc` files and the secrets' one,
    /// staging mount points,
    /// copies made without overlayfs. Mounts on it stay in the sandbox's
    /// mount namespace.
    pub private_dir: &'a Path,
    /// Host name inside.
    pub hostname: &'a str,
    /// A network namespace of its own (it gets a sysfs of its own, showing only its own
    /// interfaces, and its loopback is brought up; a sandbox on the host's network sees the
    /// host's sysfs, read-only).
    pub own_network: bool,
    /// `RUN --security=insecure`: /proc and /sys are neither masked nor read-only.
    pub privileged: bool,
}

/// The ordered mount steps for a sandbox.
pub fn plan(input: &PlanInput<'_>) -> Vec<Step> {
    let r = input.rootfs;
    let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let mut s = vec![Step::MakePrivate];
    s.push(match input.root {
        RootSource::Overlay {
            lowers,
            upper,
            work,
        } => Step::Overlay {
            lowers: lowers.clone(),
            upper: Some((upper.clone(), work.clone())),
            target: r.to_owned(),
        },
        RootSource::Bind { tree } => Step::Bind {
            source: tree.clone(),
            target: r.to_owned(),
            recursive: false,
            readonly: false,
        },
    });
    s.push(Step::Mount {
        fstype: "proc",
        target: r.join("proc"),
        flags: nosuid_nodev_noexec,
        data: String::new(),
    });
    s.push(if input.own_network {
        // sysfs shows the network namespace of the mounter: a fresh one shows only `lo`.
        Step::Mount {
            fstype: "sysfs",
            target: r.join("sys"),
            flags: if input.privileged {
                nosuid_nodev_noexec
            } else {
                MountFlags::RDONLY | nosuid_nodev_noexec
            },
            data: String::new(),
        }
    } else {
        // The kernel allows a new sysfs only to the owner of the network namespace.
        Step::Bind {
            source: "/sys".into(),
            target: r.join("sys"),
            recursive: true,
            readonly: true,
        }
    });
    let in_root = |p: &str| r.join(p.trim_start_matches('/'));
    if !input.privileged {
        s.extend(MASKED_PATHS.iter().map(|p| Step::Mask { path: in_root(p) }));
        s.extend(
            READONLY_PATHS
                .iter()
                .map(|p| Step::ReadOnly { path: in_root(p) }),
        );
    }
    let dev = r.join("dev");
    s.push(Step::Mount {
        fstype: "tmpfs",
        target: dev.clone(),
        flags: MountFlags::NOSUID | MountFlags::STRICTATIME,
        data: "mode=755,size=65536k".into(),
    });
    for d in DEVICES {
        s.push(Step::Touch { path: dev.join(d) });
        s.push(Step::Bind {
            source: Path::new("/dev").join(d),
            target: dev.join(d),
            recursive: false,
            readonly: false,
        });
    }
    s.push(Step::Mkdir {
        path: dev.join("pts"),
    });
    s.push(Step::Mount {
        fstype: "devpts",
        target: dev.join("pts"),
        flags: MountFlags::NOSUID | MountFlags::NOEXEC,
        data: "newinstance,ptmxmode=0666,mode=0620".into(),
    });
    s.push(Step::Symlink {
        target: "pts/ptmx".into(),
        link: dev.join("ptmx"),
    });
    s.push(Step::Mkdir {
        path: dev.join("shm"),
    });
    s.push(Step::Mount {
        fstype: "tmpfs",
        target: dev.join("shm"),
        flags: nosuid_nodev_noexec,
        data: "mode=1777,size=65536k".into(),
    });
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        s.push(Step::Symlink {
            target: target.into(),
            link: dev.join(name),
        });
    }
    let private = input.private_dir;
    let etc = private.join("etc");
    let etc_bytes: usize = input.etc_files.iter().map(|(c, _)| c.len() + 4096).sum();
    s.push(Step::Mkdir { path: etc.clone() });
    s.push(Step::Mount {
        fstype: "tmpfs",
        target: etc.clone(),
        flags: nosuid_nodev_noexec,
        data: format!("mode=755,size={}", etc_bytes + 65536),
    });
    for (name, (content, rel)) in ["hosts", "hostname", "resolv.conf"]
        .into_iter()
        .zip(&input.etc_files)
    {
        let file = etc.join(name);
        s.push(Step::WriteFile {
            path: file.clone(),
            content: SecretBytes(content.to_vec()),
            uid: 0,
            gid: 0,
            mode: 0o644,
        });
        s.push(Step::Bind {
            source: file,
            target: r.join(rel),
            recursive: false,
            readonly: false,
        });
    }
    let has_overlay = matches!(input.root, RootSource::Overlay { .. });
    let secrets = private.join("secrets");
    let secret_bytes: Vec<usize> = input
        .extra
        .iter()
        .filter_map(|(m, _)| match &m.kind {
            ExtraMountKind::Secret { content, .. } => Some(content.len()),
            _ => None,
        })
        .collect();
    if !secret_bytes.is_empty() {
        // Room for the contents plus a page per file.
        let size: usize = secret_bytes.iter().map(|n| n + 4096).sum::<usize>() + 65536;
        s.push(Step::Mkdir {
            path: secrets.clone(),
        });
        s.push(Step::Mount {
            fstype: "tmpfs",
            target: secrets.clone(),
            flags: nosuid_nodev_noexec,
            data: format!("mode=700,size={size}"),
        });
    }
    for (i, (m, rel)) in input.extra.iter().enumerate() {
        let target = r.join(rel);
        if let Ok(below) = rel.strip_prefix("dev")
            && below.components().next().is_some()
        {
            // /dev is the sandbox's own tmpfs, mounted over the root's mount points (the
            // `/dev/pipes/` files of RUN heredocs): make the mount point in it.
            let mut p = r.join("dev");
            let comps: Vec<_> = below.components().collect();
            for (k, c) in comps.iter().enumerate() {
                p.push(c);
                s.push(if k + 1 < comps.len() || m.kind.mountpoint_is_dir() {
                    Step::Mkdir { path: p.clone() }
                } else {
                    Step::Touch { path: p.clone() }
                });
            }
        }
        match &m.kind {
            ExtraMountKind::Bind { source } => s.push(Step::Bind {
                source: source.clone(),
                target,
                recursive: true,
                readonly: m.readonly,
            }),
            ExtraMountKind::Tmpfs { size } => {
                let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
                if m.readonly {
                    flags |= MountFlags::RDONLY;
                }
                let data = if *size > 0 {
                    format!("mode=1777,size={size}")
                } else {
                    "mode=1777".into()
                };
                s.push(Step::Mount {
                    fstype: "tmpfs",
                    target,
                    flags,
                    data,
                });
            }
            ExtraMountKind::Secret {
                content,
                uid,
                gid,
                mode,
            } => {
                let file = secrets.join(i.to_string());
                s.push(Step::WriteFile {
                    path: file.clone(),
                    content: SecretBytes(content.clone()),
                    uid: *uid,
                    gid: *gid,
                    mode: *mode,
                });
                s.push(Step::Bind {
                    source: file,
                    target,
                    recursive: false,
                    readonly: true,
                });
            }
            ExtraMountKind::Overlay {
                lowers,
                scratch,
                subpath,
            } => plan_overlay(
                &mut s,
                OverlayMount {
                    lowers,
                    scratch: scratch.as_deref().filter(|_| !m.readonly),
                    subpath,
                    target,
                    has_overlay,
                    private,
                    index: i,
                },
            ),
        }
    }
    s.push(Step::PivotRoot {
        new_root: r.to_owned(),
    });
    s.push(Step::Hostname {
        name: input.hostname.to_owned(),
    });
    if input.own_network {
        s.push(Step::LoopbackUp);
    }
    s
}

/// One [`ExtraMountKind::Overlay`] to plan.
struct OverlayMount<'a> {
    lowers: &'a [PathBuf],
    /// Writable when set.
    scratch: Option<&'a Path>,
    subpath: &'a Path,
    target: PathBuf,
    has_overlay: bool,
    private: &'a Path,
    index: usize,
}

fn plan_overlay(s: &mut Vec<Step>, o: OverlayMount<'_>) {
    let sub = has_normal_component(o.subpath);
    // With a subpath, the merged view is made in a private place and the
    // subpath bound from there on the target.
    let bind_sub = |merged: PathBuf, readonly: bool| Step::BindIn {
        root: merged,
        subpath: o.subpath.to_owned(),
        target: o.target.clone(),
        readonly,
    };
    let mut lowers = o.lowers.to_vec();
    if lowers.is_empty() {
        let empty = o.private.join("empty");
        s.push(Step::Mkdir {
            path: empty.clone(),
        });
        lowers.push(empty);
    }
    let readonly = o.scratch.is_none();
    if readonly && lowers.len() == 1 {
        // One directory: overlayfs refuses a single lower without an upper,
        // and a read-only bind shows the same thing.
        s.push(if sub {
            bind_sub(lowers[0].clone(), true)
        } else {
            Step::Bind {
                source: lowers[0].clone(),
                target: o.target.clone(),
                recursive: true,
                readonly: true,
            }
        });
        return;
    }
    if o.has_overlay {
        let mount_at = if sub {
            let stage = o.private.join(format!("m{}", o.index));
            s.push(Step::Mkdir {
                path: stage.clone(),
            });
            stage
        } else {
            o.target.clone()
        };
        let upper = o.scratch.map(|scratch| {
            let (u, w) = (scratch.join("upper"), scratch.join("work"));
            s.push(Step::Mkdir { path: u.clone() });
            s.push(Step::Mkdir { path: w.clone() });
            // The merged root shows the upper dir's owner and mode.
            s.push(Step::CopyMeta {
                from: lowers[0].clone(),
                to: u.clone(),
            });
            (u, w)
        });
        s.push(Step::Overlay {
            lowers,
            upper,
            target: mount_at.clone(),
        });
        if sub {
            s.push(bind_sub(mount_at, readonly));
        }
    } else {
        let dest = match o.scratch {
            Some(scratch) => scratch.join("tree"),
            None => o.private.join(format!("c{}", o.index)),
        };
        s.push(Step::Mkdir { path: dest.clone() });
        s.push(Step::CopyTree {
            lowers: lowers.clone(),
            dest: dest.clone(),
        });
        s.push(Step::CopyMeta {
            from: lowers[0].clone(),
            to: dest.clone(),
        });
        s.push(if sub {
            bind_sub(dest, readonly)
        } else {
            Step::Bind {
                source: dest,
                target: o.target.clone(),
                recursive: false,
                readonly,
            }
        });
    }
}

/// Carries out `steps` in order; stops at the first failure.
pub fn execute(kernel: &mut dyn Kernel, steps: &[Step]) -> Result<(), PlanError> {
    for (index, step) in steps.iter().enumerate() {
        let r = match step {
            Step::MakePrivate => kernel.make_private(),
            Step::Overlay {
                lowers,
                upper,
                target,
            } => kernel.overlay(
                lowers,
                upper.as_ref().map(|(u, w)| (u.as_path(), w.as_path())),
                target,
            ),
            Step::BindIn {
                root,
                subpath,
                target,
                readonly,
            } => kernel.bind_in(root, subpath, target, *readonly),
            Step::CopyMeta { from, to } => kernel.copy_meta(from, to),
            Step::CopyTree { lowers, dest } => kernel.copy_tree(lowers, dest),
            Step::WriteFile {
                path,
                content,
                uid,
                gid,
                mode,
            } => kernel.write_file(path, &content.0, *uid, *gid, *mode),
            Step::Bind {
                source,
                target,
                recursive,
                readonly,
            } => kernel.bind(source, target, *recursive, *readonly),
            Step::Mount {
                fstype,
                target,
                flags,
                data,
            } => kernel.mount(fstype, target, *flags, data),
            Step::Mkdir { path } => kernel.mkdir(path),
            Step::Touch { path } => kernel.touch(path),
            Step::Symlink { target, link } => kernel.symlink(target, link),
            Step::PivotRoot { new_root } => kernel.pivot_root(new_root),
            Step::Hostname { name } => kernel.hostname(name),
            Step::LoopbackUp => kernel.loopback_up(),
            Step::Mask { path } => kernel.mask(path),
            Step::ReadOnly { path } => kernel.readonly(path),
        };
        r.map_err(|source| PlanError {
            index,
            step: step.to_string(),
            source,
        })?;
    }
    Ok(())
}

/// The real kernel, used inside the sandbox's namespaces.
///
/// Mount targets below the confining root are opened with `openat2(2)`
/// (`RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS`) and mounted on through
/// `/proc/self/fd/N`, so a symlink in the image can never redirect a mount.
#[derive(Debug, Default)]
pub struct HostKernel {
    root: Option<PathBuf>,
}

/// A mount target: a plain path, or an fd opened safely inside the root.
enum Target<'a> {
    Path(&'a Path),
    /// The fd is kept open while its `/proc/self/fd` path is in use.
    Fd {
        fd: OwnedFd,
        path: PathBuf,
    },
}

impl Target<'_> {
    fn path(&self) -> &Path {
        match self {
            Target::Path(p) => p,
            Target::Fd { path, .. } => path,
        }
    }
}

impl HostKernel {
    /// A kernel whose mount targets under `root` are resolved inside it.
    pub fn confined_to(root: &Path) -> Self {
        HostKernel {
            root: Some(root.to_owned()),
        }
    }

    fn target<'a>(&self, t: &'a Path) -> io::Result<Target<'a>> {
        let Some(rel) = self.root.as_deref().and_then(|r| t.strip_prefix(r).ok()) else {
            return Ok(Target::Path(t));
        };
        if rel.as_os_str().is_empty() {
            return Ok(Target::Path(t));
        }
        let root = self.root.as_deref().unwrap_or(Path::new("/"));
        let rootfd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let fd = rustix::fs::openat2(
            &rootfd,
            rel,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
        )?;
        let p = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(Target::Fd { fd, path: p })
    }
}

fn ignore_exists(r: rustix::io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Kernel for HostKernel {
    fn make_private(&mut self) -> io::Result<()> {
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )?;
        Ok(())
    }

    fn overlay(
        &mut self,
        lowers: &[PathBuf],
        upper: Option<(&Path, &Path)>,
        target: &Path,
    ) -> io::Result<()> {
        use rustix::mount::*;
        // The new mount API takes each lower dir as its own `lowerdir+`
        // parameter, so the number of layers is not limited by the size of
        // one option page.
        // Each directory is passed as `/proc/self/fd/N` of a descriptor opened here: overlayfs
        // shows the names it was given in /proc/self/mountinfo, and these say nothing of the
        // host's paths (the store, its snapshots, the step's directory).
        // (Held open until the mount is made, so each has a number of its own.)
        let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
        let mut held: Vec<OwnedFd> = Vec::new();
        let mut by_fd = |dir: &Path| -> io::Result<String> {
            let fd = rustix::fs::open(
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let name = format!("/proc/self/fd/{}", fd.as_raw_fd());
            held.push(fd);
            Ok(name)
        };
        for l in lowers {
            fsconfig_set_string(&fs, "lowerdir+", by_fd(l)?)?;
        }
        let mut attrs = MountAttrFlags::empty();
        match upper {
            Some((upper, work)) => {
                fsconfig_set_string(&fs, "upperdir", by_fd(upper)?)?;
                fsconfig_set_string(&fs, "workdir", by_fd(work)?)?;
            }
            None => attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY,
        }
        fsconfig_set_flag(&fs, "userxattr")?;
        fsconfig_create(&fs)?;
        drop(held);
        let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
        // move_mount does not follow a `/proc/self/fd` link: pass the fd.
        match self.target(target)? {
            Target::Path(p) => move_mount(
                &mnt,
                "",
                rustix::fs::CWD,
                p,
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )?,
            Target::Fd { fd, .. } => move_mount(
                &mnt,
                "",
                &fd,
                "",
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
            )?,
        }
        Ok(())
    }

    fn bind_in(
        &mut self,
        root: &Path,
        subpath: &Path,
        target: &Path,
        readonly: bool,
    ) -> io::Result<()> {
        let rootfd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let rel = subpath.strip_prefix("/").unwrap_or(subpath);
        let fd = rustix::fs::openat2(
            &rootfd,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?;
        let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        self.bind(&source, target, false, readonly)
    }

    fn copy_meta(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let st = rustix::fs::stat(from)?;
        // An owner outside the id map cannot be given: the dir keeps ours.
        let _ = rustix::fs::chown(
            to,
            Some(rustix::process::Uid::from_raw(st.st_uid)),
            Some(rustix::process::Gid::from_raw(st.st_gid)),
        );
        rustix::fs::chmod(to, Mode::from_raw_mode(st.st_mode & 0o7777))?;
        let mtime = rustix::fs::Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            to,
            &rustix::fs::Timestamps {
                last_access: mtime,
                last_modification: mtime,
            },
            rustix::fs::AtFlags::empty(),
        )?;
        Ok(())
    }

    fn copy_tree(&mut self, lowers: &[PathBuf], dest: &Path) -> io::Result<()> {
        let root = crate::rootfs::Root::open(dest)?;
        for l in lowers.iter().rev() {
            crate::snapshot::copy_snapshot(l, &root)
                .map_err(|e| io::Error::new(e.kind(), format!("copy {}: {e}", l.display())))?;
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        path: &Path,
        content: &[u8],
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> io::Result<()> {
        use std::io::Write;
        let fd = rustix::fs::open(
            path,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let mut f = std::fs::File::from(fd);
        f.write_all(content)?;
        rustix::fs::fchown(
            &f,
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
        )?;
        // After the chown, which clears set-id bits.
        rustix::fs::fchmod(&f, Mode::from_raw_mode(mode & 0o7777))?;
        Ok(())
    }

    fn bind(
        &mut self,
        source: &Path,
        target: &Path,
        recursive: bool,
        readonly: bool,
    ) -> io::Result<()> {
        let t = self.target(target)?;
        if recursive {
            rustix::mount::mount_bind_recursive(source, t.path())?;
        } else {
            rustix::mount::mount_bind(source, t.path())?;
        }
        if readonly && recursive {
            // Every mount of the tree, not only the top one.
            let t = self.target(target)?;
            let fd = rustix::fs::open(t.path(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
            return crate::sys::make_mount_tree_readonly(fd.as_fd());
        }
        if readonly {
            // Open the target again: the first fd refers to what is now
            // under the new mount.
            let t = self.target(target)?;
            let target = t.path();
            // A remount must keep the flags the kernel locked on the source.
            let st = rustix::fs::statvfs(target)?;
            let locked = st.f_flag;
            let mut flags = MountFlags::BIND | MountFlags::RDONLY;
            use rustix::fs::StatVfsMountFlags as V;
            for (v, m) in [
                (V::NOSUID, MountFlags::NOSUID),
                (V::NODEV, MountFlags::NODEV),
                (V::NOEXEC, MountFlags::NOEXEC),
            ] {
                if locked.contains(v) {
                    flags |= m;
                }
            }
            rustix::mount::mount_remount(target, flags, "")?;
        }
        Ok(())
    }

    fn mount(
        &mut self,
        fstype: &str,
        target: &Path,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        let t = self.target(target)?;
        let target = t.path();
        let data = std::ffi::CString::new(data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        rustix::mount::mount(fstype, target, fstype, flags, Some(data.as_c_str()))?;
        Ok(())
    }

    fn mkdir(&mut self, path: &Path) -> io::Result<()> {
        ignore_exists(rustix::fs::mkdir(
            path,
            rustix::fs::Mode::from_raw_mode(0o755),
        ))
    }

    fn touch(&mut self, path: &Path) -> io::Result<()> {
        let flags = rustix::fs::OFlags::CREATE
            | rustix::fs::OFlags::WRONLY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC;
        rustix::fs::open(path, flags, rustix::fs::Mode::from_raw_mode(0o644))?;
        Ok(())
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        ignore_exists(rustix::fs::symlink(target, link))
    }

    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()> {
        rustix::process::chdir(new_root)?;
        rustix::process::pivot_root(".", ".")?;
        rustix::mount::unmount(".", UnmountFlags::DETACH)?;
        rustix::process::chdir("/")?;
        Ok(())
    }

    fn hostname(&mut self, name: &str) -> io::Result<()> {
        rustix::system::sethostname(name.as_bytes())?;
        Ok(())
    }

    fn loopback_up(&mut self) -> io::Result<()> {
        use rustix::net::{AddressFamily, SocketType};
        let sock = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)?;
        crate::sys::interface_up(std::os::fd::AsFd::as_fd(&sock), "lo")
    }

    fn mask(&mut self, path: &Path) -> io::Result<()> {
        let t = match self.target(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            t => t?,
        };
        let st = match &t {
            Target::Fd { fd, .. } => rustix::fs::fstat(fd)?,
            Target::Path(p) => rustix::fs::stat(*p)?,
        };
        let is_dir = rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir();
        if is_dir {
            rustix::mount::mount(
                "tmpfs",
                t.path(),
                "tmpfs",
                MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                Some(c"size=0"),
            )?;
        } else {
            rustix::mount::mount_bind("/dev/null", t.path())?;
        }
        Ok(())
    }

    fn readonly(&mut self, path: &Path) -> io::Result<()> {
        let t = match self.target(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            t => t?,
        };
        rustix::mount::mount_bind_recursive(t.path(), t.path())?;
        // The fd above names what is now under the new mount: open it again.
        let t = self.target(path)?;
        let fd = rustix::fs::open(t.path(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
        crate::sys::make_mount_tree_readonly(fd.as_fd())
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;

    /// Runs the plan of `root` with `extra` against a [`Recorder`].
    pub(super) fn record(root: &RootSource, extra: Vec<(ExtraMount, PathBuf)>) -> Vec<String> {
        let steps = plan(&input(root, false, extra));
        let mut k = Recorder::default();
        execute(&mut k, &steps).unwrap();
        k.calls
    }

    /// Records every call; fails the call whose index is `fail_at`.
    #[derive(Default)]
    pub(super) struct Recorder {
        pub(super) calls: Vec<String>,
        pub(super) fail_at: Option<usize>,
    }

    impl Recorder {
        fn rec(&mut self, s: String) -> io::Result<()> {
            self.calls.push(s);
            if self.fail_at == Some(self.calls.len() - 1) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
    }

    impl Kernel for Recorder {
        fn make_private(&mut self) -> io::Result<()> {
            self.rec("private /".into())
        }
        fn overlay(
            &mut self,
            lowers: &[PathBuf],
            upper: Option<(&Path, &Path)>,
            target: &Path,
        ) -> io::Result<()> {
            let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
            let u = match upper {
                Some((u, w)) => format!("upper={} work={}", u.display(), w.display()),
                None => "ro".into(),
            };
            self.rec(format!(
                "overlay lowers={} {u} on {}",
                l.join(":"),
                target.display()
            ))
        }
        fn bind_in(&mut self, r: &Path, sub: &Path, t: &Path, ro: bool) -> io::Result<()> {
            self.rec(format!(
                "bind {} in {} {} ro={ro}",
                sub.display(),
                r.display(),
                t.display()
            ))
        }
        fn copy_meta(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            self.rec(format!("copy meta {} {}", from.display(), to.display()))
        }
        fn copy_tree(&mut self, lowers: &[PathBuf], dest: &Path) -> io::Result<()> {
            let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
            self.rec(format!("copy {} into {}", l.join(":"), dest.display()))
        }
        fn write_file(
            &mut self,
            p: &Path,
            content: &[u8],
            uid: u32,
            gid: u32,
            mode: u32,
        ) -> io::Result<()> {
            self.rec(format!(
                "write {} {} bytes {uid}:{gid} {mode:o}",
                p.display(),
                content.len()
            ))
        }
        fn bind(&mut self, s: &Path, t: &Path, rec: bool, ro: bool) -> io::Result<()> {
            self.rec(format!(
                "bind {} {} rec={rec} ro={ro}",
                s.display(),
                t.display()
            ))
        }
        fn mount(
            &mut self,
            fstype: &str,
            target: &Path,
            flags: MountFlags,
            data: &str,
        ) -> io::Result<()> {
            self.rec(format!(
                "mount {fstype} {} {:#x} {data}",
                target.display(),
                flags.bits()
            ))
        }
        fn mkdir(&mut self, p: &Path) -> io::Result<()> {
            self.rec(format!("mkdir {}", p.display()))
        }
        fn touch(&mut self, p: &Path) -> io::Result<()> {
            self.rec(format!("touch {}", p.display()))
        }
        fn symlink(&mut self, t: &Path, l: &Path) -> io::Result<()> {
            self.rec(format!("symlink {} -> {}", l.display(), t.display()))
        }
        fn pivot_root(&mut self, r: &Path) -> io::Result<()> {
            self.rec(format!("pivot_root {}", r.display()))
        }
        fn hostname(&mut self, n: &str) -> io::Result<()> {
            self.rec(format!("hostname {n}"))
        }
        fn loopback_up(&mut self) -> io::Result<()> {
            self.rec("lo up".into())
        }
        fn mask(&mut self, p: &Path) -> io::Result<()> {
            self.rec(format!("mask {}", p.display()))
        }
        fn readonly(&mut self, p: &Path) -> io::Result<()> {
            self.rec(format!("ro {}", p.display()))
        }
    }

    pub(super) fn input<'a>(
        root: &'a RootSource,
        none: bool,
        extra: Vec<(ExtraMount, PathBuf)>,
    ) -> PlanInput<'a> {
        PlanInput {
            root,
            rootfs: Path::new("/s/rootfs"),
            etc_files: [
                (b"127.0.0.1 localhost\n", PathBuf::from("etc/hosts")),
                (b"box\n", PathBuf::from("etc/hostname")),
                (b"nameserver 10.0.2.3\n", PathBuf::from("etc/resolv.conf")),
            ],
            extra,
            private_dir: Path::new("/s/private"),
            hostname: "box",
            own_network: none,
            privileged: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn overlay_plan_order() {
        let root = RootSource::Overlay {
            lowers: vec!["/s/init".into(), "/snap/b".into(), "/snap/a".into()],
            upper: "/s/upper".into(),
            work: "/s/work".into(),
        };
        let extra = vec![
            (
                ExtraMount {
                    kind: ExtraMountKind::Bind {
                        source: "/ctx".into(),
                    },
                    target: "/src".into(),
                    readonly: true,
                },
                PathBuf::from("src"),
            ),
            (
                ExtraMount {
                    kind: ExtraMountKind::Tmpfs { size: 1024 },
                    target: "/tmp".into(),
                    readonly: false,
                },
                PathBuf::from("tmp"),
            ),
        ];
        let steps = plan(&input(&root, true, extra));
        let mut k = Recorder::default();
        execute(&mut k, &steps).unwrap();
        let c = &k.calls;
        assert_eq!(c[0], "private /");
        assert_eq!(
            c[1],
            "overlay lowers=/s/init:/snap/b:/snap/a upper=/s/upper work=/s/work on /s/rootfs"
        );
        assert_eq!(c[2], "mount proc /s/rootfs/proc 0xe ");
        // A network namespace of its own: a sysfs of its own, read-only.
        assert_eq!(c[3], "mount sysfs /s/rootfs/sys 0xf ");
        // Then Docker's masked and read-only paths, before anything else is mounted.
        let masks: Vec<String> = MASKED_PATHS
            .iter()
            .map(|p| format!("mask /s/rootfs{p}"))
            .chain(READONLY_PATHS.iter().map(|p| format!("ro /s/rootfs{p}")))
            .collect();
        assert_eq!(c[4..4 + masks.len()], masks[..]);
        assert!(masks.contains(&"ro /s/rootfs/proc/sys".to_string()));
        assert!(masks.contains(&"mask /s/rootfs/proc/kcore".to_string()));
        // A privileged sandbox (`RUN --security=insecure`): a writable sysfs, nothing masked.
        let steps = plan(&PlanInput {
            privileged: true,
            ..input(&root, true, vec![])
        });
        let mut p = Recorder::default();
        execute(&mut p, &steps).unwrap();
        assert_eq!(p.calls[3], "mount sysfs /s/rootfs/sys 0xe ");
        assert!(
            !p.calls
                .iter()
                .any(|s| s.starts_with("mask ") || s.starts_with("ro ")),
            "{:?}",
            p.calls
        );
        assert!(c.contains(&"touch /s/rootfs/dev/null".to_string()));
        assert!(
            c.contains(&"bind /dev/urandom /s/rootfs/dev/urandom rec=false ro=false".to_string())
        );
        assert!(c.contains(&"symlink /s/rootfs/dev/ptmx -> pts/ptmx".to_string()));
        assert!(
            c.iter()
                .any(|s| s.starts_with("mount devpts /s/rootfs/dev/pts")
                    && s.ends_with("newinstance,ptmxmode=0666,mode=0620"))
        );
        assert!(c.contains(
            &"bind /s/private/etc/hosts /s/rootfs/etc/hosts rec=false ro=false".to_string()
        ));
        assert!(c.contains(&"bind /ctx /s/rootfs/src rec=true ro=true".to_string()));
        assert!(
            c.iter().any(|s| s.starts_with("mount tmpfs /s/rootfs/tmp")
                && s.ends_with("mode=1777,size=1024"))
        );
        // Every mount happens before pivot_root; hostname and lo after it.
        let pivot = c.iter().position(|s| s == "pivot_root /s/rootfs").unwrap();
        assert_eq!(&c[pivot + 1..], ["hostname box", "lo up"]);
        // The devices are bound after their mount point exists, inside the /dev tmpfs.
        let tmpfs_dev = c
            .iter()
            .position(|s| s.starts_with("mount tmpfs /s/rootfs/dev "))
            .unwrap();
        let touch_null = c
            .iter()
            .position(|s| s == "touch /s/rootfs/dev/null")
            .unwrap();
        let bind_null = c
            .iter()
            .position(|s| s.starts_with("bind /dev/null"))
            .unwrap();
        assert!(tmpfs_dev < touch_null && touch_null < bind_null);
    }

    #[test]
    fn copy_plan_binds_tree_and_host_network_keeps_lo_alone() {
        let root = RootSource::Bind {
            tree: "/s/tree".into(),
        };
        let steps = plan(&input(&root, false, vec![]));
        let mut k = Recorder::default();
        execute(&mut k, &steps).unwrap();
        assert_eq!(k.calls[1], "bind /s/tree /s/rootfs rec=false ro=false");
        // The host's network: the host's sysfs (a new one needs a network namespace of
        // the sandbox's own), read-only, then masked like any other.
        assert_eq!(k.calls[3], "bind /sys /s/rootfs/sys rec=true ro=true");
        assert_eq!(k.calls[4], "mask /s/rootfs/proc/acpi");
        assert_eq!(k.calls.last().unwrap(), "hostname box");
        assert!(!k.calls.iter().any(|c| c == "lo up"));
    }

    #[test]
    fn failure_names_the_step() {
        let root = RootSource::Bind {
            tree: "/s/tree".into(),
        };
        let steps = plan(&input(&root, false, vec![]));
        let mut k = Recorder {
            fail_at: Some(2),
            ..Default::default()
        };
        let e = execute(&mut k, &steps).unwrap_err();
        assert_eq!(e.index, 2);
        assert_eq!(
            e.to_string(),
            "sandbox setup failed at step 2 (mount proc on /s/rootfs/proc)"
        );
        assert_eq!(k.calls.len(), 3, "execution stops at the failing step");
    }
}

#[cfg(test)]
mod extra_mount_tests {
    use super::tests_support::*;
    use super::*;

    fn m(kind: ExtraMountKind, target: &str) -> (ExtraMount, PathBuf) {
        let rel = PathBuf::from(target.trim_start_matches('/'));
        (
            ExtraMount {
                kind,
                target: target.into(),
                readonly: false,
            },
            rel,
        )
    }

    fn extra_calls(root: &RootSource, extra: Vec<(ExtraMount, PathBuf)>) -> Vec<String> {
        let base = record(root, vec![]);
        let all = record(root, extra);
        // The calls the extra mounts added, in order.
        let start = base
            .iter()
            .position(|c| c.starts_with("pivot_root"))
            .unwrap();
        let end = all
            .iter()
            .position(|c| c.starts_with("pivot_root"))
            .unwrap();
        all[start..end].to_vec()
    }

    fn overlay_root() -> RootSource {
        RootSource::Overlay {
            lowers: vec!["/s/init".into(), "/snap/a".into()],
            upper: "/s/upper".into(),
            work: "/s/work".into(),
        }
    }

    fn copy_root() -> RootSource {
        RootSource::Bind {
            tree: "/s/tree".into(),
        }
    }

    fn ov(lowers: &[&str], scratch: Option<&str>, subpath: &str) -> ExtraMountKind {
        ExtraMountKind::Overlay {
            lowers: lowers.iter().map(PathBuf::from).collect(),
            scratch: scratch.map(PathBuf::from),
            subpath: subpath.into(),
        }
    }

    #[test]
    fn read_only_overlay_of_several_lowers() {
        let c = extra_calls(
            &overlay_root(),
            vec![m(ov(&["/snap/c", "/snap/b"], None, ""), "/from")],
        );
        assert_eq!(c, ["overlay lowers=/snap/c:/snap/b ro on /s/rootfs/from"]);
    }

    #[test]
    fn a_single_read_only_lower_is_bound() {
        for root in [overlay_root(), copy_root()] {
            let c = extra_calls(&root, vec![m(ov(&["/ctx"], None, ""), "/src")]);
            assert_eq!(c, ["bind /ctx /s/rootfs/src rec=true ro=true"]);
            let c = extra_calls(&root, vec![m(ov(&["/ctx"], None, "sub/f"), "/src")]);
            assert_eq!(c, ["bind sub/f in /ctx /s/rootfs/src ro=true"]);
        }
    }

    #[test]
    fn writable_overlay_keeps_writes_in_scratch() {
        let c = extra_calls(
            &overlay_root(),
            vec![m(ov(&["/ctx"], Some("/scr"), ""), "/src")],
        );
        assert_eq!(
            c,
            [
                "mkdir /scr/upper",
                "mkdir /scr/work",
                "copy meta /ctx /scr/upper",
                "overlay lowers=/ctx upper=/scr/upper work=/scr/work on /s/rootfs/src"
            ]
        );
        // `readonly` wins over a scratch dir.
        let (mut mount, rel) = m(ov(&["/a", "/b"], Some("/scr"), ""), "/src");
        mount.readonly = true;
        let c = extra_calls(&overlay_root(), vec![(mount, rel)]);
        assert_eq!(c, ["overlay lowers=/a:/b ro on /s/rootfs/src"]);
    }

    #[test]
    fn subpath_is_bound_from_a_private_staging_mount() {
        let c = extra_calls(
            &overlay_root(),
            vec![
                m(ExtraMountKind::Tmpfs { size: 0 }, "/t"),
                m(ov(&["/a", "/b"], None, "/usr/lib"), "/lib"),
            ],
        );
        assert_eq!(
            c[1..],
            [
                "mkdir /s/private/m1",
                "overlay lowers=/a:/b ro on /s/private/m1",
                "bind /usr/lib in /s/private/m1 /s/rootfs/lib ro=true"
            ]
        );
    }

    #[test]
    fn copy_snapshotter_copies_instead_of_overlaying() {
        let c = extra_calls(
            &copy_root(),
            vec![
                m(ov(&["/a", "/b"], Some("/scr"), ""), "/rw"),
                m(ov(&["/a", "/b"], None, "etc"), "/ro"),
            ],
        );
        assert_eq!(
            c,
            [
                "mkdir /scr/tree",
                "copy /a:/b into /scr/tree",
                "copy meta /a /scr/tree",
                "bind /scr/tree /s/rootfs/rw rec=false ro=false",
                "mkdir /s/private/c1",
                "copy /a:/b into /s/private/c1",
                "copy meta /a /s/private/c1",
                "bind etc in /s/private/c1 /s/rootfs/ro ro=true",
            ]
        );
    }

    #[test]
    fn no_lowers_is_an_empty_dir() {
        let c = extra_calls(&overlay_root(), vec![m(ov(&[], None, ""), "/e")]);
        assert_eq!(
            c,
            [
                "mkdir /s/private/empty",
                "bind /s/private/empty /s/rootfs/e rec=true ro=true"
            ]
        );
    }

    #[test]
    fn secrets_go_through_one_private_tmpfs() {
        let secret = |c: &[u8], mode| ExtraMountKind::Secret {
            content: c.to_vec(),
            uid: 1000,
            gid: 50,
            mode,
        };
        let c = extra_calls(
            &overlay_root(),
            vec![
                m(secret(b"hunter2", 0o400), "/run/secrets/a"),
                m(ExtraMountKind::Tmpfs { size: 0 }, "/t"),
                m(secret(b"xyz", 0o440), "/b"),
            ],
        );
        assert_eq!(c[0], "mkdir /s/private/secrets");
        assert_eq!(
            c[1],
            format!(
                "mount tmpfs /s/private/secrets 0xe mode=700,size={}",
                7 + 3 + 8192 + 65536
            )
        );
        assert_eq!(c[2], "write /s/private/secrets/0 7 bytes 1000:50 400");
        assert_eq!(
            c[3],
            "bind /s/private/secrets/0 /s/rootfs/run/secrets/a rec=false ro=true"
        );
        assert!(c[4].starts_with("mount tmpfs /s/rootfs/t"));
        assert_eq!(c[5], "write /s/private/secrets/2 3 bytes 1000:50 440");
        assert_eq!(
            c[6],
            "bind /s/private/secrets/2 /s/rootfs/b rec=false ro=true"
        );
        assert_eq!(c.len(), 7);
        // No tmpfs without secrets.
        let c = extra_calls(&overlay_root(), vec![]);
        assert!(c.is_empty());
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let k = ExtraMountKind::Secret {
            content: b"hunter2".to_vec(),
            uid: 0,
            gid: 0,
            mode: 0o400,
        };
        let d = format!("{k:?}");
        assert!(
            !d.contains("hunter2") && d.contains("7 bytes redacted"),
            "{d}"
        );
        let steps = plan(&PlanInput {
            extra: vec![m(k, "/s")],
            ..input(&overlay_root(), false, vec![])
        });
        let all = format!(
            "{steps:?} {}",
            steps
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(!all.contains("hunter2"), "{all}");
    }

    #[test]
    fn mountpoint_kinds() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), b"").unwrap();
        let sock = t.path().join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let lower = t.path().to_path_buf();
        let ovk = |sub: &str| ExtraMountKind::Overlay {
            lowers: vec![lower.clone()],
            scratch: None,
            subpath: sub.into(),
        };
        assert!(ovk("").mountpoint_is_dir());
        assert!(ovk("/").mountpoint_is_dir());
        assert!(ovk("d").mountpoint_is_dir());
        assert!(!ovk("/d/f").mountpoint_is_dir());
        assert!(!ExtraMountKind::Bind { source: sock }.mountpoint_is_dir());
        assert!(
            ExtraMountKind::Bind {
                source: lower.clone()
            }
            .mountpoint_is_dir()
        );
        assert!(ExtraMountKind::Tmpfs { size: 0 }.mountpoint_is_dir());
        assert!(
            !ExtraMountKind::Secret {
                content: vec![],
                uid: 0,
                gid: 0,
                mode: 0o400
            }
            .mountpoint_is_dir()
        );
    }
}
