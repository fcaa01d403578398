//! What a build says when the Dockerfile names something that is not there: a base image or
//! stage with a typo, a COPY source missing from the context (or excluded by
//! `.dockerignore`), an image `rbuild run` cannot find; and that a failed step's error is
//! printed once.

use crate::support::{BASE, BuildEnv, Run, fails};

/// Registries are reached through a proxy that refuses connections, so a pull fails the same
/// way on every machine, without touching the network.
fn no_network(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
    ] {
        cmd.env(var, "http://127.0.0.1:9");
    }
    cmd.env_remove("NO_PROXY").env_remove("no_proxy")
}

/// The error rendered at the end of stderr (from `error: ` on).
fn error_text(run: &Run) -> &str {
    let at = run
        .stderr
        .find("\nerror: ")
        .map(|i| i + 1)
        .or_else(|| run.stderr.starts_with("error: ").then_some(0))
        .unwrap_or_else(|| panic!("no error in {}", run.stderr));
    &run.stderr[at..]
}

/// Checks that `error` starts with the located "neither a stage nor an image" message
/// (`at` is `LINE:COL: REFERENCE`), the source line and the caret; returns its lines.
fn assert_located<'a>(error: &'a str, at: &str, source: &str, caret: &str) -> Vec<&'a str> {
    let lines: Vec<&str> = error.lines().collect();
    let first = format!(
        "error: Dockerfile:{at} is neither a stage of this Dockerfile nor an image in the local store"
    );
    assert_eq!(
        lines[..4],
        [first.as_str(), "  |", source, caret],
        "{error}"
    );
    lines
}

#[test]
fn a_typo_in_a_stage_name_points_at_the_line_and_names_the_stage() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE} AS builder\nRUN echo hi > /x\nFROM {BASE}\nCOPY --from=buildr /x /x\n"
    ));
    let run = fails(no_network(&mut env.build_cmd(&[])));
    let error = error_text(&run);
    let lines = assert_located(
        error,
        "4:13: buildr",
        "4 | COPY --from=buildr /x /x",
        "  |             ^^^^^^",
    );
    // What was tried and why it failed, in one line; the closest name last.
    assert!(
        lines[4].starts_with(
            "  = note: tried to pull docker.io/library/buildr:latest: GET https://registry-1.docker.io/v2/: "
        ),
        "{error}"
    );
    assert_eq!(
        lines[5],
        "hint: did you mean builder (the stage on line 1)?"
    );
    assert_eq!(lines.len(), 6, "no cause chain without -v: {error}");
    // The progress shows the pull as a failed step, on one line.
    let pull = run
        .stderr
        .lines()
        .find(|l| l.starts_with("#1 ERROR: "))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(
        pull.starts_with("#1 ERROR: tried to pull docker.io/library/buildr:latest: GET "),
        "{pull}"
    );

    // -v adds the whole chain.
    let run = fails(no_network(
        env.rbuild()
            .arg("-v")
            .args(["build", "--progress", "plain"])
            .arg(&env.ctx),
    ));
    let error = error_text(&run);
    assert!(error.contains("\nCaused by: "), "{error}");
    assert!(
        error.contains("\nhint: did you mean builder (the stage on line 1)?"),
        "{error}"
    );
}

#[test]
fn a_typo_in_a_base_image_names_the_local_image() {
    let env = BuildEnv::new();
    env.dockerfile("FROM localhost/busyboxx\nRUN true\n");
    let run = fails(no_network(&mut env.build_cmd(&[])));
    let error = error_text(&run);
    let lines = assert_located(
        error,
        "1:6: localhost/busyboxx",
        "1 | FROM localhost/busyboxx",
        "  |      ^^^^^^^^^^^^^^^^^^",
    );
    assert!(
        lines[4].starts_with(
            "  = note: tried to pull localhost/busyboxx:latest: GET https://localhost/v2/: "
        ),
        "{error}"
    );
    assert_eq!(lines[5], "hint: did you mean localhost/busybox?");
    assert_eq!(lines.len(), 6, "{error}");
}

#[test]
fn run_of_a_missing_image_names_the_closest_local_one() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nLABEL app=yes\n"));
    env.build(&["-t", "myapp:latest"]);
    let run = crate::support::finish_cmd(no_network(env.rbuild().args([
        "run",
        "--rm",
        "myap:latest",
        "true",
    ])));
    assert_eq!(run.code, 125, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[0], "error: image myap:latest is not in the local store and could not be pulled",
        "{}",
        run.stderr
    );
    assert!(
        lines[1].starts_with(
            "  = note: tried to pull docker.io/library/myap:latest: GET https://registry-1.docker.io/v2/: "
        ),
        "{}",
        run.stderr
    );
    assert_eq!(
        lines[2], "hint: did you mean myapp:latest?",
        "{}",
        run.stderr
    );
    assert_eq!(lines.len(), 3, "{}", run.stderr);
    // The commands that only look in the store say the same.
    for command in ["inspect", "rmi", "save"] {
        let run = fails(env.rbuild().args([command, "myap"]));
        assert_eq!(
            run.stderr,
            "error: no image named docker.io/library/myap:latest in the store\nhint: did you mean myapp?\n",
            "rbuild {command}"
        );
    }
}

#[test]
fn a_missing_copy_source_is_located_and_an_excluding_pattern_named() {
    let env = BuildEnv::new();
    let file = "Dockerfile";
    env.dockerfile(&format!("FROM {BASE}\nWORKDIR /app\nCOPY config.json ./\n"));
    let run = env.build_fails(&[]);
    assert_eq!(
        error_text(&run),
        format!(
            "error: {file}:3:6: config.json is not in the build context\n  |\n3 | COPY config.json ./\n  |      ^^^^^^^^^^^\n"
        )
    );
    // A file of a close name is suggested.
    env.write("config.jsn", "{}");
    let run = env.build_fails(&[]);
    assert!(
        error_text(&run).ends_with("\nhint: did you mean config.jsn?\n"),
        "{}",
        run.stderr
    );
    // The file is there, but .dockerignore excludes it: which line says so.
    env.write("config.json", "{}");
    env.write(
        ".dockerignore",
        "# build inputs only\n*.json\n!package.json\n",
    );
    let run = env.build_fails(&[]);
    let ignore = ".dockerignore";
    assert_eq!(
        error_text(&run),
        format!(
            "error: {file}:3:6: config.json is not in the build context\n  |\n3 | COPY config.json ./\n  |      ^^^^^^^^^^^\n  = note: {ignore}:2 excludes it (*.json)\n"
        )
    );
    assert!(!run.stderr.contains("Caused by"), "{}", run.stderr);
    // An excluded symlink out of the context is an entry of the context, never followed:
    // nothing of its target is read or named.
    std::os::unix::fs::symlink("/etc/passwd", env.ctx.join("passwd.json")).unwrap();
    env.dockerfile(&format!("FROM {BASE}\nCOPY passwd.json /\n"));
    let run = env.build_fails(&[]);
    assert!(
        error_text(&run).ends_with("  = note: .dockerignore:2 excludes it (*.json)\n"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("root:"), "{}", run.stderr);
}

#[test]
fn a_failed_step_prints_its_error_block_once_at_the_end() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo prepared\nRUN echo out-line-1; echo out-line-2 >&2; exit 3\n"
    ));
    let run = env.build_fails(&[]);
    // The progress shows the step as failed ...
    assert!(
        run.stderr.contains(
            "#3 ERROR: process [\"/bin/sh\", \"-c\", \"echo out-line-1; echo out-line-2 >&2; exit 3\"] did not complete successfully: exit code 3\n"
        ),
        "{}",
        run.stderr
    );
    // ... and nothing else until the summary: no block of its own.
    let summary = run.stderr.find("build failed after").expect("a summary");
    let before: Vec<&str> = run.stderr[..summary]
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(before, Vec::<&str>::new(), "{}", run.stderr);
    // The error at the end has the Dockerfile line and the last output lines, once.
    let error = error_text(&run);
    assert!(
        error.contains("\n3 | RUN echo out-line-1; echo out-line-2 >&2; exit 3\n"),
        "{error}"
    );
    assert!(
        error.ends_with(
            "last output lines:\n  out-line-1\n  out-line-2\n\
             hint: rerun with --on-error=shell to open a shell in the step's file system\n"
        ),
        "{error}"
    );
    let shown = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with('#') && l.ends_with("out-line-2"))
        .count();
    assert_eq!(shown, 1, "{}", run.stderr);
}
