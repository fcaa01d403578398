//! The supervisor of a detached container (`rbuild run -d`, `rbuild start`): a hidden
//! subcommand the container commands start as a child of their own, which leaves their
//! session (setsid) and outlives them.
//!
//! It holds the container's supervisor lock for as long as it runs, starts the sandbox
//! (with the container's own network stack and its published ports), tells its starter on
//! its stdout (`ok`, or `error CODE` and the message) once the command has exec'd, writes
//! the command's output to the container's log (one JSON object a line: `log`, `stream`,
//! `time`), runs the image's health check, records the exit code and cleans up: the root
//! file system is mounted in the sandbox's mount namespace only, the network stack ends
//! with it. Killed (SIGKILL), its sandbox and network stack die with it (parent-death
//! signals) and the container is left recorded as running with a free lock: `Dead`.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rbuild_cache::containers::{Containers, LOG, Record, State};
use rbuild_executor::sandbox::{
    self, Command, NetStack, Network, RunSpec, SandboxError, StartHook, Stream,
};
use rbuild_executor::snapshot::{self, SnapshotterKind};

use super::container::{ContainerConfig, HealthConfig, StartFailed};
use crate::cli::GlobalArgs;

/// `rbuild container-supervise ID`
#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// The container's id.
    pub id: String,
}

/// Where the starter waits for the outcome of the start (the supervisor's first stdout).
struct Report(Mutex<Option<OwnedFd>>);

impl Report {
    fn send(&self, text: &str) {
        if let Some(fd) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = File::from(fd).write_all(text.as_bytes());
        }
    }
}

/// The container's log file, shared by the output's writers.
#[derive(Clone)]
struct Log(Arc<Mutex<File>>);

impl Log {
    fn line(&self, stream: Stream, text: &[u8]) {
        let entry = serde_json::json!({
            "log": String::from_utf8_lossy(text),
            "stream": match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            },
            "time": jiff::Timestamp::now().to_string(),
        });
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "{entry}");
    }
}

pub fn run(global: &GlobalArgs, args: SuperviseArgs) -> anyhow::Result<ExitCode> {
    // Out of the starter's session and process group: its terminal's signals, and its
    // end, do not reach the container.
    let _ = rustix::process::setsid();
    let report_fd = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdout(), 3)
        .context("cannot keep the report pipe")?;
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")?;
    rustix::stdio::dup2_stdout(&null).context("cannot redirect stdout")?;
    let report = Arc::new(Report(Mutex::new(Some(report_fd))));
    match supervise(global, &args.id, &report) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) => {
            let code = err
                .chain()
                .find_map(|e| match e.downcast_ref::<SandboxError>() {
                    Some(SandboxError::Exec { code, .. }) => Some(*code),
                    _ => e.downcast_ref::<StartFailed>().map(|s| s.code),
                })
                .unwrap_or(i32::from(super::run::EXIT_RBUILD));
            let message = format!("{err:#}");
            report.send(&format!("error {code}\n{message}\n"));
            tracing::error!("{message}");
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(125)))
        }
    }
}

fn supervise(global: &GlobalArgs, id: &str, report: &Arc<Report>) -> anyhow::Result<()> {
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    let _lock = containers.supervise(id)?;
    let record = containers.find(id)?;
    let cfg = ContainerConfig::of(&record)?;
    let id_map = super::id_map(global, &store)?;
    let seccomp = super::run::parse_security_opts(&cfg.security_opt)?;
    let mounts = cfg
        .volumes
        .iter()
        .map(|v| super::run::parse_volume(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (_, manifest) = store.image_manifest(&cfg.descriptor)?;
    let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
    let config = store.read_config(&config_digest)?;
    let layers = rbuild_engine::snapshots::ensure_snapshots(
        &store,
        &config,
        &manifest,
        &id_map,
        &crate::limits::get()?,
    )?;
    let network = match cfg.network.as_str() {
        "host" => Network::Host,
        "none" => Network::None,
        _ => Network::Private,
    };
    let net_stack = match network {
        Network::Private => Some(Arc::new(
            NetStack::start_forwarding(&id_map, &cfg.ports)
                .context("cannot start the container's network")?,
        )),
        _ => None,
    };
    let dir = containers.path(id);
    let log_path = dir.join(LOG);
    let log = Log(Arc::new(Mutex::new(
        File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?,
    )));

    let mut spec = RunSpec::new(Command::Exec(cfg.argv.clone()));
    spec.seccomp = seccomp;
    spec.env = cfg.env.clone();
    spec.workdir = cfg.workdir.clone();
    spec.user = cfg.user.clone();
    spec.network = network;
    spec.net_stack = net_stack;
    spec.add_hosts = cfg
        .add_hosts
        .iter()
        .map(|h| super::network::add_host(h))
        .collect::<anyhow::Result<_>>()?;
    spec.mounts = mounts;
    spec.id_map = id_map.clone();
    spec.hostname = id[..12].to_owned();
    // With a pty, or an open stdin, the sandbox takes this process's streams: pipes into the
    // log, and a stdin pipe whose write end stays here. Once the command has started, stdout
    // and stderr are this process's own again (the sandbox has its copies), but for the pty's
    // relay, which writes to stdout.
    let mut readers = Vec::new();
    let mut _stdin_w = None;
    let own_stderr = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stderr(), 3)
        .context("cannot keep stderr")?;
    let pipe = || {
        rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("cannot create a pipe")
    };
    spec.stdio = if cfg.tty || cfg.interactive {
        let (r, w) = pipe()?;
        rustix::stdio::dup2_stdout(&w).context("cannot redirect stdout")?;
        let out = log.clone();
        readers.push(std::thread::spawn(move || {
            copy_lines(File::from(r), &out, Stream::Stdout)
        }));
        if !cfg.tty {
            let (r, w) = pipe()?;
            rustix::stdio::dup2_stderr(&w).context("cannot redirect stderr")?;
            let err = log.clone();
            readers.push(std::thread::spawn(move || {
                copy_lines(File::from(r), &err, Stream::Stderr)
            }));
            let (r, w) = pipe()?;
            rustix::stdio::dup2_stdin(&r).context("cannot redirect stdin")?;
            _stdin_w = Some(w);
        }
        if cfg.tty {
            sandbox::Stdio::Tty
        } else {
            sandbox::Stdio::Inherit
        }
    } else {
        sandbox::Stdio::Lines
    };
    let inherit = cfg.interactive && !cfg.tty;

    let shared = Arc::new(Mutex::new(record));
    let on_start = {
        let shared = shared.clone();
        let containers = containers.clone();
        let report = report.clone();
        let health = cfg.healthcheck.clone();
        let id_map = id_map.clone();
        let cfg = cfg.clone();
        StartHook(Arc::new(move |init: i32| {
            if inherit {
                let _ = rustix::stdio::dup2_stderr(&own_stderr);
                if let Ok(null) = null_file() {
                    let _ = rustix::stdio::dup2_stdout(&null);
                }
            }
            {
                let mut r = shared.lock().unwrap_or_else(|e| e.into_inner());
                r.state = State::Running;
                r.detached = true;
                r.pid = std::process::id();
                r.init_pid = Some(init);
                r.started = Some(jiff::Timestamp::now().as_second());
                r.exit_code = None;
                r.finished = None;
                r.health = health.as_ref().map(
                    |_| serde_json::json!({"Status": "starting", "FailingStreak": 0, "Log": []}),
                );
                if let Err(e) = containers.save(&r) {
                    tracing::warn!("{e}");
                }
            }
            report.send("ok\n");
            if let Some(h) = &health {
                let checker = Checker {
                    health: h.clone(),
                    init,
                    shared: shared.clone(),
                    containers: containers.clone(),
                    id_map: id_map.clone(),
                    cfg: cfg.clone(),
                };
                std::thread::spawn(move || checker.run());
            }
        }))
    };
    spec.on_start = Some(on_start);

    let fs_dir = dir.join("fs");
    std::fs::create_dir_all(&fs_dir)
        .and_then(|()| sandbox::give_to_container_root(&fs_dir, &id_map))
        .with_context(|| format!("cannot create {}", fs_dir.display()))?;
    let root = snapshot::prepare(
        SnapshotterKind::detect(),
        &layers,
        &fs_dir,
        &spec.mountpoints(),
    )
    .context("cannot prepare the container's root file system")?;
    let _forwarder = super::run::forward_signals(spec.cancel.clone())?;
    let result = sandbox::Sandbox::run(&spec, &root, &mut |stream, line| {
        let mut text = line.to_vec();
        text.push(b'\n');
        log.line(stream, &text);
    });
    // The network stack ends with the spec.
    drop(spec);
    if !readers.is_empty() {
        // The pipes' last write ends here go; the readers then see their end.
        let _ = rustix::stdio::dup2_stdout(&null_file()?);
        for reader in readers {
            let _ = reader.join();
        }
    }
    let exit = match &result {
        Ok(outcome) => outcome.exit_code,
        Err(SandboxError::Exec { code, .. }) => *code,
        Err(_) => i32::from(super::run::EXIT_RBUILD),
    };
    {
        let mut r = shared.lock().unwrap_or_else(|e| e.into_inner());
        r.state = State::Exited;
        r.exit_code = Some(exit);
        r.finished = Some(jiff::Timestamp::now().as_second());
        r.init_pid = None;
        if let Some(h) = r.health.as_mut()
            && let Some(obj) = h.as_object_mut()
        {
            obj.insert("Status".into(), "unhealthy".into());
        }
        containers.save(&r)?;
    }
    result.with_context(|| format!("cannot run {:?}", cfg.argv))?;
    Ok(())
}

fn null_file() -> anyhow::Result<File> {
    File::options()
        .write(true)
        .open("/dev/null")
        .context("cannot open /dev/null")
}

/// Copies output into the log, a line (ended by `\n`) at a time.
fn copy_lines(mut from: File, log: &Log, stream: Stream) {
    use std::io::Read as _;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            log.line(stream, &line);
        }
    }
    if !buf.is_empty() {
        log.line(stream, &buf);
    }
}

/// Runs a container's health check while it runs, recording each result as docker does
/// (`Status`: starting, healthy, unhealthy; `FailingStreak`; the last five `Log` entries).
struct Checker {
    health: HealthConfig,
    init: i32,
    shared: Arc<Mutex<Record>>,
    containers: Containers,
    id_map: rbuild_executor::idmap::IdMap,
    cfg: ContainerConfig,
}

impl Checker {
    fn run(self) {
        let started = Instant::now();
        let start_period = Duration::from_nanos(self.health.start_period);
        loop {
            std::thread::sleep(self.health.interval_at(started.elapsed()));
            if self
                .shared
                .lock()
                .map(|r| r.state != State::Running)
                .unwrap_or(true)
            {
                return;
            }
            let begin = jiff::Timestamp::now();
            let (code, output) = self.check();
            let end = jiff::Timestamp::now();
            let mut r = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            if r.state != State::Running {
                return;
            }
            let mut h = r.health.take().unwrap_or_else(|| serde_json::json!({}));
            let streak = h.get("FailingStreak").and_then(|v| v.as_u64()).unwrap_or(0);
            let status = h
                .get("Status")
                .and_then(|v| v.as_str())
                .unwrap_or("starting")
                .to_owned();
            let (streak, status) = if code == 0 {
                (0, "healthy".to_owned())
            } else if started.elapsed() < start_period {
                (streak, status)
            } else if streak + 1 >= u64::from(self.health.retries()) {
                (streak + 1, "unhealthy".to_owned())
            } else {
                (streak + 1, status)
            };
            let mut log: Vec<serde_json::Value> = h
                .get("Log")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            log.push(serde_json::json!({
                "Start": begin.to_string(), "End": end.to_string(),
                "ExitCode": code, "Output": output,
            }));
            let drop_n = log.len().saturating_sub(5);
            log.drain(..drop_n);
            h = serde_json::json!({"Status": status, "FailingStreak": streak, "Log": log});
            r.health = Some(h);
            if let Err(e) = self.containers.save(&r) {
                tracing::warn!("{e}");
            }
        }
    }

    /// One check: its exit code (-1: it could not run) and its output (at most 4 KiB).
    fn check(&self) -> (i64, String) {
        let out = match rustix::fs::memfd_create("health", rustix::fs::MemfdFlags::CLOEXEC) {
            Ok(fd) => fd,
            Err(e) => return (-1, format!("cannot create the output file: {e}")),
        };
        let keep = match rustix::io::fcntl_dupfd_cloexec(&out, 3) {
            Ok(fd) => fd,
            Err(e) => return (-1, format!("cannot create the output file: {e}")),
        };
        let spec = sandbox::exec::ExecSpec {
            argv: self.health.argv(),
            env: self.cfg.env.clone(),
            workdir: self.cfg.workdir.clone(),
            user: self.cfg.user.clone(),
            id_map: self.id_map.clone(),
            seccomp: super::run::parse_security_opts(&self.cfg.security_opt).unwrap_or_default(),
            stdio: sandbox::exec::ExecStdio::Into(out),
            timeout: Some(self.health.timeout()),
        };
        let result = sandbox::exec::exec(self.init, spec);
        let mut text = String::new();
        let mut f = File::from(keep);
        use std::io::{Read as _, Seek as _};
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.take(4096).read_to_string(&mut text);
        match result {
            Ok(o) if o.timed_out => (
                -1,
                format!(
                    "Health check exceeded timeout ({}s)",
                    self.health.timeout().as_secs()
                ),
            ),
            Ok(o) => (i64::from(o.exit_code), text),
            Err(e) => (-1, format!("{e}")),
        }
    }
}

/// Where a container's files are, for the commands that read them.
pub fn log_path(containers: &Containers, id: &str) -> PathBuf {
    containers.path(id).join(LOG)
}
