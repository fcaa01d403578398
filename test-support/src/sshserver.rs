//! An OpenSSH server on loopback serving a [`GitServer`]'s repository, for the tests of git
//! inputs over ssh: `/usr/sbin/sshd` with a host key made for it, one authorized client key
//! held by an `ssh-agent` of its own (the key file is removed once the agent has it), and a
//! home directory whose `.ssh/known_hosts` knows the host key. Everything stops on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::GitServer;

/// `sshd` and `ssh-agent` for one repository; killed on drop.
#[derive(Debug)]
pub struct SshGitServer {
    dir: tempfile::TempDir,
    port: u16,
    repo: PathBuf,
    private_key: String,
    sshd: Child,
    agent: Child,
}

/// Runs `cmd`, asserts success, returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ssh-keygen -t ed25519` into `path` (and `path.pub`); returns the public key line.
fn keygen(path: &Path, comment: &str) -> String {
    run(
        Command::new(crate::require_tool("ssh-keygen", "openssh-client"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(path),
    );
    std::fs::read_to_string(path.with_extension("pub")).expect("read the public key")
}

/// Waits until something listens on `127.0.0.1:port` or `child` exits.
fn wait_listening(child: &mut Child, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = child.try_wait().expect("wait for sshd");
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "sshd did not listen on port {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl SshGitServer {
    /// Serves `server`'s repository over ssh as root (the tests run as root, like sshd must).
    pub fn start(server: &GitServer) -> SshGitServer {
        let sshd_bin = PathBuf::from("/usr/sbin/sshd");
        assert!(
            sshd_bin.exists(),
            "/usr/sbin/sshd is missing: install the openssh-server package (.ci/setup does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let host_key = dir.path().join("host_ed25519");
        let host_pub = keygen(&host_key, "rbuild-test-host");
        let client_key = dir.path().join("client_ed25519");
        let client_pub = keygen(&client_key, "rbuild-test-client");
        let private_key = std::fs::read_to_string(&client_key).expect("read the client key");
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, &client_pub).expect("write authorized_keys");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPidFile none\n\
                 LogLevel VERBOSE\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .expect("write sshd_config");
        // sshd's privilege separation directory.
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let log = dir.path().join("sshd.log");
        let mut sshd = Command::new(&sshd_bin)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create sshd.log"))
            .spawn()
            .expect("start sshd");
        wait_listening(&mut sshd, port, &log);

        let sock = dir.path().join("agent.sock");
        let agent = Command::new(crate::require_tool("ssh-agent", "openssh-client"))
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(Instant::now() < deadline, "ssh-agent made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        run(
            Command::new(crate::require_tool("ssh-add", "openssh-client"))
                .env("SSH_AUTH_SOCK", &sock)
                .arg("-q")
                .arg(&client_key),
        );
        std::fs::remove_file(&client_key).expect("remove the client key file");

        let ssh_dir = dir.path().join("home/.ssh");
        std::fs::create_dir_all(&ssh_dir).expect("mkdir home/.ssh");
        let host_pub = host_pub.split_whitespace().take(2).collect::<Vec<_>>();
        std::fs::write(
            ssh_dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", host_pub.join(" ")),
        )
        .expect("write known_hosts");
        std::fs::create_dir_all(dir.path().join("stranger/.ssh")).expect("mkdir stranger");
        std::fs::write(dir.path().join("stranger/.ssh/known_hosts"), "")
            .expect("write an empty known_hosts");
        SshGitServer {
            dir,
            port,
            repo: server.repo_path(),
            private_key,
            sshd,
            agent,
        }
    }

    /// `ssh://root@127.0.0.1:PORT/ABSOLUTE/PATH/repo.git`.
    pub fn url(&self) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, self.repo.display())
    }

    /// The port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `ssh-agent` socket holding the client key (for `SSH_AUTH_SOCK`).
    pub fn agent_sock(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    /// A home directory whose `.ssh/known_hosts` has the server's host key.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A home directory whose `.ssh/known_hosts` is empty: the server is unknown there.
    pub fn stranger_home(&self) -> PathBuf {
        self.dir.path().join("stranger")
    }

    /// The client's private key (OpenSSH format), which must never show anywhere.
    pub fn private_key(&self) -> &str {
        &self.private_key
    }

    /// What sshd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshGitServer {
    fn drop(&mut self) {
        for child in [&mut self.sshd, &mut self.agent] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
