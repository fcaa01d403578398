//! Shared helpers: tar building, a busybox base image, running commands.
#![allow(dead_code)]

pub mod suite;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command as Proc;

use rbuild_compress::Compression;
use rbuild_executor::diff::DiffOptions;
use rbuild_executor::idmap::IdMap;
use rbuild_executor::sandbox::{Command, Outcome, RunSpec, Sandbox, SandboxError, Stream};
use rbuild_executor::snapshot::{self, PreparedRoot, SnapshotterKind};
use rbuild_executor::unpack::UnpackOptions;

/// Builds tar archives with raw names (so hostile names stay as written).
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Tar {
    fn default() -> Self {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }
}

impl Tar {
    fn header(
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        size: u64,
        link: Option<&str>,
    ) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        assert!(name.len() <= 100, "test names fit a ustar header: {name}");
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    pub fn dir(mut self, name: &str, mode: u32) -> Self {
        let mut h = Self::header(name, tar::EntryType::Directory, mode, 0, None);
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }
    pub fn file(self, name: &str, mode: u32, data: &[u8]) -> Self {
        self.file_owned(name, mode, data, 0, 0)
    }
    pub fn file_owned(mut self, name: &str, mode: u32, data: &[u8], uid: u64, gid: u64) -> Self {
        let mut h = Self::header(name, tar::EntryType::Regular, mode, data.len() as u64, None);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }
    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        let mut h = Self::header(name, tar::EntryType::Symlink, 0o777, 0, Some(target));
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }
    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        let mut h = Self::header(name, tar::EntryType::Link, 0o644, 0, Some(target));
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }
    pub fn chardev(mut self, name: &str, major: u32, minor: u32) -> Self {
        let mut h = Self::header(name, tar::EntryType::Char, 0o666, 0, None);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.b.append(&h, &[][..]).unwrap();
        self
    }
    pub fn xattr_file(mut self, name: &str, data: &[u8], key: &str, value: &[u8]) -> Self {
        let k = format!("SCHILY.xattr.{key}");
        self.b.append_pax_extensions([(k.as_str(), value)]).unwrap();
        self.file(name, 0o644, data)
    }
    pub fn build(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
pub const GROUP: &str = "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\nnogroup:x:65534:\n";

/// The base layer: /bin/busybox with its applet links, users, and some data.
pub fn busybox_tar() -> Vec<u8> {
    let bb = std::fs::read("/bin/busybox")
        .expect("/bin/busybox is missing: install the Debian package busybox-static");
    let list = Proc::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .expect("run busybox --list-full");
    assert!(list.status.success(), "busybox --list-full failed");
    let mut t = Tar::default();
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "home", "root", "data", "data/sub",
        "var",
    ] {
        t = t.dir(d, 0o755);
    }
    t = t.dir("tmp", 0o1777);
    t = t.file("bin/busybox", 0o755, &bb);
    for l in String::from_utf8(list.stdout).unwrap().lines() {
        if l == "bin/busybox" || l.is_empty() {
            continue;
        }
        t = t.symlink(l, "/bin/busybox");
    }
    t.file("etc/passwd", 0o644, PASSWD.as_bytes())
        .file("etc/group", 0o644, GROUP.as_bytes())
        .file("data/a", 0o644, b"a\n")
        .file("data/b", 0o4755, b"b\n")
        .file("data/sub/c", 0o644, b"c\n")
        .file_owned("data/alice-secret", 0o600, b"secret\n", 1000, 1000)
        .build()
}

/// Unpacks `tar` into a new snapshot dir under `dir`.
pub fn snapshot(dir: &Path, name: &str, tar: &[u8], id_map: &IdMap) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(&p).unwrap();
    let mut o = UnpackOptions::new(name);
    o.ignore_chown_errors = id_map.kind == rbuild_executor::idmap::MappingKind::Single;
    rbuild_executor::sandbox::unpack_layer(tar, &p, &o, id_map).unwrap();
    p
}

/// What a run produced.
pub struct RunResult {
    pub outcome: Outcome,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
    pub root: PreparedRoot,
}

pub fn run_in(
    kind: SnapshotterKind,
    layers: &[PathBuf],
    step: &Path,
    spec: &RunSpec,
) -> Result<RunResult, SandboxError> {
    let root =
        snapshot::prepare(kind, layers, step, &spec.mountpoints()).expect("prepare the root");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let outcome = Sandbox::run(spec, &root, &mut |s, l| {
        let l = String::from_utf8_lossy(l).into_owned();
        match s {
            Stream::Stdout => stdout.push(l),
            Stream::Stderr => stderr.push(l),
        }
    })?;
    Ok(RunResult {
        outcome,
        stdout,
        stderr,
        root,
    })
}

pub fn sh(script: &str) -> RunSpec {
    RunSpec::new(Command::Shell {
        shell: vec!["/bin/sh".into(), "-c".into()],
        script: script.into(),
    })
}

/// One entry of a layer, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ent {
    pub name: String,
    pub kind: char,
    pub uid: u64,
    pub gid: u64,
    pub mode: u32,
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// Writes the run's layer (uncompressed) and lists its entries.
pub fn layer_entries(root: &mut PreparedRoot, id_map: &IdMap) -> Vec<Ent> {
    let opts = DiffOptions {
        compression: Compression::None,
        id_map: id_map.clone(),
        ..Default::default()
    };
    let mut out = Vec::new();
    rbuild_executor::sandbox::write_layer(root, &opts, id_map, &mut out).expect("write the layer");
    let mut a = tar::Archive::new(&out[..]);
    let mut v = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            _ => '?',
        };
        let link = e
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        v.push(Ent {
            name,
            kind,
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mode: h.mode().unwrap(),
            link,
            data,
        });
    }
    v
}

pub fn names(e: &[Ent]) -> Vec<&str> {
    e.iter().map(|e| e.name.as_str()).collect()
}
