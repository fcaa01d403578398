//! Rootless builds whose steps leave files that the unprivileged user cannot read from
//! outside the build's user namespace: directories of another (subordinate) owner with mode
//! 0700, as apt leaves `/var/cache/apt/archives/partial` to its `_apt` user, and files with
//! mode 0000. Every path that reads, copies, hashes, moves or deletes them must work: the
//! RUN's layer, publishing its upper dir, `COPY --from` and `WORKDIR` through them, cache
//! mounts, every output, `report`, `prune`, `rmi`, `rm`. The store stays whole throughout.

use crate::support::{BASE, BuildEnv, ok, verified_blobs};

/// A stage whose files belong to uid 100 (a subordinate id on the host) behind mode 0700
/// directories, with a 0000 file, like apt's `_apt` directories.
const LOCKED: &str = "RUN mkdir -p /var/cache/locked/partial \
     && echo secret > /var/cache/locked/partial/f \
     && chown -R 100:100 /var/cache/locked \
     && chmod 700 /var/cache/locked /var/cache/locked/partial \
     && chmod 000 /var/cache/locked/partial/f";

#[test]
fn a_rootless_build_reads_and_removes_files_it_cannot_reach_from_outside() {
    let env = BuildEnv::rootless();
    env.dockerfile(&format!(
        "FROM {BASE} AS locked\n\
         {LOCKED}\n\
         RUN --mount=type=cache,target=/cache,id=locked sh -c \
             'mkdir -p /cache/d && echo cached > /cache/d/f && chown -R 100 /cache/d \
              && chmod 700 /cache/d && chmod 000 /cache/d/f'\n\
         FROM {BASE}\n\
         COPY --from=locked /var/cache/locked /copied\n\
         RUN mkdir -m 700 /priv && chown 100:100 /priv\n\
         WORKDIR /priv/inner\n\
         COPY Dockerfile /priv/inner/\n\
         RUN --mount=type=cache,target=/cache,id=locked stat -c '%a %u:%g' /cache/d /cache/d/f > /cache-listing\n"
    ));
    env.write(".dockerignore", "out\n");
    let out = env.dir.mkdir("out");
    ok(crate::support::tool("chown", "coreutils")
        .arg(crate::support::ROOTLESS_USER)
        .arg(&out));
    let built = env.build(&[
        "-t",
        "locked",
        "-o",
        "type=image",
        "-o",
        &format!("type=local,dest={}", out.join("local").display()),
        "-o",
        &format!("type=tar,dest={}", out.join("fs.tar").display()),
        "-o",
        &format!("type=oci,dest={}", out.join("oci.tar").display()),
        "-o",
        &format!("type=docker,dest={}", out.join("docker.tar").display()),
    ]);
    assert_eq!(built.ran().len(), 7, "{}", built.stderr);
    // The copied tree keeps its owners and modes; the file stays 0000.
    let listing = env.sh(
        "locked",
        "find /copied /priv | sort | xargs stat -c '%n %a %u:%g'; cat /cache-listing",
    );
    assert_eq!(
        listing,
        "/copied 755 0:0\n\
         /copied/partial 700 100:100\n\
         /copied/partial/f 0 100:100\n\
         /priv 700 100:100\n\
         /priv/inner 755 0:0\n\
         /priv/inner/Dockerfile 644 0:0\n\
         700 100:0\n\
         0 100:0\n",
        "{}",
        built.stderr
    );
    // Every output was written.
    for f in ["fs.tar", "oci.tar", "docker.tar"] {
        assert!(out.join(f).metadata().unwrap().len() > 10_000, "{f}");
    }
    assert!(
        out.join("local/copied/partial/f")
            .symlink_metadata()
            .is_ok(),
        "the local output holds the 0000 file"
    );
    // The size report reads the layers.
    let report = ok(env.rbuild().args(["report", "locked"])).stdout;
    assert!(report.contains("copied/partial"), "{report}");
    // A kept container with such files is removed.
    ok(env.rbuild().args([
        "run",
        "--name",
        "kept",
        "locked",
        "sh",
        "-c",
        "mkdir -m 700 /x && touch /x/f && chown -R 100 /x && chmod 000 /x/f",
    ]));
    assert_eq!(ok(env.rbuild().args(["rm", "kept"])).stdout, "kept\n");
    // rmi, then prune everything: snapshots, cache mounts, records, with their locked files.
    ok(env.rbuild().args(["rmi", "locked"]));
    // Past the second within which a prune keeps what was just used.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let prune = ok(env.rbuild().args(["prune", "--all"]));
    assert!(!prune.stdout.is_empty(), "{prune:?}");
    for dir in ["snapshots-v1", "mounts-v1", "containers-v1"] {
        let left: Vec<_> = std::fs::read_dir(env.root.join(dir))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            // Lock and id files stay (they are what concurrent users agree on).
            left.iter().all(|n| {
                let n = n.to_string_lossy();
                [".lock", ".id", ".create"].iter().any(|s| n.ends_with(s))
            }),
            "{dir} still holds {left:?} after {prune:?}"
        );
    }
    let tmp: Vec<_> = std::fs::read_dir(env.root.join("tmp"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(tmp.is_empty(), "tmp/ holds {tmp:?}");
    verified_blobs(&env.root);
    // The base image is whole and builds again.
    env.dockerfile(&format!("FROM {BASE}\n{LOCKED}\n"));
    env.build(&["-t", "again"]);
}
