//! What the container commands share: the settings a detached container runs with
//! ([`ContainerConfig`], kept in its record for `rbuild start`), how a container stands
//! ([`Status`]), starting its supervisor and waiting for the command to start.

use std::io::Read as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rbuild_cache::containers::{Containers, Record, State};
use rbuild_executor::sandbox::PortForward;
use serde::{Deserialize, Serialize};

use crate::cli::GlobalArgs;

/// The hidden subcommand the supervisor runs as.
pub const SUPERVISE: &str = "container-supervise";

/// The settings of a detached container, resolved by `rbuild run -d`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The image's descriptor in the store.
    pub descriptor: oci_spec::image::Descriptor,
    /// Entrypoint + Cmd.
    pub argv: Vec<String>,
    /// The environment.
    pub env: Vec<String>,
    /// The working directory.
    pub workdir: String,
    /// The user.
    pub user: String,
    /// `default`, `host` or `none`.
    pub network: String,
    /// `-v` as given.
    pub volumes: Vec<String>,
    /// `--add-host` as given.
    pub add_hosts: Vec<String>,
    /// `--security-opt` as given.
    pub security_opt: Vec<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`: stdin stays open (a pipe nobody writes to, as docker's without attach).
    #[serde(default)]
    pub interactive: bool,
    /// Published ports.
    pub ports: Vec<PortForward>,
    /// The image's `StopSignal` (empty: SIGTERM).
    pub stop_signal: String,
    /// The health check, when the image has one.
    pub healthcheck: Option<HealthConfig>,
}

/// A health check; durations in nanoseconds, 0 for docker's defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthConfig {
    /// `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    /// Between checks (default 30 s).
    pub interval: u64,
    /// How long one check may take (default 30 s).
    pub timeout: u64,
    /// Failures in this time after the start do not count (default 0).
    pub start_period: u64,
    /// Consecutive failures that make it unhealthy (default 3).
    pub retries: u32,
    /// Between checks during the start period (default 5 s).
    #[serde(default)]
    pub start_interval: u64,
}

impl HealthConfig {
    /// The image config's `Healthcheck`, `None` when missing or `NONE`.
    pub fn from_image(config: &serde_json::Value) -> Option<HealthConfig> {
        let h = config.get("config")?.get("Healthcheck")?;
        let test: Vec<String> = serde_json::from_value(h.get("Test")?.clone()).ok()?;
        if test.is_empty() || test[0] == "NONE" {
            return None;
        }
        let num = |k: &str| h.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        Some(HealthConfig {
            test,
            interval: num("Interval"),
            timeout: num("Timeout"),
            start_period: num("StartPeriod"),
            retries: u32::try_from(num("Retries")).unwrap_or(u32::MAX),
            start_interval: num("StartInterval"),
        })
    }

    /// The argv of one check.
    pub fn argv(&self) -> Vec<String> {
        match self.test.first().map(String::as_str) {
            Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), self.test[1..].join(" ")],
            Some("CMD") => self.test[1..].to_vec(),
            _ => self.test.clone(),
        }
    }

    fn or(ns: u64, default: Duration) -> Duration {
        if ns == 0 {
            default
        } else {
            Duration::from_nanos(ns)
        }
    }

    /// Between checks.
    pub fn interval(&self) -> Duration {
        Self::or(self.interval, Duration::from_secs(30))
    }

    /// Between checks while `elapsed` (since the start) is within the start period.
    pub fn interval_at(&self, elapsed: Duration) -> Duration {
        if elapsed < Duration::from_nanos(self.start_period) {
            Self::or(self.start_interval, Duration::from_secs(5))
        } else {
            self.interval()
        }
    }

    /// One check's time limit.
    pub fn timeout(&self) -> Duration {
        Self::or(self.timeout, Duration::from_secs(30))
    }

    /// Consecutive failures to be unhealthy.
    pub fn retries(&self) -> u32 {
        if self.retries == 0 { 3 } else { self.retries }
    }
}

impl ContainerConfig {
    /// The config of `record`.
    pub fn of(record: &Record) -> anyhow::Result<ContainerConfig> {
        serde_json::from_value(record.config.clone())
            .with_context(|| format!("container {} has no settings to run with", record.name))
    }
}

/// How a container stands, from its record and its supervisor's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Made, never started.
    Created,
    /// Its command runs.
    Running,
    /// Its command ended with the recorded code.
    Exited,
    /// Its supervisor (or the foreground `rbuild run`) died without recording an end.
    Dead,
}

impl Status {
    /// Docker's word for it.
    pub fn word(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
}

/// How `r` stands.
pub fn status(containers: &Containers, r: &Record) -> Status {
    match r.state {
        State::Exited => Status::Exited,
        State::Created if containers.supervised(&r.id) => Status::Running,
        State::Created => Status::Created,
        State::Running if r.detached => {
            if containers.supervised(&r.id) {
                Status::Running
            } else {
                Status::Dead
            }
        }
        State::Running if Path::new(&format!("/proc/{}", r.pid)).exists() => Status::Running,
        State::Running => Status::Dead,
    }
}

/// The `Up …` / `Exited (N) … ago` column of `ps`.
pub fn status_text(containers: &Containers, r: &Record, now: i64) -> String {
    match status(containers, r) {
        Status::Running => {
            let since = r.started.unwrap_or(r.created);
            let health = r
                .health
                .as_ref()
                .and_then(|h| h.get("Status"))
                .and_then(serde_json::Value::as_str)
                .map(|s| match s {
                    "starting" => " (health: starting)".to_owned(),
                    s => format!(" ({s})"),
                })
                .unwrap_or_default();
            format!("Up {}{health}", ago(now - since))
        }
        Status::Exited => match (r.exit_code, r.finished) {
            (Some(code), Some(at)) => format!("Exited ({code}) {} ago", ago(now - at)),
            _ => "Exited".into(),
        },
        Status::Created => "Created".into(),
        Status::Dead => "Dead".into(),
    }
}

/// Docker's coarse durations: "5 seconds", "3 minutes", "2 hours", "4 days".
pub fn ago(secs: i64) -> String {
    let s = secs.max(0);
    let (n, unit) = match s {
        0..60 => (s, "second"),
        60..3600 => (s / 60, "minute"),
        3600..86400 => (s / 3600, "hour"),
        _ => (s / 86400, "day"),
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// The `PORTS` column: `0.0.0.0:8080->80/tcp`.
pub fn ports_text(ports: &[PortForward]) -> String {
    ports
        .iter()
        .map(|p| {
            let ip = p.host_ip.map_or("0.0.0.0".to_owned(), |ip| ip.to_string());
            let proto = if p.udp { "udp" } else { "tcp" };
            format!("{ip}:{}->{}/{proto}", p.host_port, p.container_port)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Starts the supervisor of the container `id` and waits until its command has started;
/// a command that cannot start is the error (its exit code is the shell's, 126 or 127).
pub fn start_supervisor(
    global: &GlobalArgs,
    root: &Path,
    containers: &Containers,
    id: &str,
) -> anyhow::Result<()> {
    let dir = containers.path(id);
    let log = std::fs::File::create(dir.join("supervisor.log"))
        .with_context(|| format!("cannot create {}", dir.join("supervisor.log").display()))?;
    let exe = std::env::current_exe().context("cannot find the rbuild executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--root").arg(root);
    if let Some(userns) = &global.userns {
        cmd.arg("--userns").arg(userns.to_string());
    }
    if let Some(config) = &global.config {
        cmd.arg("--config").arg(config);
    }
    cmd.arg(SUPERVISE)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut child = cmd
        .spawn()
        .context("cannot start the container's supervisor")?;
    let mut report = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut report)
            .context("cannot read the supervisor's report")?;
    }
    // The supervisor outlives this process (it is reparented when this one exits); should it
    // end first, this thread reaps it.
    std::thread::spawn(move || child.wait());
    match report.split_once('\n') {
        Some(("ok", _)) => Ok(()),
        Some((head, message)) if head.starts_with("error ") => {
            let code: i32 = head["error ".len()..].parse().unwrap_or(125);
            Err(anyhow::Error::new(StartFailed {
                code,
                message: message.trim_end().to_owned(),
            }))
        }
        _ => {
            let log = std::fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
            bail!(
                "the supervisor of container {id} exited before the command started{}",
                if log.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", log.trim())
                }
            )
        }
    }
}

/// The command of a container did not start; `code` is its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartFailed {
    /// 125 (rbuild), 126 (not executable) or 127 (not found).
    pub code: i32,
    /// Why.
    pub message: String,
}

/// The exit code for an error of a container command: a start failure's own, else 125.
pub fn error_code(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|e| e.downcast_ref::<StartFailed>())
        .and_then(|s| u8::try_from(s.code).ok())
        .unwrap_or(super::run::EXIT_RBUILD)
}

/// Runs `each` on every container named, as docker's multi-container commands do: the
/// name on stdout when it succeeded, the error on stderr otherwise; fails when one did.
pub fn for_each(
    names: &[String],
    mut each: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<std::process::ExitCode> {
    let mut failed = false;
    for what in names {
        match each(what) {
            Ok(()) => crate::outln!("{what}"),
            Err(e) => {
                crate::report::render_error(&e);
                failed = true;
            }
        }
    }
    Ok(if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    })
}

/// Parses a signal given as `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(text: &str) -> anyhow::Result<rustix::process::Signal> {
    let t = text.trim();
    let num = match t.parse::<i32>() {
        Ok(n) => n,
        Err(_) => {
            let name = t.to_ascii_uppercase();
            let name = name.strip_prefix("SIG").unwrap_or(&name);
            match SIGNALS.iter().find(|(n, _)| *n == name) {
                Some((_, n)) => *n,
                None => bail!("invalid signal: {text}"),
            }
        }
    };
    rustix::process::Signal::from_named_raw(num).with_context(|| format!("invalid signal: {text}"))
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Sends `signal` to the command of the running container `r`; SIGKILL reaches every
/// process of it.
pub fn signal(
    containers: &Containers,
    r: &Record,
    signal: rustix::process::Signal,
) -> anyhow::Result<()> {
    let init = match (status(containers, r), r.init_pid) {
        (Status::Running, Some(init)) => init,
        _ => bail!("container {} is not running", r.name),
    };
    let all = signal == rustix::process::Signal::KILL;
    rbuild_executor::sandbox::exec::signal(init, signal, all)
        .with_context(|| format!("cannot signal container {}", r.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_coarse() {
        assert_eq!(ago(0), "0 seconds");
        assert_eq!(ago(61), "1 minute");
        assert_eq!(ago(7300), "2 hours");
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap().as_raw(), 15);
        assert_eq!(parse_signal("sigkill").unwrap().as_raw(), 9);
        assert_eq!(parse_signal("2").unwrap().as_raw(), 2);
        assert!(parse_signal("NOPE").is_err());
    }

    #[test]
    fn health_checks_read_from_the_image() {
        let config = serde_json::json!({"config": {"Healthcheck": {
            "Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 1_000_000_000u64,
            "Retries": 2}}});
        let h = HealthConfig::from_image(&config).unwrap();
        assert_eq!(h.argv(), ["/bin/sh", "-c", "wget -q localhost"]);
        assert_eq!(h.interval(), Duration::from_secs(1));
        assert_eq!(h.timeout(), Duration::from_secs(30));
        assert_eq!(h.retries(), 2);
        let none = serde_json::json!({"config": {"Healthcheck": {"Test": ["NONE"]}}});
        assert!(HealthConfig::from_image(&none).is_none());
    }
}
