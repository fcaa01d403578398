//! Test harness for rbuild: a real `docker-registry` (Debian's distribution 2.8) on a free
//! loopback port, optionally with htpasswd and TLS from a CA made in the test, and busybox
//! images built with umoci from `/bin/busybox` and pushed with skopeo.
//!
//! Missing tools make the harness panic with the Debian package to install; tests never skip.
//!
//! ```no_run
//! let registry = rbuild_test_support::Registry::start();
//! let layout = rbuild_test_support::BusyboxLayout::build();
//! layout.push_with_skopeo(&registry, "busybox:latest", rbuild_test_support::Format::Oci);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod debian;
mod dockerd;
mod gitserver;
mod imagefs;
mod sshserver;

pub use debian::{DEBIAN_PATH, DebianBase, SUITE, apt_mirror, cache_dir};
pub use dockerd::Dockerd;
pub use gitserver::{GitServer, git};
pub use imagefs::{FileEntry, FileKind, ImageArchive};
pub use sshserver::SshGitServer;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest as _;

/// The registry binary from Debian's `docker-registry` package.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// The user name `start_with_auth` accepts.
pub const USER: &str = "rbuild";
/// The password `start_with_auth` accepts.
pub const PASSWORD: &str = "s3cret-pa55";

/// Panics naming the Debian package when `tool` is not installed.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let found = if tool.starts_with('/') {
        Path::new(tool).exists().then(|| PathBuf::from(tool))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(tool))
                .find(|p| p.exists())
        })
    };
    found.unwrap_or_else(|| {
        panic!("`{tool}` is not installed: install the Debian package `{package}` (apt-get install {package})")
    })
}

/// A running `docker-registry`; stopped when dropped.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
}

impl Registry {
    /// Starts a plain-HTTP registry on 127.0.0.1 with filesystem storage in a temp dir.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// Starts a registry with htpasswd auth ([`USER`] / [`PASSWORD`]) and TLS; the CA that
    /// signed its certificate is at [`Registry::ca_pem`].
    pub fn start_with_auth() -> Self {
        Self::launch(true)
    }

    /// Starts a plain-HTTP registry whose config ends with `auth_yaml` (a top-level `auth:`
    /// block, e.g. `token` auth pointing at a token server of the test).
    pub fn start_with_auth_config(auth_yaml: &str) -> Self {
        Self::launch_with(false, auth_yaml)
    }

    fn launch(secure: bool) -> Self {
        Self::launch_with(secure, "")
    }

    fn launch_with(secure: bool, extra: &str) -> Self {
        let bin = require_tool(REGISTRY_BIN, "docker-registry");
        let dir = tempfile::tempdir().expect("create temp dir for the registry");
        let port = free_port();
        let root = dir.path();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            root.join("data").display()
        );
        if secure {
            write_tls(root);
            let hash = bcrypt::hash_with_result(PASSWORD, 5)
                .expect("bcrypt hash")
                .format_for_version(bcrypt::Version::TwoA);
            std::fs::write(root.join("htpasswd"), format!("{USER}:{hash}\n"))
                .expect("write htpasswd");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                root.join("server.crt").display(),
                root.join("server.key").display(),
                root.join("htpasswd").display()
            ));
        }
        config.push_str(extra);
        let config_path = root.join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(root.join("registry.log")).expect("create registry log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut reg = Self {
            child,
            dir,
            port,
            tls: secure,
        };
        reg.wait_ready();
        reg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll registry") {
                panic!(
                    "docker-registry exited with {status} before answering; log:\n{}",
                    self.log()
                );
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if self.tls {
                    return;
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer /v2/ within 20 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL (`http://` or `https://`).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.host()
        )
    }

    /// The CA certificate (PEM) that signed the TLS certificate (only with auth).
    pub fn ca_pem(&self) -> PathBuf {
        assert!(self.tls, "only start_with_auth() registries have a CA");
        self.dir.path().join("ca.crt")
    }

    /// The registry's log so far (its access log counts requests).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The registry's filesystem storage (`docker/registry/v2/...` inside), for tests that
    /// damage what it serves.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A scratch directory that lives as long as the registry.
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    /// skopeo flags to reach this registry (`--dest-tls-verify=false`, credentials).
    pub fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut v = vec![format!("--{prefix}tls-verify=false")];
        if self.tls {
            v.push(format!("--{prefix}creds={USER}:{PASSWORD}"));
        }
        v
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

fn write_tls(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "rbuild test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf params");
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &issuer).expect("sign server cert");
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).expect("write CA");
    std::fs::write(dir.join("server.crt"), cert.pem()).expect("write cert");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write key");
}

/// Manifest format skopeo writes to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI media types.
    Oci,
    /// Docker v2 schema 2 media types.
    DockerV2s2,
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where `.ci/setup` puts Debian's arm64 busybox-static (extracted from its package: it cannot
/// be installed beside the amd64 one).
pub const ARM64_BUSYBOX: &str = "/usr/local/lib/rbuild-test/arm64/busybox";

/// An OCI image layout holding busybox (from `/bin/busybox` with applet links), built with
/// umoci; tag `latest` (linux/amd64 config) and `multi` (an index of amd64 and arm64 entries).
#[derive(Debug)]
pub struct BusyboxLayout {
    dir: tempfile::TempDir,
}

impl BusyboxLayout {
    /// Builds the layout (umoci init/new/unpack --rootless, copy busybox, repack).
    pub fn build() -> Self {
        Self::build_with_extra(0)
    }

    /// Builds the layout with an extra file of `extra_bytes` pseudo-random bytes in
    /// `/data.bin` (for transfer benchmarks and chunked uploads).
    pub fn build_with_extra(extra_bytes: u64) -> Self {
        Self::build_from(extra_bytes, false)
    }

    /// Builds the layout with the top-level directories of Docker Hub's busybox image (/dev,
    /// /etc with `root` and `nobody` in passwd and group, /home, /proc, /root, /sys, /tmp,
    /// /usr, /var), so that a container runtime has its mount points and a step sees the
    /// same tree on every builder.
    pub fn build_with_root_dirs() -> Self {
        Self::build_from(0, true)
    }

    /// Like [`BusyboxLayout::build_with_root_dirs`], with Debian's arm64 busybox-static
    /// (which `.ci/setup` extracts to [`ARM64_BUSYBOX`]) and an arm64 config in tag `latest`.
    pub fn build_arm64_with_root_dirs() -> Self {
        let arm64 = Path::new(ARM64_BUSYBOX);
        assert!(
            arm64.is_file(),
            "the tests need Debian's arm64 busybox at {ARM64_BUSYBOX}: run `bash .ci/setup`"
        );
        Self::build_with(arm64, "arm64", 0, true)
    }

    fn build_from(extra_bytes: u64, root_dirs: bool) -> Self {
        let busybox = require_tool("/bin/busybox", "busybox-static");
        Self::build_with(&busybox, "amd64", extra_bytes, root_dirs)
    }

    fn build_with(busybox: &Path, arch: &str, extra_bytes: u64, root_dirs: bool) -> Self {
        let umoci = require_tool("umoci", "umoci");
        // The applets of the host's busybox: Debian builds every architecture's alike.
        let host_busybox = require_tool("/bin/busybox", "busybox-static");
        let dir = tempfile::tempdir().expect("temp dir for the layout");
        let layout = dir.path().join("oci");
        let bundle = dir.path().join("bundle");
        let img = format!("{}:latest", layout.display());
        run(Command::new(&umoci).args(["init", "--layout"]).arg(&layout));
        run(Command::new(&umoci).args(["new", "--image", &img]));
        run(Command::new(&umoci)
            .args(["unpack", "--rootless", "--image", &img])
            .arg(&bundle));
        let bin = bundle.join("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("create rootfs/bin");
        std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
        let list = run(Command::new(&host_busybox).arg("--list"));
        for applet in list
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
        {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
        if extra_bytes > 0 {
            write_noise(&bundle.join("rootfs/data.bin"), extra_bytes);
        }
        if root_dirs {
            write_root_dirs(&bundle.join("rootfs"));
        }
        run(Command::new(&umoci)
            .args(["repack", "--image", &img])
            .arg(&bundle));
        run(Command::new(&umoci).args([
            "config",
            "--image",
            &img,
            "--architecture",
            arch,
            "--os",
            "linux",
            "--config.cmd",
            "sh",
        ]));
        // A second manifest with an arm64 config over the same layer, and an index of both.
        run(Command::new(&umoci).args([
            "config",
            "--image",
            &img,
            "--tag",
            "arm64",
            "--architecture",
            "arm64",
        ]));
        let me = Self { dir };
        me.write_index();
        me
    }

    /// The layout directory.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("oci")
    }

    fn write_index(&self) {
        let layout = self.path();
        let index_path = layout.join("index.json");
        let mut index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&index_path).expect("read index.json"))
                .expect("parse index.json");
        let find = |tag: &str| -> serde_json::Value {
            index["manifests"]
                .as_array()
                .expect("manifests array")
                .iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
                .cloned()
                .unwrap_or_else(|| panic!("tag {tag} in layout"))
        };
        let entry = |m: serde_json::Value, arch: &str, variant: Option<&str>| {
            let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant {
                platform["variant"] = v.into();
            }
            serde_json::json!({
                "mediaType": m["mediaType"],
                "digest": m["digest"],
                "size": m["size"],
                "platform": platform,
            })
        };
        let nested = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [entry(find("arm64"), "arm64", Some("v8")), entry(find("latest"), "amd64", None)],
        });
        let bytes = serde_json::to_vec(&nested).expect("serialise index");
        let hex = hex(&sha2::Sha256::digest(&bytes));
        std::fs::write(layout.join("blobs/sha256").join(&hex), &bytes).expect("write index blob");
        index["manifests"]
            .as_array_mut()
            .expect("array")
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": format!("sha256:{hex}"),
                "size": bytes.len(),
                "annotations": {"org.opencontainers.image.ref.name": "multi"},
            }));
        std::fs::write(&index_path, serde_json::to_vec(&index).expect("serialise"))
            .expect("write index.json");
    }

    /// `skopeo copy` of tag `latest` (or `multi` with `--all`) to `registry`/`dest`.
    pub fn push_with_skopeo(&self, registry: &Registry, dest: &str, format: Format) {
        self.push_tag_with_skopeo("latest", registry, dest, format);
    }

    /// `skopeo copy` of one tag of the layout to `registry`/`dest`.
    pub fn push_tag_with_skopeo(&self, tag: &str, registry: &Registry, dest: &str, format: Format) {
        skopeo_push(&self.path(), tag, registry, dest, format);
    }
}

/// `skopeo copy` of one tag of an OCI layout to `registry`/`dest` (with `--all` for the tag
/// `multi`, an index).
pub fn skopeo_push(layout: &Path, tag: &str, registry: &Registry, dest: &str, format: Format) {
    let skopeo = require_tool("skopeo", "skopeo");
    let mut cmd = Command::new(skopeo);
    cmd.args(["--insecure-policy", "copy", "--quiet"]);
    cmd.args(registry.skopeo_flags("dest-"));
    if format == Format::DockerV2s2 {
        cmd.args(["--format", "v2s2"]);
    }
    if tag == "multi" {
        cmd.arg("--all");
    }
    cmd.arg(format!("oci:{}:{tag}", layout.display()));
    cmd.arg(format!("docker://{}/{dest}", registry.host()));
    run(&mut cmd);
}

fn write_root_dirs(rootfs: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    for (dir, mode) in [
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("var", 0o755),
    ] {
        let path = rootfs.join(dir);
        std::fs::create_dir_all(&path).expect("create a root directory");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("chmod a root directory");
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .expect("write /etc/passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnobody:x:65534:\n")
        .expect("write /etc/group");
}

fn write_noise(path: &Path, mut len: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create noise file"));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 16];
    while len > 0 {
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = len.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write noise");
        len -= n as u64;
    }
    f.flush().expect("flush noise");
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The outcome of one suite of conformance vectors: each case passed or failed with a line
/// saying which case, what was expected and what came out.
#[derive(Debug)]
pub struct Suite {
    /// The name used in the summary line (`parser`, `dockerignore`, ...).
    pub name: &'static str,
    /// The cases that passed.
    pub passed: usize,
    /// The cases run.
    pub total: usize,
    /// One line per failed case.
    pub failures: Vec<String>,
}

impl Suite {
    /// An empty suite named `name`.
    pub fn new(name: &'static str) -> Self {
        Suite {
            name,
            passed: 0,
            total: 0,
            failures: Vec::new(),
        }
    }

    /// Records one case: `Ok(())` passed, `Err(why)` failed.
    pub fn check(&mut self, case: impl std::fmt::Display, outcome: Result<(), String>) {
        self.total += 1;
        match outcome {
            Ok(()) => self.passed += 1,
            Err(why) => self.failures.push(format!("{}: {case}: {why}", self.name)),
        }
    }

    /// Prints one summary line for `suites` (in `order`), then each failure, and fails when
    /// a suite of `order` ran no case or any case failed.
    pub fn report(suites: &mut [Suite], order: &[&str]) {
        suites.sort_by_key(|s| {
            order
                .iter()
                .position(|n| *n == s.name)
                .unwrap_or(order.len())
        });
        let summary: Vec<String> = suites
            .iter()
            .map(|s| format!("{} {}/{}", s.name, s.passed, s.total))
            .collect();
        println!("conformance: {}", summary.join(", "));
        eprintln!("conformance: {}", summary.join(", "));
        let failures: Vec<&String> = suites.iter().flat_map(|s| &s.failures).collect();
        for f in &failures {
            eprintln!("{f}");
        }
        for name in order {
            let suite = suites.iter().find(|s| s.name == *name);
            assert!(
                suite.is_some_and(|s| s.total > 0),
                "suite {name} ran no case"
            );
        }
        assert!(
            failures.is_empty(),
            "{} conformance case(s) failed",
            failures.len()
        );
    }
}

/// The external conformance vectors (BuildKit's parser cases and others, kept outside the
/// repository): `$RBUILD_CONFORMANCE_DIR`, or `../shared/conformance` beside the repository.
///
/// When they are missing, a test that needs them passes after printing one line that says how
/// to run it, unless `CI` is set (to anything but `false` or `0`): CI requires them and the
/// test fails. A `RBUILD_CONFORMANCE_DIR` that names no vectors always fails.
pub fn conformance_dir(test: &str) -> Option<PathBuf> {
    let has_vectors = |dir: &Path| dir.join("README.md").is_file();
    if let Some(dir) = std::env::var_os("RBUILD_CONFORMANCE_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            has_vectors(&dir),
            "{test}: RBUILD_CONFORMANCE_DIR={} holds no conformance vectors (no README.md)",
            dir.display()
        );
        return Some(dir);
    }
    // test-support/ is in the repository; `shared/` sits beside the repository.
    let beside = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("the repository's parent directory");
    let dir = beside.join("shared/conformance");
    if has_vectors(&dir) {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "{test}: the conformance vectors are required in CI and are not at {} (set RBUILD_CONFORMANCE_DIR)",
        dir.display()
    );
    // Straight to stderr: the test harness captures print macros of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped, no conformance vectors at {}; set RBUILD_CONFORMANCE_DIR to their folder to run it",
        dir.display()
    );
    None
}

/// Compares `actual` with the golden file at `path`, adding a line to `failures` when it
/// differs or is missing; with `UPDATE_GOLDEN` set, writes `actual` there instead.
pub fn compare_golden(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).expect("golden file writable");
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => {}
        Ok(expected) => failures.push(format!(
            "{}: differs\n--- expected\n{expected}\n+++ actual\n{actual}",
            path.display()
        )),
        Err(_) => failures.push(format!(
            "{}: missing (run with UPDATE_GOLDEN=1)",
            path.display()
        )),
    }
}
