//! A private dockerd (Debian's `docker.io`, with its embedded BuildKit) for differential
//! tests: its own data root, exec root, pid file and unix socket in a temp dir, no bridge and
//! no iptables rules, loopback registries allowed over plain HTTP.
//!
//! One daemon serves all tests of a test process ([`Dockerd::shared`]). It runs under a small
//! shell that holds the read end of a pipe whose write end only the test process has (Rust
//! opens pipes close-on-exec, so no other child inherits it): when the test process exits, or
//! is killed, the pipe reaches end of file and the shell stops dockerd (TERM, then KILL after
//! 20 s), unmounts what is left under its directory and removes it. Nothing outlives the tests.

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::require_tool;

/// Debian's dockerd.
pub const DOCKERD_BIN: &str = "/usr/sbin/dockerd";
/// Debian's docker client (another one may come first on PATH).
pub const DOCKER_BIN: &str = "/usr/bin/docker";

/// The supervising shell: `$1` is the state directory, the rest is dockerd's command line.
const SUPERVISOR: &str = r#"
dir=$1; shift
"$@" </dev/null >"$dir/dockerd.log" 2>&1 &
pid=$!
echo "$pid" >"$dir/supervised.pid"
while read -r _; do :; done
kill -TERM "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
kill -KILL "$pid" 2>/dev/null
wait "$pid"
awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do umount -l "$m"; done
rm -rf --one-file-system "$dir"
"#;

/// A running private dockerd.
#[derive(Debug)]
pub struct Dockerd {
    dir: PathBuf,
    /// Closing it (at process exit) stops the daemon.
    _lifeline: Mutex<ChildStdin>,
}

impl Dockerd {
    /// The daemon shared by this test process's tests, started on first use (needs root and
    /// the Debian package docker.io).
    pub fn shared() -> &'static Dockerd {
        static DAEMON: OnceLock<Dockerd> = OnceLock::new();
        DAEMON.get_or_init(Dockerd::start)
    }

    fn start() -> Dockerd {
        let dockerd = require_tool(DOCKERD_BIN, "docker.io");
        require_tool(DOCKER_BIN, "docker.io");
        assert_eq!(
            rustix::process::getuid().as_raw(),
            0,
            "the BuildKit differential tests need root (dockerd)"
        );
        let dir = tempfile::Builder::new()
            .prefix("rbuild-dockerd-")
            .tempdir_in("/tmp")
            .expect("temp dir for dockerd")
            .keep();
        std::fs::create_dir_all(dir.join("config")).expect("docker client config dir");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("rbuild-dockerd-supervisor")
            .arg(&dir)
            .arg(dockerd)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--insecure-registry=127.0.0.0/8",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the dockerd supervisor");
        let lifeline = child.stdin.take().expect("the supervisor's stdin");
        let me = Dockerd {
            dir,
            _lifeline: Mutex::new(lifeline),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let version = me
                .docker()
                .args(["version", "--format", "{{.Server.Version}}"])
                .output();
            if version.is_ok_and(|o| o.status.success()) {
                break;
            }
            if let Some(status) = child.try_wait().expect("poll the dockerd supervisor") {
                panic!(
                    "dockerd exited ({status}) before answering; log:\n{}",
                    me.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s; log:\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        drop(child);
        me
    }

    /// `docker` talking to this daemon, with BuildKit on and a client config of its own.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(DOCKER_BIN);
        cmd.env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir.join("config"))
            .env("DOCKER_BUILDKIT", "1")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env_remove("BUILDKIT_PROGRESS")
            .stdin(Stdio::null());
        cmd
    }

    /// The daemon's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    /// The daemon's state directory (removed when the daemon stops).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}
