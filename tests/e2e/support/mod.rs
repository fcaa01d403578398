//! Test helpers: temp directories that write files, running `rbuild` and other tools.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
        .env_remove("RBUILD_LOG");
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
