//! Running one process in a namespaced sandbox.
//!
//! Process layout: the caller forks a helper that unshares a user namespace
//! and waits while the caller installs its id maps (directly as root, with
//! newuidmap/newgidmap otherwise); with [`Network::Private`] the helper instead
//! joins the user and network namespaces of a [`NetStack`], which has the same
//! id map. The helper then unshares the mount, pid, ipc, uts, cgroup (and, for
//! `--network none`, network) namespaces and forks the sandbox's init, pid 1 of
//! the new pid namespace; with a stack, init forks the command only once the
//! stack has configured the network. With [`RunSpec::limits`] the caller moves the helper into
//! a cgroup of the sandbox's own ([`crate::cgroup`]) before it unshares the cgroup namespace.
//! Init carries out the mount
//! plan ([`crate::mounts`]), pivots into the root, and forks the command. When
//! the command exits, init exits with its status, and the kernel kills every
//! other process of the pid namespace. Timeouts and cancellation kill init.
//!
//! The parts, one file each: `spec` says what to run and how ([`RunSpec`], [`Command`],
//! [`Network`], [`Stdio`], [`CancelHandle`], [`Outcome`]); `error` holds [`SandboxError`];
//! this file turns a spec into what the children need (the user, the generated `/etc`
//! files, the mount plan, argv and environment); `parent` forks the helper, installs the id
//! maps and relays the output until the run ends; `child` is the helper, init and the
//! command's own set-up up to `execve`; `userns` runs other work inside a user namespace
//! with the caller's id map (writing and unpacking layers, giving files their owners,
//! removing trees) and probes overlayfs; `net` is the [`NetStack`] and the generated
//! `/etc/hosts` and `resolv.conf`; `seccomp` compiles the system call filter the
//! command's set-up installs last; `pty` is the pseudo-terminal of `rbuild run -t`; `exec`
//! runs another process in a running sandbox's namespaces and signals its processes;
//! `fd` holds the pipes and whole-buffer reads and writes all of them use.

mod child;
mod error;
pub mod exec;
mod fd;
mod net;
mod owners;
mod parent;
mod pty;
pub mod seccomp;
mod spec;
mod userns;

use rustix::thread::CapabilitySet;
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::idmap::MappingKind;
use crate::mounts::{self, PlanInput};
use crate::snapshot::{LowerView, PreparedRoot};
use crate::user::{ResolvedUser, resolve_user};
pub use child::default_capabilities;
pub use error::SandboxError;
use error::host;
use net::hosts_file;
pub use net::{NetStack, PortForward};
use parent::run_prepared;
pub use spec::{CancelHandle, Command, Network, Outcome, RunSpec, StartHook, Stdio, Stream};
pub use userns::{
    give_to_container_root, layer_where_readable, probe_overlay, remove_tree, set_owner,
    unpack_layer, write_layer,
};

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
    /// The network stack whose user and network namespaces the sandbox joins.
    stack: Option<Arc<NetStack>>,
    /// Installed just before `execve`; `None`: unconfined.
    seccomp: Option<seccomp::Filter>,
    /// Single-id mode: the filter that fakes the id-changing calls and hands the ownership
    /// calls to init, which records the owners (`owners`).
    owner_filter: Option<seccomp::Filter>,
    /// The capabilities root keeps (Docker's default set; all of them when privileged).
    capabilities: CapabilitySet,
    /// Whether the command runs with no_new_privs (not when privileged).
    no_new_privs: bool,
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

        let hosts_text = hosts_file(&spec.hostname, &spec.add_hosts);
        let hostname_text = format!("{}\n", spec.hostname);
        // The spec's stack when it has the sandbox's id map, else one for this run only.
        let stack = match (spec.network, &spec.net_stack) {
            (Network::Private, Some(s)) if *s.id_map() == spec.id_map => Some(s.clone()),
            (Network::Private, _) => Some(Arc::new(NetStack::start(&spec.id_map)?)),
            (Network::Host | Network::None, _) => None,
        };
        let resolv_text = match (spec.network, &stack) {
            (Network::Host, _) => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            (_, Some(stack)) => stack.resolv_conf().to_owned(),
            (_, None) => String::new(),
        };
        // A private dir for what the mounts need outside the root. The mount point of the
        // generated /etc files' tmpfs is made here: a remapped root inside may not write in it.
        let private_dir = step_dir.join("private");
        let etc_dir = private_dir.join("etc");
        std::fs::create_dir_all(&etc_dir).map_err(host(format!("create {}", etc_dir.display())))?;
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
                (hosts_text.as_bytes(), rel("/etc/hosts")),
                (hostname_text.as_bytes(), rel("/etc/hostname")),
                (resolv_text.as_bytes(), rel("/etc/resolv.conf")),
            ],
            extra,
            private_dir: &private_dir,
            hostname: &spec.hostname,
            own_network: spec.network != Network::Host,
            privileged: spec.privileged,
        };
        let steps = mounts::plan(&input);

        let parts = ProcessParts::new(
            &spec.command.argv(),
            &spec.env,
            &spec.workdir,
            &user.home,
            Some(&spec.hostname),
        )?;
        let prepared = Prepared {
            steps,
            rootfs: root.mountpoint.clone(),
            argv: parts.argv,
            env: parts.env,
            path_dirs: parts.path_dirs,
            workdir: parts.workdir,
            user,
            can_setgroups: spec.id_map.kind != MappingKind::Single,
            remapped: spec.id_map.kind == MappingKind::Root && !spec.id_map.is_identity(),
            new_net: spec.network == Network::None,
            stack,
            seccomp: if spec.privileged {
                None
            } else {
                seccomp::filter_for(&spec.seccomp, default_capabilities())
                    .map_err(|source| SandboxError::Seccomp { source })?
            },
            owner_filter: match spec.id_map.kind {
                MappingKind::Single => Some(
                    seccomp::owner_filter().map_err(|source| SandboxError::Seccomp { source })?,
                ),
                MappingKind::Root | MappingKind::Subordinate => None,
            },
            capabilities: if spec.privileged {
                CapabilitySet::all()
            } else {
                default_capabilities()
            },
            no_new_privs: !spec.privileged,
        };
        let cgroup = match &spec.cgroup {
            Some(parent) if !spec.limits.is_empty() => Some(
                parent
                    .create(&spec.limits)
                    .map_err(|source| SandboxError::Cgroup { source })?,
            ),
            _ => None,
        };
        run_prepared(spec, &prepared, cgroup.as_ref(), on_line)
    }
}

/// A process's argv, environment (PATH, HOME and HOSTNAME added when missing), PATH's
/// directories and working directory, as the children pass them to `execve`.
struct ProcessParts {
    argv: Vec<CString>,
    env: Vec<CString>,
    path_dirs: Vec<Vec<u8>>,
    workdir: CString,
}

impl ProcessParts {
    fn new(
        argv: &[String],
        env: &[String],
        workdir: &str,
        home: &str,
        hostname: Option<&str>,
    ) -> Result<ProcessParts, SandboxError> {
        let mut env: Vec<String> = env.to_vec();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(DEFAULT_PATH.into());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={home}"));
        }
        if let Some(hostname) = hostname
            && !env.iter().any(|e| e.starts_with("HOSTNAME="))
        {
            env.push(format!("HOSTNAME={hostname}"));
        }
        let path_var = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("");
        let cstr = |s: &str| {
            CString::new(s).map_err(|e| SandboxError::Host {
                what: format!("pass {s:?} to the process"),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            })
        };
        if argv.is_empty() {
            return Err(SandboxError::Host {
                what: "run an empty command".into(),
                source: io::ErrorKind::InvalidInput.into(),
            });
        }
        Ok(ProcessParts {
            argv: argv.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
            env: env.iter().map(|e| cstr(e)).collect::<Result<_, _>>()?,
            path_dirs: path_var
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| d.as_bytes().to_vec())
                .collect(),
            workdir: cstr(if workdir.is_empty() { "/" } else { workdir })?,
        })
    }
}

fn read_image_file(view: &LowerView, path: &str) -> String {
    let comps = view.resolve(Path::new(path));
    match view.lookup(&comps) {
        Ok(Some((p, md))) if md.is_file() => std::fs::read_to_string(p).unwrap_or_default(),
        _ => String::new(),
    }
}
