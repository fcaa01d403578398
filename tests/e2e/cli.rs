//! The command line itself: typos of subcommands and flags, docker flags rbuild does not
//! have, and commands whose reader goes away.

use std::io::Read as _;
use std::process::{Command, Stdio};

use crate::support::{BASE, BuildEnv, Dir, Run, finish_cmd, ok, rbuild};

/// Runs a command that must fail as a usage error (exit code 2); returns its output.
fn usage_error(cmd: &mut Command) -> Run {
    let run = finish_cmd(cmd);
    assert_eq!(
        run.code, 2,
        "{cmd:?} should fail with a usage error:\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    run
}

/// The first line of stderr.
fn first_line(run: &Run) -> &str {
    run.stderr.lines().next().unwrap_or_default()
}

#[test]
fn a_typo_of_a_subcommand_is_named_not_taken_for_a_build_context() {
    let dir = Dir::new();
    let root = dir.join("store");
    let run = usage_error(rbuild(&root).arg("imagse").current_dir(dir.path()));
    assert_eq!(
        first_line(&run),
        "error: unknown command imagse; did you mean images?"
    );
    let run = usage_error(
        rbuild(&root)
            .args(["inspekt", "hello"])
            .current_dir(dir.path()),
    );
    assert_eq!(
        first_line(&run),
        "error: unknown command inspekt; did you mean inspect?"
    );
    // A directory of that name is a build context: the shortcut still builds it.
    dir.write("imagse/Dockerfile", "FROM scratch\nLABEL a=b\n");
    let run = ok(rbuild(&root)
        .args(["--progress", "quiet", "imagse"])
        .current_dir(dir.path()));
    assert!(run.stdout.starts_with("sha256:"), "{}", run.stdout);
}

#[test]
fn the_build_shortcut_still_takes_flags_and_a_context() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nLABEL shortcut=yes\n"));
    ok(env
        .rbuild()
        .args(["-t", "x", "--progress", "quiet"])
        .arg(&env.ctx));
    assert_eq!(env.config("x")["config"]["Labels"]["shortcut"], "yes");
    let run = ok(env
        .rbuild()
        .args(["--progress", "quiet", "."])
        .current_dir(&env.ctx));
    assert!(run.stdout.starts_with("sha256:"), "{}", run.stdout);
}

#[test]
fn docker_flags_rbuild_lacks_are_named_with_what_to_use_instead() {
    let dir = Dir::new();
    let root = dir.join("store");
    let run = usage_error(rbuild(&root).args(["build", "--squash", "."]));
    assert_eq!(
        first_line(&run),
        "error: rbuild build does not support --squash (a docker flag): to get one layer, copy \
         the last stage onto an empty one: `FROM scratch` then `COPY --from=STAGE / /`"
    );
    assert!(!run.stderr.contains("-- --squash"), "{}", run.stderr);
    // The same through the shortcut.
    let run = usage_error(rbuild(&root).args(["--squash", "-t", "x", "."]));
    assert!(
        first_line(&run).starts_with("error: rbuild build does not support --squash"),
        "{}",
        run.stderr
    );
    let run = usage_error(rbuild(&root).args(["run", "--restart", "always", BASE]));
    assert_eq!(
        first_line(&run),
        "error: rbuild run does not support --restart (a docker flag): rbuild has no daemon to \
         restart containers; use a service manager (systemd)"
    );
    let run = usage_error(rbuild(&root).args(["run", "--expose", "80", BASE]));
    assert!(
        first_line(&run).starts_with(
            "error: rbuild run does not support --expose (a docker flag): publish the port with"
        ),
        "{}",
        run.stderr
    );
    // A flag that is no docker flag either: a typo, with the closest flag.
    let run = usage_error(rbuild(&root).args(["build", "--tga", "x", "."]));
    assert_eq!(
        first_line(&run),
        "error: unknown flag --tga; did you mean --tag?"
    );
    assert!(!run.stderr.contains("-- --tga"), "{}", run.stderr);
}

#[test]
fn unknown_dockerfile_flags_get_a_did_you_mean() {
    let env = BuildEnv::new();
    env.write("a", "a");
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY --chwn=1000 a /a\nRUN --mont=type=cache,target=/c true\n"
    ));
    let run = env.build_fails(&[]);
    let error = &run.stderr[run.stderr.find("error: ").expect("an error")..];
    assert_eq!(
        error,
        "error: Dockerfile:2:6: unknown flag --chwn for COPY\n  |\n2 | COPY --chwn=1000 a /a\n  |      ^^^^^^^^^^^\nhint: did you mean --chown?\n"
    );
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN --mont=type=cache,target=/c true\n"
    ));
    let run = env.build_fails(&[]);
    assert!(
        run.stderr.ends_with("hint: did you mean --mount?\n"),
        "{}",
        run.stderr
    );
    // `rbuild plan` renders the same diagnostic.
    let run = crate::support::fails(rbuild(&env.root).arg("plan").arg(&env.ctx));
    assert!(
        run.stderr.contains("unknown flag --mont for RUN")
            && run.stderr.ends_with("hint: did you mean --mount?\n"),
        "{}",
        run.stderr
    );
}

/// Runs `cmd` with a stdout whose reader has already gone away; returns the exit code and
/// stderr.
fn with_closed_stdout(cmd: &mut Command) -> (i32, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rbuild");
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn every_command_ends_quietly_when_its_reader_goes_away() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN echo hi > /hi\n"));
    let id = env.build(&["-t", "app"]).id;
    let dockerfile = env.ctx.join("Dockerfile");
    let rootfs = env.dir.mkdir("rootfs2");
    crate::support::busybox_rootfs(&rootfs);
    let commands: Vec<Vec<String>> = vec![
        vec!["images".into()],
        vec!["images".into(), "--format".into(), "json".into()],
        vec!["inspect".into(), "app".into()],
        vec!["inspect".into(), id.clone()],
        vec!["plan".into(), "-f".into(), dockerfile.display().to_string()],
        vec![
            "plan".into(),
            "--format".into(),
            "json".into(),
            env.ctx.display().to_string(),
        ],
        vec!["system".into(), "df".into(), "--verbose".into()],
        vec!["system".into(), "config".into()],
        vec!["prune".into(), "--dry-run".into()],
        vec!["ps".into(), "-a".into()],
        vec!["save".into(), "app".into()],
        vec!["tag".into(), "app".into(), "app:2".into()],
        vec![
            "import".into(),
            rootfs.display().to_string(),
            "imported".into(),
        ],
        vec![
            "build".into(),
            "--progress".into(),
            "quiet".into(),
            env.ctx.display().to_string(),
        ],
    ];
    for args in commands {
        let (code, stderr) = with_closed_stdout(env.rbuild().args(&args));
        assert!(
            code == 141 || code == 0,
            "rbuild {args:?} with a closed stdout: exit {code}\n{stderr}"
        );
        assert_eq!(stderr, "", "rbuild {args:?} with a closed stdout");
    }
}

/// `rbuild SUBCOMMAND --help`, its whitespace (line wrapping) collapsed to single spaces.
fn help(args: &[&str]) -> String {
    let dir = Dir::new();
    let text = ok(rbuild(&dir.join("store")).args(args).arg("--help")).stdout;
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn help_says_what_each_command_accepts() {
    let report = help(&["report"]);
    for form in [
        "docker-archive:FILE",
        "oci-archive:FILE",
        "docker://REF",
        "--diff",
    ] {
        assert!(
            report.contains(form),
            "report --help lacks {form}:\n{report}"
        );
    }
    let prune = help(&["prune"]);
    assert!(
        prune.contains("A running rbuild process keeps what it uses"),
        "{prune}"
    );
    let import = help(&["import"]);
    assert!(import.contains("SOURCE_DATE_EPOCH"), "{import}");
    let build = help(&["build"]);
    assert!(build.contains("-o DIR"), "{build}");
    assert!(
        build.contains("not written when only `type=local` or `type=tar` outputs are asked for"),
        "{build}"
    );
    let run = help(&["run"]);
    assert!(run.contains("name or id"), "{run}");
    let plan = help(&["plan"]);
    assert!(plan.contains("Nothing is pulled"), "{plan}");
    let top = help(&[]);
    assert!(
        top.contains("system The store: `system df` (disk usage by kind), `system config`"),
        "{top}"
    );
    // -v belongs before the subcommand; after it, rbuild says so.
    let dir = Dir::new();
    let run = usage_error(rbuild(&dir.join("store")).args(["build", "-v", "."]));
    assert_eq!(
        first_line(&run),
        "error: unknown flag -v for rbuild build: -v goes before the subcommand (rbuild -v build ...)"
    );
}

#[test]
fn report_of_an_archive_file_suggests_its_prefix() {
    let env = BuildEnv::new();
    let archive = env.dir.join("busybox.tar");
    ok(env.rbuild().args(["save", BASE, "-o"]).arg(&archive));
    let run = usage_error(
        env.rbuild()
            .args(["report"])
            .arg(&archive)
            .env("HTTPS_PROXY", "http://127.0.0.1:9"),
    );
    let shown = archive.display().to_string();
    assert_eq!(
        first_line(&run),
        format!(
            "error: {shown} is a file, not an image of the store: name it docker-archive:{shown} (this one is a docker archive)"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("either"), "{}", run.stderr);
    // With the prefix it works.
    let ok_run = ok(env
        .rbuild()
        .arg("report")
        .arg(format!("docker-archive:{shown}")));
    assert!(!ok_run.stdout.is_empty());
}
