//! What to run and how: the [`RunSpec`] with its [`Command`], [`Network`] and [`Stdio`], the
//! [`CancelHandle`] that ends or signals a run from another thread, and the [`Outcome`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use rustix::process::{Pid, Signal};

use super::NetStack;
use super::seccomp::Seccomp;
use crate::cgroup::{CgroupParent, Limits};
use crate::idmap::IdMap;
use crate::mounts::ExtraMount;
use crate::snapshot::MountPoint;

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
    /// The network namespace of a [`NetStack`](super::NetStack), with outbound access
    /// through `pasta`: the host's loopback and the host's own addresses are not reachable
    /// from it. The sandbox joins [`RunSpec::net_stack`], or a stack started for the run.
    #[default]
    Private,
    /// The host's network namespace.
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
    pub(super) init_pid: Arc<AtomicI32>,
}

impl CancelHandle {
    /// A handle not yet attached to a run.
    pub fn new() -> Self {
        Self::default()
    }
    /// Kills every process of the sandbox; [`super::Sandbox::run`] then returns with
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
    pub(super) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// The pids whose parent is `parent`, from `/proc/PID/stat` (the kernel's
/// `children` file is not always built in).
pub(super) fn children_of(parent: i32) -> Vec<i32> {
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

pub(super) fn kill_init(pid: i32) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, Signal::KILL);
    }
}

/// Called once the command has started, its `execve` done, with the host pid of the
/// sandbox's init (whose namespaces [`super::exec`] joins); not called when the command
/// cannot start ([`super::Sandbox::run`] then returns its error).
#[derive(Clone)]
pub struct StartHook(pub Arc<dyn Fn(i32) + Send + Sync>);

impl std::fmt::Debug for StartHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartHook")
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
    /// The stack a [`Network::Private`] sandbox joins, shared with other sandboxes (the steps
    /// of a build); used when its id map is the spec's. `None`: one is started for the run.
    pub net_stack: Option<Arc<NetStack>>,
    /// Extra `/etc/hosts` entries, `(host name, address)`, after the generated ones.
    pub add_hosts: Vec<(String, String)>,
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
    /// The system call filter (Docker's default profile unless set).
    pub seccomp: Seccomp,
    /// Every privilege the sandbox's user namespace allows, as BuildKit's
    /// `RUN --security=insecure`: all capabilities, no system call filter (whatever
    /// [`RunSpec::seccomp`] says), /proc and /sys neither masked nor read-only, no
    /// no_new_privs. Host devices are not added. Only with the `security.insecure`
    /// entitlement.
    pub privileged: bool,
    /// Resource limits, applied through a cgroup of the sandbox's own made under
    /// [`RunSpec::cgroup`]; without one they are not applied (the caller decides whether
    /// that is an error).
    pub limits: Limits,
    /// Where the sandbox's cgroup is made ([`CgroupParent::detect`]).
    pub cgroup: Option<CgroupParent>,
    /// Told when the command has started (`rbuild run -d` returns then).
    pub on_start: Option<StartHook>,
}

impl RunSpec {
    /// A spec running `command` as root in `/` with a network namespace of its own.
    pub fn new(command: Command) -> Self {
        RunSpec {
            command,
            env: Vec::new(),
            workdir: "/".into(),
            user: String::new(),
            hostname: "rbuild".into(),
            network: Network::Private,
            net_stack: None,
            add_hosts: Vec::new(),
            mounts: Vec::new(),
            timeout: None,
            id_map: IdMap::for_current_user(),
            cancel: CancelHandle::new(),
            stdio: Stdio::Lines,
            privileged: false,
            seccomp: Seccomp::Default,
            limits: Limits::default(),
            cgroup: None,
            on_start: None,
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
    /// The kernel's OOM killer killed a process of the sandbox (its memory limit, when the
    /// run had one, is [`Outcome::memory_limit`]).
    pub oom_killed: bool,
    /// The memory limit the sandbox ran under, in bytes.
    pub memory_limit: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_form_appends_the_script() {
        let c = Command::Shell {
            shell: vec!["/bin/sh".into(), "-c".into()],
            script: "echo hi".into(),
        };
        assert_eq!(c.argv(), ["/bin/sh", "-c", "echo hi"]);
    }
}
