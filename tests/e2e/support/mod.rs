//! Test helpers: temp directories that write files, running `rbuild` and other tools.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// A temp directory, removed at the end of the test.
#[derive(Debug)]
pub struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    /// A new, empty directory.
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::Builder::new()
                .prefix("rbuild-e2e-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A path inside it.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Writes a file (creating parent directories) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        path
    }

    /// Creates a directory (and parents) and returns its path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.join(rel);
        std::fs::create_dir_all(&path).expect("mkdir");
        path
    }
}

/// The finished output of a command, as text.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed).
    pub code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

fn finish(what: &str, output: std::io::Result<Output>) -> Run {
    let output = output.unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `rbuild --root ROOT` with a clean environment for the store.
pub fn rbuild(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    cmd.arg("--root").arg(root);
    cmd.env_remove("RBUILD_ROOT")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("RBUILD_LOG")
        // no config file of the machine's user
        .env_remove("RBUILD_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent/rbuild-tests");
    cmd.stdin(Stdio::null());
    cmd
}

/// The unprivileged user that rootless tests run `rbuild` as; it has /etc/subuid and
/// /etc/subgid ranges ([`ensure_rootless_user`]).
pub const ROOTLESS_USER: &str = "rbuild-rootless";

/// Makes [`ROOTLESS_USER`] when missing, with subordinate uid and gid ranges
/// 400000-465535 when it has none; returns the first subordinate uid. Needs root, useradd
/// and usermod (passwd), and newuidmap/newgidmap (uidmap) for the runs.
pub fn ensure_rootless_user() -> u32 {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(
        rustix::process::getuid().as_raw(),
        0,
        "the rootless tests' setup must run as root (it creates a user)"
    );
    assert!(
        Path::new("/usr/bin/newuidmap").exists(),
        "newuidmap is missing: install the Debian package uidmap"
    );
    let user = ROOTLESS_USER;
    if !Command::new("id")
        .arg(user)
        .output()
        .expect("id")
        .status
        .success()
    {
        ok(tool("useradd", "passwd").args(["--create-home", "--shell", "/bin/sh", user]));
    }
    let start = |file: &str| -> Option<u32> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{user}:"))?
                    .split(':')
                    .next()?
                    .parse()
                    .ok()
            })
    };
    if start("/etc/subuid").is_none() || start("/etc/subgid").is_none() {
        ok(tool("usermod", "passwd").args([
            "--add-subuids",
            "400000-465535",
            "--add-subgids",
            "400000-465535",
            user,
        ]));
    }
    start("/etc/subuid").expect("a subordinate uid range")
}

/// An unprivileged user with no /etc/subuid and /etc/subgid entries: its builds use a
/// single-id mapping ([`ensure_nosubid_user`]).
pub const NOSUBID_USER: &str = "rbuild-nosubid";

/// Makes [`NOSUBID_USER`] when missing and checks that neither /etc/subuid nor /etc/subgid
/// names it (by name or uid), so that nothing can map more than its own id. Needs root and
/// useradd (passwd).
pub fn ensure_nosubid_user() {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(
        rustix::process::getuid().as_raw(),
        0,
        "the single-id tests' setup must run as root (it creates a user)"
    );
    let user = NOSUBID_USER;
    let id = || Command::new("id").args(["-u", user]).output().expect("id");
    if !id().status.success() {
        // useradd gives new users subordinate ranges when login.defs says so: not this one.
        ok(tool("useradd", "passwd").args([
            "--create-home",
            "--shell",
            "/bin/sh",
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            user,
        ]));
    }
    let uid = String::from_utf8_lossy(&id().stdout).trim().to_owned();
    let entries = |file: &str| -> Vec<String> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                let who = l.split(':').next().unwrap_or("");
                who == user || who == uid
            })
            .map(str::to_owned)
            .collect()
    };
    // Ranges left by an earlier setup are removed.
    for (file, flag) in [
        ("/etc/subuid", "--del-subuids"),
        ("/etc/subgid", "--del-subgids"),
    ] {
        for line in entries(file) {
            let f: Vec<u64> = line
                .split(':')
                .skip(1)
                .filter_map(|n| n.parse().ok())
                .collect();
            if let [start, count] = f[..] {
                let range = format!("{start}-{}", start + count.max(1) - 1);
                ok(tool("usermod", "passwd").args([flag, &range, user]));
            }
        }
        assert_eq!(
            entries(file),
            Vec::<String>::new(),
            "{file} still has an entry for {user}"
        );
    }
}

/// `rbuild --root ROOT` as `user` (through runuser) or as the caller, with a clean
/// environment for the store.
pub fn rbuild_as(user: Option<&str>, root: &Path) -> Command {
    let Some(user) = user else {
        return rbuild(root);
    };
    let mut cmd = tool("runuser", "util-linux");
    cmd.args(["-u", user, "--", "env", "HOME=/tmp"])
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(root);
    cmd.env_remove("RBUILD_ROOT")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("RBUILD_LOG")
        .env_remove("RBUILD_CONFIG")
        .env("XDG_CONFIG_HOME", "/nonexistent/rbuild-tests");
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a command and asserts it succeeded.
pub fn ok(cmd: &mut Command) -> Run {
    let what = format!("{cmd:?}");
    let run = finish(&what, cmd.output());
    assert_eq!(
        run.code, 0,
        "{what} failed:\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run
}

/// Runs a command and asserts it failed with exit code 1.
pub fn fails(cmd: &mut Command) -> Run {
    let what = format!("{cmd:?}");
    let run = finish(&what, cmd.output());
    assert_eq!(
        run.code, 1,
        "{what} should fail:\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run
}

/// A command for a system tool the tests need; fails the test, naming the Debian package to
/// install, when the tool is missing.
pub fn tool(name: &str, debian_package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "the tests need `{name}`: install the Debian package {debian_package}"
    );
    Command::new(name)
}

/// `skopeo`.
pub fn skopeo() -> Command {
    let mut cmd = tool("skopeo", "skopeo");
    cmd.arg("--insecure-policy");
    cmd
}

/// `umoci`.
pub fn umoci() -> Command {
    tool("umoci", "umoci")
}

/// Where busybox-static installs busybox.
pub const BUSYBOX: &str = "/bin/busybox";

/// Makes a minimal root file system in `dir`: `bin/busybox` (from busybox-static) plus one
/// symlink per applet.
pub fn busybox_rootfs(dir: &Path) {
    let list = tool(BUSYBOX, "busybox-static")
        .arg("--list")
        .output()
        .expect("busybox --list");
    assert!(list.status.success(), "busybox --list failed");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("applet link");
        }
    }
}

/// The digest file names in `ROOT/blobs/sha256`, each checked to hash to its name.
pub fn verified_blobs(root: &Path) -> Vec<String> {
    use sha2::Digest as _;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("blobs/sha256")).expect("blobs dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(entry.path()).expect("read blob");
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(actual, name, "blob {name} does not match its digest");
        names.push(name);
    }
    names.sort();
    names
}

/// `/etc/passwd` of the build tests' base image: `app` is 1000:1000, `svc` 1001 with group
/// `staff` (50).
pub const BASE_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nsvc:x:1001:50:svc:/:/bin/sh\n";
/// `/etc/group` of the build tests' base image.
pub const BASE_GROUP: &str = "root:x:0:\nstaff:x:50:\napp:x:1000:\n";
/// The name the build tests' base image is imported under.
pub const BASE: &str = "localhost/busybox:latest";

/// A store for build tests with busybox (plus [`BASE_PASSWD`] and [`BASE_GROUP`]) imported as
/// [`BASE`], and a context directory.
#[derive(Debug)]
pub struct BuildEnv {
    /// Holds the store, the context and anything else the test writes.
    pub dir: Dir,
    /// The store (`--root`).
    pub root: PathBuf,
    /// The build context.
    pub ctx: PathBuf,
    /// The unprivileged user rbuild runs as ([`BuildEnv::rootless`]); `None`: the caller.
    pub user: Option<&'static str>,
}

impl BuildEnv {
    /// A fresh store with the base image, and an empty context.
    pub fn new() -> BuildEnv {
        Self::new_as(None)
    }

    /// Like [`BuildEnv::new`], but every `rbuild` command runs as [`ROOTLESS_USER`] (made
    /// when missing, with subordinate id ranges), which owns the store and the context.
    pub fn rootless() -> BuildEnv {
        ensure_rootless_user();
        Self::new_as(Some(ROOTLESS_USER))
    }

    /// Like [`BuildEnv::new`], but every `rbuild` command runs as [`NOSUBID_USER`], which has
    /// no subordinate ids (single-id mode).
    pub fn nosubid() -> BuildEnv {
        ensure_nosubid_user();
        Self::new_as(Some(NOSUBID_USER))
    }

    fn new_as(user: Option<&'static str>) -> BuildEnv {
        let dir = Dir::new();
        if let Some(user) = user {
            // The user must reach the store and the context inside the test's directory.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod the test dir");
            let store = dir.mkdir("store");
            let ctx = dir.mkdir("ctx");
            ok(Command::new("chown").arg(user).arg(&store).arg(&ctx));
        }
        let rootfs = dir.mkdir("rootfs");
        busybox_rootfs(&rootfs);
        std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir etc");
        std::fs::write(rootfs.join("etc/passwd"), BASE_PASSWD).expect("write passwd");
        std::fs::write(rootfs.join("etc/group"), BASE_GROUP).expect("write group");
        let root = dir.join("store");
        ok(rbuild_as(user, &root).arg("import").arg(&rootfs).arg(BASE));
        std::fs::remove_dir_all(&rootfs).expect("remove rootfs");
        let ctx = dir.mkdir("ctx");
        BuildEnv {
            dir,
            root,
            ctx,
            user,
        }
    }

    /// `rbuild --root ROOT`, as the environment's user.
    pub fn rbuild(&self) -> Command {
        rbuild_as(self.user, &self.root)
    }

    /// Writes a file of the context (creating parent directories); returns its path.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.ctx.join(rel);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, content).expect("write");
        path
    }

    /// The context directory as a plain tar stream (GNU tar's `-C CTX -c .`).
    pub fn context_tar(&self) -> Vec<u8> {
        filter(
            tool("tar", "tar")
                .arg("-C")
                .arg(&self.ctx)
                .args(["-c", "."]),
            b"",
        )
    }

    /// Writes the context's Dockerfile.
    pub fn dockerfile(&self, text: &str) {
        self.write("Dockerfile", text);
    }

    /// `rbuild --root ROOT build --progress plain ARGS CTX`, not yet run.
    pub fn build_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.rbuild();
        cmd.args(["build", "--progress", "plain"])
            .args(args)
            .arg(&self.ctx);
        cmd
    }

    /// Runs a build that must succeed; returns the image id (checked to be the only line of
    /// stdout) and stderr.
    pub fn build(&self, args: &[&str]) -> Built {
        let run = ok(&mut self.build_cmd(args));
        Built::from_run(run)
    }

    /// Runs a build of the context `context` (a URL) that must succeed.
    pub fn build_context(&self, args: &[&str], context: &str) -> Built {
        let mut cmd = self.rbuild();
        cmd.args(["build", "--progress", "plain"])
            .args(args)
            .arg(context);
        Built::from_run(ok(&mut cmd))
    }

    /// Runs a build of the context `context` (a URL) that must fail with exit code 1.
    pub fn build_context_fails(&self, args: &[&str], context: &str) -> Run {
        let mut cmd = self.rbuild();
        cmd.args(["build", "--progress", "plain"])
            .args(args)
            .arg(context);
        fails(&mut cmd)
    }

    /// Runs a build that must fail with exit code 1; returns its output.
    pub fn build_fails(&self, args: &[&str]) -> Run {
        let run = fails(&mut self.build_cmd(args));
        assert_eq!(run.stdout, "", "a failed build prints no image id");
        run
    }

    /// `rbuild run --rm IMAGE sh -c SCRIPT`; asserts success, returns stdout.
    pub fn sh(&self, image: &str, script: &str) -> String {
        ok(self
            .rbuild()
            .args(["run", "--rm", image, "sh", "-c", script]))
        .stdout
    }

    /// The image config document (`rbuild inspect`'s `config`).
    pub fn config(&self, image: &str) -> serde_json::Value {
        let v = self.inspect(image);
        v["config"].clone()
    }

    /// `rbuild inspect IMAGE`'s entry for the image.
    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let out = ok(self.rbuild().args(["inspect", image]));
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect json");
        v.get(0).cloned().unwrap_or(v)
    }
}

/// A successful build's output.
#[derive(Debug)]
pub struct Built {
    /// The image id, `sha256:...`.
    pub id: String,
    /// Progress (stderr).
    pub stderr: String,
    /// The steps of the progress output.
    pub steps: Vec<Step>,
}

impl Built {
    fn from_run(run: Run) -> Built {
        let id = run
            .stdout
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("stdout must end with a newline: {:?}", run.stdout));
        assert!(
            id.starts_with("sha256:") && id.len() == 71 && !id.contains('\n'),
            "stdout must be exactly the image id: {:?}",
            run.stdout
        );
        Built {
            id: id.to_string(),
            steps: steps(&run.stderr),
            stderr: run.stderr,
        }
    }

    /// The instructions of the steps that ran (DONE without CACHED; FROM lines left out).
    pub fn ran(&self) -> Vec<String> {
        ran(&self.steps)
    }

    /// The instructions of the steps taken from the cache.
    pub fn cached(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| s.cached)
            .map(|s| s.instruction.clone())
            .collect()
    }

    /// The step whose instruction is exactly `instruction` (panics when there is none or
    /// more than one).
    pub fn step(&self, instruction: &str) -> &Step {
        let found: Vec<&Step> = self
            .steps
            .iter()
            .filter(|s| s.instruction == instruction)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one step {instruction:?} expected in:\n{}",
            self.stderr
        );
        found[0]
    }
}

/// One step of `--progress plain` output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// `#N`.
    pub number: usize,
    /// `stage-0 2/3`, `internal`.
    pub label: String,
    /// `RUN /bin/sh -c ...`.
    pub instruction: String,
    /// `#N CACHED`.
    pub cached: bool,
    /// `#N cache miss: REASON`.
    pub miss: Option<String>,
    /// `#N DONE`.
    pub done: bool,
    /// `#N ERROR: ...`'s first line.
    pub error: Option<String>,
    /// `#N 0.123 LINE` lines (without the time).
    pub output: Vec<String>,
}

/// Parses `--progress plain` output into steps, in order of their numbers. Lines that are
/// not `#N ...` (the error block of a failed step, the summary) are skipped, and so are a
/// step's lines that are none of the above (a transfer's blob lines).
pub fn steps(stderr: &str) -> Vec<Step> {
    let mut out: std::collections::BTreeMap<usize, Step> = std::collections::BTreeMap::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((n, rest)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else {
            continue;
        };
        let step = out.entry(n).or_insert_with(|| Step {
            number: n,
            ..Step::default()
        });
        if let Some(head) = rest.strip_prefix('[')
            && let Some((label, instruction)) = head.split_once("] ")
        {
            step.label = label.to_string();
            step.instruction = instruction.to_string();
        } else if rest == "CACHED" {
            step.cached = true;
        } else if let Some(reason) = rest.strip_prefix("cache miss: ") {
            step.miss = Some(reason.to_string());
        } else if rest.starts_with("DONE ") {
            step.done = true;
        } else if let Some(e) = rest
            .strip_prefix("ERROR: ")
            .or_else(|| rest.strip_prefix("ERROR "))
        {
            step.error = Some(e.to_string());
        } else if let Some((t, text)) = rest.split_once(' ')
            && t.parse::<f64>().is_ok()
        {
            step.output.push(text.to_string());
        }
    }
    out.into_values().collect()
}

/// The instructions of the steps that ran: DONE without CACHED; FROM lines and `internal`
/// steps (loading the context) left out.
pub fn ran(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| {
            s.done && !s.cached && !s.instruction.starts_with("FROM ") && s.label != "internal"
        })
        .map(|s| s.instruction.clone())
        .collect()
}

/// Compresses bytes with the `gzip` tool.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    filter(tool("gzip", "gzip").arg("-c"), bytes)
}

/// Decompresses gzip bytes with the `gzip` tool.
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    filter(tool("gzip", "gzip").arg("-dc"), bytes)
}

/// Pipes bytes through a command; asserts it succeeds, returns its stdout.
pub fn filter(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread");
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a command and returns its output, whatever its exit code.
pub fn finish_cmd(cmd: &mut Command) -> Run {
    let what = format!("{cmd:?}");
    finish(&what, cmd.output())
}

/// One test as root and one as the unprivileged user, named `CASE::root` and
/// `CASE::rootless`.
macro_rules! as_root_and_rootless {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[test]
            fn root() {
                super::$case(false)
            }
            #[test]
            fn rootless() {
                super::$case(true)
            }
        }
    )*};
}
pub(crate) use as_root_and_rootless;

/// The private environment `.ci/setup` installs the validators into.
const TOOLS: &str = "/opt/rbuild-sbom-tools/bin";

/// A validator of the private environment; fails the test, naming .ci/setup, when missing.
pub fn validator(name: &str) -> Command {
    let path = Path::new(TOOLS).join(name);
    assert!(
        path.is_file(),
        "{} is missing: run .ci/setup (it installs spdx-tools and cyclonedx-python-lib into {TOOLS})",
        path.display()
    );
    Command::new(path)
}

/// Checks an SPDX document with `pyspdxtools -i` (it prints every breach of the SPDX 2.3
/// rules and nothing else).
pub fn validate_spdx(path: &Path) {
    let run = ok(validator("pyspdxtools").arg("-i").arg(path));
    assert_eq!(
        format!("{}{}", run.stdout, run.stderr).trim(),
        "",
        "{} is not valid SPDX 2.3",
        path.display()
    );
}

/// The head of an HTTP request (up to its blank line), read from `conn`.
pub fn request_head(conn: &mut std::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// A one-file HTTP server on 127.0.0.1: serves `body` at every path with Last-Modified
/// (and `etag` when set, answering 304 to an `If-None-Match` naming it), except that
/// `/redirect/REST` redirects to `/REST` and `/loop` to itself; records the request lines and
/// the bytes of body it sent.
pub struct Http {
    /// Its port.
    pub port: u16,
    /// The request lines, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// What it serves (change it between requests).
    pub body: Arc<Mutex<Vec<u8>>>,
    /// The ETag it sends, if any.
    pub etag: Arc<Mutex<Option<String>>>,
    /// The bytes of body sent so far.
    pub sent: Arc<Mutex<usize>>,
}

impl Http {
    /// Starts serving `body`.
    pub fn start(body: &'static [u8], last_modified: &'static str) -> Http {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let body = Arc::new(Mutex::new(body.to_vec()));
        let served = body.clone();
        let etag = Arc::new(Mutex::new(None::<String>));
        let tagged = etag.clone();
        let sent = Arc::new(Mutex::new(0usize));
        let counted = sent.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let head = request_head(&mut conn);
                let line = head.lines().next().unwrap_or_default().to_string();
                seen.lock().unwrap().push(line.clone());
                let get = line.starts_with("GET ");
                // `/redirect/REST` sends the client to `/REST`; `/loop` to itself, forever.
                let path = line.split(' ').nth(1).unwrap_or_default();
                let location = match path {
                    "/loop" => Some("/loop".to_string()),
                    p => p.strip_prefix("/redirect").map(str::to_string),
                };
                if let Some(location) = location {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    continue;
                }
                let body = served.lock().unwrap().clone();
                let etag = tagged.lock().unwrap().clone();
                if let Some(tag) = &etag
                    && head.lines().any(|l| {
                        l.to_ascii_lowercase().starts_with("if-none-match:") && l.contains(tag)
                    })
                {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 304 Not Modified\r\nETag: {tag}\r\nConnection: close\r\n\r\n"
                    );
                    continue;
                }
                let etag_line = etag.map(|t| format!("ETag: {t}\r\n")).unwrap_or_default();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: {last_modified}\r\n{etag_line}Connection: close\r\n\r\n",
                    body.len()
                );
                if get {
                    let _ = conn.write_all(&body);
                    *counted.lock().unwrap() += body.len();
                }
            }
        });
        Http {
            port,
            requests,
            body,
            etag,
            sent,
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}
