//! The child side of a run: the helper (which owns the new user namespace and unshares the
//! others), the sandbox's init (pid 1: the mount plan, the working directory, the pty) and
//! the command's own set-up (streams, capabilities, ids, no_new_privs, the seccomp filter) up
//! to `execve`. Each reports a failure on the error pipe and exits.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Gid, Pid, Signal, Uid};
use rustix::thread::{CapabilitySet, UnshareFlags};

use super::Prepared;
use super::fd::{read_exact_fd, write_all_fd};
use super::owners;
use super::pty::{open_pty, recv_fd, send_fd};
use crate::mounts::{self, HostKernel};
use crate::sys;
use crate::user::ResolvedUser;

/// Docker's default capability set.
pub fn default_capabilities() -> CapabilitySet {
    CapabilitySet::CHOWN
        | CapabilitySet::DAC_OVERRIDE
        | CapabilitySet::FSETID
        | CapabilitySet::FOWNER
        | CapabilitySet::MKNOD
        | CapabilitySet::NET_RAW
        | CapabilitySet::SETGID
        | CapabilitySet::SETUID
        | CapabilitySet::SETFCAP
        | CapabilitySet::SETPCAP
        | CapabilitySet::NET_BIND_SERVICE
        | CapabilitySet::SYS_CHROOT
        | CapabilitySet::KILL
        | CapabilitySet::AUDIT_WRITE
}

/// Takes the ids of the user namespace's root (no supplementary groups).
pub(super) fn become_namespace_root() -> rustix::io::Result<()> {
    rustix::thread::set_thread_groups(&[])?;
    rustix::thread::set_thread_res_gid(Gid::ROOT, Gid::ROOT, Gid::ROOT)?;
    rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT)
}

/// Reports a failure inside the sandbox to the caller and exits.
pub(super) fn child_fail(err: &OwnedFd, what: &str, e: &dyn std::fmt::Display, code: i32) -> ! {
    let msg = format!("{what}: {e}");
    let _ = write_all_fd(err, msg.as_bytes());
    sys::exit_now(code)
}

/// The helper: runs in the caller's pid namespace, owns the new user namespace.
pub(super) fn helper_main(
    p: &Prepared,
    up: OwnedFd,
    down: OwnedFd,
    fail: OwnedFd,
    [stdin, out, err]: [OwnedFd; 3],
    console: Option<OwnedFd>,
    note: Option<OwnedFd>,
) -> ! {
    let (up, down) = (&up, &down);
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    match &p.stack {
        // Its id map is installed already.
        Some(stack) => {
            if let Err(e) = stack.join() {
                child_fail(&fail, "join the network stack's namespaces", &e, 125);
            }
        }
        None => {
            if let Err(e) = sys::unshare(UnshareFlags::NEWUSER) {
                child_fail(&fail, "unshare the user namespace", &e, 125);
            }
        }
    }
    if write_all_fd(up, b"u").is_err() {
        sys::exit_now(125);
    }
    let mut b = [0u8; 1];
    if !read_exact_fd(down, &mut b).unwrap_or(false) {
        sys::exit_now(125);
    }
    // Root's own ids are not mapped when it is remapped onto a subordinate range: become the
    // namespace's root, so mounts and files are made as that id.
    if p.remapped
        && let Err(e) = become_namespace_root()
    {
        child_fail(&fail, "become root of the user namespace", &e, 125);
    }
    // A cgroup namespace rooted at the helper's cgroup (the sandbox's own when it has limits,
    // the caller's otherwise): /proc/self/cgroup inside shows `/`, not where the host placed
    // the build.
    let mut flags = UnshareFlags::NEWNS
        | UnshareFlags::NEWPID
        | UnshareFlags::NEWIPC
        | UnshareFlags::NEWUTS
        | UnshareFlags::NEWCGROUP;
    if p.new_net {
        flags |= UnshareFlags::NEWNET;
    }
    if let Err(e) = sys::unshare(flags) {
        child_fail(&fail, "unshare the namespaces", &e, 125);
    }
    match sys::fork() {
        Err(e) => child_fail(&fail, "fork the sandbox init", &e, 125),
        Ok(sys::Fork::Child) => init_main(p, fail, down, [stdin, out, err], console, note),
        Ok(sys::Fork::Parent(pid)) => {
            drop((out, err, stdin, fail, console, note));
            if write_all_fd(up, &pid.to_ne_bytes()).is_err() {
                sys::exit_now(125);
            }
            let init = Pid::from_raw(pid).expect("fork returns a positive pid");
            match rustix::process::waitpid(Some(init), rustix::process::WaitOptions::empty()) {
                Ok(Some((_, s))) => match s.exit_status() {
                    Some(c) => sys::exit_now(c),
                    None => sys::exit_now(128 + s.terminating_signal().unwrap_or(0)),
                },
                _ => sys::exit_now(125),
            }
        }
    }
}

/// Pid 1 of the sandbox.
fn init_main(
    p: &Prepared,
    fail: OwnedFd,
    go: &OwnedFd,
    [stdin, out, err]: [OwnedFd; 3],
    console: Option<OwnedFd>,
    note: Option<OwnedFd>,
) -> ! {
    let fail = &fail;
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    if let Err(e) = mounts::execute(&mut HostKernel::confined_to(&p.rootfs), &p.steps) {
        let src = e.source.to_string();
        child_fail(fail, &e.to_string(), &src, 125);
    }
    // The working directory, created for the user when missing.
    let wd = Path::new(std::ffi::OsStr::from_bytes(p.workdir.as_bytes()));
    if let Err(e) = make_workdir(wd, &p.user) {
        child_fail(
            fail,
            &format!("create working directory {}", wd.display()),
            &e,
            125,
        );
    }
    // With a console: a pty from the sandbox's devpts replaces the three streams.
    let (stdin, out, err, tty) = match console {
        None => (stdin, out, err, false),
        Some(sock) => match open_pty(&sock) {
            Ok(slave) => {
                let dup = |fd: &OwnedFd| rustix::io::fcntl_dupfd_cloexec(fd, 3);
                match (dup(&slave), dup(&slave)) {
                    (Ok(o), Ok(e)) => (slave, o, e, true),
                    (Err(e), _) | (_, Err(e)) => child_fail(fail, "duplicate the pty", &e, 125),
                }
            }
            Err(e) => child_fail(fail, "allocate a pseudo-terminal", &e, 125),
        },
    };
    // With a network stack, the command starts once the caller has configured the namespace.
    if p.stack.is_some() {
        let mut b = [0u8; 1];
        if !read_exact_fd(go, &mut b).unwrap_or(false) {
            sys::exit_now(125);
        }
    }
    // Single-id mode: the command sends its filter's listener back over this socket.
    let (owner_init, owner_cmd) = if p.owner_filter.is_some() {
        match rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        ) {
            Ok((a, b)) => (Some(a), Some(b)),
            Err(e) => child_fail(fail, "create the seccomp listener socket", &e, 125),
        }
    } else {
        (None, None)
    };
    let cmd = match sys::fork() {
        Err(e) => child_fail(fail, "fork the command", &e, 125),
        Ok(sys::Fork::Child) => {
            drop(owner_init);
            exec_command(p, fail, stdin.as_fd(), &out, &err, tty, owner_cmd.as_ref())
        }
        Ok(sys::Fork::Parent(pid)) => pid,
    };
    // Init keeps no copy of the output pipes, so they close with the command's processes;
    // the note pipe closes when the command has exec'd (close-on-exec) or died.
    drop((out, err, stdin, note, owner_cmd));
    if let Some(sock) = owner_init {
        // None: the command failed before installing its filter (and says why).
        if let Ok(Some(listener)) = recv_fd(&sock) {
            supervise(cmd, &listener);
        }
    }
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((pid, s))) if pid.as_raw_nonzero().get() == cmd => {
                let code = match s.exit_status() {
                    Some(c) => c,
                    None => 128 + s.terminating_signal().unwrap_or(0),
                };
                sys::exit_now(code);
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => sys::exit_now(125),
        }
    }
}

/// Answers the command's ownership and id calls until the last process under its filter is gone or
/// the command exits; init exits with the command's status in the latter case.
fn supervise(cmd: i32, listener: &OwnedFd) {
    let mut ids = owners::IdTable::default();
    let Ok(pidfd) = rustix::process::pidfd_open(
        Pid::from_raw(cmd).expect("fork returns a positive pid"),
        rustix::process::PidfdFlags::empty(),
    ) else {
        return;
    };
    loop {
        let mut fds = [
            PollFd::new(listener, PollFlags::IN),
            PollFd::new(&pidfd, PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
        let (notified, exited) = (fds[0].revents(), !fds[1].revents().is_empty());
        if notified.contains(PollFlags::IN) {
            owners::answer_one(listener.as_fd(), &mut ids);
        } else if !notified.is_empty() {
            // Every process under the filter is gone.
            return;
        }
        // Reap whatever has exited: the command ends the sandbox.
        loop {
            match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
                Ok(Some((pid, s))) if pid.as_raw_nonzero().get() == cmd => {
                    let code = match s.exit_status() {
                        Some(c) => c,
                        None => 128 + s.terminating_signal().unwrap_or(0),
                    };
                    sys::exit_now(code);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if exited {
            // Not reaped above: another waiter cannot exist, so this only means it is gone.
            return;
        }
    }
}

fn make_workdir(wd: &Path, user: &ResolvedUser) -> io::Result<()> {
    let mut cur = PathBuf::from("/");
    for c in wd.components() {
        if let std::path::Component::Normal(n) = c {
            cur.push(n);
            match std::fs::create_dir(&cur) {
                Ok(()) => {
                    std::os::unix::fs::chown(&cur, Some(user.uid), Some(user.gid))?;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn find_program(p: &Prepared) -> Result<CString, io::Error> {
    let arg0 = p.argv[0].as_bytes();
    if arg0.contains(&b'/') {
        return Ok(p.argv[0].clone());
    }
    for d in &p.path_dirs {
        let mut cand = d.clone();
        cand.push(b'/');
        cand.extend_from_slice(arg0);
        let path = Path::new(std::ffi::OsStr::from_bytes(&cand));
        if let Ok(md) = std::fs::metadata(path) {
            if md.is_file() {
                return CString::new(cand)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e));
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "executable file not found in $PATH",
    ))
}

pub(super) fn exec_command(
    p: &Prepared,
    fail: &OwnedFd,
    stdin: std::os::fd::BorrowedFd<'_>,
    out: &OwnedFd,
    err: &OwnedFd,
    tty: bool,
    owner_sock: Option<&OwnedFd>,
) -> ! {
    let step = |what: &str, r: io::Result<()>| {
        if let Err(e) = r {
            child_fail(fail, what, &e, 126);
        }
    };
    let _ = rustix::process::setsid();
    if tty {
        step(
            "make the pty the controlling terminal",
            rustix::process::ioctl_tiocsctty(stdin).map_err(Into::into),
        );
    }
    step(
        "set up stdin",
        rustix::stdio::dup2_stdin(stdin).map_err(Into::into),
    );
    step(
        "set up stdout",
        rustix::stdio::dup2_stdout(out).map_err(Into::into),
    );
    step(
        "set up stderr",
        rustix::stdio::dup2_stderr(err).map_err(Into::into),
    );
    // Capabilities: drop everything outside Docker's default set from the
    // bounding set, then switch ids (which clears them for non-root users).
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    // The kernel's capabilities only: a privileged sandbox asks for all of them.
    let known = CapabilitySet::from_bits_retain(u64::MAX >> (63 - last_cap.min(63)));
    let keep = p.capabilities & known;
    for bit in 0..=last_cap.min(63) {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if !keep.contains(cap) {
            step(
                "drop a capability from the bounding set",
                rustix::thread::remove_capability_from_bounding_set(cap).map_err(Into::into),
            );
        }
    }
    let u = &p.user;
    if p.can_setgroups {
        let groups: Vec<rustix::process::Gid> = u
            .groups
            .iter()
            .map(|g| rustix::process::Gid::from_raw(*g))
            .collect();
        step(
            "set supplementary groups",
            rustix::thread::set_thread_groups(&groups).map_err(Into::into),
        );
    }
    let gid = rustix::process::Gid::from_raw(u.gid);
    let uid = rustix::process::Uid::from_raw(u.uid);
    step(
        &format!("set gid {}", u.gid),
        rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(Into::into),
    );
    step(
        &format!("set uid {}", u.uid),
        rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(Into::into),
    );
    if u.uid == 0 {
        let sets = rustix::thread::CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        };
        step(
            "set capabilities",
            rustix::thread::set_capabilities(None, sets).map_err(Into::into),
        );
    }
    if p.no_new_privs {
        step(
            "set no_new_privs",
            rustix::thread::set_no_new_privs(true).map_err(Into::into),
        );
    }
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    step(
        "enter the working directory",
        rustix::process::chdir(p.workdir.as_c_str()).map_err(Into::into),
    );
    let prog = match find_program(p) {
        Ok(prog) => prog,
        Err(e) => child_fail(fail, &format!("exec {:?}", p.argv[0]), &e, 127),
    };
    // As runc: the command starts with every signal's default action and none blocked
    // (Rust's runtime ignores SIGPIPE: `yes | head -1` would report "Broken pipe").
    step("restore the default signal actions", sys::default_signals());
    // The filters come last: nothing of the set-up runs under them, only execve. In single-id
    // mode the owner filter's listener goes to init, which answers its notifications.
    if let (Some(filter), Some(sock)) = (&p.owner_filter, owner_sock) {
        match sys::install_seccomp_listener(&filter.0) {
            Ok(listener) => step(
                "hand the seccomp listener to init",
                send_fd(sock, listener.as_fd()),
            ),
            Err(e) => child_fail(fail, "install the owner-recording seccomp filter", &e, 126),
        }
    }
    if let Some(filter) = &p.seccomp {
        step(
            "install the seccomp filter",
            sys::install_seccomp_filter(&filter.0),
        );
    }
    let e = sys::execve(&prog, &p.argv, &p.env);
    let code = if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    child_fail(fail, &format!("exec {:?}", prog), &e, code)
}
