//! Running one process in a namespaced sandbox.
//!
//! Process layout: the caller forks a helper that unshares a user namespace
//! and waits while the caller installs its id maps (directly as root, with
//! newuidmap/newgidmap otherwise). The helper then unshares the mount, pid,
//! ipc, uts (and, for `--network none`, network) namespaces and forks the
//! sandbox's init, pid 1 of the new pid namespace. Init carries out the mount
//! plan ([`crate::mounts`]), pivots into the root, and forks the command. When
//! the command exits, init exits with its status, and the kernel kills every
//! other process of the pid namespace. Timeouts and cancellation kill init.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Gid, Pid, Signal, Uid};
use rustix::thread::{CapabilitySet, UnshareFlags};

use crate::compress::Compression;
use crate::idmap::{IdMap, MappingKind};
use crate::mounts::{self, ExtraMount, HostKernel, PlanInput};
use crate::snapshot::{LowerView, MountPoint, PreparedRoot, RootSource};
use crate::sys;
use crate::user::{ResolvedUser, UserError, resolve_user};

/// The process to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Exec form: argv as given.
    Exec(Vec<String>),
    /// Shell form: `shell... script` (the image's SHELL, `/bin/sh -c` by default).
    Shell {
        /// The shell and its options, e.g. `["/bin/sh", "-c"]`.
        shell: Vec<String>,
        /// The command line.
        script: String,
    },
}

impl Command {
    /// The argv the process is started with.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Exec(a) => a.clone(),
            Command::Shell { shell, script } => {
                shell.iter().cloned().chain([script.clone()]).collect()
            }
        }
    }
}

/// The network of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace.
    #[default]
    Host,
    /// A new network namespace with only `lo`, up.
    None,
}

/// The process's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stdio {
    /// stdin is /dev/null; stdout and stderr go line by line to the
    /// caller's callback (build steps).
    #[default]
    Lines,
    /// The caller's own stdin, stdout and stderr (`rbuild run`); the
    /// callback is not called.
    Inherit,
    /// A pseudo-terminal from the sandbox's own devpts (`rbuild run -t`):
    /// the command's stdin, stdout, stderr and controlling terminal. Its
    /// output is copied to the caller's stdout and the caller's stdin to it
    /// (put into raw mode while the command runs when it is a terminal); the
    /// callback is not called.
    Tty,
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The command's stdout.
    Stdout,
    /// The command's stderr.
    Stderr,
}

/// Cancels a running sandbox from another thread (Ctrl-C).
#[derive(Debug, Clone, Default)]
pub struct CancelHandle {
    cancelled: Arc<AtomicBool>,
    init_pid: Arc<AtomicI32>,
}

impl CancelHandle {
    /// A handle not yet attached to a run.
    pub fn new() -> Self {
        Self::default()
    }
    /// Kills every process of the sandbox; [`Sandbox::run`] then returns with
    /// [`Outcome::cancelled`] set.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        kill_init(self.init_pid.load(Ordering::SeqCst));
    }
    /// Sends `signal` to the command (the children of the sandbox's init),
    /// as `docker kill --signal` does; returns how many processes it reached.
    /// The command may handle it and exit; [`CancelHandle::cancel`] is the
    /// sure way to end the run.
    pub fn signal(&self, signal: Signal) -> usize {
        let init = self.init_pid.load(Ordering::SeqCst);
        if init <= 0 {
            return 0;
        }
        children_of(init)
            .into_iter()
            .filter_map(Pid::from_raw)
            .filter(|p| rustix::process::kill_process(*p, signal).is_ok())
            .count()
    }
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// The pids whose parent is `parent`, from `/proc/PID/stat` (the kernel's
/// `children` file is not always built in).
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn kill_init(pid: i32) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, Signal::KILL);
    }
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The process.
    pub command: Command,
    /// Environment, `KEY=value`. PATH and HOME get defaults when missing.
    pub env: Vec<String>,
    /// Working directory (created, owned by the user, when missing).
    pub workdir: String,
    /// `USER`: `name`, `uid`, `name:group`, `uid:gid`; empty for root.
    pub user: String,
    /// Host name inside the sandbox.
    pub hostname: String,
    /// Network mode.
    pub network: Network,
    /// Extra bind and tmpfs mounts.
    pub mounts: Vec<ExtraMount>,
    /// Kill everything after this long.
    pub timeout: Option<Duration>,
    /// User namespace id mapping.
    pub id_map: IdMap,
    /// Cancellation.
    pub cancel: CancelHandle,
    /// Where the process's stdin, stdout and stderr go.
    pub stdio: Stdio,
}

impl RunSpec {
    /// A spec running `command` as root in `/` with the host network.
    pub fn new(command: Command) -> Self {
        RunSpec {
            command,
            env: Vec::new(),
            workdir: "/".into(),
            user: String::new(),
            hostname: "rbuild".into(),
            network: Network::Host,
            mounts: Vec::new(),
            timeout: None,
            id_map: IdMap::for_current_user(),
            cancel: CancelHandle::new(),
            stdio: Stdio::Lines,
        }
    }

    /// The mount points this spec needs in the root file system; hand them to
    /// [`crate::snapshot::prepare`].
    pub fn mountpoints(&self) -> Vec<MountPoint> {
        let mut v: Vec<MountPoint> = ["/proc", "/sys", "/dev"]
            .iter()
            .map(|p| MountPoint {
                path: p.into(),
                dir: true,
            })
            .collect();
        for f in ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"] {
            v.push(MountPoint {
                path: f.into(),
                dir: false,
            });
        }
        for m in &self.mounts {
            v.push(MountPoint {
                path: m.target.clone(),
                dir: m.kind.mountpoint_is_dir(),
            });
        }
        v
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code; 128+N when killed by signal N.
    pub exit_code: i32,
    /// The timeout killed it.
    pub timed_out: bool,
    /// [`CancelHandle::cancel`] killed it.
    pub cancelled: bool,
}

/// Errors of [`Sandbox::run`]; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The image's user database does not resolve the user.
    #[error("cannot resolve user {user:?}")]
    User {
        user: String,
        #[source]
        source: UserError,
    },
    /// A host-side step failed.
    #[error("cannot {what}")]
    Host {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The command could not be started (126: not executable or the
    /// process set-up failed, 127: not found), as a shell would report it.
    #[error("cannot start the command: {message}")]
    Exec { message: String, code: i32 },
    /// A step inside the sandbox failed before the command started.
    #[error("sandbox setup failed: {message}")]
    Setup { message: String },
    /// Unpacking a layer inside the user namespace failed.
    #[error("cannot unpack a layer into {dest}: {message}")]
    Unpack { dest: PathBuf, message: String },
    /// Writing a layer inside the user namespace failed.
    #[error("cannot write the layer of {step}: {message}")]
    Layer { step: PathBuf, message: String },
    /// Installing the id maps failed.
    #[error("cannot install id maps for pid {pid} with {tool}")]
    IdMap {
        pid: i32,
        tool: String,
        #[source]
        source: io::Error,
    },
}

fn host(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Host { what, source }
}

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

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs sandboxes.
#[derive(Debug, Default)]
pub struct Sandbox;

/// Everything the children need, computed before forking.
struct Prepared {
    steps: Vec<mounts::Step>,
    rootfs: PathBuf,
    argv: Vec<CString>,
    env: Vec<CString>,
    path_dirs: Vec<Vec<u8>>,
    workdir: CString,
    user: ResolvedUser,
    can_setgroups: bool,
    /// Root's ids are mapped onto a subordinate range (not to themselves).
    remapped: bool,
    new_net: bool,
}

impl Sandbox {
    /// Runs `spec` on `root`, calling `on_line` for every line of output
    /// (without its newline; a last unterminated line is passed too).
    pub fn run(
        spec: &RunSpec,
        root: &PreparedRoot,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<Outcome, SandboxError> {
        let step_dir = root
            .mountpoint
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let view = root.view();
        let passwd = read_image_file(&view, "/etc/passwd");
        let group = read_image_file(&view, "/etc/group");
        let user =
            resolve_user(&spec.user, &passwd, &group).map_err(|source| SandboxError::User {
                user: spec.user.clone(),
                source,
            })?;

        // Generated /etc files live outside the root and are bind-mounted.
        let gen_dir = step_dir.join("etc");
        std::fs::create_dir_all(&gen_dir).map_err(host(format!("create {}", gen_dir.display())))?;
        let hosts = gen_dir.join("hosts");
        let hostname = gen_dir.join("hostname");
        let resolv = gen_dir.join("resolv.conf");
        let hosts_text = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
            spec.hostname
        );
        let resolv_text = match spec.network {
            Network::Host => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            Network::None => String::new(),
        };
        for (p, t) in [
            (&hosts, hosts_text),
            (&hostname, format!("{}\n", spec.hostname)),
            (&resolv, resolv_text),
        ] {
            std::fs::write(p, t).map_err(host(format!("write {}", p.display())))?;
        }
        // A private dir for what the extra mounts need outside the root.
        let private_dir = step_dir.join("private");
        std::fs::create_dir_all(&private_dir)
            .map_err(host(format!("create {}", private_dir.display())))?;
        let rel = |p: &str| -> PathBuf { view.resolve_mountpoint(Path::new(p)).iter().collect() };
        let extra = spec
            .mounts
            .iter()
            .map(|m| (m.clone(), rel(&m.target.to_string_lossy())))
            .collect();
        let input = PlanInput {
            root: &root.source,
            rootfs: &root.mountpoint,
            etc_files: [
                (&hosts, rel("/etc/hosts")),
                (&hostname, rel("/etc/hostname")),
                (&resolv, rel("/etc/resolv.conf")),
            ],
            extra,
            private_dir: &private_dir,
            hostname: &spec.hostname,
            network_none: spec.network == Network::None,
        };
        let steps = mounts::plan(&input);

        let mut env: Vec<String> = spec.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(DEFAULT_PATH.into());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env.push(format!("HOSTNAME={}", spec.hostname));
        }
        let path_var = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("")
            .to_owned();
        let cstr = |s: &str| {
            CString::new(s).map_err(|e| SandboxError::Host {
                what: format!("pass {s:?} to the process"),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            })
        };
        let argv = spec.command.argv();
        if argv.is_empty() {
            return Err(SandboxError::Host {
                what: "run an empty command".into(),
                source: io::ErrorKind::InvalidInput.into(),
            });
        }
        let prepared = Prepared {
            steps,
            rootfs: root.mountpoint.clone(),
            argv: argv.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
            env: env.iter().map(|e| cstr(e)).collect::<Result<_, _>>()?,
            path_dirs: path_var
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| d.as_bytes().to_vec())
                .collect(),
            workdir: cstr(if spec.workdir.is_empty() {
                "/"
            } else {
                &spec.workdir
            })?,
            user,
            can_setgroups: spec.id_map.kind != MappingKind::Single,
            remapped: spec.id_map.kind == MappingKind::Root && !spec.id_map.is_identity(),
            new_net: spec.network == Network::None,
        };
        run_prepared(spec, &prepared, on_line)
    }
}

fn read_image_file(view: &LowerView, path: &str) -> String {
    let comps = view.resolve(Path::new(path));
    match view.lookup(&comps) {
        Ok(Some((p, md))) if md.is_file() => std::fs::read_to_string(p).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Held from the creation of a child's pipes until the parent has closed the
/// child's ends. A child forked by another thread inside that window would
/// inherit the write ends of pipes that are not its own (close-on-exec does
/// not help: the helpers do not exec), and the reader of such a pipe would see
/// no end of file until that unrelated child exits: a failed step would only
/// be noticed once a parallel `RUN sleep 30` had finished.
static FORK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| SandboxError::Host {
        what: "create a pipe".into(),
        source: e.into(),
    })
}

fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = rustix::io::write(fd, data)?;
        data = &data[n..];
    }
    Ok(())
}

fn write_all_fd_borrowed(fd: std::os::fd::BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// In init, after pivot_root: opens a pty pair on the sandbox's own devpts,
/// sends the master over `sock` to the caller, and returns the slave.
fn open_pty(sock: &OwnedFd) -> io::Result<OwnedFd> {
    use rustix::pty::OpenptFlags;
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let fds = [master.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
    anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        sock,
        &[io::IoSlice::new(b"t")],
        &mut anc,
        rustix::net::SendFlags::empty(),
    )?;
    Ok(slave)
}

/// Receives the pty master sent by [`open_pty`]; `None` when init closed
/// the socket without sending one (it failed, and says why on its error pipe).
fn recv_fd(sock: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 1];
    loop {
        match rustix::net::recvmsg(
            sock,
            &mut [io::IoSliceMut::new(&mut buf)],
            &mut anc,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for msg in anc.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(Some(fd));
            }
        }
    }
    Ok(None)
}

/// The caller's terminal in raw mode until dropped (keys such as Ctrl-C go to
/// the sandbox's pty, whose line discipline acts on them).
struct RawMode {
    fd: std::os::fd::BorrowedFd<'static>,
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter(fd: std::os::fd::BorrowedFd<'static>) -> Option<RawMode> {
        if !rustix::termios::isatty(fd) {
            return None;
        }
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ =
            rustix::termios::tcsetattr(self.fd, rustix::termios::OptionalActions::Now, &self.saved);
    }
}

fn read_exact_fd(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(fd, &mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// Reports a failure inside the sandbox to the caller and exits.
fn child_fail(err: &OwnedFd, what: &str, e: &dyn std::fmt::Display, code: i32) -> ! {
    let msg = format!("{what}: {e}");
    let _ = write_all_fd(err, msg.as_bytes());
    sys::exit_now(code)
}

fn install_maps(pid: i32, map: &IdMap) -> Result<(), SandboxError> {
    let proc_write = |file: &str, text: &str| {
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, text).map_err(|source| SandboxError::IdMap {
            pid,
            tool: p.clone(),
            source,
        })
    };
    match map.kind {
        MappingKind::Root => {
            proc_write("uid_map", &map.uid_map_text())?;
            proc_write("gid_map", &map.gid_map_text())
        }
        MappingKind::Single => {
            proc_write("setgroups", "deny")?;
            proc_write("uid_map", &map.uid_map_text())?;
            proc_write("gid_map", &map.gid_map_text())
        }
        MappingKind::Subordinate => {
            // Both tools run at once: each is a setuid program start-up.
            let mut children = Vec::new();
            for (tool, ranges) in [("newuidmap", &map.uids), ("newgidmap", &map.gids)] {
                let mut cmd = std::process::Command::new(tool);
                cmd.arg(pid.to_string());
                for r in ranges.iter() {
                    cmd.args([
                        r.container.to_string(),
                        r.host.to_string(),
                        r.size.to_string(),
                    ]);
                }
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                let child = cmd.spawn().map_err(|source| SandboxError::IdMap {
                    pid,
                    tool: tool.into(),
                    source,
                })?;
                children.push((tool, child));
            }
            for (tool, child) in children {
                let out = child
                    .wait_with_output()
                    .map_err(|source| SandboxError::IdMap {
                        pid,
                        tool: tool.into(),
                        source,
                    })?;
                if !out.status.success() {
                    let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                    return Err(SandboxError::IdMap {
                        pid,
                        tool: tool.into(),
                        source: io::Error::other(msg),
                    });
                }
            }
            Ok(())
        }
    }
}

fn run_prepared(
    spec: &RunSpec,
    p: &Prepared,
    on_line: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Outcome, SandboxError> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>, what: &str| {
        rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(|e| SandboxError::Host {
            what: format!("duplicate {what}"),
            source: e.into(),
        })
    };
    // No other child of this process may be forked while the child ends of
    // this run's pipes are open here, or it would hold them (see FORK_LOCK).
    let fork_guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // The pty's master comes back from init over this socket.
    let (console_parent, console_child) = if spec.stdio == Stdio::Tty {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| SandboxError::Host {
            what: "create the console socket".into(),
            source: e.into(),
        })?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };
    let (out_r, out_w, err_r, err_w, devnull): (Option<OwnedFd>, _, Option<OwnedFd>, _, _) =
        match spec.stdio {
            Stdio::Lines => {
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                let devnull =
                    OwnedFd::from(File::open("/dev/null").map_err(host("open /dev/null"))?);
                (Some(out_r), out_w, Some(err_r), err_w, devnull)
            }
            Stdio::Inherit | Stdio::Tty => {
                let out_w = dup(rustix::stdio::stdout(), "stdout")?;
                let err_w = dup(rustix::stdio::stderr(), "stderr")?;
                let stdin = dup(rustix::stdio::stdin(), "stdin")?;
                (None, out_w, None, err_w, stdin)
            }
        };
    let (up_r, up_w) = pipe()?; // helper -> caller
    let (down_r, down_w) = pipe()?; // caller -> helper
    let (fail_r, fail_w) = pipe()?; // setup errors from inside

    let helper = match sys::fork().map_err(host("fork the sandbox helper"))? {
        sys::Fork::Child => {
            drop((out_r, err_r, up_r, down_w, fail_r));
            drop(console_parent);
            let keep: Vec<i32> = [&up_w, &down_r, &fail_w, &devnull, &out_w, &err_w]
                .into_iter()
                .chain(console_child.as_ref())
                .map(|fd| fd.as_raw_fd())
                .collect();
            sys::close_fds_except(&keep);
            helper_main(
                p,
                up_w,
                down_r,
                fail_w,
                [devnull, out_w, err_w],
                console_child,
            )
        }
        sys::Fork::Parent(pid) => pid,
    };
    drop((out_w, err_w, up_w, down_r, fail_w, devnull, console_child));
    drop(fork_guard);
    let helper_pid = Pid::from_raw(helper).expect("fork returns a positive pid");
    let reap_helper = || {
        let _ = rustix::process::kill_process(helper_pid, Signal::KILL);
        let _ = rustix::process::waitpid(Some(helper_pid), rustix::process::WaitOptions::empty());
    };

    // 1. The helper has its user namespace: install the maps.
    let mut b = [0u8; 4];
    if !read_exact_fd(&up_r, &mut b[..1]).map_err(host("wait for the sandbox helper"))? {
        reap_helper();
        return Err(setup_error(&fail_r));
    }
    if let Err(e) = install_maps(helper, &spec.id_map) {
        reap_helper();
        return Err(e);
    }
    write_all_fd(&down_w, b"g").map_err(host("signal the sandbox helper"))?;
    drop(down_w);
    // 2. The helper reports init's pid.
    if !read_exact_fd(&up_r, &mut b).map_err(host("wait for the sandbox init"))? {
        reap_helper();
        return Err(setup_error(&fail_r));
    }
    let init_pid = i32::from_ne_bytes(b);
    spec.cancel.init_pid.store(init_pid, Ordering::SeqCst);
    if spec.cancel.is_cancelled() {
        kill_init(init_pid);
    }
    let mut out_r = out_r;
    let mut relay_stdin = None;
    let mut _raw = None;
    if let Some(sock) = &console_parent {
        let master = match recv_fd(sock) {
            Ok(Some(fd)) => fd,
            Ok(None) => {
                reap_helper();
                return Err(setup_error(&fail_r));
            }
            Err(e) => {
                reap_helper();
                return Err(SandboxError::Host {
                    what: "receive the pseudo-terminal".into(),
                    source: e,
                });
            }
        };
        if let Ok(size) = rustix::termios::tcgetwinsize(rustix::stdio::stdout()) {
            let _ = rustix::termios::tcsetwinsize(&master, size);
        }
        _raw = RawMode::enter(rustix::stdio::stdin());
        relay_stdin = Some(dup(rustix::stdio::stdin(), "stdin")?);
        out_r = Some(master);
    }
    let tty_master = out_r
        .as_ref()
        .filter(|_| console_parent.is_some())
        .map(|m| {
            rustix::io::fcntl_dupfd_cloexec(m, 3).map_err(|e| SandboxError::Host {
                what: "duplicate the pseudo-terminal".into(),
                source: e.into(),
            })
        });
    let tty_master = tty_master.transpose()?;

    // 3. Stream output until the helper exits.
    let pidfd = rustix::process::pidfd_open(helper_pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| SandboxError::Host {
            what: "open a pidfd".into(),
            source: e.into(),
        })?;
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    let mut bufs = [Vec::new(), Vec::new()];
    let mut open = [out_r, err_r];
    let mut exited = false;
    let mut chunk = vec![0u8; 64 * 1024];
    while !(exited && open.iter().all(Option::is_none)) {
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        for (i, o) in open.iter().enumerate() {
            if let Some(fd) = o {
                fds.push(PollFd::new(fd, PollFlags::IN));
                which.push(i);
            }
        }
        if !exited {
            fds.push(PollFd::new(&pidfd, PollFlags::IN));
            which.push(2);
        }
        if let Some(fd) = &relay_stdin {
            fds.push(PollFd::new(fd, PollFlags::IN));
            which.push(3);
        }
        let wait_ms = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(100) as i32,
            None => 100,
        };
        let ts = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait_ms) * 1_000_000,
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(SandboxError::Host {
                    what: "poll the sandbox".into(),
                    source: e.into(),
                });
            }
        }
        let ready: Vec<(usize, bool)> = fds
            .iter()
            .zip(&which)
            .map(|(f, w)| (*w, !f.revents().is_empty()))
            .collect();
        drop(fds);
        for (w, r) in ready {
            if !r {
                continue;
            }
            if w == 2 {
                exited = true;
                // Once the command is gone, stdin has nobody to go to.
                relay_stdin = None;
                continue;
            }
            if w == 3 {
                let fd = relay_stdin.as_ref().expect("polled stdin is open");
                let master = tty_master.as_ref().expect("stdin is relayed to a tty");
                match rustix::io::read(fd, &mut chunk) {
                    Ok(0) | Err(_) => relay_stdin = None,
                    Ok(n) => {
                        if write_all_fd(master, &chunk[..n]).is_err() {
                            relay_stdin = None;
                        }
                    }
                }
                continue;
            }
            let fd = open[w].as_ref().expect("polled fds are open");
            match rustix::io::read(fd, &mut chunk) {
                // A pty master reads EIO once every slave is closed.
                Ok(0) | Err(rustix::io::Errno::BADF | rustix::io::Errno::IO) => {
                    open[w] = None;
                }
                Ok(n) if tty_master.is_some() => {
                    let _ = write_all_fd_borrowed(rustix::stdio::stdout(), &chunk[..n]);
                }
                Ok(n) => emit_lines(
                    &mut bufs[w],
                    &chunk[..n],
                    if w == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    },
                    on_line,
                ),
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => {
                    return Err(SandboxError::Host {
                        what: "read the sandbox output".into(),
                        source: e.into(),
                    });
                }
            }
        }
        if let Some(d) = deadline {
            if !timed_out && Instant::now() >= d {
                timed_out = true;
                kill_init(init_pid);
            }
        }
        if spec.cancel.is_cancelled() {
            kill_init(init_pid);
        }
    }
    for (i, s) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
        if !bufs[i].is_empty() {
            on_line(s, &bufs[i]);
        }
    }
    let status = rustix::process::waitpid(Some(helper_pid), rustix::process::WaitOptions::empty())
        .map_err(|e| SandboxError::Host {
            what: "wait for the sandbox".into(),
            source: e.into(),
        })?
        .map(|(_, s)| s);
    spec.cancel.init_pid.store(0, Ordering::SeqCst);
    let exit_code = match status {
        Some(s) if s.exit_status().is_some() => s.exit_status().unwrap_or(1),
        Some(s) => 128 + s.terminating_signal().unwrap_or(0),
        None => 1,
    };
    let cancelled = spec.cancel.is_cancelled();
    let mut msg = Vec::new();
    let _ = File::from(fail_r).read_to_end(&mut msg);
    if !msg.is_empty() && !timed_out && !cancelled {
        let message = String::from_utf8_lossy(&msg).into_owned();
        if matches!(exit_code, 126 | 127) {
            return Err(SandboxError::Exec {
                message,
                code: exit_code,
            });
        }
        return Err(SandboxError::Setup { message });
    }
    Ok(Outcome {
        exit_code,
        timed_out,
        cancelled,
    })
}

fn setup_error(fail_r: &OwnedFd) -> SandboxError {
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = rustix::io::read(fail_r, &mut buf) {
        if n == 0 {
            break;
        }
        msg.extend_from_slice(&buf[..n]);
    }
    let message = if msg.is_empty() {
        "the sandbox helper exited early".into()
    } else {
        String::from_utf8_lossy(&msg).into_owned()
    };
    SandboxError::Setup { message }
}

fn emit_lines(buf: &mut Vec<u8>, data: &[u8], s: Stream, on_line: &mut dyn FnMut(Stream, &[u8])) {
    buf.extend_from_slice(data);
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
        on_line(s, &buf[start..start + i]);
        start += i + 1;
    }
    buf.drain(..start);
}

/// The helper: runs in the caller's pid namespace, owns the new user namespace.
fn helper_main(
    p: &Prepared,
    up: OwnedFd,
    down: OwnedFd,
    fail: OwnedFd,
    [stdin, out, err]: [OwnedFd; 3],
    console: Option<OwnedFd>,
) -> ! {
    let (up, down) = (&up, &down);
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    if let Err(e) = sys::unshare(UnshareFlags::NEWUSER) {
        child_fail(&fail, "unshare the user namespace", &e, 125);
    }
    if write_all_fd(up, b"u").is_err() {
        sys::exit_now(125);
    }
    let mut b = [0u8; 1];
    if !read_exact_fd(down, &mut b).unwrap_or(false) {
        sys::exit_now(125);
    }
    if p.remapped {
        // Root's own ids are not mapped when it is remapped onto a subordinate range:
        // become the namespace's root, so mounts and files are made as that id.
        let root_ids = rustix::thread::set_thread_groups(&[])
            .and_then(|()| rustix::thread::set_thread_res_gid(Gid::ROOT, Gid::ROOT, Gid::ROOT))
            .and_then(|()| rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT));
        if let Err(e) = root_ids {
            child_fail(&fail, "become root of the user namespace", &e, 125);
        }
    }
    let mut flags =
        UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    if p.new_net {
        flags |= UnshareFlags::NEWNET;
    }
    if let Err(e) = sys::unshare(flags) {
        child_fail(&fail, "unshare the namespaces", &e, 125);
    }
    match sys::fork() {
        Err(e) => child_fail(&fail, "fork the sandbox init", &e, 125),
        Ok(sys::Fork::Child) => init_main(p, fail, [stdin, out, err], console),
        Ok(sys::Fork::Parent(pid)) => {
            drop((out, err, stdin, fail, console));
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
    [stdin, out, err]: [OwnedFd; 3],
    console: Option<OwnedFd>,
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
    let cmd = match sys::fork() {
        Err(e) => child_fail(fail, "fork the command", &e, 125),
        Ok(sys::Fork::Child) => exec_command(p, fail, stdin.as_fd(), &out, &err, tty),
        Ok(sys::Fork::Parent(pid)) => pid,
    };
    // Init keeps no copy of the output pipes, so they close with the command's processes.
    drop((out, err, stdin));
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

fn exec_command(
    p: &Prepared,
    fail: &OwnedFd,
    stdin: std::os::fd::BorrowedFd<'_>,
    out: &OwnedFd,
    err: &OwnedFd,
    tty: bool,
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
    let keep = default_capabilities();
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
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
    step(
        "set no_new_privs",
        rustix::thread::set_no_new_privs(true).map_err(Into::into),
    );
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    step(
        "enter the working directory",
        rustix::process::chdir(p.workdir.as_c_str()).map_err(Into::into),
    );
    let prog = match find_program(p) {
        Ok(prog) => prog,
        Err(e) => child_fail(fail, &format!("exec {:?}", p.argv[0]), &e, 127),
    };
    let e = sys::execve(&prog, &p.argv, &p.env);
    let code = if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    child_fail(fail, &format!("exec {:?}", prog), &e, code)
}

/// Runs `child` in a forked process inside a new user namespace with
/// `id_map` installed, while the caller runs `parent`. They share a pipe:
/// the child writes to it when `child_writes`, else reads from it. The
/// child's returned text (`ok\n...` or `error\n...`) comes back as the result.
fn in_userns(
    id_map: &IdMap,
    what: &str,
    child_writes: bool,
    child: impl FnOnce(File) -> String,
    parent: impl FnOnce(File) -> Result<(), SandboxError>,
) -> Result<Result<Vec<String>, String>, SandboxError> {
    let fork_guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let (data_r, data_w) = pipe()?;
    let (info_r, info_w) = pipe()?;
    let (up_r, up_w) = pipe()?;
    let (down_r, down_w) = pipe()?;
    let (child_end, parent_end) = if child_writes {
        (data_w, data_r)
    } else {
        (data_r, data_w)
    };
    let pid = match sys::fork().map_err(host(format!("fork the {what}")))? {
        sys::Fork::Child => {
            drop((parent_end, info_r, up_r, down_w));
            let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
            if sys::unshare(UnshareFlags::NEWUSER).is_err() || write_all_fd(&up_w, b"u").is_err() {
                sys::exit_now(1);
            }
            let mut b = [0u8; 1];
            if !read_exact_fd(&down_r, &mut b).unwrap_or(false) {
                sys::exit_now(1);
            }
            let text = child(File::from(child_end));
            let _ = write_all_fd(&info_w, text.as_bytes());
            sys::exit_now(0)
        }
        sys::Fork::Parent(pid) => pid,
    };
    drop((child_end, info_w, up_w, down_r));
    drop(fork_guard);
    let child_pid = Pid::from_raw(pid).expect("fork returns a positive pid");
    let result = (|| {
        let mut b = [0u8; 1];
        if !read_exact_fd(&up_r, &mut b).map_err(host(format!("wait for the {what}")))? {
            return Err(SandboxError::Setup {
                message: format!("the {what} could not enter a user namespace"),
            });
        }
        install_maps(pid, id_map)?;
        write_all_fd(&down_w, b"g").map_err(host(format!("signal the {what}")))?;
        drop(down_w);
        parent(File::from(parent_end))?;
        let mut text = String::new();
        File::from(info_r)
            .read_to_string(&mut text)
            .map_err(host(format!("read the {what}'s result")))?;
        let mut lines = text.lines().map(str::to_owned);
        match lines.next().as_deref() {
            Some("ok") => Ok(Ok(lines.collect())),
            Some("error") => Ok(Err(lines.collect::<Vec<_>>().join("\n"))),
            _ => Ok(Err(format!("the {what} exited without a result"))),
        }
    })();
    if result.is_err() {
        let _ = rustix::process::kill_process(child_pid, Signal::KILL);
    }
    let _ = rustix::process::waitpid(Some(child_pid), rustix::process::WaitOptions::empty());
    result
}

/// Writes the layer of a finished step. As root the files are read
/// directly; otherwise the diff runs in a child process inside a user
/// namespace with the step's id map, where files owned by the mapped ids
/// (mode 0600 files of another user in the image, say) are readable.
pub fn write_layer(
    root: &mut PreparedRoot,
    opts: &crate::diff::DiffOptions,
    id_map: &IdMap,
    out: impl io::Write,
) -> Result<crate::diff::LayerInfo, SandboxError> {
    let step = root.mountpoint.clone();
    let layer_err = |message: String| SandboxError::Layer {
        step: step.clone(),
        message,
    };
    if id_map.kind == MappingKind::Root {
        return root
            .write_layer(opts, out)
            .map_err(|e| layer_err(error_chain(&e)));
    }
    if let RootSource::Overlay { upper, .. } = &root.source {
        if readable_tree(upper) {
            // Everything is readable from here: no namespace needed, owners
            // are mapped back through the id map.
            let mut direct = opts.clone();
            direct.id_map = id_map.clone();
            return root
                .write_layer(&direct, out)
                .map_err(|e| layer_err(error_chain(&e)));
        }
    }
    root.remove_stubs().map_err(|e| layer_err(e.to_string()))?;
    layer_where_readable(
        id_map,
        "layer writer",
        |w, map| {
            let mut inner = opts.clone();
            inner.id_map = map.clone();
            root.write_layer(&inner, w)
                .map(Some)
                .map_err(|e| error_chain(&e))
        },
        out,
    )?
    .map_err(&layer_err)?
    .ok_or_else(|| layer_err("the layer writer wrote no layer".into()))
}

/// Runs `write`, which writes a layer to its writer from files of the sandbox's id map
/// (an upper dir, snapshots, another stage's files) and says what it wrote, where every
/// such file can be read: directly as root, with `id_map` to map owners back; otherwise in
/// a child process inside a
/// user namespace with the map, where it runs as container root (mode 0700 directories of
/// apt's `_apt` user, mode 0000 files) and owners read as the image's ids, so it gets the
/// identity map. The layer's bytes go to `out`. The outer error is the namespace's; the
/// inner one is `write`'s message.
pub fn layer_where_readable(
    id_map: &IdMap,
    what: &str,
    write: impl FnOnce(&mut dyn io::Write, &IdMap) -> Result<Option<crate::diff::LayerInfo>, String>,
    mut out: impl io::Write,
) -> Result<Result<Option<crate::diff::LayerInfo>, String>, SandboxError> {
    if id_map.kind == MappingKind::Root {
        return Ok(write(&mut out, id_map));
    }
    let f = match in_userns(
        id_map,
        what,
        true,
        |mut pipe| match write(&mut pipe, &IdMap::identity()) {
            Ok(None) => "ok".to_owned(),
            Ok(Some(i)) => format!(
                "ok\n{}\n{}\n{}\n{}\n{}\n{}",
                i.diff_id, i.digest, i.size, i.uncompressed_size, i.media_type, i.entries
            ),
            Err(e) => format!("error\n{e}"),
        },
        |mut pipe| {
            io::copy(&mut pipe, &mut out).map_err(host("copy the layer"))?;
            out.flush().map_err(host("flush the layer"))
        },
    )? {
        Ok(f) => f,
        Err(e) => return Ok(Err(e)),
    };
    if f.is_empty() {
        return Ok(Ok(None));
    }
    let bad = |found: String| {
        Ok(Err(format!(
            "the {what} sent an unexpected result: {found}"
        )))
    };
    if f.len() != 6 {
        return bad(format!("{f:?}"));
    }
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("bad number {s:?}"));
    let Some(media_type) = [Compression::None, Compression::Gzip, Compression::Zstd]
        .into_iter()
        .map(Compression::media_type)
        .find(|m| *m == f[4])
    else {
        return bad(format!("media type {:?}", f[4]));
    };
    let info = (|| {
        Ok(crate::diff::LayerInfo {
            diff_id: f[0].clone(),
            digest: f[1].clone(),
            size: num(&f[2])?,
            uncompressed_size: num(&f[3])?,
            media_type,
            entries: num(&f[5])?,
        })
    })();
    Ok(info.map(Some))
}

/// Applies a layer like [`crate::unpack::apply_layer`], for use by the
/// sandbox with `id_map`: as root directly (ids mapped by the map); otherwise
/// in a child process inside a user namespace with the map, so that files
/// get the image's owners (as subordinate ids on the host). With a
/// single-id mapping, owners other than root cannot be kept:
/// `opts.ignore_chown_errors` decides whether that fails.
pub fn unpack_layer(
    mut reader: impl Read,
    dest: &Path,
    opts: &crate::unpack::UnpackOptions,
    id_map: &IdMap,
) -> Result<crate::unpack::Stats, SandboxError> {
    let unpack_err = |message: String| SandboxError::Unpack {
        dest: dest.to_owned(),
        message,
    };
    if id_map.kind == MappingKind::Root {
        give_to_container_root(dest, id_map).map_err(|e| unpack_err(e.to_string()))?;
        let mut o = opts.clone();
        o.id_map = id_map.clone();
        return crate::unpack::apply_layer(reader, dest, &o)
            .map_err(|e| unpack_err(error_chain(&e)));
    }
    let mut inner = opts.clone();
    inner.id_map = IdMap::identity();
    let f = in_userns(
        id_map,
        "layer unpacker",
        false,
        |pipe| match crate::unpack::apply_layer(io::BufReader::new(pipe), dest, &inner) {
            Ok(s) => format!(
                "ok\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
                s.entries,
                s.bytes,
                s.whiteouts,
                s.opaque_dirs,
                s.chown_failures,
                s.skipped_devices,
                s.skipped_xattrs
            ),
            Err(e) => format!("error\n{}", error_chain(&e)),
        },
        |mut pipe| {
            // The child may stop reading early on an error: a broken pipe is
            // reported through its result instead.
            match io::copy(&mut reader, &mut pipe) {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(SandboxError::Host {
                    what: format!("read the layer for {}", dest.display()),
                    source: e,
                }),
            }
        },
    )?
    .map_err(&unpack_err)?;
    let n: Vec<u64> = f
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|_| unpack_err(format!("bad number {s:?}")))
        })
        .collect::<Result<_, _>>()?;
    if n.len() != 7 {
        return Err(unpack_err(format!("unexpected result {f:?}")));
    }
    Ok(crate::unpack::Stats {
        entries: n[0],
        bytes: n[1],
        whiteouts: n[2],
        opaque_dirs: n[3],
        chown_failures: n[4],
        skipped_devices: n[5],
        skipped_xattrs: n[6],
    })
}

/// Whether every file and directory below `dir` can be read (and every
/// directory searched) by this process.
fn readable_tree(dir: &Path) -> bool {
    use rustix::fs::Access;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries {
        let Ok(e) = e else { return false };
        let Ok(ft) = e.file_type() else { return false };
        let p = e.path();
        if ft.is_dir() {
            if rustix::fs::access(&p, Access::READ_OK | Access::EXEC_OK).is_err()
                || !readable_tree(&p)
            {
                return false;
            }
        } else if ft.is_file() && rustix::fs::access(&p, Access::READ_OK).is_err() {
            return false;
        }
    }
    true
}

/// Gives `path` the owner `uid`:`gid` as seen inside a sandbox with `id_map`
/// (container ids) and the permission bits `mode`: what a new cache mount
/// directory needs. As root the ids are mapped and set directly; otherwise it
/// is done from inside a user namespace with the map, where the caller may
/// chown to its subordinate ids. An id outside the map is an error.
pub fn set_owner(
    path: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
    id_map: &IdMap,
) -> Result<(), SandboxError> {
    let what = || format!("give {} to {uid}:{gid} mode {mode:o}", path.display());
    let apply = |uid: u32, gid: u32| -> io::Result<()> {
        rustix::fs::chown(
            path,
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
        )?;
        rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode & 0o7777))?;
        Ok(())
    };
    if id_map.kind == MappingKind::Root {
        let (Some(huid), Some(hgid)) = (id_map.host_uid(uid), id_map.host_gid(gid)) else {
            return Err(SandboxError::Host {
                what: what(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "id outside the id map"),
            });
        };
        return apply(huid, hgid).map_err(host(what()));
    }
    in_userns(
        id_map,
        "chown helper",
        true,
        |_pipe| match apply(uid, gid) {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error\n{e}"),
        },
        |_pipe| Ok(()),
    )?
    .map_err(|message| SandboxError::Host {
        what: what(),
        source: io::Error::other(message),
    })?;
    Ok(())
}

/// Gives a directory that root made for a sandbox (a step dir, a snapshot's root) to the
/// container's root when `id_map` remaps root's ids: the sandbox's mounts run as that id
/// and must reach it. Nothing to do otherwise (the caller is already container root).
pub fn give_to_container_root(path: &Path, id_map: &IdMap) -> io::Result<()> {
    if id_map.kind != MappingKind::Root || id_map.is_identity() {
        return Ok(());
    }
    let (Some(uid), Some(gid)) = (id_map.host_uid(0), id_map.host_gid(0)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the id map has no container root",
        ));
    };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| io::Error::new(e.kind(), format!("chown {}: {e}", path.display())))
}

/// Removes a step or snapshot directory. Without root, files owned by
/// subordinate ids (and overlay's work dir) are removed from inside a user
/// namespace with `id_map`, where they belong to the caller.
pub fn remove_tree(path: &Path, id_map: &IdMap) -> Result<(), SandboxError> {
    let direct = std::fs::remove_dir_all(path);
    match direct {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if id_map.kind == MappingKind::Root => {
            return Err(SandboxError::Host {
                what: format!("remove {}", path.display()),
                source: e,
            });
        }
        Err(_) => {}
    }
    in_userns(
        id_map,
        "remover",
        true,
        |_pipe| match std::fs::remove_dir_all(path) {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("error\n{e}"),
        },
        |_pipe| Ok(()),
    )?
    .map_err(|message| SandboxError::Host {
        what: format!("remove {}", path.display()),
        source: io::Error::other(message),
    })?;
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Whether overlayfs can be mounted in a user namespace here: mounts a
/// two-lower overlay in a throwaway namespace.
pub fn probe_overlay() -> bool {
    let Ok(dir) = tempdir_in_tmp() else {
        return false;
    };
    let names = ["l1", "l2", "u", "w", "m"];
    for n in names {
        if std::fs::create_dir(dir.join(n)).is_err() {
            return false;
        }
    }
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let ok = match sys::fork() {
        Err(_) => false,
        Ok(sys::Fork::Child) => {
            let r = (|| -> io::Result<()> {
                sys::unshare(UnshareFlags::NEWUSER | UnshareFlags::NEWNS)?;
                std::fs::write("/proc/self/setgroups", "deny")?;
                std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))?;
                std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))?;
                use crate::mounts::Kernel;
                let mut k = HostKernel::default();
                k.make_private()?;
                k.overlay(
                    &[dir.join("l1"), dir.join("l2")],
                    Some((&dir.join("u"), &dir.join("w"))),
                    &dir.join("m"),
                )
            })();
            sys::exit_now(if r.is_ok() { 0 } else { 1 })
        }
        Ok(sys::Fork::Parent(pid)) => {
            let pid = Pid::from_raw(pid).expect("fork returns a positive pid");
            matches!(rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()), Ok(Some((_, s))) if s.exit_status() == Some(0))
        }
    };
    // overlayfs leaves `work/work` with mode 0, which even its owner cannot
    // descend into without privileges.
    let _ = rustix::fs::chmod(dir.join("w/work"), rustix::fs::Mode::from_raw_mode(0o700));
    let _ = std::fs::remove_dir_all(&dir);
    ok
}

fn tempdir_in_tmp() -> io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let p = base.join(format!("rbuild-probe-{}-{i}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::ErrorKind::AlreadyExists.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_kept_across_chunks() {
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut f = |s: Stream, l: &[u8]| got.push((s, l.to_vec()));
        emit_lines(&mut buf, b"a\nb", Stream::Stdout, &mut f);
        emit_lines(&mut buf, b"c\n\nd", Stream::Stdout, &mut f);
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, b"a".to_vec()),
                (Stream::Stdout, b"bc".to_vec()),
                (Stream::Stdout, b"".to_vec())
            ]
        );
        assert_eq!(buf, b"d");
    }

    #[test]
    fn shell_form_appends_the_script() {
        let c = Command::Shell {
            shell: vec!["/bin/sh".into(), "-c".into()],
            script: "echo hi".into(),
        };
        assert_eq!(c.argv(), ["/bin/sh", "-c", "echo hi"]);
    }
}
