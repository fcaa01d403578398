//! Joining a running sandbox (`rbuild exec`, health checks) and signalling its processes
//! (`rbuild stop`, `rbuild kill`).
//!
//! Both start from the host pid of the sandbox's init, which
//! [`RunSpec::on_start`](super::RunSpec::on_start) reports. [`exec`] forks a helper that
//! enters init's user namespace first (gaining the capabilities the sandbox's root has
//! there, no more), then its mount, ipc, uts, network, cgroup and pid namespaces; the
//! helper forks the process, which goes through the sandbox command's own set-up
//! (capability bounding set, ids, no_new_privs, the seccomp filter) before `execve`.
//! [`signal`] forks a helper that enters init's user namespace only, so that it may signal
//! the container's processes whatever ids they run as.

use std::fs::File;
use std::io::Read as _;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use super::child::{become_namespace_root, child_fail, default_capabilities, exec_command};
use super::error::host;
use super::fd::{FORK_LOCK, pipe, read_exact_fd, write_all_fd, write_all_fd_borrowed};
use super::parent::exit_or_failure;
use super::pty::{RawMode, console_socket, open_pty, recv_fd};
use super::seccomp::{self, Seccomp};
use super::spec::children_of;
use super::{Prepared, ProcessParts, SandboxError};
use crate::idmap::{IdMap, MappingKind};
use crate::sys;
use crate::user::resolve_user;

/// The namespaces [`exec`] joins after the user namespace, in this order.
const NAMESPACES: [(&str, LinkNameSpaceType); 6] = [
    ("mnt", LinkNameSpaceType::Mount),
    ("ipc", LinkNameSpaceType::InterProcessCommunication),
    ("uts", LinkNameSpaceType::HostNameAndNISDomainName),
    ("net", LinkNameSpaceType::Network),
    ("cgroup", LinkNameSpaceType::ControlGroup),
    ("pid", LinkNameSpaceType::ProcessID),
];

/// Where the process's streams go.
#[derive(Debug)]
pub enum ExecStdio {
    /// The caller's stdin, stdout and stderr.
    Inherit,
    /// The caller's stdout and stderr; stdin is /dev/null.
    NoInput,
    /// A pseudo-terminal from the sandbox's devpts, relayed to the caller's streams.
    Tty,
    /// stdin is /dev/null; stdout and stderr both go to this file.
    Into(OwnedFd),
}

/// A process to run in a running sandbox.
#[derive(Debug)]
pub struct ExecSpec {
    /// argv.
    pub argv: Vec<String>,
    /// `KEY=value`; PATH and HOME get defaults when missing.
    pub env: Vec<String>,
    /// The working directory (it must exist).
    pub workdir: String,
    /// `name`, `uid`, `name:group`, `uid:gid`; empty for root.
    pub user: String,
    /// The sandbox's id map (as it was started with).
    pub id_map: IdMap,
    /// The system call filter, as the sandbox's command has it.
    pub seccomp: Seccomp,
    /// The streams.
    pub stdio: ExecStdio,
    /// Kill the process after this long.
    pub timeout: Option<Duration>,
}

/// How an [`exec`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Exit code; 128+N when killed by signal N.
    pub exit_code: i32,
    /// The timeout killed it.
    pub timed_out: bool,
}

fn open_ns(init: i32, name: &str) -> Result<OwnedFd, SandboxError> {
    let path = format!("/proc/{init}/ns/{name}");
    File::open(&path)
        .map(OwnedFd::from)
        .map_err(host(format!("open {path}")))
}

/// Reads a file of the sandbox's root file system (`/etc/passwd`) without following a
/// link out of it; empty when missing.
fn read_in_root(init: i32, path: &str) -> String {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let root = format!("/proc/{init}/root");
    let Ok(dir) = rustix::fs::open(
        root.as_str(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return String::new();
    };
    let Ok(fd) = rustix::fs::openat2(
        &dir,
        path.trim_start_matches('/'),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) else {
        return String::new();
    };
    let mut text = String::new();
    let _ = File::from(fd).take(16 << 20).read_to_string(&mut text);
    text
}

/// Runs `spec` in the namespaces of the sandbox whose init has host pid `init`; returns
/// once the process has exited. A process that cannot start is
/// [`SandboxError::Exec`] (126 or 127).
pub fn exec(init: i32, spec: ExecSpec) -> Result<ExecOutcome, SandboxError> {
    let user_ns = open_ns(init, "user")?;
    let others = NAMESPACES
        .iter()
        .map(|(name, kind)| {
            Ok((
                open_ns(init, name)?,
                *kind,
                format!("join its {name} namespace"),
            ))
        })
        .collect::<Result<Vec<_>, SandboxError>>()?;
    let passwd = read_in_root(init, "/etc/passwd");
    let group = read_in_root(init, "/etc/group");
    let user = resolve_user(&spec.user, &passwd, &group).map_err(|source| SandboxError::User {
        user: spec.user.clone(),
        source,
    })?;
    let parts = ProcessParts::new(&spec.argv, &spec.env, &spec.workdir, &user.home, None)?;
    let prepared = Prepared {
        steps: Vec::new(),
        rootfs: "/".into(),
        argv: parts.argv,
        env: parts.env,
        path_dirs: parts.path_dirs,
        workdir: parts.workdir,
        user,
        can_setgroups: spec.id_map.kind != MappingKind::Single,
        remapped: spec.id_map.kind == MappingKind::Root && !spec.id_map.is_identity(),
        new_net: false,
        stack: None,
        seccomp: seccomp::filter_for(&spec.seccomp, default_capabilities())
            .map_err(|source| SandboxError::Seccomp { source })?,
        capabilities: default_capabilities(),
        no_new_privs: true,
        // The container's init answers its own command's owner calls; an exec'd process
        // has no such init (in single-id mode its chown fails as without the filter).
        owner_filter: None,
    };
    let tty = matches!(spec.stdio, ExecStdio::Tty);
    let dup = |fd: std::os::fd::BorrowedFd<'_>, what: &str| {
        rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(|e| SandboxError::Host {
            what: format!("duplicate {what}"),
            source: e.into(),
        })
    };
    let devnull = || -> Result<OwnedFd, SandboxError> {
        Ok(OwnedFd::from(
            File::open("/dev/null").map_err(host("open /dev/null"))?,
        ))
    };
    let [stdin, out, err] = match &spec.stdio {
        ExecStdio::Inherit | ExecStdio::Tty => [
            dup(rustix::stdio::stdin(), "stdin")?,
            dup(rustix::stdio::stdout(), "stdout")?,
            dup(rustix::stdio::stderr(), "stderr")?,
        ],
        ExecStdio::NoInput => [
            devnull()?,
            dup(rustix::stdio::stdout(), "stdout")?,
            dup(rustix::stdio::stderr(), "stderr")?,
        ],
        ExecStdio::Into(fd) => [
            devnull()?,
            dup(fd.as_fd(), "output")?,
            dup(fd.as_fd(), "output")?,
        ],
    };

    let fork_guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (console_parent, console_child) = console_socket(tty)?;
    let (up_r, up_w) = pipe()?; // the process's pid
    let (fail_r, fail_w) = pipe()?;
    let helper = match sys::fork().map_err(host("fork the exec helper"))? {
        sys::Fork::Child => {
            drop((up_r, fail_r, console_parent));
            let keep: Vec<i32> = [&up_w, &fail_w, &stdin, &out, &err, &user_ns]
                .into_iter()
                .chain(console_child.as_ref())
                .chain(others.iter().map(|(fd, _, _)| fd))
                .map(|fd| fd.as_raw_fd())
                .collect();
            sys::close_fds_except(&keep);
            exec_helper(
                &prepared,
                &user_ns,
                &others,
                up_w,
                fail_w,
                [stdin, out, err],
                console_child,
            )
        }
        sys::Fork::Parent(pid) => Pid::from_raw(pid).expect("fork returns a positive pid"),
    };
    drop((up_w, fail_w, stdin, out, err, console_child));
    drop(fork_guard);
    let reap = || {
        let _ = rustix::process::kill_process(helper, Signal::KILL);
        let _ = rustix::process::waitpid(Some(helper), rustix::process::WaitOptions::empty());
    };
    let mut b = [0u8; 4];
    let pid = match read_exact_fd(&up_r, &mut b) {
        Ok(true) => i32::from_ne_bytes(b),
        _ => {
            reap();
            return Err(exec_error(fail_r, 125));
        }
    };
    let mut relay = None;
    let mut _raw = None;
    if let Some(sock) = &console_parent {
        match recv_fd(sock) {
            Ok(Some(master)) => {
                if let Ok(size) = rustix::termios::tcgetwinsize(rustix::stdio::stdout()) {
                    let _ = rustix::termios::tcsetwinsize(&master, size);
                }
                _raw = RawMode::enter(rustix::stdio::stdin());
                relay = Some((master, Some(dup(rustix::stdio::stdin(), "stdin")?)));
            }
            _ => {
                reap();
                return Err(exec_error(fail_r, 125));
            }
        }
    }
    let pidfd =
        rustix::process::pidfd_open(helper, rustix::process::PidfdFlags::empty()).map_err(|e| {
            SandboxError::Host {
                what: "open a pidfd".into(),
                source: e.into(),
            }
        })?;
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let mut fds = vec![PollFd::new(&pidfd, PollFlags::IN)];
        if let Some((master, stdin)) = &relay {
            fds.push(PollFd::new(master, PollFlags::IN));
            if let Some(stdin) = stdin {
                fds.push(PollFd::new(stdin, PollFlags::IN));
            }
        }
        let ts = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(SandboxError::Host {
                    what: "poll the exec'd process".into(),
                    source: e.into(),
                });
            }
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if let Some((master, stdin)) = &mut relay {
            if ready.get(1) == Some(&true) {
                match rustix::io::read(&*master, &mut chunk) {
                    Ok(n) if n > 0 => {
                        let _ = write_all_fd_borrowed(rustix::stdio::stdout(), &chunk[..n]);
                    }
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                    // EOF or EIO: every slave is closed.
                    _ => {
                        relay = None;
                        continue;
                    }
                }
            }
            if ready.get(2) == Some(&true)
                && let Some(fd) = stdin
            {
                match rustix::io::read(&*fd, &mut chunk) {
                    Ok(n) if n > 0 => {
                        let _ = write_all_fd(master, &chunk[..n]);
                    }
                    Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                    _ => *stdin = None,
                }
            }
        }
        if ready[0] && relay.is_none() {
            break;
        }
        if ready[0] {
            // The helper is gone: drain what the pty still holds, then stop.
            if let Some((master, _)) = &relay {
                let mut fds = [PollFd::new(master, PollFlags::IN)];
                if !matches!(
                    rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())),
                    Ok(1)
                ) {
                    break;
                }
            }
        }
        if let Some(d) = deadline
            && !timed_out
            && Instant::now() >= d
        {
            timed_out = true;
            let _ = signal_pids(init, &[pid], Signal::KILL);
        }
    }
    drop(_raw);
    let status = rustix::process::waitpid(Some(helper), rustix::process::WaitOptions::empty())
        .map_err(|e| SandboxError::Host {
            what: "wait for the exec'd process".into(),
            source: e.into(),
        })?
        .map(|(_, s)| s);
    let exit_code = exit_or_failure(status, fail_r, !timed_out)?;
    Ok(ExecOutcome {
        exit_code,
        timed_out,
    })
}

fn exec_error(fail_r: OwnedFd, code: i32) -> SandboxError {
    let mut msg = Vec::new();
    let _ = File::from(fail_r).read_to_end(&mut msg);
    let message = if msg.is_empty() {
        "the exec helper exited early".to_owned()
    } else {
        String::from_utf8_lossy(&msg).into_owned()
    };
    if matches!(code, 126 | 127) {
        SandboxError::Exec { message, code }
    } else {
        SandboxError::Setup { message }
    }
}

/// The exec helper: enters the namespaces, forks the process, reports its pid and exits
/// with its status.
fn exec_helper(
    p: &Prepared,
    user_ns: &OwnedFd,
    others: &[(OwnedFd, LinkNameSpaceType, String)],
    up: OwnedFd,
    fail: OwnedFd,
    [stdin, out, err]: [OwnedFd; 3],
    console: Option<OwnedFd>,
) -> ! {
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    if let Err(e) = move_into_link_name_space(user_ns.as_fd(), Some(LinkNameSpaceType::User)) {
        child_fail(&fail, "join the container's user namespace", &e, 125);
    }
    if p.remapped
        && let Err(e) = become_namespace_root()
    {
        child_fail(&fail, "become root of the user namespace", &e, 125);
    }
    for (fd, kind, what) in others {
        if let Err(e) = move_into_link_name_space(fd.as_fd(), Some(*kind)) {
            child_fail(&fail, what, &e, 125);
        }
    }
    // Joining the mount namespace made its root this process's root and working directory.
    let (stdin, out, err, tty) = match &console {
        None => (stdin, out, err, false),
        Some(sock) => match open_pty(sock) {
            Ok(slave) => {
                let dup = |fd: &OwnedFd| rustix::io::fcntl_dupfd_cloexec(fd, 3);
                match (dup(&slave), dup(&slave)) {
                    (Ok(o), Ok(e)) => (slave, o, e, true),
                    (Err(e), _) | (_, Err(e)) => child_fail(&fail, "duplicate the pty", &e, 125),
                }
            }
            Err(e) => child_fail(&fail, "allocate a pseudo-terminal", &e, 125),
        },
    };
    drop(console);
    let pid = match sys::fork() {
        Err(e) => child_fail(&fail, "fork the process", &e, 125),
        Ok(sys::Fork::Child) => exec_command(p, &fail, stdin.as_fd(), &out, &err, tty, None),
        Ok(sys::Fork::Parent(pid)) => pid,
    };
    drop((stdin, out, err, fail));
    if write_all_fd(&up, &pid.to_ne_bytes()).is_err() {
        sys::exit_now(125);
    }
    drop(up);
    let child = Pid::from_raw(pid).expect("fork returns a positive pid");
    loop {
        match rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, s))) => match s.exit_status() {
                Some(c) => sys::exit_now(c),
                None => sys::exit_now(128 + s.terminating_signal().unwrap_or(0)),
            },
            Err(rustix::io::Errno::INTR) => {}
            _ => sys::exit_now(125),
        }
    }
}

/// Sends `signal` to the processes of the sandbox whose init has host pid `init`: the
/// children of init (the command, and what was left to init), and init itself too when
/// `with_init` (SIGKILL to init ends every process of the sandbox). Returns how many
/// processes it reached.
pub fn signal(init: i32, signal: Signal, with_init: bool) -> Result<usize, SandboxError> {
    let mut pids = children_of(init);
    if with_init {
        pids.push(init);
    }
    signal_pids(init, &pids, signal)
}

/// Signals `pids` from inside the user namespace of `init`.
fn signal_pids(init: i32, pids: &[i32], signal: Signal) -> Result<usize, SandboxError> {
    if pids.is_empty() {
        return Ok(0);
    }
    let user_ns = open_ns(init, "user")?;
    let fork_guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (up_r, up_w) = pipe()?;
    let helper = match sys::fork().map_err(host("fork the signal helper"))? {
        sys::Fork::Child => {
            drop(up_r);
            sys::close_fds_except(&[up_w.as_raw_fd(), user_ns.as_raw_fd()]);
            if move_into_link_name_space(user_ns.as_fd(), Some(LinkNameSpaceType::User)).is_err() {
                sys::exit_now(125);
            }
            // Entering the namespace gave every capability in it: CAP_KILL over every id it
            // maps.
            let reached = pids
                .iter()
                .filter_map(|p| Pid::from_raw(*p))
                .filter(|p| rustix::process::kill_process(*p, signal).is_ok())
                .count() as u32;
            let _ = write_all_fd(&up_w, &reached.to_ne_bytes());
            sys::exit_now(0)
        }
        sys::Fork::Parent(pid) => Pid::from_raw(pid).expect("fork returns a positive pid"),
    };
    drop(up_w);
    drop(fork_guard);
    let mut b = [0u8; 4];
    let reached = read_exact_fd(&up_r, &mut b).unwrap_or(false);
    let _ = rustix::process::waitpid(Some(helper), rustix::process::WaitOptions::empty());
    if !reached {
        return Err(SandboxError::Host {
            what: format!("signal the processes of the sandbox of pid {init}"),
            source: std::io::ErrorKind::PermissionDenied.into(),
        });
    }
    Ok(u32::from_ne_bytes(b) as usize)
}
