//! Detached containers (`rbuild run -d`) and their commands: ps, logs, stop, kill, rm -f,
//! start, wait, exec, inspect, port; published ports and health checks. Real containers
//! of busybox images built by the tests, as root and as an unprivileged user. Needs what
//! `run.rs` needs, and pasta (passt) for the containers' network.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{BASE, BuildEnv, Run, as_root_and_rootless, finish_cmd, ok};

/// How long anything may take on a loaded machine before a test gives up.
const PATIENCE: Duration = Duration::from_secs(60);

fn env(rootless: bool) -> BuildEnv {
    if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    }
}

/// Polls `what` until it returns `Some`, at most [`PATIENCE`].
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A host port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn rb(env: &BuildEnv, args: &[&str]) -> Run {
    finish_cmd(env.rbuild().args(args))
}

fn ps_all(env: &BuildEnv) -> String {
    ok(env.rbuild().args(["ps", "-a"])).stdout
}

fn inspect(env: &BuildEnv, name: &str) -> serde_json::Value {
    let out = ok(env.rbuild().args(["inspect", name])).stdout;
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    v[0].clone()
}

/// `GET /index.html` through the host's `port`: the body, once something answers.
fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}

/// The web server image: busybox httpd on port 80 with a health check.
fn web_image(env: &BuildEnv) {
    env.dockerfile(&format!(
        "FROM {BASE}\n\
         RUN mkdir /www && echo hello from the container > /www/index.html\n\
         EXPOSE 80\n\
         HEALTHCHECK --interval=1s --timeout=10s --retries=3 \
           CMD wget -q -O /dev/null http://127.0.0.1/index.html\n\
         CMD [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n"
    ));
    env.build(&["-t", "web"]);
}

as_root_and_rootless!(
    a_web_server_publishes_its_port_turns_healthy_and_stops,
    stop_waits_for_the_stop_signal_then_kills,
    a_dead_supervisor_leaves_a_removable_container,
    start_runs_again_on_the_same_file_system,
);

fn a_web_server_publishes_its_port_turns_healthy_and_stops(rootless: bool) {
    let env = env(rootless);
    web_image(&env);
    let port = free_port();
    let publish = format!("{port}:80");
    let run = ok(env
        .rbuild()
        .args(["run", "-d", "--name", "web", "-p", &publish, "web"]));
    let id = run.stdout.trim();
    assert!(
        id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "run -d prints the id: {id:?}"
    );
    // Fetched from the host through the published port.
    let body = eventually("the web server", || http_get(port));
    assert_eq!(body, "hello from the container\n");
    let ps = ok(env.rbuild().arg("ps")).stdout;
    let row = ps.lines().find(|l| l.ends_with(" web")).expect("web in ps");
    assert!(row.starts_with(&id[..12]), "{ps}");
    assert!(row.contains("Up "), "{ps}");
    assert!(row.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");
    assert_eq!(
        ok(env.rbuild().args(["port", "web"])).stdout,
        format!("80/tcp -> 0.0.0.0:{port}\n")
    );
    // The image's health check runs in the container and turns it healthy.
    eventually("the health check", || {
        let v = inspect(&env, "web");
        (v["State"]["Health"]["Status"] == "healthy").then_some(())
    });
    let v = inspect(&env, "web");
    assert_eq!(v["State"]["Health"]["Log"][0]["ExitCode"], 0, "{v}");
    assert!(ok(env.rbuild().arg("ps")).stdout.contains("(healthy)"));

    // exec: the container's files, its processes (pid 1 and the server), its exit codes.
    let files = ok(env.rbuild().args(["exec", "web", "cat", "/www/index.html"]));
    assert_eq!(files.stdout, "hello from the container\n");
    let procs = ok(env.rbuild().args([
        "exec",
        "web",
        "sh",
        "-c",
        "test -d /proc/1 && ps -o pid,args",
    ]));
    assert!(procs.stdout.contains("httpd -f -p 80"), "{}", procs.stdout);
    assert!(
        procs
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("1 ")),
        "{}",
        procs.stdout
    );
    let code = rb(&env, &["exec", "web", "sh", "-c", "exit 3"]);
    assert_eq!(code.code, 3, "{code:?}");
    let user = ok(env.rbuild().args(["exec", "-u", "app", "web", "id", "-u"]));
    assert_eq!(user.stdout, "1000\n");
    let mut piped = env
        .rbuild()
        .args(["exec", "-i", "web", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("exec -i");
    piped
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"through stdin\n")
        .expect("write stdin");
    let out = piped.wait_with_output().expect("exec -i ends");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through stdin\n");

    // A second container cannot take the port; nothing of it is left.
    let dirs = || {
        std::fs::read_dir(env.root.join("containers-v1"))
            .expect("containers dir")
            .filter(|e| {
                !e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count()
    };
    assert_eq!(dirs(), 1);
    let second = rb(
        &env,
        &["run", "-d", "--name", "web2", "-p", &publish, "web"],
    );
    assert_eq!(second.code, 125, "{second:?}");
    assert!(
        second.stderr.contains(&format!(
            "Bind for 0.0.0.0:{port} failed: port is already allocated"
        )),
        "{}",
        second.stderr
    );
    assert_eq!(second.stdout, "");
    assert!(!ps_all(&env).contains("web2"));
    assert_eq!(dirs(), 1);
    // The name is taken too.
    let again = rb(&env, &["run", "-d", "--name", "web", "web"]);
    assert_eq!(again.code, 125);
    assert!(
        again.stderr.contains(&format!(
            "Conflict. The container name \"/web\" is already in use by container \"{id}\". \
             You have to remove (or rename) that container to be able to reuse that name."
        )),
        "{}",
        again.stderr
    );

    // rm refuses a running container; stop ends it (httpd dies of SIGTERM: 143).
    let rm = rb(&env, &["rm", "web"]);
    assert_ne!(rm.code, 0);
    assert!(
        rm.stderr
            .contains("container is running: stop the container before removing or force remove"),
        "{}",
        rm.stderr
    );
    ok(env.rbuild().args(["stop", "web"]));
    let ps = ps_all(&env);
    assert!(ps.contains("Exited (143)"), "{ps}");
    assert!(!ok(env.rbuild().arg("ps")).stdout.contains("web"));
    assert!(
        http_get(port).is_none(),
        "the port is closed with the container"
    );
    assert_eq!(ok(env.rbuild().args(["wait", "web"])).stdout, "143\n");
    ok(env.rbuild().args(["rm", "web"]));
    assert_eq!(dirs(), 0);
}

fn stop_waits_for_the_stop_signal_then_kills(rootless: bool) {
    let env = env(rootless);
    // Handles SIGTERM: says so and exits 0.
    ok(env.rbuild().args([
        "run",
        "-d",
        "--name",
        "polite",
        BASE,
        "sh",
        "-c",
        "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done",
    ]));
    eventually("polite's output", || {
        ok(env.rbuild().args(["logs", "polite"]))
            .stdout
            .contains("ready")
            .then_some(())
    });
    ok(env.rbuild().args(["stop", "polite"]));
    assert_eq!(ok(env.rbuild().args(["wait", "polite"])).stdout, "0\n");
    assert_eq!(
        ok(env.rbuild().args(["logs", "polite"])).stdout,
        "ready\ngot TERM\n"
    );
    // Ignores SIGTERM, as another user: killed once the timeout has passed.
    ok(env.rbuild().args([
        "run",
        "-d",
        "--name",
        "stubborn",
        "-u",
        "app",
        BASE,
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.1; done",
    ]));
    eventually("stubborn's output", || {
        ok(env.rbuild().args(["logs", "stubborn"]))
            .stdout
            .contains("ready")
            .then_some(())
    });
    let start = Instant::now();
    ok(env.rbuild().args(["stop", "-t", "2", "stubborn"]));
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "stop waited for the timeout"
    );
    assert_eq!(ok(env.rbuild().args(["wait", "stubborn"])).stdout, "137\n");
    assert!(ps_all(&env).contains("Exited (137)"));
    // kill sends the signal asked for; rm -f kills and removes a running container.
    ok(env.rbuild().args([
        "run",
        "-d",
        "--name",
        "target",
        BASE,
        "sh",
        "-c",
        "trap 'exit 42' USR1; while :; do sleep 0.1; done",
    ]));
    // The trap is set once the shell runs its loop.
    std::thread::sleep(Duration::from_millis(300));
    ok(env.rbuild().args(["kill", "-s", "USR1", "target"]));
    assert_eq!(ok(env.rbuild().args(["wait", "target"])).stdout, "42\n");
    ok(env
        .rbuild()
        .args(["run", "-d", "--name", "doomed", BASE, "sleep", "1000"]));
    ok(env.rbuild().args(["rm", "-f", "doomed"]));
    assert!(!ps_all(&env).contains("doomed"));
    // A command that cannot start fails run -d itself, as the shell would, and is not kept.
    let missing = rb(
        &env,
        &["run", "-d", "--name", "nothing", BASE, "no-such-cmd"],
    );
    assert_eq!(missing.code, 127, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("exec \"no-such-cmd\": executable file not found in $PATH"),
        "{}",
        missing.stderr
    );
    assert!(!ps_all(&env).contains("nothing"));
}

fn a_dead_supervisor_leaves_a_removable_container(rootless: bool) {
    let env = env(rootless);
    let marker = if rootless { "4243" } else { "4242" };
    let id = ok(env
        .rbuild()
        .args(["run", "-d", "--name", "victim", BASE, "sleep", marker]))
    .stdout
    .trim()
    .to_owned();
    let supervisor = inspect(&env, "victim")["SupervisorPid"]
        .as_i64()
        .expect("a supervisor pid");
    assert!(supervisor > 0);
    ok(std::process::Command::new("kill").args(["-9", &supervisor.to_string()]));
    eventually("the container to be dead", || {
        ps_all(&env).contains(" Dead ").then_some(())
    });
    assert_eq!(inspect(&env, "victim")["State"]["Status"], "dead");
    // Its processes die with the supervisor.
    let sleeping = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|c| c == format!("sleep\0{marker}\0").as_bytes())
    };
    eventually("the container's processes to end", || {
        (!sleeping()).then_some(())
    });
    ok(env.rbuild().args(["rm", "victim"]));
    assert!(!ps_all(&env).contains("victim"));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "{mounts}");
    assert!(!env.root.join("containers-v1").join(&id).exists());
}

fn start_runs_again_on_the_same_file_system(rootless: bool) {
    let env = env(rootless);
    ok(env.rbuild().args([
        "run",
        "-d",
        "--name",
        "counter",
        BASE,
        "sh",
        "-c",
        "echo x >> /runs; wc -l < /runs",
    ]));
    assert_eq!(ok(env.rbuild().args(["wait", "counter"])).stdout, "0\n");
    ok(env.rbuild().args(["start", "counter"]));
    assert_eq!(ok(env.rbuild().args(["wait", "counter"])).stdout, "0\n");
    let logs = ok(env.rbuild().args(["logs", "counter"])).stdout;
    assert_eq!(logs.split_whitespace().collect::<Vec<_>>(), ["1", "2"]);
}

#[test]
fn logs_follow_tail_and_timestamps() {
    let env = BuildEnv::new();
    ok(env.rbuild().args([
        "run",
        "-d",
        "--name",
        "talker",
        BASE,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do echo out $i; echo err $i >&2; sleep 0.2; done",
    ]));
    // -f prints the lines as they come and ends with the container.
    let mut follow = env
        .rbuild()
        .args(["logs", "-f", "talker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("text");
    assert_eq!(first, "out 1");
    let rest: Vec<String> = lines.map(|l| l.expect("text")).collect();
    assert_eq!(rest, ["out 2", "out 3", "out 4", "out 5", "out 6"]);
    let status = follow.wait().expect("logs -f ends");
    assert!(status.success());
    let mut err = String::new();
    follow
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert_eq!(err, "err 1\nerr 2\nerr 3\nerr 4\nerr 5\nerr 6\n");
    let tail = ok(env.rbuild().args(["logs", "--tail", "2", "talker"]));
    assert_eq!(
        (tail.stdout.as_str(), tail.stderr.as_str()),
        ("out 6\n", "err 6\n")
    );
    let stamped = ok(env.rbuild().args(["logs", "-t", "--tail", "1", "talker"])).stderr;
    let (time, text) = stamped.trim_end().split_once(' ').expect("a time");
    assert_eq!(text, "err 6");
    assert!(
        time.parse::<jiff::Timestamp>().is_ok(),
        "{time:?} is an RFC 3339 time"
    );
    let json = ok(env.rbuild().args(["ps", "-a", "--format", "json"])).stdout;
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(v["Names"], "talker");
    assert_eq!(v["State"], "exited");
    assert!(
        v["Status"].as_str().unwrap().starts_with("Exited (0)"),
        "{v}"
    );
    // Without -i the command reads an empty stdin; with -i stdin stays open, as in docker.
    let script = "echo start; read x; echo read $?";
    ok(env
        .rbuild()
        .args(["run", "-d", "--name", "closed", BASE, "sh", "-c", script]));
    assert_eq!(ok(env.rbuild().args(["wait", "closed"])).stdout, "0\n");
    assert_eq!(
        ok(env.rbuild().args(["logs", "closed"])).stdout,
        "start\nread 1\n"
    );
    ok(env.rbuild().args([
        "run", "-d", "-i", "--name", "open", BASE, "sh", "-c", script,
    ]));
    eventually("open's output", || {
        ok(env.rbuild().args(["logs", "open"]))
            .stdout
            .contains("start")
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ok(env.rbuild().args(["logs", "open"])).stdout, "start\n");
    assert!(ok(env.rbuild().arg("ps")).stdout.contains(" open"));
    ok(env.rbuild().args(["rm", "-f", "open"]));
}

#[test]
fn a_foreground_run_publishes_ports_too() {
    let env = BuildEnv::new();
    web_image(&env);
    let port = free_port();
    let mut server = env
        .rbuild()
        .args(["run", "--rm", "-p", &format!("127.0.0.1:{port}:80"), "web"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run in the foreground");
    let body = eventually("the web server", || http_get(port));
    assert_eq!(body, "hello from the container\n");
    // -P: the image's EXPOSEd port on a free host port.
    let id = ok(env.rbuild().args(["run", "-d", "-P", "web"])).stdout;
    let published = ok(env.rbuild().args(["port", id.trim()])).stdout;
    let host_port: u16 = published
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a host port in {published:?}"));
    assert!(published.starts_with("80/tcp -> 0.0.0.0:"), "{published}");
    assert_eq!(
        eventually("the -P web server", || http_get(host_port)),
        "hello from the container\n"
    );
    ok(env.rbuild().args(["rm", "-f", id.trim()]));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(server.id() as i32).expect("a pid"),
        rustix::process::Signal::TERM,
    )
    .expect("signal the foreground run");
    let status = server.wait().expect("the foreground run ends");
    assert_eq!(status.code(), Some(143));
}

#[test]
fn a_pty_for_the_detached_command_and_for_exec() {
    let env = BuildEnv::new();
    // -d -t: the supervisor holds the pty; the output reaches the log.
    ok(env.rbuild().args([
        "run",
        "-d",
        "-t",
        "--name",
        "tty",
        BASE,
        "sh",
        "-c",
        "tty; echo $TERM; exec sleep 1000",
    ]));
    let logs = eventually("the pty's output", || {
        let out = ok(env.rbuild().args(["logs", "tty"])).stdout;
        (out.lines().count() >= 2).then_some(out)
    });
    assert!(logs.starts_with("/dev/pts/0\r\n"), "{logs:?}");
    // exec -t on a terminal of its own (script's): a pty of the container's devpts.
    let exec = format!(
        "{} --root {} exec -t tty sh -c 'tty; echo $TERM'",
        env!("CARGO_BIN_EXE_rbuild"),
        env.root.display()
    );
    let out =
        ok(crate::support::tool("script", "util-linux").args(["-qec", &exec, "/dev/null"])).stdout;
    // script's end of input reaches the pty, whose echo (`^@`) may come first.
    let lines: Vec<&str> = out
        .lines()
        .map(|l| l.trim_end_matches('\r').trim_start_matches("^@"))
        .collect();
    assert!(lines.contains(&"xterm"), "{out:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("/dev/pts/") && *l != "/dev/pts/0"),
        "{out:?}"
    );
    ok(env.rbuild().args(["rm", "-f", "tty"]));
}

/// A command that exits at once has still started: `run -d` prints its id (it used to lose
/// the race when the command's exit closed the error pipe before the start was noted).
#[test]
fn commands_that_exit_at_once_start_cleanly() {
    let env = env(false);
    for _ in 0..20 {
        let id = rb(&env, &["run", "-d", BASE, "true"]).stdout;
        assert_eq!(id.trim().len(), 64, "{id:?}");
    }
    let exited = eventually("every container to exit", || {
        let ps = ps_all(&env);
        (ps.matches("Exited (0)").count() == 20).then_some(ps)
    });
    assert!(!exited.contains("Dead"), "{exited}");
}

/// docker run's health flags replace the image's check part by part; `--no-healthcheck`
/// turns it off.
#[test]
fn health_flags_replace_the_image_check() {
    let env = env(false);
    web_image(&env);
    // The command is the flag's, the timeout still the image's (10 s); one failure is enough.
    ok(env.rbuild().args([
        "run",
        "-d",
        "--name",
        "flagged",
        "--health-cmd",
        "test -f /www/ready",
        "--health-interval",
        "300ms",
        "--health-retries",
        "1",
        "web",
    ]));
    eventually("the failing check", || {
        let v = inspect(&env, "flagged");
        (v["State"]["Health"]["Status"] == "unhealthy").then_some(())
    });
    let v = inspect(&env, "flagged");
    let check = &v["Config"]["Healthcheck"];
    assert_eq!(
        check["Test"],
        serde_json::json!(["CMD-SHELL", "test -f /www/ready"]),
        "{v}"
    );
    assert_eq!(check["Interval"], 300_000_000u64, "{v}");
    assert_eq!(check["Timeout"], 10_000_000_000u64, "{v}");
    assert_eq!(check["Retries"], 1, "{v}");
    ok(env
        .rbuild()
        .args(["exec", "flagged", "touch", "/www/ready"]));
    eventually("the passing check", || {
        let v = inspect(&env, "flagged");
        (v["State"]["Health"]["Status"] == "healthy").then_some(())
    });
    // No check at all: no health state, and ps shows none.
    ok(env.rbuild().args([
        "run",
        "-d",
        "--name",
        "unchecked",
        "--no-healthcheck",
        "web",
    ]));
    std::thread::sleep(Duration::from_millis(2500));
    let v = inspect(&env, "unchecked");
    assert!(v["State"]["Health"].is_null(), "{v}");
    assert!(v["Config"]["Healthcheck"].is_null(), "{v}");
    // Flags that contradict each other, or a duration too short, are usage errors.
    let bad = rb(
        &env,
        &[
            "run",
            "-d",
            "--no-healthcheck",
            "--health-cmd",
            "true",
            "web",
        ],
    );
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let bad = rb(&env, &["run", "-d", "--health-interval", "10us", "web"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("less than 1ms"), "{}", bad.stderr);
    ok(env.rbuild().args(["rm", "-f", "flagged", "unchecked"]));
}
