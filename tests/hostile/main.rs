//! Hostile inputs end to end, through the `rbuild` binary: images whose layers try to leave
//! the snapshot they are unpacked into (pushed to a real `docker-registry`, then `rbuild pull`
//! and `rbuild run`), compression bombs in layers and archives, a store on a full file system,
//! registries that lie, and the system calls a sandbox may make. Every fixture is made by the
//! tests. Needs: root (the disk-full test mounts a tmpfs), docker-registry, skopeo,
//! busybox-static, gcc with a static libc (the seccomp probe).

#[path = "../e2e/support/mod.rs"]
mod support;

mod archives;
mod bake;
mod cgroups;
mod check;
mod concurrency;
mod contexts;
mod crash;
mod diskfull;
mod dockerfiles;
mod exec;
mod expansion;
mod git;
mod layers;
mod limits;
mod mountinfo;
mod network;
mod owners;
mod registry;
mod report_packages;
mod sandbox;
mod sbom;
mod sbom_archives;
mod sbom_rpm;
mod seccomp;
mod text;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

/// One tar entry, written byte by byte so names and link targets can be anything (the `tar`
/// crate's path setters refuse `..`, rightly, so names go into the header fields directly).
#[derive(Debug)]
pub struct Entry {
    name: Vec<u8>,
    kind: tar::EntryType,
    link: Vec<u8>,
    data: Vec<u8>,
    /// What the size field says, when it lies.
    size: Option<u64>,
    mode: u32,
    device: (u32, u32),
}

impl Entry {
    fn new(name: &str, kind: tar::EntryType) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind,
            link: Vec::new(),
            data: Vec::new(),
            size: None,
            mode: 0o755,
            device: (0, 0),
        }
    }
    /// A regular file.
    pub fn file(name: &str, data: &[u8]) -> Entry {
        let mut e = Entry::new(name, tar::EntryType::Regular);
        e.data = data.to_vec();
        e.mode = 0o644;
        e
    }
    /// A directory.
    pub fn dir(name: &str) -> Entry {
        Entry::new(name, tar::EntryType::Directory)
    }
    /// A symlink.
    pub fn symlink(name: &str, target: &str) -> Entry {
        let mut e = Entry::new(name, tar::EntryType::Symlink);
        e.link = target.as_bytes().to_vec();
        e.mode = 0o777;
        e
    }
    /// A hard link.
    pub fn hardlink(name: &str, target: &str) -> Entry {
        let mut e = Entry::new(name, tar::EntryType::Link);
        e.link = target.as_bytes().to_vec();
        e
    }
    /// A device node or fifo.
    pub fn node(name: &str, kind: tar::EntryType, major: u32, minor: u32) -> Entry {
        let mut e = Entry::new(name, kind);
        e.device = (major, minor);
        e.mode = 0o666;
        e
    }
    /// The size field says `size` whatever the data is.
    pub fn lying_size(mut self, size: u64) -> Entry {
        self.size = Some(size);
        self
    }

    fn header(&self) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(self.kind);
        h.set_mode(self.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(self.size.unwrap_or(self.data.len() as u64));
        if matches!(self.kind, tar::EntryType::Char | tar::EntryType::Block) {
            h.set_device_major(self.device.0).expect("ustar device");
            h.set_device_minor(self.device.1).expect("ustar device");
        }
        let old = h.as_old_mut();
        assert!(
            self.name.len() <= 100 && self.link.len() <= 100,
            "names fit the header"
        );
        old.name[..self.name.len()].copy_from_slice(&self.name);
        old.linkname[..self.link.len()].copy_from_slice(&self.link);
        h.set_cksum();
        h
    }
}

/// A tar stream of `entries` with its end-of-archive blocks.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(e.header().as_bytes());
        out.extend_from_slice(&e.data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// A layer blob: its bytes as stored and the media type that says how they are compressed.
#[derive(Debug)]
pub struct Blob {
    /// The compressed bytes.
    pub bytes: Vec<u8>,
    /// The OCI layer media type.
    pub media_type: &'static str,
    /// sha256 of the uncompressed stream, `sha256:...`.
    pub diff_id: String,
}

/// `tar` gzip-compressed, with its diff id computed.
pub fn gzip(tar: &[u8]) -> Blob {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(tar).expect("gzip");
    Blob {
        bytes: enc.finish().expect("gzip"),
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        diff_id: sha256(tar),
    }
}

/// `sha256:` and the hex digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The CPU architecture name images use for this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A busybox layer: `/bin/busybox` with the applets the tests call, `/etc` and `/tmp`.
pub fn busybox_layer() -> Blob {
    let busybox = std::fs::read(support::BUSYBOX).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: install the Debian package busybox-static ({e})",
            support::BUSYBOX
        )
    });
    let mut entries = vec![Entry::dir("bin"), Entry::dir("etc"), Entry::dir("tmp")];
    let mut bb = Entry::file("bin/busybox", &busybox);
    bb.mode = 0o755;
    entries.push(bb);
    for applet in [
        "sh", "cat", "ls", "readlink", "stat", "find", "true", "test", "head",
    ] {
        entries.push(Entry::symlink(&format!("bin/{applet}"), "busybox"));
    }
    entries.push(Entry::file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n",
    ));
    gzip(&tar(&entries))
}

/// Writes an OCI image layout at `dir` with `layers` (bottom first) under the tag `latest`.
pub fn write_layout(dir: &Path, layers: &[&Blob]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir blobs");
    let put = |bytes: &[u8]| -> (String, usize) {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).expect("write blob");
        (digest, bytes.len())
    };
    let config = serde_json::json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).expect("json"));
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let (digest, size) = put(&l.bytes);
            serde_json::json!({"mediaType": l.media_type, "digest": digest, "size": size})
        })
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layer_descs,
    });
    let (m_digest, m_size) = put(&serde_json::to_vec(&manifest).expect("json"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": m_digest, "size": m_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("write index.json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
}

/// Pushes the layout at `dir` to `registry` as `name` with skopeo (blobs copied as they are).
pub fn push_layout(dir: &Path, registry: &rbuild_test_support::Registry, name: &str) -> String {
    let reference = format!("{}/{name}", registry.host());
    support::ok(
        support::skopeo()
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", dir.display()))
            .arg(format!("docker://{reference}")),
    );
    reference
}

/// Runs `rbuild run` (or any command failing as rbuild itself): exit code 125, as docker.
pub fn fails_125(cmd: &mut std::process::Command) -> support::Run {
    let out = cmd.output().expect("run rbuild");
    let run = support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(run.code, 125, "{cmd:?} should fail with 125: {run:?}");
    run
}

/// A test's directory: the store at `root/`, a canary directory beside it.
#[derive(Debug)]
pub struct Arena {
    /// Removed at the end.
    pub dir: support::Dir,
    /// The store root.
    pub root: PathBuf,
    /// `canary/keep`, which must never change.
    pub canary: PathBuf,
}

impl Default for Arena {
    /// A new arena with an empty store root and the canary.
    fn default() -> Arena {
        let dir = support::Dir::new();
        let root = dir.mkdir("root");
        let canary = dir.mkdir("canary");
        std::fs::write(canary.join("keep"), "canary").expect("write canary");
        Arena { dir, root, canary }
    }
}

impl Arena {
    /// Nothing beside the store changed, the canary least of all, and the snapshot directory
    /// holds only published snapshots and their locks (no temp dir left by a failure, nothing
    /// a layer named).
    pub fn assert_confined(&self) {
        let names = |p: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(p)
                .unwrap_or_else(|e| panic!("list {}: {e}", p.display()))
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(self.dir.path()),
            ["canary", "root"],
            "beside the store"
        );
        assert_eq!(
            names(&self.canary),
            ["keep"],
            "the canary directory changed"
        );
        let keep = std::fs::symlink_metadata(self.canary.join("keep")).expect("canary");
        assert!(keep.is_file(), "the canary file was replaced");
        assert_eq!(
            std::os::unix::fs::MetadataExt::nlink(&keep),
            1,
            "the canary was linked"
        );
        assert_eq!(
            std::fs::read(self.canary.join("keep")).expect("read"),
            b"canary"
        );
        let snaps = self.root.join("snapshots-v1");
        if snaps.exists() {
            for n in names(&snaps) {
                let hex = n.strip_suffix(".lock").unwrap_or(&n);
                assert!(
                    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
                    "unexpected {n} in {}",
                    snaps.display()
                );
            }
        }
    }
}
