//! Base-image layers that try to leave their snapshot, pushed to a real registry, pulled and
//! unpacked by `rbuild run`. Each entry is either refused (the run fails naming the layer's
//! digest and the entry) or confined inside the image's root exactly as Docker confines it;
//! the canary beside the store never changes.

use std::os::unix::fs::MetadataExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use rbuild_test_support::Registry;

use crate::support::{self, Run};
use crate::{Arena, Blob, Entry, busybox_layer, gzip, push_layout, tar, write_layout};

/// An image of busybox plus `hostile` in a registry, pulled into a fresh store.
pub(crate) struct Pulled {
    pub(crate) arena: Arena,
    _registry: Registry,
    pub(crate) reference: String,
    /// The hostile layer's blob digest, which errors must name.
    pub(crate) layer: String,
}

pub(crate) fn pulled(hostile: &Blob) -> Pulled {
    let registry = Registry::start();
    let layout = support::Dir::new();
    let base = busybox_layer();
    write_layout(layout.path(), &[&base, hostile]);
    let reference = push_layout(layout.path(), &registry, "hostile/image:latest");
    let arena = Arena::default();
    support::ok(support::rbuild(&arena.root).arg("pull").arg(&reference));
    Pulled {
        arena,
        _registry: registry,
        reference,
        layer: crate::sha256(&hostile.bytes),
    }
}

impl Pulled {
    pub(crate) fn cmd(&self, script: &str) -> Command {
        let mut cmd = support::rbuild(&self.arena.root);
        cmd.args(["run", "--rm", "--pull", "never"])
            .arg(&self.reference)
            .args(["/bin/sh", "-c", script]);
        cmd
    }

    /// Runs `script` in the image; it must succeed.
    fn run(&self, script: &str) -> Run {
        let r = support::ok(&mut self.cmd(script));
        self.arena.assert_confined();
        r
    }

    /// Runs the image; unpacking must fail with an error naming the layer and `needles`.
    pub(crate) fn refused(&self, needles: &[&str]) -> Run {
        let r = crate::fails_125(&mut self.cmd("true"));
        assert!(
            r.stderr
                .contains(&format!("cannot unpack layer {}", self.layer)),
            "the error does not name layer {}:\n{}",
            self.layer,
            r.stderr
        );
        for n in needles {
            assert!(
                r.stderr.contains(n),
                "the error does not say {n:?}:\n{}",
                r.stderr
            );
        }
        self.arena.assert_confined();
        // Nothing was published for the refused layer: a second run fails the same way.
        let again = crate::fails_125(&mut self.cmd("true"));
        assert!(again.stderr.contains(&self.layer), "{}", again.stderr);
        r
    }
}

#[test]
fn dotdot_names_are_refused_naming_the_entry() {
    for name in [
        "../x",
        "a/../../x",
        "../../../../../../tmp/rbuild-hostile-dotdot",
    ] {
        let layer = gzip(&tar(&[Entry::dir("a"), Entry::file(name, b"pwned")]));
        let p = pulled(&layer);
        p.refused(&[&format!(
            "entry {name:?} has an unsafe name (contains '..')"
        )]);
        assert!(!std::path::Path::new("/tmp/rbuild-hostile-dotdot").exists());
    }
}

#[test]
fn absolute_names_land_inside_the_root() {
    let name = format!("/etc/rbuild-hostile-{}", std::process::id());
    let p = pulled(&gzip(&tar(&[Entry::file(&name, b"inside\n")])));
    assert_eq!(p.run(&format!("cat {name}")).stdout, "inside\n");
    assert!(
        !std::path::Path::new(&name).exists(),
        "{name} written on the host"
    );
}

#[test]
fn symlink_to_root_then_a_file_through_it_stays_inside() {
    let host_passwd = std::fs::read("/etc/passwd").expect("host /etc/passwd");
    let p = pulled(&gzip(&tar(&[
        Entry::symlink("l", "/"),
        Entry::file("l/etc/passwd", b"root::0:0:pwned:/:/bin/sh\n"),
    ])));
    let r = p.run("cat /etc/passwd; readlink /l");
    assert_eq!(r.stdout, "root::0:0:pwned:/:/bin/sh\n/\n");
    assert_eq!(
        std::fs::read("/etc/passwd").expect("host /etc/passwd"),
        host_passwd
    );
}

/// A layer whose links name the canary's real host path, to be unpacked in a store beside it.
fn pulled_beside_canary(entries: impl FnOnce(&str) -> Vec<Entry>) -> (Pulled, String) {
    let registry = Registry::start();
    let arena = Arena::default();
    let canary_dir = arena.canary.display().to_string();
    let layer = gzip(&tar(&entries(&canary_dir)));
    let layout = support::Dir::new();
    write_layout(layout.path(), &[&busybox_layer(), &layer]);
    let reference = push_layout(layout.path(), &registry, "hostile/outside:latest");
    support::ok(support::rbuild(&arena.root).arg("pull").arg(&reference));
    let p = Pulled {
        arena,
        _registry: registry,
        reference,
        layer: crate::sha256(&layer.bytes),
    };
    (p, canary_dir)
}

#[test]
fn symlink_to_an_outside_directory_then_a_file_through_it_is_refused_or_stays_inside() {
    // The link resolves inside the image, where that directory does not exist: the file
    // cannot be made (Docker, unpacking in a chroot, fails the same way).
    let (p, _) = pulled_beside_canary(|canary| {
        vec![
            Entry::symlink("out", canary),
            Entry::file("out/pwned", b"pwned\n"),
        ]
    });
    p.refused(&["cannot apply entry \"out/pwned\": No such file or directory"]);

    // When the image has that directory, the file lands in the image's copy of it, also
    // through a link that climbs above the root.
    let (p, canary) = pulled_beside_canary(|canary| {
        vec![
            Entry::dir(canary),
            Entry::symlink("out", canary),
            Entry::file("out/pwned", b"inside\n"),
            Entry::symlink("up", "../../../../../../.."),
            Entry::file(&format!("up{canary}/pwned2"), b"inside too\n"),
        ]
    });
    let r = p.run(&format!(
        "cat {canary}/pwned {canary}/pwned2; readlink /out"
    ));
    assert_eq!(r.stdout, format!("inside\ninside too\n{canary}\n"));
}

#[test]
fn hard_link_to_a_host_file_is_refused() {
    let shadow = std::fs::symlink_metadata("/etc/shadow").map(|m| (m.ino(), m.nlink()));
    for target in ["/etc/shadow", "../../../../../../etc/shadow"] {
        let layer = gzip(&tar(&[Entry::hardlink("shadow", target)]));
        let p = pulled(&layer);
        if target.contains("..") {
            p.refused(&["entry \"shadow\" has an unsafe name (contains '..')"]);
        } else {
            // The image has no /etc/shadow of its own: the link's target is missing.
            p.refused(&["cannot apply entry \"shadow\"", "No such file or directory"]);
        }
    }
    assert_eq!(
        std::fs::symlink_metadata("/etc/shadow")
            .map(|m| (m.ino(), m.nlink()))
            .ok(),
        shadow.ok(),
        "host /etc/shadow gained a link"
    );
}

#[test]
fn hard_link_to_a_symlink_links_the_symlink_itself() {
    // As in Docker: the link is a second name of the symlink inode, not of what it points at.
    let p = pulled(&gzip(&tar(&[
        Entry::file("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
        Entry::symlink("s", "/etc/passwd"),
        Entry::hardlink("h", "s"),
        Entry::hardlink("e", "/etc/passwd"),
    ])));
    let r = p.run("readlink /h; stat -c '%h %F' /s /e /etc/passwd");
    assert_eq!(
        r.stdout,
        "/etc/passwd\n2 symbolic link\n2 regular file\n2 regular file\n"
    );
}

#[test]
fn whiteouts_naming_the_parent_or_outside_are_refused() {
    for (name, why) in [
        (
            ".wh...",
            "entry \".wh...\" has an unsafe name (whiteout of an invalid name)",
        ),
        (
            "a/.wh...",
            "entry \"a/.wh...\" has an unsafe name (whiteout of an invalid name)",
        ),
        (
            "../.wh.etc",
            "entry \"../.wh.etc\" has an unsafe name (contains '..')",
        ),
        ("a/../../.wh.x", "contains '..'"),
    ] {
        let p = pulled(&gzip(&tar(&[Entry::dir("a"), Entry::file(name, b"")])));
        p.refused(&[why]);
    }
}

#[test]
fn a_whiteout_removes_only_inside_the_image() {
    let p = pulled(&gzip(&tar(&[Entry::file("etc/.wh.passwd", b"")])));
    let r = p.run("test -e /etc/passwd && echo present || echo gone");
    assert_eq!(r.stdout, "gone\n");
    assert!(std::path::Path::new("/etc/passwd").exists());
}

#[test]
fn device_nodes_cannot_reach_host_devices() {
    // The host disk's own device numbers: a container that could open this node could read
    // the host's disk. As root, rbuild creates the node (as docker does), but the container's
    // root file system is an overlay mounted inside its user namespace, which the kernel makes
    // nodev: opening the node fails with EACCES. (Without root, mknod fails and the node is
    // skipped with a warning.)
    let root_dev = std::fs::metadata("/").expect("stat /").dev();
    let (major, minor) = (rustix::fs::major(root_dev), rustix::fs::minor(root_dev));
    let p = pulled(&gzip(&tar(&[
        Entry::node("disk", tar::EntryType::Block, major, minor),
        Entry::node("mem", tar::EntryType::Char, 1, 1),
        Entry::node("fifo", tar::EntryType::Fifo, 0, 0),
    ])));
    let r = p.run(
        "stat -c '%F %t:%T' /disk /mem /fifo; for n in disk mem; do head -c 1 /$n >/dev/null || echo $n refused; done",
    );
    assert_eq!(
        r.stdout,
        format!(
            "block special file {major:x}:{minor:x}\ncharacter special file 1:1\nfifo 0:0\ndisk refused\nmem refused\n"
        )
    );
    assert!(
        r.stderr.contains("/disk: Permission denied")
            && r.stderr.contains("/mem: Permission denied"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_size_field_that_lies_or_a_tar_cut_short_fails_naming_the_entry() {
    // Says 100000 bytes, has 10, then the archive ends.
    let mut bytes = tar(&[Entry::file("big", b"0123456789").lying_size(100_000)]);
    bytes.truncate(1024);
    pulled(&gzip(&bytes)).refused(&[
        "cannot apply entry \"big\": the tar stream ends after 512 of its 100000 bytes",
    ]);
    // Says 5 bytes, has 2048: the rest is read as headers, which are not.
    let e = Entry::file("small", &[b'A'; 2048]).lying_size(5);
    pulled(&gzip(&tar(&[e]))).refused(&["cannot read tar stream", "when getting cksum"]);
    // A stream that stops in the middle of an entry's data.
    let mut cut = tar(&[Entry::file("half", &[7u8; 4096])]);
    cut.truncate(512 + 1000);
    pulled(&gzip(&cut)).refused(&[
        "cannot apply entry \"half\": the tar stream ends after 1000 of its 4096 bytes",
    ]);
}

/// A compressed stream that expands to `members` copies of `chunk` after `head`, each member
/// compressed on its own (concatenated gzip members and zstd frames are one valid stream).
pub(crate) fn bomb(zstd: bool, head: &[u8], chunk: usize, members: usize) -> Blob {
    let zeros = vec![0u8; chunk];
    let compress = |data: &[u8]| -> Vec<u8> {
        if zstd {
            zstd::encode_all(data, 19).expect("zstd")
        } else {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            std::io::Write::write_all(&mut enc, data).expect("gzip");
            enc.finish().expect("gzip")
        }
    };
    let one = compress(&zeros);
    let mut bytes = compress(head);
    for _ in 0..members {
        bytes.extend_from_slice(&one);
    }
    Blob {
        bytes,
        media_type: if zstd {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        } else {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        },
        // Never reached: the limit stops unpacking long before the digest could be checked.
        diff_id: crate::sha256(head),
    }
}

#[test]
fn compression_bombs_stop_at_the_layer_size_limit() {
    const LIMIT: &str = "16M";
    const EXPANDED: u64 = 8 << 30;
    let chunk = 16 << 20;
    let members = (EXPANDED / chunk as u64) as usize;
    for zstd in [false, true] {
        // One file whose header claims 4 GiB, filled with zeros.
        let mut h = tar::Header::new_gnu();
        h.set_path("zeros").expect("path");
        h.set_size(4 << 30);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        let claimed = bomb(zstd, h.as_bytes(), chunk, members);
        // A small valid tar, then 8 GiB of zeros after its end: the tar reader stops early,
        // the digest check would read them all.
        let trailing = bomb(zstd, &tar(&[Entry::file("small", b"x")]), chunk, members);
        assert!(claimed.bytes.len() < 8 << 20 && trailing.bytes.len() < 8 << 20);
        for (layer, context, needle) in [
            (
                &claimed,
                "cannot unpack",
                "content larger than 16777216 bytes",
            ),
            (
                &trailing,
                "cannot read",
                "larger than 16777216 bytes uncompressed\nhint: RBUILD_MAX_LAYER_SIZE sets this limit",
            ),
        ] {
            let p = pulled(layer);
            let started = Instant::now();
            let r = crate::fails_125(p.cmd("true").env("RBUILD_MAX_LAYER_SIZE", LIMIT));
            // The tar reader meets the first; the digest check's drain the second.
            assert!(
                r.stderr.contains(&format!("{context} layer {}", p.layer))
                    && r.stderr.contains(needle),
                "zstd={zstd}: {}",
                r.stderr
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the limit was not enforced early"
            );
            p.arena.assert_confined();
        }
    }
}

#[test]
fn a_bad_layer_size_limit_is_refused() {
    let p = pulled(&gzip(&tar(&[Entry::file("f", b"x")])));
    let r = crate::fails_125(p.cmd("true").env("RBUILD_MAX_LAYER_SIZE", "lots"));
    assert!(
        r.stderr
            .contains("RBUILD_MAX_LAYER_SIZE=\"lots\" is not a size"),
        "{}",
        r.stderr
    );
}
