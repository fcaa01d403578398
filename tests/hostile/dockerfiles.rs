//! Hostile Dockerfiles: cache ids and symlinks that try to leave the store or the stage,
//! working directories inside /proc, mounts over /proc, enormous inputs. Each either stays
//! confined or fails with an error naming the Dockerfile line.

use crate::support::{BASE, BuildEnv, fails, ok};

#[test]
fn cache_ids_and_stage_symlinks_stay_confined() {
    let env = BuildEnv::new();
    let marker = format!("rbuild-hostile-{}", std::process::id());
    env.dockerfile(&format!(
        "FROM {BASE} AS s\n\
         RUN ln -s / /escape && mkdir -p /real && echo inside > /real/f\n\
         FROM {BASE}\n\
         RUN --mount=type=cache,id=../../../../etc,target=/c touch /c/{marker}\n\
         RUN --mount=type=bind,from=s,source=escape,target=/m ls /m > /listing\n\
         COPY --from=s /escape/real/f /copied\n\
         RUN --mount=type=tmpfs,target=/proc ls -A /proc > /proc-listing\n"
    ));
    let built = env.build(&["-t", "confined"]);
    assert_eq!(built.ran().len(), 5, "{}", built.stderr);
    // The cache id is hashed into a name under mounts-v1/: nothing reached the host's /etc.
    assert!(!std::path::Path::new("/etc").join(&marker).exists());
    let found: Vec<_> = std::fs::read_dir(env.root.join("mounts-v1"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().join(&marker).exists())
        .collect();
    assert_eq!(found.len(), 1, "the cache mount holds the file");
    // `escape -> /` in the stage is the stage's own root, not the host's.
    let listing = env.sh("confined", "cat /listing");
    assert!(listing.lines().any(|l| l == "real"), "{listing}");
    assert!(
        !listing.lines().any(|l| l == "home" || l == "boot"),
        "{listing}"
    );
    assert_eq!(env.sh("confined", "cat /copied"), "inside\n");
    // A tmpfs over /proc hides the sandbox's proc (and is not in the image).
    assert_eq!(env.sh("confined", "cat /proc-listing"), "");
}

#[test]
fn a_working_directory_in_proc_fails_clearly() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nWORKDIR /proc/self/fd/3\nRUN true\n"));
    let run = fails(&mut env.build_cmd(&[]));
    assert!(run.stderr.contains("Dockerfile:3"), "{}", run.stderr);
    assert!(
        run.stderr.contains("in working directory /proc/self/fd/3"),
        "{}",
        run.stderr
    );
}

#[test]
fn enormous_dockerfiles_fail_or_build_without_panicking() {
    let env = BuildEnv::new();
    // A 10 MB line: refused like BuildKit's scanner, naming the line.
    let mut text = format!("FROM {BASE}\nRUN echo ");
    text.push_str(&"x".repeat(10_000_000));
    text.push('\n');
    env.write("Dockerfile.line", &text);
    let run = fails(&mut env.build_cmd(&["-f", env.ctx.join("Dockerfile.line").to_str().unwrap()]));
    assert!(
        run.stderr.contains("Dockerfile.line:2:1"),
        "{}",
        &run.stderr[..run.stderr.len().min(400)]
    );
    assert!(run.stderr.contains("max allowed size"));
    assert!(
        run.stderr.len() < 4096,
        "the 10 MB line is not echoed whole"
    );
    // 100,000 instructions: planned and built (config-only steps).
    let mut text = format!("FROM {BASE}\n");
    for i in 0..100_000 {
        text.push_str(&format!("ENV V{}={i}\n", i % 50));
    }
    env.write("Dockerfile.big", &text);
    let out = ok(&mut env.build_cmd(&[
        "-f",
        env.ctx.join("Dockerfile.big").to_str().unwrap(),
        "-t",
        "big",
    ]));
    assert!(out.stdout.starts_with("sha256:"));
    assert_eq!(env.sh("big", "echo $V49"), "99999\n");
}
