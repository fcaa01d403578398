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

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

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
             RUN sleep 3 && echo slow-{i} > /slow\n\
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
/// and how many bytes the prunes freed. With `after_hits`, the prunes start once every build
/// has taken a step from the cache (its key phase is over: its hits are decided and must be
/// kept from then on), else at once.
fn round(root: &Path, contexts: &[PathBuf], after_hits: bool) -> (Vec<String>, u64) {
    round_with(root, contexts, after_hits, true)
}

/// [`round`], with no prunes beside the builds when `prunes` is false.
fn round_with(
    root: &Path,
    contexts: &[PathBuf],
    after_hits: bool,
    prunes: bool,
) -> (Vec<String>, u64) {
    let done = Arc::new(AtomicBool::new(false));
    // Builds that have taken a step from the cache or finished.
    let ready = Arc::new((Mutex::new(0usize), Condvar::new()));
    let builds: Vec<_> = contexts
        .iter()
        .enumerate()
        .map(|(i, ctx)| {
            let mut child = build_cmd(root, ctx, i)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a build");
            let ready = ready.clone();
            std::thread::spawn(move || {
                let mut stdout = child.stdout.take().expect("stdout");
                let out = std::thread::spawn(move || {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut stdout, &mut s).expect("read stdout");
                    s
                });
                let mut stderr = String::new();
                let mut signalled = false;
                let signal = |signalled: &mut bool| {
                    if !*signalled {
                        *signalled = true;
                        let (n, cv) = &*ready;
                        *n.lock().expect("lock") += 1;
                        cv.notify_all();
                    }
                };
                for line in BufReader::new(child.stderr.take().expect("stderr")).lines() {
                    let line = line.expect("read stderr");
                    if line.ends_with(" CACHED") {
                        signal(&mut signalled);
                    }
                    stderr.push_str(&line);
                    stderr.push('\n');
                }
                let status = child.wait().expect("wait for a build");
                signal(&mut signalled);
                (
                    status.code().unwrap_or(-1),
                    out.join().expect("stdout thread"),
                    stderr,
                )
            })
        })
        .collect();
    if after_hits {
        let (n, cv) = &*ready;
        let mut n = n.lock().expect("lock");
        while *n < contexts.len() {
            n = cv.wait(n).expect("wait");
        }
    }
    let pruner = {
        let root = root.to_owned();
        let done = done.clone();
        std::thread::spawn(move || {
            if !prunes {
                return 0;
            }
            let mut freed = 0u64;
            let mut n = 0u32;
            while !done.load(Ordering::SeqCst) || n == 0 {
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
            freed
        })
    };
    let mut ids = Vec::new();
    for (i, b) in builds.into_iter().enumerate() {
        let (code, stdout, stderr) = b.join().expect("build thread");
        assert_eq!(code, 0, "build {i} failed while prunes ran:\n{stderr}");
        ids.push(stdout.trim().to_string());
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
        let r = ok(rbuild(root).args([
            "run",
            "--rm",
            &format!("img-{i}"),
            "cat",
            "/tail",
            "/own.txt",
        ]));
        assert_eq!(r.stdout, format!("tail-{i}\nbuild {i}\n"));
    }
}

#[test]
fn concurrent_builds_and_prunes_share_one_store_safely() {
    let env = BuildEnv::new();
    let contexts: Vec<PathBuf> = (0..BUILDS).map(|i| context(&env, i)).collect();

    let (first, _) = round(&env.root, &contexts, false);
    verified_blobs(&env.root);
    check_images(&env.root);
    // The last prune of the round may have been a `prune --all` that ran after the builds
    // ended and took the whole cache; build once more, alone, so the second round starts
    // with every record (and its prunes can race the builds' cache hits).
    let (refilled, _) = round_with(&env.root, &contexts, false, false);
    assert_eq!(
        refilled, first,
        "a rebuild without prunes gave other images"
    );

    // Drop the names of the built images (as another tool editing the layout would; the
    // blobs stay), so their layers are build cache only, and age everything: the prunes of
    // the second round may now take every record, layer blob and snapshot that a build has
    // not yet marked as used, and a build that reused one must keep it.
    let index_path = env.root.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).expect("index.json")).expect("json");
    index["manifests"]
        .as_array_mut()
        .expect("manifests")
        .retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] == BASE);
    std::fs::write(&index_path, serde_json::to_vec(&index).expect("json")).expect("write");
    ok(tool("find", "findutils").arg(&env.root).args([
        "-exec",
        "touch",
        "-h",
        "-d",
        "3 hours ago",
        "{}",
        "+",
    ]));
    // The slow steps run again (their records are dropped), so the builds are still running
    // when the prunes start: what they took from the cache must survive until they tag. Their
    // 3 s are the window in which a prune can still free the old copies of the slow steps'
    // layers (a rebuilt identical layer claims the old blob), even on a loaded machine.
    for e in std::fs::read_dir(env.root.join("cache-v1/keys")).expect("keys") {
        let path = e.expect("entry").path();
        if std::fs::read_to_string(&path)
            .expect("record")
            .contains("sleep 3")
        {
            std::fs::remove_file(&path).expect("remove record");
        }
    }
    let (second, freed) = round(&env.root, &contexts, true);
    assert_eq!(second, first, "the second round gave other images");
    assert!(
        freed > 0,
        "the prunes of the second round removed nothing: no race was tested"
    );
    verified_blobs(&env.root);
    check_images(&env.root);
    // And the store still works for a build after all that.
    let r = ok(&mut build_cmd(&env.root, &contexts[0], 0));
    assert_eq!(r.stdout.trim(), first[0]);
}

/// `rbuild rmi` of the base image while a build on it runs: the name goes at once, but the
/// blobs stay while the build uses them (it marked them when it resolved its base, after
/// its lease began), so the build finishes with a complete image. Without another process,
/// `rmi` deletes what only the removed image reached.
#[test]
fn rmi_of_a_base_during_a_build_keeps_what_the_build_uses() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo started && sleep 3 && echo built > /built\n"
    ));
    let mut build = env.build_cmd(&["-t", "child"]);
    let mut child = build
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the build");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("read the build's progress");
        seen.push_str(&line);
        seen.push('\n');
        if line.ends_with(" started") {
            break;
        }
    }
    assert!(seen.contains(" started"), "{seen}");
    let rmi = ok(env.rbuild().args(["rmi", BASE]));
    assert_eq!(
        rmi.stdout, "Untagged: localhost/busybox:latest\n",
        "{rmi:?}"
    );
    assert!(rmi.stderr.contains("kept 3 blobs"), "{}", rmi.stderr);
    let rest: Vec<String> = lines.map(|l| l.expect("read")).collect();
    let status = child.wait().expect("wait for the build");
    assert!(status.success(), "{seen}{}", rest.join("\n"));
    assert_eq!(env.sh("child", "cat /built"), "built\n");
    verified_blobs(&env.root);
    // The base's name is gone; with no build running, rmi deletes what only it reached.
    let images = ok(env.rbuild().arg("images")).stdout;
    assert!(
        images.contains("child") && !images.contains("busybox"),
        "{images}"
    );
    let rmi = ok(env.rbuild().args(["rmi", "child"]));
    assert!(rmi.stdout.contains("Deleted: sha256:"), "{rmi:?}");
    assert!(rmi.stderr.is_empty(), "{}", rmi.stderr);
}
