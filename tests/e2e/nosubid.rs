//! Builds by an unprivileged user with no /etc/subuid and /etc/subgid entries
//! (`BuildEnv::nosubid`): the sandbox maps that user's one id, a seccomp filter makes the
//! id-changing calls succeed, and the owners `chown` asks for are recorded and written into
//! the layers. The layers must show the owners a build with subordinate ids gives, with
//! either snapshotter.

use std::path::Path;

use rbuild_test_support::{FileEntry, FileKind, ImageArchive};

use crate::support::{BASE, BuildEnv, gunzip};

/// The message a single-id build shows once.
const NOTE: &str = "single-id mode, owners recorded by seccomp";

/// Owners by `chown` (also of one part, which busybox does by passing the other part as
/// stat shows it), `chown` then `mv`, a hard link, a directory, `chown -h` of a symlink,
/// a set-user-ID file, faked id changes (`su`), and a later step that only appends to
/// a file of the first.
const OWNERS: &str = "RUN set -e; mkdir -p /o/dir; for f in a b c suid; do echo $f > /o/$f; done; \
     ln -s a /o/link; \
     chown 1000:1001 /o/a; chown 2000 /o/b; chown :3000 /o/b; \
     chown 4000:4001 /o/c; mv /o/c /o/moved; ln /o/a /o/hard; \
     chown -h 5000:5001 /o/link; chown 6000:6001 /o/dir; \
     chmod 6755 /o/suid; chown 7:8 /o/suid; \
     su -s /bin/sh -c true app; \
     stat -c '%u:%g' /o/a /o/dir > /o/seen\n\
     RUN echo more >> /o/b\n";

/// The image's files under `o/`, from a `type=docker` output of `env`'s build.
fn owners_built(env: &BuildEnv, snapshotter: &str) -> (ImageArchive, String) {
    env.dockerfile(&format!("FROM {BASE}\n{OWNERS}"));
    let out = env.dir.mkdir("out");
    if let Some(user) = env.user {
        crate::support::ok(
            crate::support::tool("chown", "coreutils")
                .arg(user)
                .arg(&out),
        );
    }
    let tar = out.join("image.tar");
    let mut cmd = env.build_cmd(&["-o", &format!("type=docker,dest={}", tar.display())]);
    cmd.env("RBUILD_SNAPSHOTTER", snapshotter);
    let run = crate::support::ok(&mut cmd);
    (ImageArchive::read(&tar), run.stderr)
}

fn owner(image: &ImageArchive, path: &str) -> (u64, u64, u32) {
    let e: &FileEntry = image
        .files
        .get(path)
        .unwrap_or_else(|| panic!("{path} is not in the image"));
    (e.uid, e.gid, e.mode)
}

/// The bytes of every layer of a `docker save` archive, uncompressed.
fn layer_bytes(archive: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut tar = tar::Archive::new(std::fs::File::open(archive).expect("open the archive"));
    for entry in tar.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read a member");
        if bytes.starts_with(&[0x1f, 0x8b]) {
            bytes = gunzip(&bytes);
        }
        if bytes.len() > 512 && &bytes[257..262] == b"ustar" {
            out.push(bytes);
        }
    }
    out
}

fn single_id_build_records_owners(snapshotter: &str) {
    let env = BuildEnv::nosubid();
    let (image, stderr) = owners_built(&env, snapshotter);
    assert_eq!(stderr.matches(NOTE).count(), 1, "{stderr}");
    assert_eq!(owner(&image, "o/a"), (1000, 1001, 0o644), "{stderr}");
    assert_eq!(owner(&image, "o/hard"), (1000, 1001, 0o644));
    assert_eq!(
        owner(&image, "o/b"),
        (2000, 3000, 0o644),
        "kept by the second step"
    );
    assert_eq!(owner(&image, "o/moved"), (4000, 4001, 0o644));
    assert_eq!(owner(&image, "o/dir"), (6000, 6001, 0o755));
    // chown clears set-user-ID and (with group execute) set-group-ID, as the kernel does.
    assert_eq!(owner(&image, "o/suid"), (7, 8, 0o755));
    // A symlink cannot carry the record: it stays root's.
    assert_eq!(image.files["o/link"].kind, FileKind::Symlink);
    assert_eq!(owner(&image, "o/link").0, 0);
    // Inside the sandbox, stat shows the recorded owners (busybox's `chown :GROUP` passes
    // the uid it read back, so the record must show there).
    assert_eq!(
        image.files["o/seen"].preview.as_deref(),
        Some("1000:1001\n6000:6001\n"),
        "{:?}",
        image.files["o/seen"]
    );
    for layer in layer_bytes(&env.dir.join("out/image.tar")) {
        assert!(
            !layer.windows(12).any(|w| w == b"user.rbuild."),
            "a layer holds rbuild's owner record"
        );
    }
    if snapshotter == "copy" {
        // A copy made outside the namespace loses the subordinate owners of files a later
        // step changes: nothing to compare with there.
        return;
    }
    // A build with subordinate ids gives the same owners (the symlink aside).
    let subid = BuildEnv::rootless();
    let (theirs, their_err) = owners_built(&subid, snapshotter);
    assert!(!their_err.contains(NOTE), "{their_err}");
    let under_o = |i: &ImageArchive| -> Vec<(String, FileKind, u32, u64, u64)> {
        i.files
            .iter()
            .filter(|(p, _)| p.starts_with("o/") && *p != "o/link")
            .map(|(p, e)| (p.clone(), e.kind, e.mode, e.uid, e.gid))
            .collect()
    };
    assert_eq!(under_o(&image), under_o(&theirs));
    assert_eq!(owner(&theirs, "o/link").0, 5000, "a subid build keeps it");
}

#[test]
fn single_id_build_records_owners_with_overlay() {
    single_id_build_records_owners("overlay");
}

#[test]
fn single_id_build_records_owners_with_copies() {
    single_id_build_records_owners("copy");
}
