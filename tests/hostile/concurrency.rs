//! Eight builds of overlapping Dockerfiles (one base, shared COPY and RUN prefixes,
//! different tails) into one store at once, while `rbuild prune` and `rbuild prune --all`
//! run in a loop beside them.
//!
//! Every build must succeed: a prune never removes what a running build uses (builds hold a
//! lease for their whole run and mark what they reuse under the gc lock), so there is no
//! "clean failure" to accept here; a failed build fails the test with its output. Afterwards
//! every blob verifies against its digest, every tag resolves to a complete image that
//! skopeo reads and `rbuild run` runs, and the second round (run after everything was aged,
//! so the concurrent `prune --all` really races the builds' cache lookups) gives the same
//! digests as the first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::{BASE, BuildEnv, Dir, finish_cmd, ok, rbuild, skopeo, tool, verified_blobs};

const BUILDS: usize = 8;

/// Context `i`: all share the base and the first COPY and RUN; half share a longer prefix;
/// each has its own tail.
fn context(env: &BuildEnv, i: usize) -> PathBuf {
    let ctx = env.dir.mkdir(format!("ctx-{i}"));
    std::fs::write(ctx.join("shared.txt"), "shared by every build\n").expect("write");
    std::fs::write(ctx.join("own.txt"), format!("build {i}\n")).expect("write");
    let middle = if i % 2 == 0 {
        "RUN seq 1 50000 > /even && echo even > /kind\n"
    } else {
        "RUN echo odd > /kind\n"
    };
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {BASE}\n\
             COPY shared.txt /shared.txt\n\
             RUN seq 1 100000 > /numbers && echo prefix > /prefix\n\
             {middle}\
             RUN echo tail-{i} > /tail && seq 1 {n} > /tail-numbers\n\
             COPY own.txt /own.txt\n",
            n = 1000 * (i + 1)
        ),
    )
    .expect("write Dockerfile");
    ctx
}

fn build_cmd(root: &Path, ctx: &Path, i: usize) -> Command {
    let mut cmd = rbuild(root);
    cmd.env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["build", "--progress", "plain", "-t"])
        .arg(format!("img-{i}"))
        .arg(ctx);
    cmd
}

/// Runs the builds at once with prunes looping beside them; returns each build's image id
/// and how many bytes the prunes freed.
fn round(root: &Path, contexts: &[PathBuf]) -> (Vec<String>, u64) {
    let done = Arc::new(AtomicBool::new(false));
    let pruner = {
        let root = root.to_owned();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut freed = 0u64;
            let mut n = 0u32;
            while !done.load(Ordering::SeqCst) {
                let mut cmd = rbuild(&root);
                cmd.args(["prune", "--format", "json"]);
                if n % 2 == 1 {
                    cmd.arg("--all");
                }
                let r = finish_cmd(&mut cmd);
                assert_eq!(r.code, 0, "prune failed during the builds: {}", r.stderr);
                let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("prune json");
                freed += v["total_bytes"].as_u64().expect("total");
                n += 1;
            }
            assert!(n > 0, "no prune ran");
            freed
        })
    };
    let builds: Vec<_> = contexts
        .iter()
        .enumerate()
        .map(|(i, ctx)| {
            let mut cmd = build_cmd(root, ctx, i);
            std::thread::spawn(move || finish_cmd(&mut cmd))
        })
        .collect();
    let mut ids = Vec::new();
    for (i, b) in builds.into_iter().enumerate() {
        let r = b.join().expect("build thread");
        assert_eq!(
            r.code, 0,
            "build {i} failed while prunes ran:\n{}",
            r.stderr
        );
        ids.push(r.stdout.trim().to_string());
    }
    done.store(true, Ordering::SeqCst);
    let freed = pruner.join().expect("prune thread");
    (ids, freed)
}

/// Every name of `index.json` is a complete image: skopeo copies it out (reading and
/// checking every blob), and `rbuild run` runs it.
fn check_images(root: &Path) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).expect("index.json"))
            .expect("json");
    let names: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .expect("name")
                .to_string()
        })
        .collect();
    assert_eq!(names.len(), BUILDS + 1, "{names:?}");
    let out = Dir::new();
    for (n, name) in names.iter().enumerate() {
        ok(skopeo()
            .arg("copy")
            .arg(format!("oci:{}:{name}", root.display()))
            .arg(format!("dir:{}", out.join(n.to_string()).display())));
    }
    for i in 0..BUILDS {
        let r = ok(rbuild(root).args(["run", "--rm", &format!("img-{i}"), "cat", "/tail", "/own.txt"]));
        assert_eq!(r.stdout, format!("tail-{i}\nbuild {i}\n"));
    }
}

#[test]
fn concurrent_builds_and_prunes_share_one_store_safely() {
    let env = BuildEnv::new();
    let contexts: Vec<PathBuf> = (0..BUILDS).map(|i| context(&env, i)).collect();

    let (first, _) = round(&env.root, &contexts);
    verified_blobs(&env.root);
    check_images(&env.root);

    // Age everything: the prunes of the second round may now take every record, snapshot
    // and cache entry that a build has not yet marked as used.
    ok(tool("find", "findutils")
        .arg(&env.root)
        .args(["-exec", "touch", "-h", "-d", "3 hours ago", "{}", "+"]));
    let (second, freed) = round(&env.root, &contexts);
    assert_eq!(second, first, "the second round gave other images");
    assert!(freed > 0, "the prunes of the second round removed nothing: no race was tested");
    verified_blobs(&env.root);
    check_images(&env.root);
    // And the store still works for a build after all that.
    let r = ok(&mut build_cmd(&env.root, &contexts[0], 0));
    assert_eq!(r.stdout.trim(), first[0]);
}
