//! `rbuild build`'s action cache: what a rebuild re-runs, and how it explains each miss.

use crate::support::{BASE, BuildEnv, ran, steps};

const PREVIOUS: &str = "the previous step changed: ";

#[test]
fn rebuild_is_all_cached_and_gives_the_same_image() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nENV A=1\nRUN echo one > /one\nRUN echo two > /two\nCMD [\"cat\", \"/one\"]\n"
    ));
    let first = env.build(&["-t", "img"]);
    assert_eq!(
        first.ran(),
        [
            "RUN /bin/sh -c echo one > /one",
            "RUN /bin/sh -c echo two > /two"
        ],
        "{}",
        first.stderr
    );
    let second = env.build(&["-t", "img"]);
    assert_eq!(second.ran(), Vec::<String>::new(), "{}", second.stderr);
    assert_eq!(
        second.cached(),
        [
            "RUN /bin/sh -c echo one > /one",
            "RUN /bin/sh -c echo two > /two"
        ]
    );
    assert!(
        second.steps.iter().all(|s| s.miss.is_none()),
        "{}",
        second.stderr
    );
    assert_eq!(second.id, first.id);
}

#[test]
fn env_and_build_arg_changes_rerun_the_steps_after() {
    let env = BuildEnv::new();
    let dockerfile = |level: &str| {
        format!(
            "FROM {BASE}\nRUN echo before > /before\nENV LEVEL={level}\nARG MODE=debug\nRUN echo $LEVEL $MODE > /mode\nRUN cat /mode > /after\n"
        )
    };
    env.dockerfile(&dockerfile("1"));
    env.build(&[]);
    // ENV changed: the RUN reading it misses, naming the variable.
    env.dockerfile(&dockerfile("2"));
    let built = env.build(&["-t", "level2"]);
    assert_eq!(built.cached(), ["RUN /bin/sh -c echo before > /before"]);
    let mode = "RUN |1 MODE=debug /bin/sh -c echo $LEVEL $MODE > /mode";
    let after = "RUN |1 MODE=debug /bin/sh -c cat /mode > /after";
    assert_eq!(built.ran(), [mode, after], "{}", built.stderr);
    assert_eq!(
        built.step(mode).miss.as_deref(),
        Some("build arg or env LEVEL changed")
    );
    let reason = built.step(after).miss.clone().unwrap_or_default();
    assert!(
        reason.starts_with(PREVIOUS) || reason == "build arg or env LEVEL changed",
        "{reason}"
    );
    assert_eq!(env.sh("level2", "cat /after"), "2 debug\n");
    // A build arg changed: both steps after the ARG run again.
    let built = env.build(&["--build-arg", "MODE=release", "-t", "rel"]);
    assert_eq!(built.cached(), ["RUN /bin/sh -c echo before > /before"]);
    assert_eq!(built.ran().len(), 2, "{}", built.stderr);
    assert_eq!(env.sh("rel", "cat /after"), "2 release\n");
    // Back to the default: those results are still cached.
    let built = env.build(&[]);
    assert_eq!(built.ran(), Vec::<String>::new(), "{}", built.stderr);
}

#[test]
fn instruction_change_is_explained_with_the_old_instruction() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo a > /f\nRUN echo tail > /t\n"
    ));
    env.build(&[]);
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo b > /f\nRUN echo tail > /t\n"
    ));
    let built = env.build(&[]);
    assert_eq!(
        built.step("RUN /bin/sh -c echo b > /f").miss.as_deref(),
        Some("the instruction changed (was: RUN /bin/sh -c echo a > /f)")
    );
    assert_eq!(
        built.step("RUN /bin/sh -c echo tail > /t").miss.as_deref(),
        Some("the previous step changed: RUN /bin/sh -c echo b > /f")
    );
}

#[test]
fn no_cache_reruns_everything_and_no_cache_filter_only_that_stage() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE} AS deps
RUN echo deps > /deps
FROM {BASE} AS tools
RUN echo tools > /tools
FROM deps AS final
RUN echo final > /final
RUN --mount=type=tmpfs,target=/scratch echo uses-tools > /scratch/x
"#
    ));
    env.build(&[]);
    let built = env.build(&["--no-cache"]);
    assert_eq!(
        built.ran(),
        [
            "RUN /bin/sh -c echo deps > /deps",
            "RUN /bin/sh -c echo final > /final",
            "RUN /bin/sh -c echo uses-tools > /scratch/x"
        ],
        "{}",
        built.stderr
    );
    assert!(
        built
            .steps
            .iter()
            .filter(|s| s.instruction.starts_with("RUN"))
            .all(|s| s.miss.as_deref() == Some("caching disabled for this step (--no-cache)")),
        "{}",
        built.stderr
    );
    // The stage `tools` is not needed by `final`: never built.
    assert!(!built.stderr.contains("[tools"), "{}", built.stderr);
    let built = env.build(&["--no-cache-filter", "final"]);
    assert_eq!(
        built.ran(),
        [
            "RUN /bin/sh -c echo final > /final",
            "RUN /bin/sh -c echo uses-tools > /scratch/x"
        ],
        "{}",
        built.stderr
    );
    assert_eq!(built.cached(), ["RUN /bin/sh -c echo deps > /deps"]);
    let built = env.build(&["--no-cache-filter", "DEPS"]);
    assert_eq!(
        built.ran(),
        ["RUN /bin/sh -c echo deps > /deps"],
        "{}",
        built.stderr
    );
    let out = env.build_fails(&["--no-cache-filter", "nosuchstage"]);
    assert!(out.stderr.contains("nosuchstage"), "{}", out.stderr);
}

#[test]
fn failing_run_reports_line_command_and_output_and_the_fixed_build_reuses_earlier_steps() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo prepared > /prep\nRUN echo out-line-1; echo err-line-2 >&2; exit 3\nRUN echo never > /never\n"
    ));
    let out = env.build_fails(&[]);
    let err = &out.stderr;
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(
        err.contains("echo out-line-1; echo err-line-2 >&2; exit 3"),
        "{err}"
    );
    assert!(err.contains("exit code 3"), "{err}");
    // The last output lines are in the error message itself (after the step's own lines).
    let message = &err[err.find("error:").expect("an error: line")..];
    assert!(
        message.contains("out-line-1") && message.contains("err-line-2"),
        "{err}"
    );
    let parsed = steps(err);
    assert_eq!(
        ran(&parsed),
        ["RUN /bin/sh -c echo prepared > /prep"],
        "{err}"
    );
    assert!(
        !parsed.iter().any(|s| s.instruction.contains("echo never")),
        "the step after the failure must not start: {err}"
    );
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo prepared > /prep\nRUN echo fixed > /fixed\nRUN echo never > /never\n"
    ));
    let built = env.build(&["-t", "fixed"]);
    assert_eq!(built.cached(), ["RUN /bin/sh -c echo prepared > /prep"]);
    assert_eq!(
        built.ran(),
        [
            "RUN /bin/sh -c echo fixed > /fixed",
            "RUN /bin/sh -c echo never > /never"
        ]
    );
    assert_eq!(
        env.sh("fixed", "cat /prep /fixed /never"),
        "prepared\nfixed\nnever\n"
    );
}

#[test]
fn a_failure_stops_the_other_running_steps() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE} AS slow
RUN sleep 30
FROM {BASE} AS bad
RUN exit 7
FROM {BASE}
COPY --from=slow /bin/busybox /a
COPY --from=bad /bin/busybox /b
"#
    ));
    let started = std::time::Instant::now();
    let out = env.build_fails(&["-j", "4"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the sleeping step must be killed when another fails ({:?}): {}",
        started.elapsed(),
        out.stderr
    );
    assert!(out.stderr.contains("exit code 7"), "{}", out.stderr);
}

/// Processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> usize {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
        .count()
}

#[test]
fn interrupt_kills_the_running_steps_and_cleans_up() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN [\"sleep\", \"31.5\"]\n"));
    let child = env
        .build_cmd(&[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn rbuild");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while processes_running(&["sleep", "31.5"]) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert_eq!(
        processes_running(&["sleep", "31.5"]),
        0,
        "the sandbox survived"
    );
    let leftovers: Vec<_> = std::fs::read_dir(env.root.join("tmp"))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left in tmp/: {leftovers:?}");
}

#[test]
fn a_copy_of_the_context_elsewhere_hits_the_same_cache() {
    let env = BuildEnv::new();
    env.write("src/a.txt", "a\n");
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY src /src\nRUN cat /src/a.txt > /b\n"
    ));
    let first = env.build(&[]);
    assert_eq!(first.ran().len(), 2, "{}", first.stderr);
    // Same files, new inodes and mtimes, another path.
    let other = env.dir.mkdir("other-checkout");
    std::fs::create_dir_all(other.join("src")).unwrap();
    std::fs::write(other.join("src/a.txt"), "a\n").unwrap();
    std::fs::copy(env.ctx.join("Dockerfile"), other.join("Dockerfile")).unwrap();
    let out = crate::support::ok(
        crate::support::rbuild(&env.root)
            .args(["build", "--progress", "plain"])
            .arg(&other),
    );
    let parsed = steps(&out.stderr);
    assert_eq!(ran(&parsed), Vec::<String>::new(), "{}", out.stderr);
    assert_eq!(out.stdout.trim_end(), first.id);
}
