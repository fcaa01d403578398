//! Single-id mode (a user without /etc/subuid ranges): the sandbox's init answers the step's
//! `chown` calls by recording the owner on the target file. A step that aims them at the
//! host — an absolute symlink to a host file, a relative one climbing out, `/proc/self/root`,
//! a directory descriptor, a bad pointer, a path without its end — must reach only files of
//! its own root: the host file keeps its content and owner and gets no attribute, while the
//! same path inside the root gets the owner.

use std::os::unix::fs::MetadataExt as _;

use rbuild_test_support::ImageArchive;

use crate::support::{BASE, BuildEnv, NOSUBID_USER, ok, tool};

/// `fchown` on a descriptor, `fchownat` with a directory descriptor, with `AT_EMPTY_PATH`
/// and with a bad flag, and `chown` with a pointer to nothing and with a path of `PATH_MAX`
/// bytes and no end before unmapped memory; prints each result.
const CALLS_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void show(const char *what, int r) {
    printf("%s: %s\n", what, r == 0 ? "ok" : strerror(errno));
}

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDONLY);
    show("fchown", fchown(fd, 11, 12));
    int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
    show("fchownat-dir", fchownat(dir, "viadir", 13, 14, 0));
    int f2 = open(argv[3], O_PATH);
    show("fchownat-empty", fchownat(f2, "", 15, 16, AT_EMPTY_PATH));
    show("fchownat-flag", fchownat(dir, "viadir", 1, 1, 0x8000000));
    show("chown-null", chown((const char *)8, 1, 1));
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(page, 'a', 4096);
    show("chown-unterminated", chown(page, 1, 1));
    return 0;
}
"#;

#[test]
fn chown_through_symlinks_to_host_paths_stays_in_the_root() {
    let env = BuildEnv::nosubid();
    // A host file the unprivileged user owns: the worst case, it could write it itself.
    let host_dir = env.dir.mkdir("host");
    let victim = host_dir.join("victim");
    std::fs::write(&victim, "host\n").expect("write the victim");
    ok(tool("chown", "coreutils")
        .arg("-R")
        .arg(NOSUBID_USER)
        .arg(&host_dir));
    let before = std::fs::metadata(&victim).expect("stat the victim");
    let v = victim.display().to_string();
    let src = env.write("calls.c", CALLS_C);
    ok(tool("gcc", "gcc")
        .args(["-static", "-O2", "-o"])
        .arg(env.ctx.join("calls"))
        .arg(&src));
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         COPY calls /calls\n\
         RUN ln -s {v} /abs; chown 1234:1234 /abs 2>&1; \
             ln -s ../../../../../../../../../../..{v} /rel; chown 1234:1234 /rel 2>&1; \
             chown 1234:1234 /proc/self/root{v} 2>&1; chown 1234:1234 /proc/1/root{v} 2>&1; \
             cd /proc/self/cwd && chown 1234:1234 ../../../..{v} 2>&1; \
             true\n\
         RUN mkdir -p {dir} /d && echo inside > {v} && echo f > /f && echo e > /e \
             && echo x > /d/viadir \
             && chown 4321:4322 /abs && chown 5:6 /rel \
             && /calls /f /d /e > /calls.out && cat /calls.out\n",
        dir = host_dir.display()
    ));
    let out = env.dir.mkdir("out");
    ok(tool("chown", "coreutils").arg(NOSUBID_USER).arg(&out));
    let tar = out.join("image.tar");
    let built = env.build(&["-o", &format!("type=docker,dest={}", tar.display())]);
    // The host file is untouched: content, owner, and no attribute.
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host\n");
    let after = std::fs::metadata(&victim).expect("stat the victim");
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    let mut buf = [0u8; 64];
    assert_eq!(
        rustix::fs::getxattr(&victim, "user.rbuild.owner", &mut buf[..]),
        Err(rustix::io::Errno::NODATA),
        "the host file got an owner record"
    );
    // Before the file existed inside, each chown failed: nothing there, or (through init's
    // /proc/1/root) refused.
    assert_eq!(
        built.stderr.matches(" chown: ").count(),
        5,
        "{}",
        built.stderr
    );
    assert_eq!(
        built.stderr.matches("No such file or directory").count(),
        4,
        "{}",
        built.stderr
    );
    // Inside the root, the same path took the owners (the last chown wins).
    let image = ImageArchive::read(&tar);
    let rel = v.trim_start_matches('/');
    let owner = |p: &str| {
        let e = &image.files[p];
        (e.uid, e.gid)
    };
    assert_eq!(owner(rel), (5, 6));
    assert_eq!(owner("f"), (11, 12));
    assert_eq!(owner("d/viadir"), (13, 14));
    assert_eq!(owner("e"), (15, 16));
    assert_eq!(
        image.files["calls.out"].preview.as_deref(),
        Some(
            "fchown: ok\nfchownat-dir: ok\nfchownat-empty: ok\nfchownat-flag: Invalid argument\n\
             chown-null: Bad address\nchown-unterminated: File name too long\n"
        ),
        "{}",
        built.stderr
    );
}
