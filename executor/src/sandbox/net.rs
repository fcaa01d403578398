//! The network of a sandbox with [`Network::Private`](super::Network::Private): the
//! user-mode stack (`pasta`, from the `passt` package) that gives the sandbox's own network
//! namespace outbound access, and the `/etc/hosts` and `/etc/resolv.conf` it sees.
//!
//! pasta copies the host's addresses and routes into the namespace, so the host's own
//! addresses name the namespace itself there; with `--no-map-gw` the gateway is not mapped to
//! the host either, and the namespace's loopback is its own: nothing on the host's loopback or
//! its own addresses is reachable. Connections to anything else are made by pasta, from the
//! host, as the user running rbuild.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::error::SandboxError;

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

/// A running stack; stopped when dropped.
#[derive(Debug)]
pub(super) struct Stack {
    pid: Option<rustix::process::Pid>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
}

/// Starts `pasta` for the network namespace of `init` (and, without root, in its user
/// namespace) and returns once the namespace is configured: pasta's first process exits
/// then, leaving the stack running in the background.
pub(super) fn start(
    program: &Path,
    dns_forward: bool,
    init: i32,
    dir: &Path,
) -> Result<Stack, SandboxError> {
    let fail = |message: String| SandboxError::NetworkStack {
        program: program.to_owned(),
        message,
    };
    // pasta opens the namespace as an inherited descriptor: as root it drops the privilege
    // to open another process's /proc/PID/ns files.
    let netns = File::open(format!("/proc/{init}/ns/net"))
        .map_err(|e| fail(format!("open the network namespace of pid {init}: {e}")))?;
    let log_file = dir.join("pasta.log");
    let log =
        File::create(&log_file).map_err(|e| fail(format!("create {}: {e}", log_file.display())))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args([
        "--quiet",
        "--config-net",
        "--no-map-gw",
        // No port is forwarded from the host into the namespace.
        "-t",
        "none",
        "-u",
        "none",
        "-T",
        "none",
        "-U",
        "none",
        // The pid of the background process comes back on stdout, a pipe: no file is written
        // where the id pasta runs as might not reach.
        "--pid",
        "/proc/self/fd/1",
        "--netns",
        "/proc/self/fd/0",
    ]);
    if dns_forward {
        cmd.args(["--dns-forward", DNS_FORWARD]);
    }
    if rustix::process::geteuid().is_root() {
        // Root stays root, with only the capabilities pasta keeps (by default it would become
        // nobody, which cannot open the namespace).
        cmd.args(["--runas", "0"]);
    } else {
        cmd.args(["--userns", &format!("/proc/{init}/ns/user")]);
    }
    let mut child = cmd
        .stdin(Stdio::from(netns))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| fail(format!("start: {e}")))?;
    let status = child.wait().map_err(|e| fail(format!("wait: {e}")))?;
    let mut pid_text = String::new();
    if let Some(mut out) = child.stdout.take() {
        // The background process may still hold the pipe: read what is there, do not wait.
        let _ = rustix::fs::fcntl_setfl(&out, rustix::fs::OFlags::NONBLOCK);
        let _ = out.read_to_string(&mut pid_text);
    }
    let pid = pid_text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let stack = Stack { pid };
    if !status.success() || stack.pid.is_none() {
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        let log: Vec<&str> = log
            .lines()
            .filter(|l| !l.starts_with("Failed to send") && !l.is_empty())
            .collect();
        return Err(fail(format!("{status}: {}", log.join("; "))));
    }
    Ok(stack)
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
