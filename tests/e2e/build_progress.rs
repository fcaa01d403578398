//! What `rbuild build` shows on stderr: the plain and json progress (insta snapshots, with
//! times, digests and temp paths filtered), the end-of-build summary, the error output of a
//! failing RUN, pulls shown as steps, and the tty view on a real pseudo-terminal (narrow,
//! resized mid-build, failing, with and without colour).

use std::os::fd::OwnedFd;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rbuild_test_support::{BusyboxLayout, Format, Registry};
use serde_json::Value;

use crate::support::{BASE, BuildEnv, fails, ok, rbuild, steps};

/// Filters that make progress output stable: durations, step-relative times, digests and
/// the test's temp paths.
fn filters(env: &BuildEnv) -> Vec<(String, &'static str)> {
    vec![
        (regex_escape(&env.dir.path().display().to_string()), "[TMP]"),
        (r"sha256:[0-9a-f]{64}".into(), "sha256:[DIGEST]"),
        (r"sha256:[0-9a-f]{12}".into(), "sha256:[SHORT]"),
        (r"DONE \d+\.\ds".into(), "DONE [T]"),
        (r"(?m)^(#\d+) \d+\.\d{3} ".into(), "$1 [T] "),
        (r"(?m)^\d+\.\d{3} ".into(), "[T] "),
        (r"in \d+\.\ds".into(), "in [T]"),
        (r"after \d+\.\ds".into(), "after [T]"),
        (r"\d+(\.\d+)? (B|KiB|MiB)".into(), "[SIZE]"),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

macro_rules! snapshot {
    ($env:expr, $name:expr, $value:expr) => {{
        let filters = filters($env);
        let refs: Vec<(&str, &str)> = filters.iter().map(|(a, b)| (a.as_str(), *b)).collect();
        insta::with_settings!({filters => refs, prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        });
    }};
}

const DOCKERFILE: &str = "FROM localhost/busybox:latest AS build
COPY greeting.txt /greeting.txt
RUN cat /greeting.txt; echo second line
WORKDIR /app
";

#[test]
fn plain_progress_first_build_and_rebuild() {
    let env = BuildEnv::new();
    env.write("greeting.txt", "hello from the context\n");
    env.dockerfile(DOCKERFILE);
    let first = env.build(&["-t", "progress:v1"]);
    snapshot!(&env, "plain_first_build", first.stderr);
    let second = env.build(&["-t", "progress:v1", "-t", "progress:v2"]);
    snapshot!(&env, "plain_rebuild_all_cached", second.stderr);
    // A changed file: the miss is explained, the steps after it run again.
    env.write("greeting.txt", "changed\n");
    let third = env.build(&[]);
    snapshot!(&env, "plain_changed_file", third.stderr);
    assert_eq!(
        third
            .step("COPY greeting.txt /greeting.txt")
            .miss
            .as_deref(),
        Some("file greeting.txt changed"),
        "{}",
        third.stderr
    );
}

#[test]
fn plain_output_lines_carry_the_seconds_since_their_step_started() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN sleep 3\nRUN echo early; sleep 1.2; echo late\n"
    ));
    let built = env.build(&[]);
    let time_of = |suffix: &str| -> f64 {
        let line = built
            .stderr
            .lines()
            .find(|l| l.starts_with("#3 ") && !l.contains('[') && l.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix:?} line: {}", built.stderr));
        line.split(' ').nth(1).unwrap().parse().unwrap()
    };
    let (early, late) = (time_of(" early"), time_of(" late"));
    // Counted from the step's start, not the build's: the step before took over 3 s, and
    // counted from the build's start the first line would come after all of it (a bound
    // that holds however slow a loaded machine starts the step's sandbox).
    let before: f64 = built
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("#2 DONE "))
        .and_then(|t| t.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("no \"#2 DONE\" line: {}", built.stderr));
    assert!(before >= 3.0, "{}", built.stderr);
    assert!(early < before, "{}", built.stderr);
    // Each line's time is when rbuild read it: a loaded machine may read "early" a little
    // late, never "late" early; 1.2 s apart when written, so at least 1 s apart when read.
    assert!(late - early >= 1.0 && late < 60.0, "{}", built.stderr);
    assert_eq!(
        built
            .step("RUN /bin/sh -c echo early; sleep 1.2; echo late")
            .output,
        ["early", "late"]
    );
}

#[test]
fn failing_run_error_output() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo prepared\nRUN echo out-line-1; \\\n    echo out-line-2; exit 3\n"
    ));
    let out = env.build_fails(&[]);
    snapshot!(&env, "plain_failing_run", out.stderr);
    let parsed = steps(&out.stderr);
    assert_eq!(
        parsed[2].error.as_deref(),
        Some(
            "process [\"/bin/sh\", \"-c\", \"echo out-line-1;     echo out-line-2; exit 3\"] did not complete successfully: exit code 3"
        ),
        "{}",
        out.stderr
    );
    // json: an error event with the message and the last lines, and a failed summary.
    let out = fails(
        rbuild(&env.root)
            .args(["build", "--progress", "json"])
            .arg(&env.ctx),
    );
    // The events, then the error message as in every mode.
    let (events, message) = out
        .stderr
        .split_at(out.stderr.find("error: ").expect("an error"));
    assert!(message.contains("exit code 3"), "{message}");
    let events = json_events(events);
    let error = events
        .iter()
        .find(|e| e["event"] == "error")
        .unwrap_or_else(|| panic!("no error event: {}", out.stderr));
    assert_eq!(error["step"], 3);
    assert_eq!(
        error["output"],
        serde_json::json!(["out-line-1", "out-line-2"])
    );
    assert!(
        error["message"].as_str().unwrap().contains("exit code 3"),
        "{error}"
    );
    let summary = events.last().unwrap();
    assert_eq!(
        (&summary["event"], &summary["ok"], &summary["digest"]),
        (&"summary".into(), &false.into(), &Value::Null),
        "{}",
        out.stderr
    );
}

fn json_events(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not json: {l:?}: {e}")))
        .collect()
}

/// json events with the times zeroed, one per line.
fn normalized_json(stderr: &str) -> String {
    let mut out = String::new();
    for mut e in json_events(stderr) {
        assert_eq!(e["v"], 1, "every event has the schema version: {e}");
        assert!(e["time"].as_f64().is_some(), "every event has a time: {e}");
        let o = e.as_object_mut().unwrap();
        o.insert("time".into(), 0.into());
        if o.contains_key("seconds") {
            o.insert("seconds".into(), 0.into());
        }
        out.push_str(&e.to_string());
        out.push('\n');
    }
    out
}

#[test]
fn json_progress_events_and_summary() {
    let env = BuildEnv::new();
    env.write("greeting.txt", "hello from the context\n");
    env.dockerfile(DOCKERFILE);
    let run = |args: &[&str]| {
        ok(rbuild(&env.root)
            .args(["build", "--progress", "json"])
            .args(args)
            .arg(&env.ctx))
    };
    let first = run(&["-t", "progress:json", "--build-arg", "UNUSED=1"]);
    snapshot!(&env, "json_first_build", normalized_json(&first.stderr));
    let second = run(&["-t", "progress:json"]);
    snapshot!(&env, "json_rebuild", normalized_json(&second.stderr));
    // The summary's digest is the image id on stdout.
    let events = json_events(&second.stderr);
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["digest"], second.stdout.trim_end());
    assert_eq!(
        summary["steps"],
        serde_json::json!({"total": 3, "run": 0, "cached": 3})
    );
}

#[test]
fn summary_lists_new_layer_bytes_and_warnings() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "ARG UNUSED_GLOBAL=1\nFROM {BASE} AS dead\nRUN echo never\nFROM {BASE}\nARG USED\nRUN head -c 100000 /dev/zero > /zeros && echo $USED\n"
    ));
    let built = env.build(&[
        "-t",
        "warned",
        "--build-arg",
        "USED=x",
        "--build-arg",
        "NOT_DECLARED=1",
        "--build-arg",
        "DB_PASSWORD=hunter2",
    ]);
    let summary = &built.stderr[built.stderr.find("built warned:latest").expect("a summary")..];
    snapshot!(&env, "summary_with_warnings", summary);
    assert!(!built.stderr.contains("hunter2"), "{}", built.stderr);
    // The layer written is about 100 kB: the summary says how much.
    let json = ok(rbuild(&env.root)
        .args([
            "build",
            "--progress",
            "json",
            "--no-cache",
            "--build-arg",
            "USED=x",
        ])
        .arg(&env.ctx));
    let events = json_events(&json.stderr);
    let summary = events.last().unwrap();
    let bytes = summary["written"]["bytes"].as_u64().unwrap();
    assert!((100_000..120_000).contains(&bytes), "{summary}");
    assert_eq!(summary["written"]["layers"], 1, "{summary}");
    let layer: u64 = events
        .iter()
        .filter(|e| e["event"] == "layer")
        .map(|e| e["size"].as_u64().unwrap())
        .sum();
    assert_eq!(layer, bytes);
    // With --target, the stages the target does not need are no warning.
    let targeted = env.build(&["--target", "dead"]);
    assert!(
        !targeted.stderr.contains("stage-not-built"),
        "{}",
        targeted.stderr
    );
    // quiet: no summary, nothing at all.
    let quiet = ok(rbuild(&env.root)
        .args(["build", "--progress", "quiet"])
        .arg(&env.ctx));
    assert_eq!(quiet.stderr, "");
}

#[test]
fn pulling_a_base_is_a_step_with_byte_progress() {
    let registry = Registry::start();
    BusyboxLayout::build().push_with_skopeo(&registry, "pulled/busybox:1", Format::Oci);
    let env = BuildEnv::new();
    let host = registry.host();
    env.dockerfile(&format!(
        "FROM {host}/pulled/busybox:1\nRUN echo on-pulled\n"
    ));
    let built = env.build(&[]);
    let parsed = &built.steps;
    assert_eq!(parsed[0].label, "internal", "{}", built.stderr);
    assert_eq!(
        parsed[0].instruction,
        format!("pull {host}/pulled/busybox:1"),
        "{}",
        built.stderr
    );
    assert!(parsed[0].done, "{}", built.stderr);
    assert!(
        built
            .stderr
            .lines()
            .any(|l| l.starts_with("#1 sha256:") && l.ends_with(" done")),
        "{}",
        built.stderr
    );
    assert_eq!(
        parsed[1].instruction,
        format!("FROM {host}/pulled/busybox:1")
    );
    assert_eq!(built.ran(), ["RUN /bin/sh -c echo on-pulled"]);
    // json: transfer events with bytes for the pulled blobs.
    let out = ok(rbuild(&env.root)
        .args(["build", "--progress", "json", "--pull"])
        .arg(&env.ctx));
    let events = json_events(&out.stderr);
    let starts: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "transfer" && e["action"] == "start")
        .collect();
    let dones = events
        .iter()
        .filter(|e| e["event"] == "transfer" && e["action"] == "done")
        .count();
    // With --pull the manifest is fetched again; blobs the store has may be skipped, but
    // every blob that starts finishes.
    assert_eq!(starts.len(), dones, "{}", out.stderr);
    assert!(
        events.iter().any(|e| e["event"] == "start"
            && e["description"] == format!("pull {host}/pulled/busybox:1")),
        "{}",
        out.stderr
    );
}

#[test]
fn tty_on_something_that_is_not_a_terminal_is_refused() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN true\n"));
    let out = fails(
        rbuild(&env.root)
            .args(["build", "--progress", "tty"])
            .arg(&env.ctx),
    );
    assert!(
        out.stderr.contains("--progress tty needs a terminal"),
        "{}",
        out.stderr
    );
    // auto on a pipe is plain.
    let out = ok(rbuild(&env.root).arg("build").arg(&env.ctx));
    assert!(out.stderr.contains("#2 [stage-0 2/2] RUN /bin/sh -c true"));
}

// ---------------------------------------------------------------------------------------
// The tty view on a pseudo-terminal.

/// A pseudo-terminal whose slave is the stderr of an `rbuild` process; everything written to
/// it is collected from the master.
struct Pty {
    master: Arc<OwnedFd>,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    child: Child,
}

fn winsize(cols: u16, rows: u16) -> rustix::termios::Winsize {
    rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Runs `rbuild build --progress auto` with stderr on a new pty of `cols` x `rows`.
    fn build(env: &BuildEnv, cols: u16, rows: u16, args: &[&str], vars: &[(&str, &str)]) -> Pty {
        use rustix::pty::OpenptFlags;
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .expect("openpt");
        rustix::pty::grantpt(&master).expect("grantpt");
        rustix::pty::unlockpt(&master).expect("unlockpt");
        let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
        rustix::termios::tcsetwinsize(&master, winsize(cols, rows)).expect("set the pty size");
        let slave = rustix::fs::open(
            name.as_c_str(),
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .expect("open the pty slave");
        let mut cmd = rbuild(&env.root);
        cmd.arg("build").args(args).arg(&env.ctx);
        cmd.env_remove("NO_COLOR");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::from(slave));
        let child = cmd.spawn().expect("spawn rbuild");
        drop(cmd);
        let master = Arc::new(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let master = master.clone();
            let output = output.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // Ends with EIO once the last slave descriptor is closed.
                while let Ok(n) = rustix::io::read(&*master, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    output.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Pty {
            master,
            output,
            reader: Some(reader),
            child,
        }
    }

    fn len(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until the output contains `what` (panics after 60 s).
    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "{what:?} never showed:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resizes the terminal and signals the process, as the kernel does for the foreground
    /// process group of a controlling terminal.
    fn resize(&self, cols: u16, rows: u16) {
        rustix::termios::tcsetwinsize(&*self.master, winsize(cols, rows)).expect("resize");
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::WINCH).expect("SIGWINCH");
    }

    /// Waits for the process; returns its exit code, stdout and everything written on the
    /// terminal.
    fn finish(self) -> (i32, String, Vec<u8>) {
        let Pty {
            child,
            reader,
            output,
            ..
        } = self;
        let out = child.wait_with_output().expect("wait for rbuild");
        if let Some(r) = reader {
            r.join().expect("pty reader");
        }
        let bytes = output.lock().unwrap().clone();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            bytes,
        )
    }
}

/// The text of terminal output with escape sequences removed, split where the cursor goes
/// back to the first column (`\r`, `\n`): each piece is what was printed on one screen row.
fn rows_written(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    for c in chars.by_ref() {
                        if c == '\x07' {
                            break;
                        }
                    }
                }
                _ => {}
            }
        } else {
            plain.push(c);
        }
    }
    plain.split(['\r', '\n']).map(str::to_string).collect()
}

fn width(s: &str) -> usize {
    // The test output is ASCII but for the step output below, which is cut on characters.
    s.chars().count()
}

/// The part of the terminal output before the summary (the live view and the final list).
fn before_summary(bytes: &[u8], summary_start: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let end = text
        .find(summary_start)
        .unwrap_or_else(|| panic!("no {summary_start:?} in:\n{text}"));
    text[..end].as_bytes().to_vec()
}

fn assert_fits(bytes: &[u8], cols: usize, all: &str) {
    for row in rows_written(bytes) {
        assert!(
            width(&row) <= cols,
            "a row of {} columns on a {cols}-column terminal: {row:?}\nall output:\n{all}",
            width(&row)
        );
    }
}

/// The final screen of a terminal of `cols` x `rows` after `bytes`.
fn screen(bytes: &[u8], cols: u16, rows: u16) -> Vec<String> {
    let mut parser = vt100::Parser::new(rows, cols, 0);
    parser.process(bytes);
    parser.screen().rows(0, cols).collect()
}

const LONG_RUN: &str = "RUN for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo \"output line $i: a long line that is much wider than the terminal\"; sleep 0.1; done";

#[test]
fn tty_view_on_a_narrow_terminal() {
    let env = BuildEnv::new();
    env.write("a.txt", "a\n");
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY a.txt /a.txt\n{LONG_RUN}\nRUN printf 'tab\\tthen\\033[2J\\033[Hclear\\033]0;title\\007\\r\\n'\n"
    ));
    let pty = Pty::build(&env, 40, 60, &["-t", "narrow"], &[]);
    let (code, stdout, bytes) = pty.finish();
    let all = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(code, 0, "{all}");
    assert!(stdout.starts_with("sha256:"), "{stdout}");
    // The running step's output was shown, cut to the width.
    assert!(
        all.contains("=> => # output line 3: a long line tha"),
        "{all}"
    );
    // The step's own escape sequences never reach the terminal.
    assert!(
        !all.contains("\x1b[2J") && !all.contains("\x1b]0;"),
        "{all:?}"
    );
    let view = before_summary(&bytes, "built narrow:latest");
    assert_fits(&view, 40, &all);
    // The view collapsed into the final list; the summary follows.
    let rows = screen(&bytes, 40, 60);
    let text = rows.join("\n");
    let lines: Vec<&str> = rows
        .iter()
        .map(|r| r.trim_end())
        .filter(|r| !r.is_empty())
        .collect();
    assert!(
        lines[0].starts_with("[+] Building ") && lines[0].ends_with("(5/5) FINISHED"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("=> [stage-0 1/4] FROM localhost/bus "),
        "{text}"
    );
    assert!(
        lines[2].starts_with("=> [internal] load build context: a"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("=> [stage-0 2/4] COPY a.txt /a.txt"),
        "{text}"
    );
    assert!(
        lines[4].starts_with("=> [stage-0 3/4] RUN /bin/sh -c for "),
        "{text}"
    );
    assert!(
        lines[5].starts_with("=> [stage-0 4/4] RUN /bin/sh -c pri"),
        "{text}"
    );
    assert!(lines[6].starts_with("built narrow:latest in "), "{text}");
    assert!(
        !text.contains("=> => #"),
        "the output lines are gone: {text}"
    );
    for l in &lines[1..6] {
        assert!(
            l.ends_with('s') && l.len() == 40,
            "time at the right edge: {l:?}"
        );
    }
    // Colour: the running step is drawn in blue unless NO_COLOR is set.
    assert!(all.contains("\x1b[34m"), "{all:?}");
    // The rebuild shows every step CACHED.
    let pty = Pty::build(&env, 40, 60, &[], &[("NO_COLOR", "1")]);
    let (code, _, bytes) = pty.finish();
    let all = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(code, 0, "{all}");
    let text = screen(&bytes, 40, 60).join("\n");
    assert!(
        text.contains("=> CACHED [stage-0 2/4] COPY a.txt "),
        "{text}"
    );
    assert!(
        text.contains("=> CACHED [stage-0 3/4] RUN /bin/sh"),
        "{text}"
    );
    assert!(
        text.contains("steps     0 run, 3 cached, 3 in all"),
        "{text}"
    );
    assert!(
        !all.contains("\x1b[34m") && !all.contains("\x1b[2m"),
        "NO_COLOR: {all:?}"
    );
    assert_fits(&before_summary(&bytes, "built an untagged"), 40, &all);
}

#[test]
fn tty_view_follows_a_resize() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\n{LONG_RUN}\n"));
    let pty = Pty::build(&env, 40, 30, &[], &[]);
    pty.wait_for("=> => # output line 3:");
    pty.resize(28, 30);
    // Frames drawn before the resize may still be on their way; a few redraws later every
    // row fits the new width.
    std::thread::sleep(Duration::from_millis(400));
    let mark = pty.len();
    let (code, _, bytes) = pty.finish();
    let all = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(code, 0, "{all}");
    let view = before_summary(&bytes, "built an untagged");
    assert!(
        mark < view.len(),
        "the build ended before the resize: {all}"
    );
    assert_fits(&view, 40, &all);
    assert_fits(&view[mark..], 28, &all);
    assert!(
        String::from_utf8_lossy(&view[mark..]).contains("=> => # output line"),
        "still running after the resize: {all}"
    );
}

#[test]
fn tty_view_of_a_failing_step_keeps_the_error_readable() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN w=last; echo \"the $w line of output before the failure, longer than the terminal\"; exit 4\n"
    ));
    let pty = Pty::build(&env, 40, 40, &[], &[]);
    let (code, stdout, bytes) = pty.finish();
    let all = String::from_utf8_lossy(&bytes).into_owned();
    assert_eq!(code, 1, "{all}");
    assert_eq!(stdout, "");
    assert_fits(&before_summary(&bytes, "build failed"), 40, &all);
    // The error after the view is not cut: it wraps like any text. The view shows the step
    // as failed; its last output lines are in the error at the end, once.
    let joined: String = screen(&bytes, 40, 40)
        .iter()
        .map(|r| format!("{r:<40}"))
        .collect();
    assert!(
        joined.contains("=> ERROR [stage-0 2/2] RUN /bin/sh "),
        "{all}"
    );
    assert_eq!(
        joined
            .matches("the last line of output before the failure, longer than the terminal")
            .count(),
        1,
        "{joined}"
    );
    assert!(!joined.contains("------"), "{joined}");
    assert!(joined.contains("exit code 4"), "{joined}");
    assert!(joined.contains("build failed after "), "{joined}");
}

#[test]
fn tty_view_explains_misses_when_asked() {
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {BASE}\nRUN echo explained\n"));
    let pty = Pty::build(&env, 100, 40, &["--explain-cache", "--no-cache"], &[]);
    let (code, _, bytes) = pty.finish();
    let text = screen(&bytes, 100, 40).join("\n");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("=> => cache miss: caching disabled for this step (--no-cache)"),
        "{text}"
    );
    let pty = Pty::build(&env, 100, 40, &["--no-cache"], &[]);
    let (_, _, bytes) = pty.finish();
    let text = screen(&bytes, 100, 40).join("\n");
    assert!(!text.contains("cache miss"), "{text}");
}

#[test]
fn tty_view_shows_a_pull_as_a_step() {
    let registry = Registry::start();
    BusyboxLayout::build().push_with_skopeo(&registry, "ttypull/busybox:1", Format::Oci);
    let env = BuildEnv::new();
    let host = registry.host();
    env.dockerfile(&format!("FROM {host}/ttypull/busybox:1\nRUN true\n"));
    let pty = Pty::build(&env, 120, 40, &[], &[]);
    let (code, _, bytes) = pty.finish();
    let text = screen(&bytes, 120, 40).join("\n");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("=> [internal] pull {host}/ttypull/busybox:1")),
        "{text}"
    );
    assert!(text.contains("(3/3) FINISHED"), "{text}");
}
