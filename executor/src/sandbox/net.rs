//! The network of sandboxes with [`Network::Private`](super::Network::Private): a
//! [`NetStack`], that is a holder process owning a user namespace (with the sandboxes' id
//! map) and a network namespace in it, connected to the outside by `pasta` (package
//! `passt`); sandboxes join both namespaces instead of making their own. Also the
//! `/etc/hosts` and `/etc/resolv.conf` the sandboxes see.
//!
//! pasta copies the host's addresses and routes into the namespace, so the host's own
//! addresses name the namespace itself there; with `--no-map-gw` the gateway is not mapped to
//! the host either, and the namespace's loopback is its own: nothing on the host's loopback or
//! its own addresses is reachable. Connections to anything else are made by pasta, from the
//! host, as the user running rbuild.
//!
//! Processes: the caller forks the holder, which unshares a user namespace (the caller
//! installs the id map, as for a sandbox helper), forks the stack's process, unshares a
//! network namespace and lets the stack's process open it and exec pasta in the foreground
//! (pasta itself stays in the host's network namespace). The holder then waits for the
//! caller's end of a pipe to close, when the stack is dropped or the caller dies, however it
//! dies, kills pasta and exits; pasta also has the holder's death as its parent-death
//! signal.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Gid, Pid, Signal, Uid};
use rustix::thread::UnshareFlags;

use super::error::{SandboxError, host};
use super::fd::{FORK_LOCK, pipe, read_exact_fd, write_all_fd};
use super::userns::install_maps;
use crate::idmap::{IdMap, MappingKind};
use crate::sys;

/// The program of the stack.
const PASTA: &str = "pasta";

/// The address in the namespace whose DNS queries pasta forwards to the host's first
/// resolver; `/etc/resolv.conf` names it instead of a resolver on the host's loopback.
pub(super) const DNS_FORWARD: &str = "169.254.1.1";

/// Finds `pasta` on `PATH`.
pub(super) fn find_pasta() -> Result<PathBuf, SandboxError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(PASTA))
        .find(|p| p.is_file())
        .ok_or(SandboxError::NetworkStackMissing {
            program: PASTA.into(),
        })
}

/// The AVX2 build Debian's passt ships next to `program` (`passt.avx2`), when this CPU has
/// AVX2: pasta would exec it itself, so starting it directly saves an exec.
fn avx2_build(program: &Path) -> Option<PathBuf> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        let mut exe = std::fs::canonicalize(program).ok()?.into_os_string();
        exe.push(".avx2");
        return Some(PathBuf::from(exe)).filter(|p| p.is_file());
    }
    let _ = program;
    None
}

/// The generated `/etc/hosts`: localhost, the host name, then `extra` in order.
pub(super) fn hosts_file(hostname: &str, extra: &[(String, String)]) -> String {
    let mut s = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    for (name, addr) in extra {
        s.push_str(&format!("{addr}\t{name}\n"));
    }
    s
}

/// The host's `resolv.conf` for a private network namespace: resolvers on the host's
/// loopback (systemd-resolved's 127.0.0.53, a local dnsmasq) are not reachable from it, so
/// they are replaced, once, by pasta's forwarding address. Says whether it did: pasta is then
/// asked to forward (only then: this pasta's forwarding breaks queries to other resolvers).
pub(super) fn private_resolv_conf(host: &str) -> (String, bool) {
    let mut out = String::new();
    let mut forwarded = false;
    for line in host.lines() {
        let mut words = line.split_whitespace();
        let loopback = words.next() == Some("nameserver")
            && words
                .next()
                .and_then(|a| a.split('%').next()?.parse::<std::net::IpAddr>().ok())
                .is_some_and(|a| a.is_loopback());
        if loopback {
            if !forwarded {
                out.push_str(&format!("nameserver {DNS_FORWARD}\n"));
                forwarded = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    (out, forwarded)
}

/// A port of the host forwarded into the namespace (`rbuild run -p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortForward {
    /// `tcp` or `udp`.
    pub udp: bool,
    /// The host address pasta listens on; `None`: every address.
    pub host_ip: Option<std::net::IpAddr>,
    /// The host's port.
    pub host_port: u16,
    /// The namespace's port it reaches.
    pub container_port: u16,
}

impl PortForward {
    /// pasta's spec of the forward: `[ADDRESS/]HOSTPORT:CONTAINERPORT`.
    fn pasta_spec(&self) -> String {
        match self.host_ip {
            Some(ip) => format!("{ip}/{}:{}", self.host_port, self.container_port),
            None => format!("{}:{}", self.host_port, self.container_port),
        }
    }
}

/// How long pasta may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A network namespace with outbound access that sandboxes join (see the module's
/// documentation); the holder and pasta end when it is dropped, or when this process ends.
#[derive(Debug)]
pub struct NetStack {
    program: PathBuf,
    id_map: IdMap,
    resolv_conf: String,
    holder: Pid,
    /// The caller's end of the holder's pipe: the holder ends when it is closed.
    life: Option<OwnedFd>,
    userns: OwnedFd,
    netns: OwnedFd,
    /// pasta writes its pid here once the namespace is configured.
    ready_pipe: OwnedFd,
    ready: OnceLock<Result<(), String>>,
    /// What the holder and the stack's process report when they fail.
    fail: OwnedFd,
    /// pasta's standard error.
    log: OwnedFd,
}

/// What the holder needs, made before it is forked.
struct Holder {
    /// The program to exec: pasta, or its AVX2 build.
    exe: CString,
    argv: Vec<CString>,
    /// Root's ids are mapped onto a subordinate range: pasta must become the namespace's root
    /// to keep its capabilities there.
    remapped: bool,
    can_setgroups: bool,
}

impl NetStack {
    /// Starts a stack whose user namespace has `id_map`. Returns once both namespaces exist;
    /// pasta may still be configuring the network, which [`NetStack::wait_ready`] waits for.
    pub fn start(id_map: &IdMap) -> Result<NetStack, SandboxError> {
        Self::start_forwarding(id_map, &[])
    }

    /// [`NetStack::start`] with `ports` of the host forwarded into the namespace by pasta
    /// (it fails when it cannot listen on one of them).
    pub fn start_forwarding(
        id_map: &IdMap,
        ports: &[PortForward],
    ) -> Result<NetStack, SandboxError> {
        let program = find_pasta()?;
        let failed = |message: String| SandboxError::NetworkStack {
            program: program.clone(),
            message,
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let (resolv_conf, dns_forward) = private_resolv_conf(&host_resolv);
        let mut args: Vec<&str> = vec![
            "--quiet",
            // In the foreground pasta stays the holder's child, dies with it, and writes its
            // pid once the namespace is configured.
            "--foreground",
            "--config-net",
            "--no-map-gw",
            // No port is forwarded from the namespace to the host.
            "-T",
            "none",
            "-U",
            "none",
            "--pid",
            "/proc/self/fd/1",
            // The namespace, opened by the stack's process: pasta cannot open another
            // process's namespace files once it has dropped its capabilities.
            "--netns",
            "/proc/self/fd/0",
            // pasta runs as the namespace's root; by default root would become nobody.
            "--runas",
            "0",
        ];
        if dns_forward {
            args.extend(["--dns-forward", DNS_FORWARD]);
        }
        // Only the ports asked for are forwarded from the host into the namespace.
        let mut forwards: Vec<String> = Vec::new();
        for udp in [false, true] {
            let flag = if udp { "-u" } else { "-t" };
            let specs: Vec<String> = ports
                .iter()
                .filter(|p| p.udp == udp)
                .map(PortForward::pasta_spec)
                .collect();
            if specs.is_empty() {
                forwards.extend([flag.to_owned(), "none".to_owned()]);
            }
            for spec in specs {
                forwards.extend([flag.to_owned(), spec]);
            }
        }
        args.extend(forwards.iter().map(String::as_str));
        let cstr = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|e| failed(format!("its path: {e}")))
        };
        // pasta takes its mode from the name it is run as (argv[0]).
        let mut argv = vec![cstr(&program)?];
        argv.extend(
            args.into_iter()
                .map(|a| CString::new(a).expect("pasta's arguments hold no NUL")),
        );
        let holder_args = Holder {
            exe: cstr(&avx2_build(&program).unwrap_or_else(|| program.clone()))?,
            argv,
            remapped: id_map.kind == MappingKind::Root && !id_map.is_identity(),
            can_setgroups: id_map.kind != MappingKind::Single,
        };
        let log = rustix::fs::memfd_create("pasta-stderr", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| failed(format!("create its log: {e}")))?;
        let devnull = OwnedFd::from(File::open("/dev/null").map_err(host("open /dev/null"))?);

        let fork_guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (up_r, up_w) = pipe()?; // holder -> caller
        let (down_r, down_w) = pipe()?; // caller -> holder; closed: the end
        let (ready_r, ready_w) = pipe()?; // pasta -> caller
        let (fail_r, fail_w) = pipe()?;
        // pasta reopens the pipe (its pid file) as the namespace's root: when that is another
        // host user (root's ids remapped), the pipe becomes that user's.
        if let (Some(uid), Some(gid)) = (id_map.host_uid(0), id_map.host_gid(0))
            && uid != rustix::process::geteuid().as_raw()
        {
            rustix::fs::fchown(&ready_w, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| failed(format!("give its pid pipe to uid {uid}: {e}")))?;
        }
        let holder = match sys::fork().map_err(host("fork the network stack's holder"))? {
            sys::Fork::Child => {
                drop((up_r, down_w, ready_r, fail_r));
                let keep = [&up_w, &down_r, &ready_w, &fail_w, &log, &devnull];
                sys::close_fds_except(&keep.map(|f| f.as_raw_fd()));
                // Neither the caller's streams nor its terminal's signals reach the holder.
                let _ = rustix::stdio::dup2_stdin(&devnull)
                    .and_then(|()| rustix::stdio::dup2_stdout(&devnull))
                    .and_then(|()| rustix::stdio::dup2_stderr(&devnull));
                drop(devnull);
                let _ = rustix::process::setsid();
                holder_main(&holder_args, up_w, down_r, ready_w, fail_w, log)
            }
            sys::Fork::Parent(pid) => Pid::from_raw(pid).expect("fork returns a positive pid"),
        };
        drop((up_w, down_r, ready_w, fail_w, devnull));
        drop(fork_guard);
        let abort = |e: SandboxError| {
            let _ = rustix::process::kill_process(holder, Signal::KILL);
            let _ = rustix::process::waitpid(Some(holder), rustix::process::WaitOptions::empty());
            e
        };
        // 1. The holder has its user namespace: install the maps.
        let mut b = [0u8; 1];
        if !read_exact_fd(&up_r, &mut b).map_err(host("wait for the network stack's holder"))? {
            return Err(abort(failed(reported(&fail_r, &log))));
        }
        install_maps(holder.as_raw_nonzero().get(), id_map).map_err(abort)?;
        write_all_fd(&down_w, b"g")
            .map_err(host("signal the network stack's holder"))
            .map_err(abort)?;
        // 2. Its network namespace exists.
        if !read_exact_fd(&up_r, &mut b).map_err(host("wait for the network stack's holder"))? {
            return Err(abort(failed(reported(&fail_r, &log))));
        }
        let open_ns = |name: &str| {
            let path = format!("/proc/{}/ns/{name}", holder.as_raw_nonzero());
            File::open(&path)
                .map(OwnedFd::from)
                .map_err(|e| abort(failed(format!("open {path}: {e}"))))
        };
        let userns = open_ns("user")?;
        let netns = open_ns("net")?;
        Ok(NetStack {
            program,
            id_map: id_map.clone(),
            resolv_conf,
            holder,
            life: Some(down_w),
            userns,
            netns,
            ready_pipe: ready_r,
            ready: OnceLock::new(),
            fail: fail_r,
            log,
        })
    }

    /// The id map of the stack's user namespace: the sandboxes that join it run with it.
    pub fn id_map(&self) -> &IdMap {
        &self.id_map
    }

    /// The `/etc/resolv.conf` of the sandboxes that join the stack.
    pub(super) fn resolv_conf(&self) -> &str {
        &self.resolv_conf
    }

    /// The namespace descriptors a joining sandbox helper must keep.
    pub(super) fn fds(&self) -> [i32; 2] {
        [self.userns.as_raw_fd(), self.netns.as_raw_fd()]
    }

    /// In a freshly forked sandbox helper: enters the stack's user namespace (with all
    /// capabilities there) and its network namespace.
    pub(super) fn join(&self) -> std::io::Result<()> {
        use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
        move_into_link_name_space(self.userns.as_fd(), Some(LinkNameSpaceType::User))?;
        move_into_link_name_space(self.netns.as_fd(), Some(LinkNameSpaceType::Network))?;
        Ok(())
    }

    /// Waits until pasta has configured the namespace (at once after the first time).
    pub(super) fn wait_ready(&self) -> Result<(), SandboxError> {
        self.ready
            .get_or_init(|| self.read_ready())
            .clone()
            .map_err(|message| SandboxError::NetworkStack {
                program: self.program.clone(),
                message,
            })
    }

    fn read_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut buf = [0u8; 32];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("not ready after {} s", READY_TIMEOUT.as_secs()));
            }
            let ts = rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&self.ready_pipe, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(format!("wait for it: {e}")),
            }
            match rustix::io::read(&self.ready_pipe, &mut buf) {
                // It wrote its pid: the namespace is configured.
                Ok(n) if n > 0 => return Ok(()),
                // It exited.
                Ok(_) => return Err(reported(&self.fail, &self.log)),
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(format!("wait for it: {e}")),
            }
        }
    }
}

impl Drop for NetStack {
    fn drop(&mut self) {
        // The holder kills pasta and exits once its pipe is closed; a short-lived helper
        // forked meanwhile could hold a copy of the pipe, so the holder is killed after a
        // grace (pasta then gets its parent-death signal).
        drop(self.life.take());
        let exited = rustix::process::pidfd_open(self.holder, rustix::process::PidfdFlags::empty())
            .ok()
            .is_some_and(|pidfd| {
                let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
                let ts = rustix::time::Timespec {
                    tv_sec: 2,
                    tv_nsec: 0,
                };
                matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(1))
            });
        if !exited {
            let _ = rustix::process::kill_process(self.holder, Signal::KILL);
        }
        let _ = rustix::process::waitpid(Some(self.holder), rustix::process::WaitOptions::empty());
    }
}

/// What the holder or the stack's process reported, and pasta's own error messages.
fn reported(fail: &OwnedFd, log: &OwnedFd) -> String {
    let mut text = Vec::new();
    let _ = rustix::fs::fcntl_setfl(fail, rustix::fs::OFlags::NONBLOCK);
    let mut buf = [0u8; 4096];
    while let Ok(n) = rustix::io::read(fail, &mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let mut offset = 0;
    while let Ok(n) = rustix::io::pread(log, &mut buf, offset) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        offset += n as u64;
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .lines()
        // pasta also logs to syslog, which it cannot reach from its own mount namespace.
        .filter(|l| !l.starts_with("Failed to send") && !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        "it exited without saying why".into()
    } else {
        lines.join("; ")
    }
}

/// Writes `what: e` on the failure pipe and exits.
fn holder_fail(fail: &OwnedFd, what: &str, e: &dyn std::fmt::Display) -> ! {
    let _ = write_all_fd(fail, format!("{what}: {e}").as_bytes());
    sys::exit_now(1)
}

/// The holder: owns the user and network namespaces until the caller closes `down`.
fn holder_main(
    h: &Holder,
    up: OwnedFd,
    down: OwnedFd,
    ready: OwnedFd,
    fail: OwnedFd,
    log: OwnedFd,
) -> ! {
    if let Err(e) = sys::unshare(UnshareFlags::NEWUSER) {
        holder_fail(&fail, "unshare the user namespace", &e);
    }
    let mut b = [0u8; 1];
    if write_all_fd(&up, b"u").is_err() || !read_exact_fd(&down, &mut b).unwrap_or(false) {
        sys::exit_now(1);
    }
    let holder = rustix::process::getpid();
    let (go_r, go_w) = match rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC) {
        Ok(p) => p,
        Err(e) => holder_fail(&fail, "create a pipe", &e),
    };
    // The stack's process is forked first: pasta must stay in the host's network namespace.
    let stack = match sys::fork() {
        Err(e) => holder_fail(&fail, "fork the network stack", &e),
        Ok(sys::Fork::Child) => {
            drop((go_w, up, down));
            stack_main(h, holder, &go_r, &ready, &fail, &log)
        }
        Ok(sys::Fork::Parent(pid)) => Pid::from_raw(pid).expect("fork returns a positive pid"),
    };
    drop((go_r, ready, log));
    if let Err(e) = sys::unshare(UnshareFlags::NEWNET) {
        let _ = rustix::process::kill_process(stack, Signal::KILL);
        holder_fail(&fail, "unshare the network namespace", &e);
    }
    if write_all_fd(&go_w, b"g").is_err() || write_all_fd(&up, b"n").is_err() {
        let _ = rustix::process::kill_process(stack, Signal::KILL);
        sys::exit_now(1);
    }
    drop((go_w, up));
    // Until the caller closes its end, or ends.
    loop {
        match rustix::io::read(&down, &mut b) {
            Ok(0) => break,
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    // pasta's exit (freeing its buffers) takes tens of milliseconds: nobody waits for it,
    // and init reaps it.
    let _ = rustix::process::kill_process(stack, Signal::KILL);
    sys::exit_now(0)
}

/// The stack's process: opens the holder's network namespace once it exists and becomes
/// pasta.
fn stack_main(
    h: &Holder,
    holder: Pid,
    go: &OwnedFd,
    ready: &OwnedFd,
    fail: &OwnedFd,
    log: &OwnedFd,
) -> ! {
    let dies_with_holder = || {
        let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
        if rustix::process::getppid() != Some(holder) {
            sys::exit_now(1);
        }
    };
    dies_with_holder();
    let mut b = [0u8; 1];
    if !read_exact_fd(go, &mut b).unwrap_or(false) {
        sys::exit_now(1);
    }
    let path = format!("/proc/{}/ns/net", holder.as_raw_nonzero());
    let netns = match File::open(&path) {
        Ok(f) => f,
        Err(e) => holder_fail(fail, &format!("open {path}"), &e),
    };
    let streams = rustix::stdio::dup2_stdin(&netns)
        .and_then(|()| rustix::stdio::dup2_stdout(ready))
        .and_then(|()| rustix::stdio::dup2_stderr(log));
    if let Err(e) = streams {
        holder_fail(fail, "set up pasta's streams", &e);
    }
    if h.remapped {
        let groups = if h.can_setgroups {
            rustix::thread::set_thread_groups(&[])
        } else {
            Ok(())
        };
        let root = groups
            .and_then(|()| rustix::thread::set_thread_res_gid(Gid::ROOT, Gid::ROOT, Gid::ROOT))
            .and_then(|()| rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT));
        if let Err(e) = root {
            holder_fail(fail, "become root of the user namespace", &e);
        }
        // Changing ids cleared the parent-death signal.
        dies_with_holder();
    }
    if let Err(e) = sys::default_signals() {
        holder_fail(fail, "restore the default signal actions", &e);
    }
    let e = sys::execve(&h.exe, &h.argv, &[]);
    holder_fail(fail, &format!("exec {}", h.exe.to_string_lossy()), &e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_are_replaced_by_the_forwarder_once() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\n\
                    options edns0 trust-ad\nsearch example.org\n";
        assert_eq!(
            private_resolv_conf(host),
            (
                "# generated\nnameserver 169.254.1.1\nnameserver 10.0.0.2\n\
                 options edns0 trust-ad\nsearch example.org\n"
                    .to_owned(),
                true
            )
        );
        let plain = "nameserver 10.255.255.53\n";
        assert_eq!(private_resolv_conf(plain), (plain.to_owned(), false));
    }

    #[test]
    fn extra_hosts_follow_the_generated_entries() {
        let h = hosts_file("box", &[("db.test".into(), "10.1.2.3".into())]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"), "{h}");
        assert!(h.ends_with("127.0.1.1\tbox\n10.1.2.3\tdb.test\n"), "{h}");
    }
}
