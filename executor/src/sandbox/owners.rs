//! The seccomp supervisor of single-id mode, run by the sandbox's init.
//!
//! The command's filter ([`super::seccomp::owner_filter`]) hands every `chown`, `lchown`,
//! `fchown` and `fchownat` of the host's architecture to init, which records the requested
//! owner on the target inode ([`crate::owner::OWNER_XATTR`]) and answers success. Init lives
//! in the sandbox's user, mount and pid namespaces and has pivoted into its root, so it acts
//! with the sandbox's own privileges on the sandbox's own files: no host path is reachable
//! from it. Paths are resolved as the caller would: absolute ones under the caller's root
//! (`/proc/PID/root`, `RESOLVE_IN_ROOT`), relative ones from its working directory or
//! directory descriptor; magic links (`/proc/self/...`, which would mean init) are refused.
//! After resolving, the notification is checked to be still pending
//! (`SECCOMP_IOCTL_NOTIF_ID_VALID`), so a recycled pid cannot redirect it.
//!
//! Only regular files and directories can carry a `user.*` attribute: `chown` of a symlink
//! (`lchown`, `chown -h`), a device node, a fifo or a socket succeeds without recording, and
//! the layer shows it owned by root.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use super::seccomp::{ChownCall, chown_call};
use crate::owner::{OWNER_XATTR, format, parse};
use crate::sys;

/// Receives one notification from `listener` and answers it.
pub(super) fn answer_one(listener: BorrowedFd<'_>) {
    let Ok(n) = sys::seccomp_notif_recv(listener) else {
        // The caller was killed or interrupted meanwhile: nothing to answer.
        return;
    };
    let (errno, run) = match chown_call(n.data.arch, n.data.nr) {
        // Another architecture's call: the kernel runs it, as it would without the filter.
        None => (0, true),
        Some(call) => match record(listener, &n, call) {
            Ok(()) => (0, false),
            Err(e) => (e.raw_os_error().unwrap_or(libc::EPERM), false),
        },
    };
    let _ = sys::seccomp_notif_send(listener, n.id, errno, run);
}

/// What an ownership call names.
enum Target {
    /// An open descriptor of the caller.
    Fd(i32),
    /// `path` from `dir` (`AT_FDCWD`: the caller's working directory).
    Path {
        dir: i32,
        path: Vec<u8>,
        follow: bool,
    },
}

fn record(listener: BorrowedFd<'_>, n: &libc::seccomp_notif, call: ChownCall) -> io::Result<()> {
    let pid = n.pid;
    let a = n.data.args;
    // Ids are 32-bit: -1 (all ones) keeps that part.
    let (target, uid, gid) = match call {
        ChownCall::Chown | ChownCall::Lchown => (
            Target::Path {
                dir: libc::AT_FDCWD,
                path: read_path(pid, a[0])?,
                follow: call == ChownCall::Chown,
            },
            a[1] as u32,
            a[2] as u32,
        ),
        ChownCall::Fchown => (Target::Fd(a[0] as i32), a[1] as u32, a[2] as u32),
        ChownCall::Fchownat => {
            let flags = a[4] as i32;
            if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            let path = read_path(pid, a[1])?;
            let dir = a[0] as i32;
            let target = if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
                Target::Fd(dir)
            } else {
                Target::Path {
                    dir,
                    path,
                    follow: flags & libc::AT_SYMLINK_NOFOLLOW == 0,
                }
            };
            (target, a[2] as u32, a[3] as u32)
        }
    };
    if !may_chown(pid)? {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    let file = open_target(pid, &target)?;
    if !sys::seccomp_notif_id_valid(listener, n.id) {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    set_owner(&file, uid, gid)
}

/// Reads the NUL-terminated path at `addr` in the caller's memory (at most `PATH_MAX`).
fn read_path(pid: u32, addr: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut out = Vec::new();
    let mut at = addr;
    let max = libc::PATH_MAX as usize;
    while out.len() < max {
        // Page by page: the string may end just before an unmapped page.
        let chunk = (4096 - (at % 4096)) as usize;
        let mut buf = vec![0u8; chunk];
        let n = mem
            .read_at(&mut buf, at)
            .map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
        if n == 0 {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        if let Some(end) = buf[..n].iter().position(|b| *b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG))
}

/// Whether the caller holds `CAP_CHOWN` (a step that dropped it is refused, as the kernel
/// would refuse it).
fn may_chown(pid: u32) -> io::Result<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    Ok(eff & rustix::thread::CapabilitySet::CHOWN.bits() != 0)
}

/// Opens what the call names, as an `O_PATH` descriptor of init.
fn open_target(pid: u32, target: &Target) -> io::Result<OwnedFd> {
    let proc_path = |what: &str| -> io::Result<OwnedFd> {
        rustix::fs::open(
            format!("/proc/{pid}/{what}").as_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(Into::into)
    };
    let dir_of = |fd: i32| {
        if fd == libc::AT_FDCWD {
            proc_path("cwd")
        } else if fd >= 0 {
            proc_path(&format!("fd/{fd}")).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))
        } else {
            Err(io::Error::from_raw_os_error(libc::EBADF))
        }
    };
    match target {
        Target::Fd(fd) => dir_of(*fd),
        Target::Path { path, .. } if path.is_empty() => {
            Err(io::Error::from_raw_os_error(libc::ENOENT))
        }
        Target::Path { dir, path, follow } => {
            let mut resolve = ResolveFlags::NO_MAGICLINKS;
            let base = if path.first() == Some(&b'/') {
                resolve |= ResolveFlags::IN_ROOT;
                proc_path("root")?
            } else {
                dir_of(*dir)?
            };
            let mut flags = OFlags::PATH | OFlags::CLOEXEC;
            if !follow {
                flags |= OFlags::NOFOLLOW;
            }
            let path = CString::new(path.clone())
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            rustix::fs::openat2(&base, path.as_c_str(), flags, Mode::empty(), resolve)
                .map_err(Into::into)
        }
    }
}

/// Records `uid`/`gid` (all ones: keep that part) as the owner of `file`, and clears the
/// set-user-ID bit (and set-group-ID with group execute) of a regular file, as `chown` does.
fn set_owner(file: &OwnedFd, uid: u32, gid: u32) -> io::Result<()> {
    let st = rustix::fs::fstat(file)?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if !matches!(
        kind,
        rustix::fs::FileType::RegularFile | rustix::fs::FileType::Directory
    ) {
        // Symlinks, devices, fifos and sockets cannot carry a user.* attribute.
        return Ok(());
    }
    // An O_PATH descriptor takes no *xattr calls: go through its /proc link (init's own
    // /proc, the sandbox's).
    let link = format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file.as_fd())
    );
    let mut buf = [0u8; 64];
    let current = match rustix::fs::getxattr(link.as_str(), OWNER_XATTR, &mut buf[..]) {
        Ok(n) => parse(&buf[..n]),
        Err(_) => None,
    }
    .unwrap_or((st.st_uid, st.st_gid));
    let keep = |new: u32, old: u32| if new == u32::MAX { old } else { new };
    let (u, g) = (keep(uid, current.0), keep(gid, current.1));
    if (u, g) == (0, 0) {
        match rustix::fs::removexattr(link.as_str(), OWNER_XATTR) {
            Ok(()) | Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    } else {
        rustix::fs::setxattr(
            link.as_str(),
            OWNER_XATTR,
            format(u, g).as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )?;
    }
    if kind == rustix::fs::FileType::RegularFile {
        let mode = st.st_mode & 0o7777;
        let mut cleared = mode & !libc::S_ISUID;
        if mode & libc::S_IXGRP != 0 {
            cleared &= !libc::S_ISGID;
        }
        if cleared != mode {
            rustix::fs::chmodat(
                rustix::fs::CWD,
                link.as_str(),
                Mode::from_raw_mode(cleared),
                AtFlags::empty(),
            )?;
        }
    }
    Ok(())
}
