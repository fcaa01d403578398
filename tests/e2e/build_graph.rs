//! Multi-stage builds: which stages are built, `--target`, `COPY --from` chains, stages
//! built in parallel up to `--jobs`.

use std::time::{Duration, Instant};

use crate::support::{BASE, BuildEnv};

#[test]
fn target_builds_only_the_stages_it_needs() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE} AS base
RUN echo base > /base
FROM base AS test
RUN echo test > /test
FROM {BASE} AS broken
RUN echo broken-ran; exit 1
FROM base AS release
RUN echo release > /release
"#
    ));
    // The last stage is the default target; `test` and `broken` are not built.
    let built = env.build(&["-t", "rel"]);
    assert_eq!(
        built.ran(),
        [
            "RUN /bin/sh -c echo base > /base",
            "RUN /bin/sh -c echo release > /release"
        ],
        "{}",
        built.stderr
    );
    assert!(!built.stderr.contains("broken-ran"), "{}", built.stderr);
    assert_eq!(
        env.sh("rel", "cat /base /release; ls /test 2>&1 || true"),
        "base\nrelease\nls: /test: No such file or directory\n"
    );
    // --target test: base comes from the cache, release is not built.
    let built = env.build(&["--target", "test", "-t", "tst"]);
    assert_eq!(
        built.ran(),
        ["RUN /bin/sh -c echo test > /test"],
        "{}",
        built.stderr
    );
    assert_eq!(built.cached(), ["RUN /bin/sh -c echo base > /base"]);
    assert!(!built.stderr.contains("release"), "{}", built.stderr);
    assert_eq!(env.sh("tst", "cat /base /test"), "base\ntest\n");
    // Target names are case-insensitive, as stage names are.
    let again = env.build(&["--target", "TEST"]);
    assert_eq!(again.id, built.id);
    // --target broken fails, naming its line.
    let out = env.build_fails(&["--target", "broken"]);
    assert!(out.stderr.contains("Dockerfile:6"), "{}", out.stderr);
}

#[test]
fn copy_from_chains_through_stages_and_images() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE} AS one
RUN mkdir /out && echo one > /out/one
FROM {BASE} AS two
COPY --from=one /out/one /out/
RUN echo two >> /out/one && echo two > /out/two
FROM scratch AS three
COPY --from=two /out /
COPY --from={BASE} /bin/busybox /bin/busybox
FROM three
COPY --from=0 /out/one /from-index
"#
    ));
    let built = env.build(&["-t", "chain"]);
    assert_eq!(built.ran().len(), 6, "{}", built.stderr);
    let out = crate::support::ok(crate::support::rbuild(&env.root).args([
        "run",
        "--rm",
        "chain",
        "/bin/busybox",
        "cat",
        "/one",
        "/two",
        "/from-index",
    ]));
    assert_eq!(out.stdout, "one\ntwo\ntwo\none\n");
}

/// Two independent stages that each sleep 1 s, feeding a final stage.
fn parallel_dockerfile(env: &BuildEnv, tag: &str) {
    env.dockerfile(&format!(
        r#"FROM {BASE} AS left
RUN sleep 1 && echo {tag} > /left
FROM {BASE} AS right
RUN sleep 1 && echo {tag} > /right
FROM {BASE}
RUN --mount=type=tmpfs,target=/t true
COPY --from=left /left /left
COPY --from=right /right /right
"#
    ));
}

#[test]
fn independent_stages_run_in_parallel_and_jobs_1_makes_them_sequential() {
    let env = BuildEnv::new();
    // Unpack the base image's snapshot once so that neither timed build pays for it.
    env.dockerfile(&format!("FROM {BASE}\nRUN true\n"));
    env.build(&[]);

    parallel_dockerfile(&env, "parallel");
    let started = Instant::now();
    let built = env.build(&["-j", "4", "-t", "par"]);
    let took = started.elapsed();
    assert_eq!(built.ran().len(), 5, "{}", built.stderr);
    assert!(
        took < Duration::from_millis(1900),
        "two 1 s stages must overlap: the build took {took:?}\n{}",
        built.stderr
    );
    assert_eq!(env.sh("par", "cat /left /right"), "parallel\nparallel\n");

    parallel_dockerfile(&env, "sequential");
    let started = Instant::now();
    let built = env.build(&["--jobs", "1"]);
    let took = started.elapsed();
    // The final stage's RUN is cached from the first build.
    assert_eq!(built.ran().len(), 4, "{}", built.stderr);
    assert!(
        took >= Duration::from_secs(2),
        "--jobs 1 runs one step at a time: the build took {took:?}\n{}",
        built.stderr
    );
}
