//! The only place in this crate with `unsafe` code: thin wrappers over the few
//! system calls that neither `rustix` nor `std` expose safely (fork, execve,
//! unshare, an interface ioctl, a signal's disposition, `_exit`, seccomp and its
//! user-notification ioctls).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Result of [`fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fork {
    /// In the parent; holds the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork(2)` through glibc, so that malloc and other libc state stay usable in
/// the child even when the caller has other threads.
pub(crate) fn fork() -> io::Result<Fork> {
    // SAFETY: glibc's fork runs its atfork handlers, which keep malloc's locks
    // consistent in the child. The child only runs code from this crate that
    // does not depend on locks held by other threads (no logging, no stdio
    // locks) and ends with `exec` or `exit_now`.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// `_exit(2)`: leave the process without running atexit handlers or flushing
/// stdio buffers inherited from the parent.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of this process.
    unsafe { libc::_exit(code) }
}

/// Closes every file descriptor from 3 up except those in `keep`.
///
/// A forked child that does not exec at once (the sandbox helper lives as long
/// as its sandbox) inherits every descriptor the other threads of the parent
/// hold at that moment, among them the write ends of other sandboxes' output
/// pipes; kept open, they would hold those sandboxes' readers off their EOF.
pub(crate) fn close_fds_except(keep: &[i32]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd > 2)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3u32;
    for k in keep.into_iter().chain([u32::MAX]) {
        if k > first {
            close_range(first, k - 1);
        }
        first = k.saturating_add(1);
    }
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range only closes descriptors of this process's own table.
    // It is called in a freshly forked child, whose only thread is the caller,
    // on descriptors the child's code does not use (the kept ones are skipped),
    // so no owned handle is left dangling in use.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if r == 0 {
        return;
    }
    // Kernels before 5.9 have no close_range: close what /proc lists.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| (first..=last).contains(fd))
        .collect();
    for fd in fds {
        // SAFETY: as above; `fd` is a descriptor of this process in the range
        // the caller asked to close (the directory's own fd is gone by now or
        // fails harmlessly with EBADF).
        unsafe { libc::close(fd as i32) };
    }
}

/// Gives every signal its default action back and unblocks them all, before an `execve`, as
/// runc starts a container's process: an ignored signal stays ignored across exec, and Rust's
/// runtime ignores SIGPIPE (`std::process::Command` resets that one; a plain fork and exec
/// does not), while rbuild's own caller may have left others ignored or blocked.
pub(crate) fn default_signals() -> io::Result<()> {
    // The kernel's `struct sigaction`, all zero: SIG_DFL, no flags, an empty mask (zero is
    // the same on every layout: handler, flags, restorer, mask).
    let default = [0u64; 4];
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: the kernel reads a `struct sigaction` (at most 32 bytes) from `default`,
        // which lives for the call, and writes nothing (null old action); the sigset size
        // is the kernel's 8 bytes. The raw call reaches the two signals the C library keeps
        // for itself (32 and 33), which an ignoring parent may have left ignored. No Rust
        // code of this process relies on a handler after this: it is made in a forked,
        // single-threaded child right before it execs.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: an empty set is a valid mask; `sigemptyset` initializes it before use.
    let rc = unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// `unshare(2)` with the given `CLONE_*` flags.
pub(crate) fn unshare(flags: rustix::thread::UnshareFlags) -> io::Result<()> {
    // SAFETY: only called in a freshly forked, single-threaded child, so no
    // other thread can observe the changed file table or namespaces.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// `execve(2)`; returns only on failure.
pub(crate) fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    // SAFETY: every pointer points into a CString borrowed for the duration of
    // the call, and both arrays end with a null pointer as execve requires.
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// Sets `IFF_UP` on the interface `name` (used for `lo` in a new network namespace).
pub(crate) fn interface_up(sock: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the flags into the ifreq we own; the socket fd
    // is valid for the duration of the borrow.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own; fd valid as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Makes the mount at `fd` and every mount below it read-only
/// (`mount_setattr(2)` with `AT_RECURSIVE`; rustix does not wrap it). Only
/// sets the flag, so flags the kernel locked stay as they are.
pub(crate) fn make_mount_tree_readonly(fd: BorrowedFd<'_>) -> io::Result<()> {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint;
    // SAFETY: the path is a valid empty C string, `attr` is a live, properly
    // laid out `struct mount_attr` whose size is passed with it, and the fd
    // is valid for the duration of the borrow. The kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs the seccomp filter `prog` on the calling thread (`seccomp(2)`,
/// `SECCOMP_SET_MODE_FILTER`). The caller has set no_new_privs.
pub(crate) fn install_seccomp_filter(prog: &[libc::sock_filter]) -> io::Result<()> {
    set_seccomp_filter(prog, 0).map(|_| ())
}

/// Installs the seccomp filter `prog` with `SECCOMP_FILTER_FLAG_NEW_LISTENER` and returns
/// its listener: the calls the filter answers with `SECCOMP_RET_USER_NOTIF` wait until a
/// supervisor reading the listener answers them. The caller has set no_new_privs (or holds
/// `CAP_SYS_ADMIN` in its user namespace).
pub(crate) fn install_seccomp_listener(prog: &[libc::sock_filter]) -> io::Result<OwnedFd> {
    let fd = set_seccomp_filter(prog, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as libc::c_uint)?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: with NEW_LISTENER the result is the listener the kernel just created for this
    // process (close-on-exec); it is owned here and by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`: the syscall's result (0, or the listener
/// with `SECCOMP_FILTER_FLAG_NEW_LISTENER`).
fn set_seccomp_filter(prog: &[libc::sock_filter], flags: libc::c_uint) -> io::Result<i64> {
    const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;
    let len =
        u16::try_from(prog.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `prog`, `len` instructions long, both live for the duration
    // of the call; the kernel only reads them (it copies the program), so the `*mut` is
    // never written through.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Waits for the next notification on a seccomp listener (`SECCOMP_IOCTL_NOTIF_RECV`).
pub(crate) fn seccomp_notif_recv(listener: BorrowedFd<'_>) -> io::Result<libc::seccomp_notif> {
    // SAFETY: seccomp_notif is a plain C struct for which all-zero bytes are valid; the kernel
    // requires it zeroed.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one `struct seccomp_notif` (the size its number encodes) into
    // `notif`, which we own; the fd is valid for the duration of the borrow.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut notif as *mut libc::seccomp_notif,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(notif)
}

/// Whether notification `id` is still pending: its caller has not been killed or
/// interrupted (`SECCOMP_IOCTL_NOTIF_ID_VALID`).
pub(crate) fn seccomp_notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    // SAFETY: the ioctl reads one u64 from `id`, which lives for the call; the fd is valid
    // for the duration of the borrow.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        )
    };
    r == 0
}

/// Answers notification `id` (`SECCOMP_IOCTL_NOTIF_SEND`): the call returns `val`, fails
/// with `errno` (when not 0), or (with `run`) is carried out by the kernel as if no filter
/// had stopped it.
pub(crate) fn seccomp_notif_send(
    listener: BorrowedFd<'_>,
    id: u64,
    val: i64,
    errno: i32,
    run: bool,
) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error: -errno,
        flags: 0,
    };
    if run {
        resp.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
    }
    // SAFETY: the ioctl reads one `struct seccomp_notif_resp` from `resp`, which lives for
    // the call; the fd is valid for the duration of the borrow.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp as *mut libc::seccomp_notif_resp,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The bytes of the `struct stat` of `fd` (which may be an `O_PATH` descriptor) as `fstat(2)`
/// fills it, with the owner replaced by `uid`/`gid`: what a stat call of a sandboxed process
/// gets for a file whose owner single-id mode recorded.
pub(crate) fn stat_bytes_with_owner(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<Vec<u8>> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes one `struct stat` into `st`, which is large enough and lives for
    // the call; the fd is valid for the duration of the borrow.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed above and filled by fstat: every byte is initialized.
    let mut st = unsafe { st.assume_init() };
    st.st_uid = uid;
    st.st_gid = gid;
    Ok(struct_bytes(&st))
}

/// The bytes of the `struct statx` of `fd` for `mask` (`statx(2)` with `AT_EMPTY_PATH` and
/// the caller's sync flags), with the owner replaced by `uid`/`gid`.
pub(crate) fn statx_bytes_with_owner(
    fd: BorrowedFd<'_>,
    sync_flags: i32,
    mask: u32,
    uid: u32,
    gid: u32,
) -> io::Result<Vec<u8>> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    let flags = libc::AT_EMPTY_PATH | (sync_flags & libc::AT_STATX_SYNC_TYPE);
    // SAFETY: statx writes one `struct statx` into `stx`, which is large enough and lives for
    // the call; the path is a valid empty C string and the fd is valid for the borrow.
    if unsafe { libc::statx(fd.as_raw_fd(), c"".as_ptr(), flags, mask, stx.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed above and filled by statx: every byte is initialized.
    let mut stx = unsafe { stx.assume_init() };
    stx.stx_uid = uid;
    stx.stx_gid = gid;
    Ok(struct_bytes(&stx))
}

fn struct_bytes<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: `v` is a live plain C struct of `size_of::<T>()` bytes (stat, statx), zeroed
    // before the kernel filled it, so every byte is initialized; the slice is only read while
    // `v` is borrowed.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}
