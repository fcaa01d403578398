//! `build --on-error=shell[:CMD]` and `build --invoke[=CMD]`: a shell in the file system of a
//! failed RUN step as the command left it (its files, environment, working directory, user and
//! mounts), and in a built stage. The interactive shell is driven through tmux, as a user at a
//! terminal would; `shell:CMD` runs without one. Root and rootless, busybox and Debian.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_test_support::DebianBase;

use crate::support::{BASE, BuildEnv, Run, fails, tool};

/// A stage whose last RUN, as uid 1000, writes a file, then fails with exit code 7; its
/// environment has an ENV, a build arg, a cache mount filled by the RUN before, and a secret.
fn failing_dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\n\
         ARG GREETING=hello\n\
         ENV STAGE_VAR=from-env\n\
         RUN --mount=type=cache,target=/cache echo cached-content > /cache/f\n\
         WORKDIR /work\n\
         RUN chown 1000 /work\n\
         USER 1000\n\
         RUN --mount=type=cache,target=/cache \
             --mount=type=secret,id=tok,target=/run/secrets/tok,uid=1000 \
             echo partial > /work/out.txt && exit 7\n"
    )
}

/// What the failed step's command is looked at with.
const LOOK: &str = "sh -c 'echo \"files: $(ls /work)\"; echo \"var=$STAGE_VAR arg=$GREETING\"; \
                    echo \"cache: $(cat /cache/f)\"; echo \"pwd: $(pwd) uid: $(id -u)\"; \
                    echo \"secret: $(cat /run/secrets/tok)\"; \
                    cp /run/secrets/tok /work/copied-secret && ls /work/copied-secret'";

/// The failed step's error as every failing build here ends with it.
fn assert_original_error(run: &Run) {
    assert!(
        run.stderr
            .contains("did not complete successfully: exit code 7"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Dockerfile:8"), "{}", run.stderr);
}

fn on_error_shell_command_sees_the_failed_step(rootless: bool) {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    env.dockerfile(&failing_dockerfile(BASE));
    let secret = env.dir.write("tok", "s3cret-value");
    if rootless {
        crate::support::ok(Command::new("chown").arg(env.user.unwrap()).arg(&secret));
    }
    let secret_arg = format!("id=tok,src={}", secret.display());
    let on_error = format!("--on-error=shell:{LOOK}");
    let args = [
        "--build-arg",
        "GREETING=hi",
        "--secret",
        &secret_arg,
        on_error.as_str(),
    ];
    let run = fails(&mut env.build_cmd(&args));
    assert_original_error(&run);
    assert!(
        run.stdout.contains("files: out.txt"),
        "the file the command wrote: {}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("var=from-env arg=hi"), "{}", run.stdout);
    assert!(
        run.stdout.contains("cache: cached-content"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("pwd: /work uid: 1000"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("secret: s3cret-value"),
        "{}",
        run.stdout
    );
    // Only the command printed the secret; the build's own output never does, and what the
    // command wrote (a copy of the secret) is nowhere in the store: no layer, no cache record,
    // the step dir removed.
    assert!(!run.stderr.contains("s3cret-value"), "{}", run.stderr);
    assert!(run.stdout.contains("/work/copied-secret"), "{}", run.stdout);
    assert!(crate::build_secrets::scan_for(&env.root, b"s3cret-value") > 0);
    assert!(
        !run.stderr.contains("hint: rerun with --on-error=shell"),
        "{}",
        run.stderr
    );
    // Without the flag the failure says how to get the shell; nothing of the session was
    // kept (the step runs again and fails the same way).
    let plain = fails(&mut env.build_cmd(&["--secret", &secret_arg]));
    assert_original_error(&plain);
    assert!(
        plain.stderr.contains(
            "hint: rerun with --on-error=shell to open a shell in the step's file system"
        ),
        "{}",
        plain.stderr
    );
    assert_eq!(plain.stdout, "");
}

mod on_error_shell_command_sees_the_failed_step {
    #[test]
    fn root() {
        super::on_error_shell_command_sees_the_failed_step(false);
    }
    #[test]
    fn rootless() {
        super::on_error_shell_command_sees_the_failed_step(true);
    }
}

/// A shell-quoted word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A tmux server of the test's own (its socket in the test's directory), killed when dropped.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a detached 200x50 session; when it ends the
    /// pane says `EXIT=CODE` and stays.
    fn start(dir: &Path, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let line = format!("{command}; echo EXIT=$?; sleep 600");
        let status = tmux
            .cmd()
            .args([
                "new-session",
                "-d",
                "-x",
                "200",
                "-y",
                "50",
                "sh",
                "-c",
                &line,
            ])
            .status()
            .expect("tmux");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = tool("tmux", "tmux");
        cmd.arg("-S").arg(&self.socket).stdin(Stdio::null());
        cmd
    }

    /// The pane's text, with its history.
    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-500"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (at most 120 s) for the pane to show `text`; returns the screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Types `keys` and Enter.
    fn type_line(&self, keys: &str) {
        let status = self
            .cmd()
            .args(["send-keys", "-l", keys])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
        let status = self
            .cmd()
            .args(["send-keys", "Enter"])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The command line of `cmd` (an `rbuild` command) for a shell, with its environment.
fn command_line(cmd: &Command) -> String {
    let mut words = vec!["env".to_string()];
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => words.push(quote(&format!(
                "{}={}",
                k.to_string_lossy(),
                v.to_string_lossy()
            ))),
            None => {
                words.push("-u".into());
                words.push(quote(&k.to_string_lossy()));
            }
        }
    }
    words.push(quote(&cmd.get_program().to_string_lossy()));
    words.extend(cmd.get_args().map(|a| quote(&a.to_string_lossy())));
    words.join(" ")
}

fn interactive_shell_in_the_failed_step(env: &BuildEnv) {
    let secret = env.dir.write("tok", "s3cret-value");
    if let Some(user) = env.user {
        crate::support::ok(Command::new("chown").arg(user).arg(&secret));
    }
    let secret_arg = format!("id=tok,src={}", secret.display());
    // The tty progress view (stderr is tmux's terminal), which must stop drawing.
    let mut cmd = env.rbuild();
    cmd.args(["build", "--on-error=shell", "--secret", &secret_arg])
        .args(["--build-arg", "GREETING=hi"])
        .arg(&env.ctx);
    let tmux = Tmux::start(env.dir.path(), &command_line(&cmd));
    tmux.wait_for("exit the shell to end the build");
    tmux.type_line(
        "echo \"seen:$(cat /work/out.txt):$STAGE_VAR:$GREETING:$(pwd):$(cat /cache/f):$(id -u)\"",
    );
    tmux.wait_for("seen:partial:from-env:hi:/work:cached-content:1000");
    tmux.type_line("exit 3");
    let screen = tmux.wait_for("EXIT=");
    assert!(screen.contains("EXIT=1"), "{screen}");
    assert!(
        screen.contains("did not complete successfully: exit code 7"),
        "{screen}"
    );
    // The session's last line stays: no redraw of the progress view wrote over it.
    assert!(
        screen.contains("seen:partial:from-env:hi:/work:cached-content:1000"),
        "{screen}"
    );
}

mod interactive_shell_in_the_failed_step {
    use crate::support::{BASE, BuildEnv};

    #[test]
    fn root() {
        let env = BuildEnv::new();
        env.dockerfile(&super::failing_dockerfile(BASE));
        super::interactive_shell_in_the_failed_step(&env);
    }

    #[test]
    fn rootless() {
        let env = BuildEnv::rootless();
        env.dockerfile(&super::failing_dockerfile(BASE));
        super::interactive_shell_in_the_failed_step(&env);
    }
}

/// On the Debian base (bash, dpkg): the shell sees what a failed apt-like step left.
#[test]
fn interactive_shell_in_a_failed_debian_step() {
    let env = BuildEnv::new();
    let tar = std::fs::File::open(DebianBase::bookworm().rootfs_tar()).expect("the base tarball");
    crate::support::ok(
        env.rbuild()
            .args(["import", "-", "localhost/debian:imported"])
            .stdin(tar),
    );
    env.dockerfile(&failing_dockerfile("localhost/debian:imported"));
    interactive_shell_in_the_failed_step(&env);
}

#[test]
fn without_a_terminal_the_shell_is_refused_at_once() {
    let env = BuildEnv::new();
    env.dockerfile(&failing_dockerfile(BASE));
    let started = Instant::now();
    // stdin is /dev/null.
    let run = fails(&mut env.build_cmd(&["--on-error=shell"]));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_original_error(&run);
    assert_eq!(
        run.stderr.matches("stdin is not a terminal").count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn with_parallel_failures_only_the_first_gets_the_shell() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE} AS fast\n\
         RUN echo fast > /f && exit 3\n\
         FROM {BASE} AS slow\n\
         RUN sleep 3 && exit 4\n\
         FROM {BASE}\n\
         COPY --from=fast /f /f\n\
         COPY --from=slow /etc/passwd /p\n"
    ));
    let run = fails(&mut env.build_cmd(&[
        "--jobs",
        "2",
        "--on-error=shell:sh -c 'echo in-shell:$(cat /f 2>/dev/null); sleep 5'",
    ]));
    assert_eq!(
        run.stdout.matches("in-shell:").count(),
        1,
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(run.stdout.contains("in-shell:fast"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("did not complete successfully: exit code 3"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("exit code 4"), "{}", run.stderr);
}

#[test]
fn invoke_runs_in_the_built_target() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE} AS build\n\
         ENV STAGE_VAR=in-build\n\
         WORKDIR /w\n\
         RUN echo made > /w/made\n\
         USER app\n\
         FROM {BASE}\n\
         ENV STAGE_VAR=in-final\n"
    ));
    let mut cmd = env.build_cmd(&[
        "--target",
        "build",
        "--invoke=sh -c 'echo \"$STAGE_VAR $(pwd) $(id -u) $(cat made)\"; exit 5'",
    ]);
    let run = crate::support::finish_cmd(&mut cmd);
    assert_eq!(run.code, 5, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("in-build /w 1000 made"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    // Without --target: the last stage, and /bin/sh reading its stdin.
    let mut cmd = env.build_cmd(&["--invoke"]);
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rbuild");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"echo \"final:$STAGE_VAR\"; exit 0\n")
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("rbuild");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("final:in-final"), "{stdout}");
}

#[test]
fn a_commands_output_goes_to_stdout_and_json_progress_stays_valid() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo partial > /out.txt && exit 7\n"
    ));
    let run = fails(
        env.rbuild()
            .args(["build", "--progress", "json"])
            .arg("--on-error=shell:sh -c 'echo \"out:$(cat /out.txt)\"; echo err-line >&2'")
            .arg(&env.ctx),
    );
    assert_eq!(run.stdout, "out:partial\nerr-line\n", "{}", run.stderr);
    // The events, then (as after any failed build) the error in text.
    for line in run.stderr.lines().take_while(|l| !l.starts_with("error: ")) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", run.stderr));
    }
    assert!(
        run.stderr
            .contains("did not complete successfully: exit code 7"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_file_system_without_a_shell_is_named() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM scratch\n\
         COPY --from={BASE} /bin/busybox /busybox\n\
         RUN [\"/busybox\", \"false\"]\n"
    ));
    let mut cmd = env.rbuild();
    cmd.args(["build", "--progress", "plain", "--on-error=shell"])
        .arg(&env.ctx);
    let tmux = Tmux::start(env.dir.path(), &command_line(&cmd));
    let screen = tmux.wait_for("EXIT=");
    assert!(screen.contains("EXIT=1"), "{screen}");
    assert!(
        screen.contains("its file system has no /bin/sh"),
        "{screen}"
    );
    assert!(
        screen.contains("did not complete successfully: exit code 1"),
        "{screen}"
    );
}
