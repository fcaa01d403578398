//! Hostile Dockerfiles against variable expansion and planning: values that double on every
//! line, `${...}` and ONBUILD nested thousands deep, stage chains, hundreds of thousands of
//! ENV lines, and steps that multiply the environment. `rbuild plan` and `rbuild build` run
//! with a bounded address space and a deadline; each either plans or fails with exit code 1
//! and a diagnostic at the line that crosses a limit, within seconds.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, Dir, Run};

/// The address space `rbuild` may use (KiB): far below the tens of gigabytes the unbounded
/// behaviour asks for, far above what planning needs.
const ADDRESS_SPACE_KIB: u64 = 1 << 20;

/// When a run is killed and the test fails: far beyond the seconds the bounded behaviour
/// takes in a debug build on a busy machine, far below the minutes the quadratic one took.
const DEADLINE: Duration = Duration::from_secs(60);

/// How long a Dockerfile that crosses a limit may take to fail (well under a second alone).
const QUICK: Duration = Duration::from_secs(15);

/// Runs `rbuild --root ROOT ARGS` (as [`support::rbuild`] sets it up) with its address space
/// limited to [`ADDRESS_SPACE_KIB`], killing it at [`DEADLINE`]; returns its output and how
/// long it took. An allocation the limit refuses aborts it (no exit code: -1).
fn bounded(root: &Path, args: &[&str]) -> (Run, Duration) {
    let mut inner = support::rbuild(root);
    inner.args(args);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {ADDRESS_SPACE_KIB} && exec \"$@\""))
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn rbuild");
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut p) = pipe {
                p.read_to_end(&mut text).expect("read rbuild output");
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for rbuild") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            child.kill().expect("kill rbuild");
            child.wait().expect("reap rbuild");
            panic!("rbuild {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    };
    (run, elapsed)
}

/// A directory with `name` holding `text`, a store root and an empty context.
fn dockerfile(name: &str, text: &str) -> Dir {
    let dir = Dir::new();
    dir.write(name, text);
    dir.mkdir("ctx");
    dir.mkdir("root");
    dir
}

/// `rbuild plan -f FILE` (or `build` with `--progress plain`) must fail quickly with exit
/// code 1, pointing at `line` of the file (any line when `None`) and showing it with a
/// caret; returns the line and stderr.
fn fails_at(command: &str, text: &str, line: Option<usize>, says: &[&str]) -> (usize, String) {
    let dir = dockerfile("Dockerfile.hostile", text);
    let file = dir.join("Dockerfile.hostile");
    let file = file.to_str().expect("utf-8 path");
    let ctx = dir.join("ctx");
    let ctx = ctx.to_str().expect("utf-8 path");
    let args: Vec<&str> = match command {
        "build" => vec!["build", "--progress", "plain", "-f", file, ctx],
        _ => vec!["plan", "-f", file, ctx],
    };
    let (run, took) = bounded(&dir.join("root"), &args);
    let shown = &run.stderr[..run.stderr.len().min(2000)];
    assert_eq!(run.code, 1, "{command} should fail with 1: {shown}");
    assert_eq!(run.stdout, "", "{command} prints nothing on stdout");
    assert!(took < QUICK, "{command} took {took:?}: {shown}");
    let at = run
        .stderr
        .split_once("Dockerfile.hostile:")
        .and_then(|(_, rest)| rest.split_once(':'))
        .and_then(|(n, _)| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no location: {shown}"));
    if let Some(line) = line {
        assert_eq!(at, line, "{shown}");
    }
    // The source line (cut to a window around the column when long) and a caret.
    assert!(
        run.stderr.contains(&format!("{at} | ")),
        "source line missing: {shown}"
    );
    assert!(
        run.stderr.contains("| ^") || run.stderr.contains(" ^"),
        "caret missing: {shown}"
    );
    for s in says {
        assert!(run.stderr.contains(s), "{s:?} missing: {shown}");
    }
    assert!(run.stderr.len() < 4096, "the diagnostic is short");
    (at, run.stderr)
}

/// `FROM scratch`, `A1` of 16 bytes, then `line(n)` for `A2`..`A39`, each doubling the one
/// before: 8 TiB at the end, 1 MiB at `A17` (line 18).
fn doubling(first: &str, line: impl Fn(usize) -> String) -> String {
    let mut text = format!("FROM scratch\n{first}\n");
    for n in 2..40 {
        text.push_str(&line(n));
        text.push('\n');
    }
    text
}

fn env_doubling() -> String {
    doubling("ENV A1=0123456789abcdef", |n| {
        format!("ENV A{n}=${{A{}}}${{A{}}}", n - 1, n - 1)
    })
}

/// The first 18 lines of [`env_doubling`]: values up to 1 MiB.
fn up_to_a17() -> String {
    env_doubling()
        .lines()
        .take(18)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn values_that_double_on_every_line_fail_at_the_line_that_crosses_the_limit() {
    let crossing = ["expanding $A17", "more than 1 MiB longer than written"];
    fails_at("plan", &env_doubling(), Some(19), &crossing);
    fails_at("build", &env_doubling(), Some(19), &crossing);
    let arg = doubling("ARG A1=0123456789abcdef", |n| {
        format!("ARG A{n}=$A{}$A{}", n - 1, n - 1)
    });
    fails_at("plan", &arg, Some(19), &crossing);
    let heredoc = format!("{}COPY <<EOF /big\n$A17$A17\nEOF\n", up_to_a17());
    fails_at("plan", &heredoc, Some(19), &crossing);
    // Values of 1 MiB each fill the stage's environment: B6 crosses 8 MiB.
    let mut many = up_to_a17();
    for n in 1..=10 {
        many.push_str(&format!("ENV B{n}=$A17\n"));
    }
    fails_at(
        "plan",
        &many,
        Some(24),
        &["setting B6 makes the stage's environment (ENV and ARG) larger than 8 MiB"],
    );
}

#[test]
fn nesting_thousands_deep_fails_without_overflowing_the_stack() {
    let nest = format!("{}x{}", "${a:-".repeat(10_000), "}".repeat(10_000));
    fails_at(
        "plan",
        &format!("FROM scratch\nENV X={nest}\n"),
        Some(2),
        &["is nested more than 128 levels deep", "(60001 bytes)"],
    );
    fails_at(
        "build",
        &format!("FROM scratch\nENV X={nest}\n"),
        Some(2),
        &["is nested more than 128 levels deep"],
    );
    // The parser scans COPY/ADD/RUN lines for heredocs with its own lexer.
    fails_at(
        "plan",
        &format!("FROM scratch\nCOPY <<EOF {nest} /d\nbody\nEOF\n"),
        Some(2),
        &["${...} is nested more than 128 levels deep"],
    );
    fails_at(
        "plan",
        &format!("FROM scratch\n{}RUN true\n", "ONBUILD ".repeat(8_000)),
        Some(2),
        &["ONBUILD is nested more than 128 levels deep"],
    );
    // A chain of 60,000 stages is walked without recursion.
    let mut chain = String::from("FROM scratch AS s0\n");
    for i in 1..60_000 {
        chain.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
    }
    let dir = dockerfile("Dockerfile", &chain);
    let (run, _) = bounded(&dir.join("root"), &["plan", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", &run.stderr[..run.stderr.len().min(2000)]);
    assert!(run.stdout.starts_with("target s59999 (stage 59999)"));
}

#[test]
fn a_hundred_thousand_env_lines_plan_in_linear_time() {
    let mut text = String::from("FROM scratch\n");
    for i in 0..100_000 {
        text.push_str(&format!("ENV K{i}=v{i}\n"));
    }
    text.push_str("RUN true\n");
    let dir = dockerfile("Dockerfile", &text);
    let (run, took) = bounded(&dir.join("root"), &["plan", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", &run.stderr[..run.stderr.len().min(2000)]);
    // One line per op: scratch, 100,000 ENV, the RUN.
    let ops: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(ops.len(), 100_002);
    assert!(
        ops[100_000].contains("config  ENV K99999=v99999"),
        "{}",
        ops[100_000]
    );
    assert!(
        ops[100_001].contains("line 100002 exec    RUN /bin/sh -c true"),
        "{}",
        ops[100_001]
    );
    eprintln!("100,000 ENV lines planned in {took:?}");
    // The same pairs in one instruction (continuation lines).
    let mut text = String::from("FROM scratch\nENV ");
    for i in 0..100_000 {
        text.push_str(&format!("K{i}=v{i} \\\n"));
    }
    text.push_str("LAST=1\n");
    let dir = dockerfile("Dockerfile", &text);
    let (run, took) = bounded(&dir.join("root"), &["plan", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", &run.stderr[..run.stderr.len().min(2000)]);
    eprintln!("one ENV of 100,000 pairs planned in {took:?}");
}

#[test]
fn steps_that_multiply_the_environment_fail_quickly() {
    // Every RUN carries the stage's environment: 20,000 ENV and RUN pairs ask for ~20 GB.
    let mut text = String::from("FROM scratch\n");
    for i in 0..20_000 {
        text.push_str(&format!("ENV K{i}={}\nRUN true\n", "v".repeat(80)));
    }
    let (line, _) = fails_at(
        "plan",
        &text,
        None,
        &["this instruction makes the build plan larger than 128 MiB"],
    );
    assert_eq!(text.lines().nth(line - 1), Some("RUN true"));
    // Port ranges are listed in full in the history.
    fails_at(
        "plan",
        &format!("FROM scratch\nEXPOSE {}\n", "1-65535 ".repeat(8_000)),
        Some(2),
        &["the expanded words of this instruction are more than 2 MiB longer than written"],
    );
    // A pattern that never matches is tried in one pass, not once per start.
    let text = format!(
        "FROM scratch\nENV A={}\nENV B=${{A//*z/}}\n",
        "a".repeat(60_000)
    );
    let dir = dockerfile("Dockerfile", &text);
    let (run, took) = bounded(&dir.join("root"), &["plan", dir.path().to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", &run.stderr[..run.stderr.len().min(2000)]);
    assert!(took < QUICK, "{took:?}");
}
