//! The seccomp supervisor of single-id mode, run by the sandbox's init.
//!
//! The command's filter ([`super::seccomp::owner_filter`]) hands to init every `chown`,
//! `lchown`, `fchown` and `fchownat`, and every call that changes or reads the process's user
//! and group ids, of the host's architecture.
//!
//! Ownership: init records the requested owner on the target inode
//! ([`crate::owner::OWNER_XATTR`]) and answers success. Init lives in the sandbox's user,
//! mount and pid namespaces and has pivoted into its root, so it acts with the sandbox's own
//! privileges on the sandbox's own files: no host path is reachable from it. Paths are
//! resolved as the caller would: absolute ones under the caller's root (`/proc/PID/root`,
//! `RESOLVE_IN_ROOT`), relative ones from its working directory or directory descriptor;
//! magic links (`/proc/self/...`, which would mean init) are refused. After resolving, the
//! notification is checked to be still pending (`SECCOMP_IOCTL_NOTIF_ID_VALID`), so a
//! recycled pid cannot redirect it. Only regular files and directories can carry a `user.*`
//! attribute: `chown` of a symlink (`lchown`, `chown -h`), a device node, a fifo or a socket
//! succeeds without recording, and the layer shows it owned by root.
//!
//! Ids: with one id mapped, nothing can really change ids, so init keeps each process's real,
//! effective and saved ids and supplementary groups itself ([`Ids`]), with the kernel's
//! rules (an effective uid 0 may set any; another only its own real, effective or saved
//! one), and answers the `get*id` calls from them. A process inherits its parent's ids when
//! it first asks. So apt can drop to `_apt` and check that it did, and cannot come back. The
//! process really stays the namespace's root throughout (files it makes are root's).

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

use super::seccomp::{Call, StatCall, call_of, foreign_id_setter};
use crate::owner::{OWNER_XATTR, format, parse};
use crate::sys;

/// The ids of one process, as the supervisor keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Ids {
    /// Real, effective and saved uid.
    uid: [u32; 3],
    /// Real, effective and saved gid.
    gid: [u32; 3],
    /// Supplementary groups.
    groups: Vec<u32>,
}

/// A process, by pid and start time (a reused pid is another process).
type ProcessKey = (u32, u64);

/// The ids of every process that changed them or asked.
#[derive(Debug, Default)]
pub(super) struct IdTable(HashMap<ProcessKey, Ids>);

/// The thread group, parent and start time of thread `tid`.
fn process_of(tid: u32) -> Option<(ProcessKey, u32)> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |name: &str| -> Option<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let (tgid, ppid) = (field("Tgid:")?, field("PPid:")?);
    let stat = std::fs::read_to_string(format!("/proc/{tgid}/stat")).ok()?;
    // Field 22, counted after the command name's closing parenthesis (field 2).
    let start = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    Some(((tgid, start), ppid))
}

impl IdTable {
    /// The ids of thread `tid`'s process: its own, else its nearest known ancestor's (root's
    /// when none is known).
    fn get(&mut self, tid: u32) -> (Option<ProcessKey>, Ids) {
        let Some((key, mut parent)) = process_of(tid) else {
            return (None, Ids::default());
        };
        if let Some(ids) = self.0.get(&key) {
            return (Some(key), ids.clone());
        }
        // Init (1) and whatever is outside the sandbox (0) end the search.
        let mut seen = 0;
        while parent > 1 && seen < 64 {
            seen += 1;
            let Some((k, p)) = process_of(parent) else {
                break;
            };
            if let Some(ids) = self.0.get(&k) {
                let ids = ids.clone();
                self.0.insert(key, ids.clone());
                return (Some(key), ids);
            }
            parent = p;
        }
        (Some(key), Ids::default())
    }
}

/// Receives one notification from `listener` and answers it.
pub(super) fn answer_one(listener: BorrowedFd<'_>, ids: &mut IdTable) {
    let Ok(n) = sys::seccomp_notif_recv(listener) else {
        // The caller was killed or interrupted meanwhile: nothing to answer.
        return;
    };
    let result = match call_of(n.data.arch, n.data.nr) {
        // A 32-bit or x32 program: id changes succeed without effect; everything else runs
        // as it would without the filter.
        None if foreign_id_setter(n.data.arch, n.data.nr) => Some(Ok(0)),
        None => None,
        Some(Call::Stat(kind)) => stat_call(listener, &n, kind),
        Some(call @ (Call::Chown | Call::Lchown | Call::Fchown | Call::Fchownat)) => {
            let (_, mine) = ids.get(n.pid);
            Some(if mine.uid[1] != 0 {
                // Not root any more (as the process believes): no chown to others.
                Err(io::Error::from_raw_os_error(libc::EPERM))
            } else {
                record(listener, &n, call).map(|()| 0)
            })
        }
        Some(call) => Some(id_call(listener, &n, call, ids)),
    };
    let _ = match result {
        // Run by the kernel as if no filter had stopped it.
        None => sys::seccomp_notif_send(listener, n.id, 0, 0, true),
        Some(Ok(val)) => sys::seccomp_notif_send(listener, n.id, val, 0, false),
        Some(Err(e)) => sys::seccomp_notif_send(
            listener,
            n.id,
            0,
            e.raw_os_error().unwrap_or(libc::EPERM),
            false,
        ),
    };
}

/// Answers a stat call on a file with a recorded owner with that owner; `None` (the kernel
/// runs the call) for every other file and whenever the target cannot be resolved here.
fn stat_call(
    listener: BorrowedFd<'_>,
    n: &libc::seccomp_notif,
    kind: StatCall,
) -> Option<io::Result<i64>> {
    let pid = n.pid;
    let a = n.data.args;
    let path_target = |dir: i32, addr: u64, flags: i32| -> Option<Target> {
        let path = read_path(pid, addr).ok()?;
        if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            return Some(Target::Fd(dir));
        }
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        Some(Target::Path { dir, path, follow })
    };
    let target = match kind {
        StatCall::Stat => path_target(libc::AT_FDCWD, a[0], 0)?,
        StatCall::Lstat => path_target(libc::AT_FDCWD, a[0], libc::AT_SYMLINK_NOFOLLOW)?,
        StatCall::Fstat => Target::Fd(a[0] as i32),
        StatCall::At => path_target(a[0] as i32, a[1], a[3] as i32)?,
        StatCall::Statx => path_target(a[0] as i32, a[1], a[2] as i32)?,
    };
    let file = open_target(pid, &target).ok()?;
    let (uid, gid) = recorded_owner(&file)?;
    let bytes = match kind {
        StatCall::Statx => {
            sys::statx_bytes_with_owner(file.as_fd(), a[2] as i32, a[3] as u32, uid, gid)
        }
        _ => sys::stat_bytes_with_owner(file.as_fd(), uid, gid),
    };
    let buf = match kind {
        StatCall::Stat | StatCall::Lstat | StatCall::Fstat => a[1],
        StatCall::At => a[2],
        StatCall::Statx => a[4],
    };
    Some(
        bytes
            .and_then(|b| write_mem(listener, n, buf, &b))
            .map(|()| 0),
    )
}

/// The owner recorded on `file` (an `O_PATH` descriptor of a regular file or directory).
fn recorded_owner(file: &OwnedFd) -> Option<(u32, u32)> {
    let st = rustix::fs::fstat(file).ok()?;
    let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
    if !matches!(
        kind,
        rustix::fs::FileType::RegularFile | rustix::fs::FileType::Directory
    ) {
        return None;
    }
    let link = fd_link(file);
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(link.as_str(), OWNER_XATTR, &mut buf[..]).ok()?;
    parse(&buf[..n])
}

/// The path of init's own /proc link to `file`: an `O_PATH` descriptor takes no *xattr
/// calls, its link does (init's /proc is the sandbox's).
fn fd_link(file: &OwnedFd) -> String {
    format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file.as_fd())
    )
}

/// Answers an id-changing or id-reading call from the caller's ids in `table`.
fn id_call(
    listener: BorrowedFd<'_>,
    n: &libc::seccomp_notif,
    call: Call,
    table: &mut IdTable,
) -> io::Result<i64> {
    let (key, mut ids) = table.get(n.pid);
    let a = n.data.args;
    let err = |e| Err(io::Error::from_raw_os_error(e));
    let root = ids.uid[1] == 0;
    let answer: io::Result<()> = match call {
        Call::GetId { gid, which } => {
            let set = if gid { ids.gid } else { ids.uid };
            return Ok(i64::from(set[which]));
        }
        Call::SetFs { gid } => {
            return Ok(i64::from(if gid { ids.gid[1] } else { ids.uid[1] }));
        }
        Call::GetRes { gid } => {
            let set = if gid { ids.gid } else { ids.uid };
            for (i, v) in set.iter().enumerate() {
                write_mem(listener, n, a[i], &v.to_ne_bytes())?;
            }
            return Ok(0);
        }
        Call::GetGroups => {
            let size = a[0] as i32;
            let count = ids.groups.len();
            if size < 0 {
                return err(libc::EINVAL);
            }
            if size != 0 {
                if (size as usize) < count {
                    return err(libc::EINVAL);
                }
                let bytes: Vec<u8> = ids.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
                write_mem(listener, n, a[1], &bytes)?;
            }
            return Ok(count as i64);
        }
        Call::SetGroups => {
            if !root {
                return err(libc::EPERM);
            }
            let size = a[0] as i32;
            if !(0..=65536).contains(&size) {
                return err(libc::EINVAL);
            }
            let bytes = read_mem(n.pid, a[1], size as usize * 4)?;
            ids.groups = bytes
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok(())
        }
        Call::SetIds { gid, args } => {
            let cur = if gid { ids.gid } else { ids.uid };
            let want: [u32; 3] = match args {
                1 => {
                    let id = a[0] as u32;
                    if id == u32::MAX {
                        return err(libc::EINVAL);
                    }
                    // setuid: all three as root, else only the effective one.
                    if root {
                        [id; 3]
                    } else {
                        [u32::MAX, id, u32::MAX]
                    }
                }
                2 => {
                    let (r, e) = (a[0] as u32, a[1] as u32);
                    // setreuid sets the saved id to the new effective one when the real one is
                    // set or the effective one changes to another than the old real one.
                    let s = if r != u32::MAX || (e != u32::MAX && e != cur[0]) {
                        if e == u32::MAX { cur[1] } else { e }
                    } else {
                        u32::MAX
                    };
                    [r, e, s]
                }
                _ => [a[0] as u32, a[1] as u32, a[2] as u32],
            };
            let allowed = root || want.iter().all(|w| *w == u32::MAX || cur.contains(w));
            if !allowed {
                return err(libc::EPERM);
            }
            let mut new = cur;
            for (slot, w) in new.iter_mut().zip(want) {
                if w != u32::MAX {
                    *slot = w;
                }
            }
            if gid {
                ids.gid = new;
            } else {
                ids.uid = new;
            }
            Ok(())
        }
        Call::Chown | Call::Lchown | Call::Fchown | Call::Fchownat | Call::Stat(_) => {
            return err(libc::ENOSYS);
        }
    };
    answer?;
    if let Some(key) = key {
        table.0.insert(key, ids);
    }
    Ok(0)
}

/// Reads `len` bytes at `addr` in the caller's memory.
fn read_mem(pid: u32, addr: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))?;
    let mut buf = vec![0u8; len];
    mem.read_exact_at(&mut buf, addr)
        .map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
    Ok(buf)
}

/// Writes `data` at `addr` in the caller's memory, once the notification is known to be
/// still pending (so the pid is still the caller's).
fn write_mem(
    listener: BorrowedFd<'_>,
    n: &libc::seccomp_notif,
    addr: u64,
    data: &[u8],
) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let mem = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{}/mem", n.pid))?;
    if !sys::seccomp_notif_id_valid(listener, n.id) {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    mem.write_all_at(data, addr)
        .map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))
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

fn record(listener: BorrowedFd<'_>, n: &libc::seccomp_notif, call: Call) -> io::Result<()> {
    let pid = n.pid;
    let a = n.data.args;
    // Ids are 32-bit: -1 (all ones) keeps that part.
    let (target, uid, gid) = match call {
        Call::Chown | Call::Lchown => (
            Target::Path {
                dir: libc::AT_FDCWD,
                path: read_path(pid, a[0])?,
                follow: call == Call::Chown,
            },
            a[1] as u32,
            a[2] as u32,
        ),
        Call::Fchown => (Target::Fd(a[0] as i32), a[1] as u32, a[2] as u32),
        Call::Fchownat => {
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
        _ => return Err(io::Error::from_raw_os_error(libc::ENOSYS)),
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
    let link = fd_link(file);
    let current = recorded_owner(file).unwrap_or((st.st_uid, st.st_gid));
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
