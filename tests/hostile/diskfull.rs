//! A store on a full file system: a small tmpfs mounted as the store root. An import or a
//! pull bigger than it fails naming ENOSPC and the path, leaves no temp file and no partial
//! blob, and once there is room again the same store works.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_test_support::{BusyboxLayout, Format, Registry};

use crate::support::{self, Dir, fails, ok, rbuild, verified_blobs};

/// A tmpfs mounted at a path, unmounted (lazily, so a failing test cannot leave it busy) when
/// dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        let out = support::tool("mount", "mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "rbuild-test",
            ])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (or run the tests in a user and mount namespace): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    fn resize(&self, size: &str) {
        support::ok(
            Command::new("mount")
                .args(["-o", &format!("remount,size={size}")])
                .arg(&self.path),
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// `len` bytes that do not compress.
fn noise(path: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create noise"));
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..len / 8 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        f.write_all(&state.to_le_bytes()).expect("write noise");
    }
    f.flush().expect("flush noise");
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("list {}: {e}", dir.display()),
    }
}

fn index_names(root: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    let mut names: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .expect("a name")
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_full_store_fails_naming_enospc_and_works_again_with_room() {
    let dir = Dir::new();
    let root = dir.mkdir("store");
    let tmpfs = Tmpfs::mount(&root, "6m");
    // A small image that fits, imported first so the store has something to keep.
    let small = dir.mkdir("small");
    std::fs::write(small.join("hello"), "hello\n").expect("write");
    ok(rbuild(&root).arg("import").arg(&small).arg("small"));

    // 8 MiB of noise cannot fit in 6 MiB, compressed or not.
    let big = dir.mkdir("big");
    support::busybox_rootfs(&big);
    noise(&big.join("noise"), 8 << 20);
    let r = fails(rbuild(&root).arg("import").arg(&big).arg("big"));
    assert!(
        r.stderr.contains("No space left on device") && r.stderr.contains(&*root.to_string_lossy()),
        "the error names neither ENOSPC nor the store path:\n{}",
        r.stderr
    );
    // And a pull of an image bigger than the tmpfs.
    let registry = Registry::start();
    let layout = BusyboxLayout::build_with_extra(8 << 20);
    layout.push_with_skopeo(&registry, "big/image:latest", Format::Oci);
    let reference = format!("{}/big/image:latest", registry.host());
    let r = fails(rbuild(&root).arg("pull").arg(&reference));
    assert!(
        r.stderr.contains("No space left on device"),
        "the pull error does not name ENOSPC:\n{}",
        r.stderr
    );

    // The failures left the store as it was: no temp file, every blob whole, one image.
    assert_eq!(
        entries(&root.join("tmp")),
        Vec::<String>::new(),
        "temp files left"
    );
    let blobs_before = verified_blobs(&root);
    assert_eq!(index_names(&root), ["docker.io/library/small:latest"]);
    let listed = ok(rbuild(&root).args(["images", "--format", "json"]));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&listed.stdout).expect("json");
    assert_eq!(listed.len(), 1, "{listed:?}");

    // With room, the same import and pull succeed in the same store.
    tmpfs.resize("64m");
    ok(rbuild(&root).arg("import").arg(&big).arg("big"));
    ok(rbuild(&root).arg("pull").arg(&reference));
    assert_eq!(
        index_names(&root),
        [
            format!("{}/big/image:latest", registry.host()),
            "docker.io/library/big:latest".to_owned(),
            "docker.io/library/small:latest".to_owned(),
        ]
    );
    let blobs_after = verified_blobs(&root);
    assert!(blobs_before.iter().all(|b| blobs_after.contains(b)));
    assert_eq!(
        entries(&root.join("tmp")),
        Vec::<String>::new(),
        "temp files left"
    );
    ok(rbuild(&root).args(["run", "--rm", "big", "/bin/sh", "-c", "test -s /noise"]));
    drop(tmpfs);
}

/// A build whose RUN step or COPY fills the file system the store is on: the error names
/// ENOSPC and the step (Dockerfile line and instruction); once the space is freed (a filler
/// file deleted, then `rbuild prune`), the same store builds the same Dockerfiles and every
/// blob verifies.
#[test]
fn a_build_that_fills_the_disk_fails_naming_the_step_and_the_store_recovers() {
    let dir = Dir::new();
    let fs = dir.mkdir("fs");
    let _tmpfs = Tmpfs::mount(&fs, "96m");
    let root = fs.join("store");
    // The base image, made outside and imported.
    let rootfs = dir.mkdir("rootfs");
    support::busybox_rootfs(&rootfs);
    ok(rbuild(&root)
        .arg("import")
        .arg(&rootfs)
        .arg("localhost/base"));
    // A filler leaves about 14 MiB free.
    let filler = fs.join("filler");
    let used: u64 = {
        let out = ok(support::tool("df", "coreutils")
            .args(["-B1", "--output=used"])
            .arg(&fs));
        out.stdout
            .lines()
            .nth(1)
            .expect("df line")
            .trim()
            .parse()
            .expect("df number")
    };
    let free_target = 14u64 << 20;
    let filler_len = (96u64 << 20) - used - free_target;
    noise(&filler, usize::try_from(filler_len).expect("size"));

    let ctx = dir.mkdir("ctx");
    noise(&ctx.join("big.bin"), 20 << 20);
    let build = |dockerfile: &str| {
        std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("write Dockerfile");
        let mut cmd = rbuild(&root);
        cmd.env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--progress", "plain", "-t", "app"])
            .arg(&ctx);
        cmd
    };
    let run_df = "FROM localhost/base\nRUN echo small > /small\nRUN dd if=/dev/zero of=/big bs=1M count=20\n";
    let copy_df = "FROM localhost/base\nRUN echo small > /small\nCOPY big.bin /big.bin\n";
    for (dockerfile, step) in [(run_df, "Dockerfile:3"), (copy_df, "Dockerfile:3")] {
        let r = fails(&mut build(dockerfile));
        assert!(
            r.stderr.contains("No space left on device"),
            "the error does not name ENOSPC:\n{}",
            r.stderr
        );
        let instruction = dockerfile.lines().nth(2).expect("line 3");
        assert!(
            r.stderr.contains(step) && r.stderr.contains(instruction),
            "the error does not name the step ({step}: {instruction}):\n{}",
            r.stderr
        );
        verified_blobs(&root);
    }

    // Free the space, prune what the failures left, and build both again.
    std::fs::remove_file(&filler).expect("remove filler");
    ok(rbuild(&root).arg("prune"));
    assert_eq!(
        entries(&root.join("tmp")),
        Vec::<String>::new(),
        "temp files left"
    );
    ok(&mut build(run_df));
    ok(rbuild(&root).args([
        "run",
        "--rm",
        "app",
        "/bin/sh",
        "-c",
        "test -s /big && cat /small",
    ]));
    ok(&mut build(copy_df));
    ok(rbuild(&root).args(["run", "--rm", "app", "/bin/sh", "-c", "test -s /big.bin"]));
    verified_blobs(&root);
}
