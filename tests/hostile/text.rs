//! Text from hostile places, end to end through `rbuild`. The files a build reads from its
//! context itself (the Dockerfile, `<Dockerfile>.dockerignore`, `.dockerignore`) resolve
//! inside their directory as every context path does, must be regular files and are read up
//! to a limit: a link to a host secret, `/proc/self/environ` or `/dev/zero`, a FIFO or a huge
//! file never reaches rbuild's output or memory. And every untrusted string printed for people
//! (Dockerfile text in diagnostics, file names from layers and archives, a registry's error
//! message, a step's output in plain and tty progress) shows its control characters as
//! visible escapes, never as bytes a terminal would act on.

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::registry::{Response, Server};
use crate::support::{BASE, BuildEnv, Dir, Run, fails, ok, rbuild};
use crate::{Entry, gzip, tar, write_layout};

/// Planted outside the context; it must never show in rbuild's output.
const CANARY: &str = "rbuild-canary-4e1f9a77";

/// What a terminal would act on: ESC, NUL, BEL, a carriage return inside a line, and the C1
/// control sequence introducer.
fn assert_no_raw_controls(what: &str, text: &str) {
    for (c, name) in [
        ('\x1b', "ESC"),
        ('\0', "NUL"),
        ('\x07', "BEL"),
        ('\u{9b}', "CSI"),
    ] {
        assert!(
            !text.contains(c),
            "{what} printed a raw {name}:\n{}",
            text.escape_debug()
        );
    }
}

/// Runs `cmd` under a 2 GiB address-space limit and kills it after 60 s, so that reading
/// without end or blocking on a FIFO fails the test instead of taking the machine with it.
fn bounded(cmd: &mut Command) -> Run {
    let mut limited = Command::new("prlimit");
    limited
        .arg(format!("--as={}", 2u64 << 30))
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => limited.env(k, v),
            None => limited.env_remove(k),
        };
    }
    limited.stdin(Stdio::null());
    run_for(&mut limited, Duration::from_secs(60))
}

/// Runs `cmd` (stdin as it was set), killing it after `limit`.
fn run_for(cmd: &mut Command, limit: Duration) -> Run {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still ran after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

fn relink(target: impl AsRef<Path>, link: &Path) {
    let _ = std::fs::remove_file(link);
    symlink(target, link).expect("symlink");
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
}

fn plan(env: &BuildEnv, args: &[&str]) -> Command {
    let mut cmd = rbuild(&env.root);
    cmd.arg("plan").args(args).arg(&env.ctx);
    cmd
}

#[test]
fn a_dockerfile_linked_out_of_the_context_is_never_read() {
    let env = BuildEnv::new();
    let secret = env.dir.write("outside/secret", format!("{CANARY} x\n"));
    let dockerfile = env.ctx.join("Dockerfile");
    for target in [secret.as_path(), Path::new("../outside/secret")] {
        relink(target, &dockerfile);
        for run in [env.build_fails(&[]), fails(&mut plan(&env, &[]))] {
            assert!(
                !run.stderr.to_lowercase().contains(CANARY),
                "the host file was read:\n{}",
                run.stderr
            );
            assert!(
                run.stderr.contains(&format!(
                    "cannot open {} inside {}",
                    dockerfile.display(),
                    env.ctx.display()
                )),
                "{}",
                run.stderr
            );
        }
    }
    // `-f DIR/NAME`: NAME resolves inside DIR.
    let other = env.dir.mkdir("other");
    relink(&secret, &other.join("Build.Dockerfile"));
    let file = other.join("Build.Dockerfile");
    let run = fails(&mut plan(&env, &["-f", file.to_str().unwrap()]));
    assert!(
        !run.stderr.to_lowercase().contains(CANARY),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Build.Dockerfile"), "{}", run.stderr);

    // /proc/self/environ would be rbuild's own environment, `--secret env=` values included.
    relink("/proc/self/environ", &dockerfile);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    cmd.env_clear()
        .env("AAA_TOKEN", CANARY)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("XDG_CONFIG_HOME", "/nonexistent/rbuild-tests")
        .arg("--root")
        .arg(&env.root)
        .args(["build", "--progress", "plain"])
        .args(["--secret", "id=tok,env=AAA_TOKEN"])
        .arg(&env.ctx);
    let run = bounded(&mut cmd);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        !run.stderr.to_lowercase().contains(CANARY),
        "the secret was printed:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("Dockerfile"), "{}", run.stderr);

    // Links that stay inside the context keep working, relative or rooted at the context.
    env.write(
        "docker/Dockerfile.real",
        format!("FROM {BASE}\nRUN echo linked > /f\n"),
    );
    relink("docker/Dockerfile.real", &dockerfile);
    env.build(&["-t", "linked"]);
    assert_eq!(env.sh("linked", "cat /f"), "linked\n");
    relink("/docker/Dockerfile.real", &dockerfile);
    ok(&mut plan(&env, &[]));
    std::fs::write(other.join("real"), format!("FROM {BASE}\nRUN true\n")).unwrap();
    relink("real", &other.join("Build.Dockerfile"));
    ok(&mut plan(&env, &["-f", file.to_str().unwrap()]));
}

#[test]
fn context_files_that_are_not_small_regular_files_are_refused() {
    let env = BuildEnv::new();
    let dockerfile = env.ctx.join("Dockerfile");
    let plan_bounded = |args: &[&str]| {
        let run = bounded(&mut plan(&env, args));
        assert_eq!(run.code, 1, "{}", run.stderr);
        run
    };
    // A FIFO would block the read forever; a device never ends.
    mkfifo(&dockerfile);
    let run = plan_bounded(&[]);
    assert!(
        run.stderr.contains(&format!(
            "{} is a named pipe, not a regular file",
            dockerfile.display()
        )),
        "{}",
        run.stderr
    );
    relink("/dev/zero", &dockerfile);
    let run = plan_bounded(&[]);
    assert!(run.stderr.contains("cannot open"), "{}", run.stderr);
    // A regular file past 16 MiB (sparse: no disk used).
    std::fs::remove_file(&dockerfile).unwrap();
    let big = std::fs::File::create(&dockerfile).unwrap();
    big.set_len((16 << 20) + 1).unwrap();
    let run = plan_bounded(&[]);
    assert!(
        run.stderr
            .contains(&format!("{} is larger than 16 MiB", dockerfile.display())),
        "{}",
        run.stderr
    );
    // `-f -` reads stdin up to the same limit.
    let mut cmd = plan(&env, &["-f", "-"]);
    cmd.stdin(std::fs::File::open("/dev/zero").unwrap());
    let run = run_for(&mut cmd, Duration::from_secs(60));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("<stdin> is larger than 16 MiB"),
        "{}",
        run.stderr
    );

    // The ignore files: read only when the build looks at the context.
    env.dockerfile(&format!("FROM {BASE}\nCOPY . /ctx/\n"));
    env.write("keep.txt", "keep\n");
    let build_fails = |name: &str, why: &str| {
        let run = bounded(&mut env.build_cmd(&[]));
        assert_eq!(run.code, 1, "{name}: {}", run.stderr);
        let path = env.ctx.join(name);
        assert!(
            run.stderr
                .contains(&format!("cannot read ignore file {}", path.display()))
                && run.stderr.contains(why),
            "{name}: {}",
            run.stderr
        );
    };
    let list = env.dir.write("outside/ignore-all", "*\n");
    relink(&list, &env.ctx.join(".dockerignore"));
    build_fails(".dockerignore", "cannot open");
    std::fs::remove_file(env.ctx.join(".dockerignore")).unwrap();
    relink("/dev/zero", &env.ctx.join("Dockerfile.dockerignore"));
    build_fails("Dockerfile.dockerignore", "cannot open");
    std::fs::remove_file(env.ctx.join("Dockerfile.dockerignore")).unwrap();
    let big = std::fs::File::create(env.ctx.join(".dockerignore")).unwrap();
    big.set_len((16 << 20) + 1).unwrap();
    build_fails(".dockerignore", "is larger than 16 MiB");
    // An ignore file linked inside the context is used.
    std::fs::remove_file(env.ctx.join(".dockerignore")).unwrap();
    env.write("lists/ignore", "keep.txt\nlists\n");
    relink("lists/ignore", &env.ctx.join(".dockerignore"));
    env.build(&["-t", "ignored"]);
    assert_eq!(
        env.sh("ignored", "cd /ctx && find . | sort"),
        ".\n./.dockerignore\n./Dockerfile\n"
    );
}

#[test]
fn dockerfile_diagnostics_show_control_characters_as_escapes() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN true\nFROB\x1b[2J\x1b]0;pwned\x07\0 now\n"
    ));
    for run in [env.build_fails(&[]), fails(&mut plan(&env, &[]))] {
        assert_no_raw_controls("a Dockerfile diagnostic", &run.stderr);
        assert!(
            run.stderr
                .contains("3 | FROB\\x1b[2J\\x1b]0;pwned\\x07\\x00 now"),
            "{}",
            run.stderr
        );
    }
    // A 60,000-character keyword is quoted as a short excerpt.
    env.dockerfile(&format!("FROM {BASE}\n{} x\n", "A".repeat(60_000)));
    for run in [env.build_fails(&[]), fails(&mut plan(&env, &[]))] {
        assert!(run.stderr.contains("Dockerfile:2:1"), "{}", run.stderr);
        assert!(
            run.stderr.len() < 2048,
            "{} bytes of diagnostic:\n{}...",
            run.stderr.len(),
            &run.stderr[..1000]
        );
    }
}

/// An OCI archive of one image named `name` with `layers`.
fn oci_archive(dir: &Dir, name: &str, layers: &[&crate::Blob]) -> PathBuf {
    let layout = dir.mkdir(format!("layout-{}", layers.len()));
    write_layout(&layout, layers);
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["annotations"]["io.containerd.image.name"] = name.into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let path = dir.join(format!("image-{}.tar", layers.len()));
    let mut b = ::tar::Builder::new(std::fs::File::create(&path).unwrap());
    b.append_dir_all(".", &layout).unwrap();
    b.finish().unwrap();
    path
}

#[test]
fn layer_and_archive_names_are_escaped_in_reports_and_errors() {
    let dir = Dir::new();
    let evil = "evil\x1b[2J\x1b]0;pwned\x07.bin";
    let layer = gzip(&tar(&[Entry::file(evil, &[7u8; 100_000])]));
    let archive = oci_archive(&dir, "localhost/evil:latest", &[&layer]);
    let root = dir.join("store");
    let run = ok(rbuild(&root)
        .arg("report")
        .arg(format!("oci-archive:{}", archive.display())));
    assert_no_raw_controls("rbuild report", &run.stdout);
    assert!(
        run.stdout.contains("evil\\x1b[2J\\x1b]0;pwned\\x07.bin"),
        "{}",
        run.stdout
    );

    // A layer entry refused while unpacking for `rbuild run`.
    let hostile = gzip(&tar(&[Entry::file("e\x1b[2J/../../x", b"x")]));
    let archive = oci_archive(&dir, "localhost/unpack:latest", &[&hostile]);
    ok(rbuild(&root).arg("load").arg("-i").arg(&archive));
    let run = crate::fails_125(rbuild(&root).args([
        "run",
        "--rm",
        "--pull",
        "never",
        "localhost/unpack:latest",
        "true",
    ]));
    assert_no_raw_controls("an unpack error", &run.stderr);
    assert!(run.stderr.contains("e\\u{1b}[2J/../../x"), "{}", run.stderr);

    // An ADD archive entry refused while the layer is written.
    let env = BuildEnv::new();
    env.write(
        "a.tar",
        tar(&[Entry::file("x\x1b[2J\x1b]0;pwned\x07/.wh.y", b"y")]),
    );
    env.dockerfile(&format!("FROM {BASE}\nADD a.tar /dst/\n"));
    let run = env.build_fails(&[]);
    assert_no_raw_controls("an ADD error", &run.stderr);
    assert!(
        run.stderr
            .contains("entry x\\x1b[2J\\x1b]0;pwned\\x07/.wh.y has a name starting with .wh."),
        "{}",
        run.stderr
    );
}

#[test]
fn registry_error_messages_are_escaped() {
    let server = Server::start("127.0.0.1", |req| {
        if req.path == "/v2/" {
            return Response::new(200, "{}");
        }
        Response::new(
            400,
            "{\"errors\":[{\"message\":\"denied\x1b[2J\x1b]0;pwned\x07\0\u{9b}31m\"}]}",
        )
    });
    let reference = format!("{}/evil/image:latest", server.addr);
    let dir = Dir::new();
    let run = fails(rbuild(&dir.join("store")).arg("pull").arg(&reference));
    assert_no_raw_controls("rbuild pull", &run.stderr);
    assert!(
        run.stderr
            .contains("denied\\x1b[2J\\x1b]0;pwned\\x07\\x00\\u{9b}31m"),
        "{}",
        run.stderr
    );
    // The same message as a failed pull step of a build.
    let env = BuildEnv::new();
    env.dockerfile(&format!("FROM {reference}\nRUN true\n"));
    let run = env.build_fails(&[]);
    assert_no_raw_controls("a build pulling its base", &run.stderr);
    assert!(run.stderr.contains("ERROR: "), "{}", run.stderr);
    assert!(run.stderr.contains("denied\\x1b[2J"), "{}", run.stderr);
}

const NOISY: &str = r"printf 'red\033[31mX\033[0m clear\033[2J nul\000 bel\007 title\033]0;pwned\007 c1\302\233m end\n'";
const NOISY_SHOWN: &str =
    r"red\x1b[31mX\x1b[0m clear\x1b[2J nul\x00 bel\x07 title\x1b]0;pwned\x07 c1\u{9b}m end";
const NOISY_EXACT: &str =
    "red\x1b[31mX\x1b[0m clear\x1b[2J nul\0 bel\x07 title\x1b]0;pwned\x07 c1\u{9b}m end";

#[test]
fn step_output_and_context_names_are_escaped_in_plain_progress() {
    let env = BuildEnv::new();
    let name = "f\x1b[2J\x1b]0;pwned\x07";
    env.write(name, "1\n");
    mkfifo(&env.ctx.join("p\x1b[2J"));
    env.dockerfile(&format!("FROM {BASE}\nCOPY . /ctx/\nRUN {NOISY}\n"));
    let built = env.build(&[]);
    assert_no_raw_controls("plain progress", &built.stderr);
    assert!(built.stderr.contains(NOISY_SHOWN), "{}", built.stderr);
    // The special file is named in the summary's warnings.
    assert!(
        built.stderr.contains("skipped p\\x1b[2J"),
        "{}",
        built.stderr
    );
    // A changed file is named in the cache-miss reason.
    env.write(name, "2\n");
    let built = env.build(&[]);
    assert_no_raw_controls("plain progress", &built.stderr);
    assert!(
        built
            .stderr
            .contains("cache miss: file f\\x1b[2J\\x1b]0;pwned\\x07 changed"),
        "{}",
        built.stderr
    );
    // json keeps the exact bytes, JSON-escaped.
    let run = ok(rbuild(&env.root)
        .args(["build", "--progress", "json", "--no-cache"])
        .arg(&env.ctx));
    let exact = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["event"] == "output" && v["text"] == NOISY_EXACT);
    assert!(exact, "{}", run.stderr);
    // A failed step: its error block and the final error.
    env.dockerfile(&format!("FROM {BASE}\nRUN {NOISY}; exit 3\n"));
    let run = env.build_fails(&[]);
    assert_no_raw_controls("a failed step", &run.stderr);
    assert!(run.stderr.contains(NOISY_SHOWN), "{}", run.stderr);
}

/// Runs `rbuild build --progress tty` with stderr on a new pseudo-terminal of 200 columns;
/// returns the exit code and every byte written to the terminal.
fn tty_build(env: &BuildEnv) -> (i32, Vec<u8>) {
    use rustix::pty::OpenptFlags;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .expect("openpt");
    rustix::pty::grantpt(&master).expect("grantpt");
    rustix::pty::unlockpt(&master).expect("unlockpt");
    let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
    let size = rustix::termios::Winsize {
        ws_row: 50,
        ws_col: 200,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size).expect("set the pty size");
    let slave: OwnedFd = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .expect("open the pty slave");
    let mut cmd = rbuild(&env.root);
    cmd.args(["build", "--progress", "tty"])
        .arg(&env.ctx)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("spawn rbuild");
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once the last slave descriptor is closed.
        while let Ok(n) = rustix::io::read(&master, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    });
    let status = child.wait().expect("wait for rbuild");
    (
        status.code().unwrap_or(-1),
        reader.join().expect("pty reader"),
    )
}

/// The terminal saw the escaped `NOISY` output and none of its sequences (rbuild's own, cursor
/// up and clear to the end, are the only ones; colour is off).
fn assert_tty_escaped(bytes: &[u8], shown: &str) {
    let all = String::from_utf8_lossy(bytes);
    for raw in ["\x1b[31m", "\x1b[2J", "\x1b]0;", "\0", "\x07", "\u{9b}"] {
        assert!(!all.contains(raw), "{raw:?} reached the terminal: {all:?}");
    }
    assert!(all.contains(shown), "{all:?}");
}

#[test]
fn step_output_is_escaped_in_the_tty_view() {
    let env = BuildEnv::new();
    // The output stays on screen while the step sleeps: the live view shows it.
    env.dockerfile(&format!("FROM {BASE}\nRUN {NOISY}; sleep 2\n"));
    let (code, bytes) = tty_build(&env);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&bytes));
    assert_tty_escaped(&bytes, &format!("=> => # {NOISY_SHOWN}"));
    // A failed step's error block.
    env.dockerfile(&format!("FROM {BASE}\nRUN {NOISY}; exit 3\n"));
    let (code, bytes) = tty_build(&env);
    assert_eq!(code, 1, "{}", String::from_utf8_lossy(&bytes));
    assert_tty_escaped(&bytes, NOISY_SHOWN);
}
