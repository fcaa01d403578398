//! Layer unpacking: metadata, whiteouts, and hostile archives. Each hostile
//! layer is applied into a snapshot dir that sits beside a canary dir; after
//! it, nothing outside the snapshot may have changed.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::Tar;
use rbuild_executor::unpack::{
    OverlayXattr, UnpackError, UnpackOptions, WhiteoutMode, apply_layer,
};

struct Arena {
    _tmp: tempfile::TempDir,
    outer: PathBuf,
    snap: PathBuf,
    canary: PathBuf,
}

fn arena() -> Arena {
    let tmp = tempfile::Builder::new()
        .prefix("rbuild-unpack-")
        .tempdir()
        .unwrap();
    let outer = tmp.path().to_path_buf();
    let snap = outer.join("snap");
    let canary = outer.join("canary");
    std::fs::create_dir(&snap).unwrap();
    std::fs::create_dir(&canary).unwrap();
    std::fs::write(canary.join("keep"), "canary").unwrap();
    Arena {
        _tmp: tmp,
        outer,
        snap,
        canary,
    }
}

impl Arena {
    /// Everything outside the snapshot is as the arena made it.
    fn assert_untouched(&self) {
        let mut outer: Vec<String> = std::fs::read_dir(&self.outer)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        outer.sort();
        assert_eq!(outer, ["canary", "snap"]);
        let mut c: Vec<String> = std::fs::read_dir(&self.canary)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        c.sort();
        assert_eq!(c, ["keep"]);
        assert_eq!(
            std::fs::read_to_string(self.canary.join("keep")).unwrap(),
            "canary"
        );
    }
    fn apply(&self, tar: &[u8]) -> Result<rbuild_executor::unpack::Stats, UnpackError> {
        apply_layer(tar, &self.snap, &UnpackOptions::new("sha256:hostile"))
    }
}

fn host_passwd() -> (Vec<u8>, u64) {
    let md = std::fs::metadata("/etc/passwd").unwrap();
    (std::fs::read("/etc/passwd").unwrap(), md.nlink())
}

#[test]
fn dotdot_names_are_refused_and_named() {
    for name in ["../x", "a/../../x", "a/b/../../../x", "./../x"] {
        let a = arena();
        let tar = Tar::default()
            .dir("a", 0o755)
            .file(name, 0o644, b"pwned")
            .build();
        let e = a.apply(&tar).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, UnpackError::UnsafeName { .. }), "{msg}");
        assert!(
            msg.contains("sha256:hostile") && msg.contains(name),
            "{msg}"
        );
        a.assert_untouched();
    }
}

#[test]
fn absolute_names_are_confined() {
    let a = arena();
    let name = "/etc/rbuild-hostile-absolute-test";
    a.apply(&Tar::default().file(name, 0o644, b"inside").build())
        .unwrap();
    assert!(!Path::new(name).exists(), "written to the host");
    assert_eq!(
        std::fs::read(a.snap.join("etc/rbuild-hostile-absolute-test")).unwrap(),
        b"inside"
    );
    a.assert_untouched();
}

#[test]
fn symlink_to_root_then_file_through_it_is_confined() {
    let a = arena();
    let before = host_passwd();
    let tar = Tar::default()
        .symlink("l", "/")
        .file("l/etc/passwd", 0o644, b"root::0:0::/:/bin/sh\n")
        .build();
    a.apply(&tar).unwrap();
    assert_eq!(host_passwd(), before, "host /etc/passwd changed");
    assert_eq!(
        std::fs::read(a.snap.join("etc/passwd")).unwrap(),
        b"root::0:0::/:/bin/sh\n"
    );
    assert!(
        std::fs::symlink_metadata(a.snap.join("l"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    a.assert_untouched();
}

#[test]
fn symlink_to_outside_dir_then_file_through_it_is_confined() {
    let a = arena();
    let canary = a.canary.to_str().unwrap().to_owned();
    // The link resolves inside the snapshot, where its target does not
    // exist: the entry is refused, naming the layer and the entry.
    for (link, target) in [("out", canary.as_str()), ("rel", "../canary")] {
        let tar = Tar::default()
            .symlink(link, target)
            .file(&format!("{link}/pwned"), 0o644, b"x")
            .build();
        let e = a.apply(&tar).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("sha256:hostile") && msg.contains(&format!("{link}/pwned")),
            "{msg}"
        );
        a.assert_untouched();
    }
    // When the target exists inside the snapshot, the file lands there.
    let inside = canary.trim_start_matches('/');
    let tar = Tar::default()
        .dir(inside, 0o755)
        .symlink("out2", &canary)
        .file("out2/pwned", 0o644, b"x")
        .build();
    a.apply(&tar).unwrap();
    assert!(a.snap.join(inside).join("pwned").exists());
    // Relative links climbing above the root stop at the root.
    a.apply(
        &Tar::default()
            .symlink("up", "../../../../..")
            .file("up/pwned2", 0o644, b"y")
            .build(),
    )
    .unwrap();
    assert!(a.snap.join("pwned2").exists());
    a.assert_untouched();
}

#[test]
fn hard_links_to_outside_targets_are_refused_or_confined() {
    let a = arena();
    let before = host_passwd();
    let e = a
        .apply(&Tar::default().hardlink("pw", "/etc/passwd").build())
        .unwrap_err();
    let msg = format!("{e}");
    assert!(
        msg.contains("sha256:hostile") && msg.contains("pw"),
        "{msg}"
    );
    let e = a
        .apply(&Tar::default().hardlink("pw2", "../canary/keep").build())
        .unwrap_err();
    assert!(matches!(e, UnpackError::UnsafeName { .. }), "{e}");
    // Through a symlinked parent: resolved inside the snapshot.
    let canary = a.canary.to_str().unwrap().to_owned();
    let e = a
        .apply(
            &Tar::default()
                .symlink("c", &canary)
                .hardlink("pw3", "c/keep")
                .build(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("pw3"), "{e}");
    // A target that exists inside the layer links to that one.
    a.apply(
        &Tar::default()
            .dir("etc", 0o755)
            .file("etc/passwd", 0o644, b"mine")
            .hardlink("pw4", "/etc/passwd")
            .build(),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(a.snap.join("pw4")).unwrap().ino(),
        std::fs::metadata(a.snap.join("etc/passwd")).unwrap().ino()
    );
    assert_eq!(host_passwd(), before);
    a.assert_untouched();
}

#[test]
fn replacing_a_symlink_does_not_follow_it() {
    let a = arena();
    let canary = a.canary.join("keep");
    let tar = Tar::default()
        .symlink("f", canary.to_str().unwrap())
        .file("f", 0o644, b"replaced")
        .build();
    a.apply(&tar).unwrap();
    assert_eq!(std::fs::read(a.snap.join("f")).unwrap(), b"replaced");
    a.assert_untouched();
}

#[test]
fn limits_stop_bombs() {
    let a = arena();
    let mut t = Tar::default();
    for i in 0..20 {
        t = t.file(&format!("f{i}"), 0o644, b"0123456789");
    }
    let tar = t.build();
    let mut o = UnpackOptions::new("bomb");
    o.limits.max_entries = 10;
    let e = apply_layer(&tar[..], &a.snap, &o).unwrap_err();
    assert_eq!(e.to_string(), "layer bomb: more than 10 entries");
    let mut o = UnpackOptions::new("bomb");
    o.limits.max_layer_bytes = 15_000;
    let e = apply_layer(&tar[..], &a.snap, &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "layer bomb: larger than 15000 bytes uncompressed"
    );
    let mut o = UnpackOptions::new("bomb");
    o.limits.max_path_depth = 2;
    let deep = Tar::default().file("a/b/c", 0o644, b"x").build();
    let e = apply_layer(&deep[..], &a.snap, &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "layer bomb: entry \"a/b/c\" has 3 path components, more than the 2 allowed"
    );
}

#[test]
fn metadata_is_preserved() {
    let a = arena();
    let tar = Tar::default()
        .dir("d", 0o1777)
        .file("d/suid", 0o4755, b"s")
        .file("d/sgid", 0o2711, b"g")
        .file_owned("d/owned", 0o640, b"o", 1234, 5678)
        .symlink("d/link", "suid")
        .hardlink("d/hard", "d/suid")
        .chardev("d/null", 1, 3)
        .xattr_file("d/x", b"x", "user.image.test", b"value")
        .xattr_file("d/ov", b"x", "user.overlay.opaque", b"y")
        .xattr_file("d/rec", b"x", "user.rbuild.owner", b"0:0")
        .build();
    let st = a.apply(&tar).unwrap();
    assert_eq!(st.entries, 10);
    let d = &a.snap.join("d");
    let md = |n: &str| std::fs::symlink_metadata(d.join(n)).unwrap();
    assert_eq!(md("").permissions().mode() & 0o7777, 0o1777);
    assert_eq!(md("suid").permissions().mode() & 0o7777, 0o4755);
    assert_eq!(md("sgid").permissions().mode() & 0o7777, 0o2711);
    assert_eq!((md("owned").uid(), md("owned").gid()), (1234, 5678));
    assert_eq!(
        std::fs::read_link(d.join("link")).unwrap(),
        Path::new("suid")
    );
    assert_eq!(md("hard").ino(), md("suid").ino());
    assert!(
        md("null").file_type().is_char_device() && md("null").rdev() == rustix::fs::makedev(1, 3)
    );
    assert_eq!(md("suid").mtime(), 1_700_000_000);
    assert_eq!(
        md("").mtime(),
        1_700_000_000,
        "dir times are set after their children"
    );
    let mut buf = [0u8; 16];
    let n = rustix::fs::getxattr(d.join("x"), "user.image.test", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"value");
    assert!(
        rustix::fs::getxattr(d.join("ov"), "user.overlay.opaque", &mut buf).is_err(),
        "overlay xattrs from a layer are dropped"
    );
    assert!(
        rustix::fs::getxattr(d.join("rec"), "user.rbuild.owner", &mut buf).is_err(),
        "rbuild's own owner records from a layer are dropped"
    );
}

#[test]
fn whiteouts_in_overlay_form() {
    let a = arena();
    let tar = Tar::default()
        .dir("d", 0o755)
        .file("d/.wh.gone", 0, b"")
        .file("o/.wh..wh..opq", 0, b"")
        .file("o/kept", 0o644, b"k")
        .build();
    let st = a.apply(&tar).unwrap();
    assert_eq!((st.whiteouts, st.opaque_dirs), (1, 1));
    let w = std::fs::symlink_metadata(a.snap.join("d/gone")).unwrap();
    assert!(w.file_type().is_char_device() && w.rdev() == 0);
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(a.snap.join("o"), OverlayXattr::User.opaque(), &mut buf).unwrap();
    assert_eq!(&buf[..n], b"y");
    assert!(a.snap.join("o/kept").exists());
}

#[test]
fn whiteouts_applied_by_deleting() {
    let a = arena();
    let base = Tar::default()
        .dir("d", 0o755)
        .file("d/gone", 0o644, b"1")
        .file("d/stay", 0o644, b"2")
        .dir("o", 0o755)
        .file("o/old", 0o644, b"3")
        .dir("o/olddir", 0o755)
        .build();
    let mut o = UnpackOptions::new("base");
    o.whiteouts = WhiteoutMode::Delete;
    apply_layer(&base[..], &a.snap, &o).unwrap();
    // The new file in the opaque dir comes before the marker: it must stay.
    let top = Tar::default()
        .file("d/.wh.gone", 0, b"")
        .file("o/new", 0o644, b"n")
        .file("o/.wh..wh..opq", 0, b"")
        .build();
    o.label = "top".into();
    apply_layer(&top[..], &a.snap, &o).unwrap();
    assert!(!a.snap.join("d/gone").exists() && a.snap.join("d/stay").exists());
    let mut names: Vec<String> = std::fs::read_dir(a.snap.join("o"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["new"]);
    let e = apply_layer(
        &Tar::default().file("d/.wh...", 0, b"").build()[..],
        &a.snap,
        &o,
    )
    .unwrap_err();
    assert!(e.to_string().contains("d/.wh..."), "{e}");
    a.assert_untouched();
}

#[test]
fn a_stream_that_ends_inside_a_file_names_the_file() {
    let a = arena();
    let mut tar = Tar::default().file("half", 0o644, &[7u8; 4096]).build();
    tar.truncate(512 + 1000);
    let e = a.apply(&tar).unwrap_err();
    let msg = error_chain(&e);
    assert!(matches!(e, UnpackError::Entry { .. }), "{msg}");
    assert!(
        msg.contains("entry \"half\"") && msg.contains("ends after 1000 of its 4096 bytes"),
        "{msg}"
    );
    a.assert_untouched();
}

#[test]
fn a_fifo_with_empty_device_fields_is_made() {
    // Some writers leave the device fields of non-device entries empty (all NUL bytes).
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..4].copy_from_slice(b"pipe");
    h.set_entry_type(tar::EntryType::Fifo);
    h.set_mode(0o644);
    h.set_size(0);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.as_ustar_mut().unwrap().dev_major = [0; 8];
    h.as_ustar_mut().unwrap().dev_minor = [0; 8];
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.resize(512 * 3, 0);
    let a = arena();
    a.apply(&tar).unwrap();
    assert!(
        std::fs::symlink_metadata(a.snap.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    a.assert_untouched();
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
