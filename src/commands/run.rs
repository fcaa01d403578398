//! `rbuild run`: runs an image's command in a sandbox on an ephemeral overlay of its
//! layers' snapshots, docker-style.
//!
//! Every layer is unpacked once into the store's `snapshots-v1/<diff_id>/` (see
//! [`ensure_snapshots`]); the container's writable layer lives in `containers-v1/<id>/`,
//! removed at exit with `--rm`, else kept for `rbuild ps -a` and `rbuild rm`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use oci_spec::image::ImageConfiguration;
use rbuild_cache::Digest;
use rbuild_cache::containers::{Containers, Record, State};
use rbuild_executor::cgroup::{CgroupParent, oom_message};
use rbuild_executor::idmap::{IdMap, MappingKind};
use rbuild_executor::mounts::{ExtraMount, ExtraMountKind};
use rbuild_executor::sandbox::seccomp::{Profile, Seccomp};
use rbuild_executor::sandbox::{
    self, CancelHandle, Command, NetStack, Network, RunSpec, SandboxError,
};
use rbuild_executor::snapshot::{self, SnapshotterKind};

use crate::cli::GlobalArgs;
use crate::report::Hint;

/// Exit code for rbuild's own failures (docker's 125).
pub const EXIT_RBUILD: u8 = 125;
/// How long a forwarded SIGINT/SIGTERM has before everything is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// `rbuild run [OPTIONS] IMAGE [ARG...]`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Remove the container when the command exits.
    #[arg(long)]
    pub rm: bool,
    /// The container's name (default: generated from its id).
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (`K=V`, or `K` to pass the host's value).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file (`K=V` lines; `#` comments).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Bind a host path: `HOST:CTR[:ro|:rw]`.
    #[arg(short = 'v', long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// The working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// The user: `name`, `uid`, `name:group` or `uid:gid`.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// The network: `default`, a network namespace of the container's own with outbound
    /// access only; `none`, only loopback; `host`, the host's (needs `--allow network.host`).
    #[arg(long, value_enum, default_value = "default")]
    pub network: NetworkArg,
    /// Grant an entitlement: `network.host` (the container may use the host's network).
    #[arg(long, value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Add `HOST:IP` to the container's `/etc/hosts`; may be repeated.
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_host: Vec<String>,
    /// Replace the image's entrypoint (and clear its default command).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// A security option: `seccomp=unconfined` (no system call filter) or `seccomp=FILE`
    /// (a profile in Docker's JSON format instead of the default one).
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Keep stdin open.
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Run in the background under a supervisor process; print the container's id once
    /// its command has started. The output goes to its log (`rbuild logs`).
    #[arg(short = 'd', long = "detach")]
    pub detach: bool,
    /// Publish a container port on the host: `[IP:]HOSTPORT:CTRPORT[/tcp|udp]`, or
    /// `CTRPORT[/PROTO]` for a free host port (`rbuild port` shows it).
    #[arg(short = 'p', long = "publish", value_name = "[IP:]HOST:CTR[/PROTO]")]
    pub publish: Vec<String>,
    /// Publish every port the image EXPOSEs on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// When to pull the image: `missing` (default), `always`, `never`.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// The platform to run (os/arch[/variant]): of a multi-platform image, that platform's
    /// image; the platform pulled when the image is pulled. A foreign platform runs through
    /// the kernel's emulator (`rbuild system binfmt`).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    #[command(flatten)]
    pub registry_args: super::registry::RegistryArgs,
    #[command(flatten)]
    pub limit_args: super::resources::RunLimitArgs,
    #[command(flatten)]
    pub health_args: HealthArgs,
    /// The image (name or id).
    pub image: String,
    /// The command and its arguments (replace the image's `Cmd`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// docker run's health flags: each replaces that part of the image's HEALTHCHECK. Checks
/// run for a detached container (`-d`), whose supervisor runs them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HealthArgs {
    /// The check, run with `/bin/sh -c` (replaces the image's HEALTHCHECK command).
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between checks (like 30s, 1m30s; default 30s).
    #[arg(long, value_name = "DURATION", value_parser = health_duration)]
    pub health_interval: Option<u64>,
    /// How long one check may run (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = health_duration)]
    pub health_timeout: Option<u64>,
    /// Time after the start in which failures do not count (default 0s).
    #[arg(long, value_name = "DURATION", value_parser = health_duration)]
    pub health_start_period: Option<u64>,
    /// Time between checks during the start period (default 5s).
    #[arg(long, value_name = "DURATION", value_parser = health_duration)]
    pub health_start_interval: Option<u64>,
    /// Consecutive failures that make the container unhealthy (default 3).
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Disable the image's HEALTHCHECK.
    #[arg(long, conflicts_with_all = [
        "health_cmd", "health_interval", "health_timeout", "health_start_period",
        "health_start_interval", "health_retries",
    ])]
    pub no_healthcheck: bool,
}

/// A health flag's duration: a Go duration of at least 1ms, or 0 for the default.
fn health_duration(value: &str) -> Result<u64, String> {
    let ns = rbuild_compiler::instructions::flags::parse_duration(value)?;
    if ns != 0 && ns < 1_000_000 {
        return Err(format!("{value:?} is less than 1ms"));
    }
    Ok(ns)
}

impl HealthArgs {
    /// Whether any health flag was given.
    pub fn any(&self) -> bool {
        self.no_healthcheck
            || self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_start_period.is_some()
            || self.health_start_interval.is_some()
            || self.health_retries.is_some()
    }

    /// The check a container runs: the image's, with each part these flags give replaced
    /// (a zero duration keeps the image's, as docker merges them); none without a command.
    pub fn apply(
        &self,
        image: Option<super::container::HealthConfig>,
    ) -> Option<super::container::HealthConfig> {
        if self.no_healthcheck {
            return None;
        }
        let mut h = image.unwrap_or(super::container::HealthConfig {
            test: Vec::new(),
            interval: 0,
            timeout: 0,
            start_period: 0,
            retries: 0,
            start_interval: 0,
        });
        if let Some(cmd) = &self.health_cmd {
            h.test = vec!["CMD-SHELL".into(), cmd.clone()];
        }
        let keep = |flag: Option<u64>, image: u64| flag.filter(|&ns| ns != 0).unwrap_or(image);
        h.interval = keep(self.health_interval, h.interval);
        h.timeout = keep(self.health_timeout, h.timeout);
        h.start_period = keep(self.health_start_period, h.start_period);
        h.start_interval = keep(self.health_start_interval, h.start_interval);
        if let Some(r) = self.health_retries.filter(|&r| r != 0) {
            h.retries = r;
        }
        (!h.test.is_empty()).then_some(h)
    }
}

/// `--pull`: when `rbuild run` fetches the image from its registry (docker's policy names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    /// Only when the store does not have it.
    Missing,
    /// Every time, so a moved tag is followed.
    Always,
    /// Never: a missing image is an error.
    Never,
}

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// A new network namespace with outbound access only.
    Default,
    /// The host's network (needs `--allow network.host`).
    Host,
    /// A new network namespace with only `lo`.
    None,
}

/// Runs the command; rbuild's own failures are rendered and exit with 125.
pub fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    exit_code(run_container(global, &args))
}

/// Runs the command on the image `descriptor` of `store`, found already (the result of a
/// build, which may have no name: `build --invoke`); exits as [`run`] does.
pub fn run_descriptor(
    global: &GlobalArgs,
    store: &rbuild_cache::Store,
    descriptor: &oci_spec::image::Descriptor,
    args: RunArgs,
) -> anyhow::Result<ExitCode> {
    let seccomp = parse_security_opts(&args.security_opt)?;
    let ports = super::port::resolve(&args.publish, false, &[])?;
    let started = start_container(global, store, &args, &ports)?;
    exit_code(run_image(store, descriptor, &args, seccomp, started))
}

/// The exit code of a run: the command's, else rendered with rbuild's own.
fn exit_code(ran: anyhow::Result<u8>) -> anyhow::Result<ExitCode> {
    match ran {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(err) => {
            // The command's own start-up failures keep the shell's codes (126, 127), an
            // OOM-killed command its 137.
            let code = err
                .chain()
                .find_map(|e| match e.downcast_ref::<SandboxError>() {
                    Some(SandboxError::Exec { code, .. }) => u8::try_from(*code).ok(),
                    _ => e.downcast_ref::<crate::report::Exit>().map(|x| x.0),
                })
                .unwrap_or_else(|| super::container::error_code(&err));
            crate::report::render_error(&err);
            Ok(ExitCode::from(code))
        }
    }
}

/// The image's process with the user's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Entrypoint + Cmd.
    pub argv: Vec<String>,
    /// The environment, image first, overrides replacing same-named variables.
    pub env: Vec<String>,
    /// The working directory.
    pub workdir: String,
    /// The user.
    pub user: String,
}

/// Resolves argv, env, workdir and user from the image config and the flags, as docker does:
/// ARGs replace Cmd; `--entrypoint` replaces Entrypoint and clears Cmd.
pub fn process(
    config: &ImageConfiguration,
    args: &RunArgs,
    host_env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Process> {
    let c = config.config().clone().unwrap_or_default();
    let (entrypoint, cmd) = match &args.entrypoint {
        Some(ep) if ep.is_empty() => (Vec::new(), args.args.clone()),
        Some(ep) => (vec![ep.clone()], args.args.clone()),
        None => (
            c.entrypoint().clone().unwrap_or_default(),
            if args.args.is_empty() {
                c.cmd().clone().unwrap_or_default()
            } else {
                args.args.clone()
            },
        ),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!("no command given and the image {} has none", args.image);
    }
    let mut env: Vec<String> = c.env().clone().unwrap_or_default();
    let mut overrides = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the env file {}", file.display()))?;
        overrides.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    overrides.extend(args.env.iter().cloned());
    override_env(&mut env, overrides, host_env);
    let workdir = args
        .workdir
        .clone()
        .or_else(|| c.working_dir().clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !workdir.starts_with('/') {
        bail!("the working directory {workdir:?} is not an absolute path");
    }
    let user = args
        .user
        .clone()
        .or_else(|| c.user().clone())
        .unwrap_or_default();
    Ok(Process {
        argv,
        env,
        workdir,
        user,
    })
}

/// Applies `-e` values to `env`: `K=V` replaces a variable of the same name, `K` passes the
/// host's value (nothing when the host has none).
pub fn override_env(
    env: &mut Vec<String>,
    overrides: impl IntoIterator<Item = String>,
    host_env: &dyn Fn(&str) -> Option<String>,
) {
    for o in overrides {
        let entry = if o.contains('=') {
            o
        } else {
            match host_env(&o) {
                Some(v) => format!("{o}={v}"),
                None => continue,
            }
        };
        let key = entry.split('=').next().unwrap_or_default().to_owned();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
}

/// Parses `-v HOST:CTR[:ro|:rw]`.
pub fn parse_volume(spec: &str) -> anyhow::Result<ExtraMount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, target, readonly) = match parts.as_slice() {
        [h, t] => (*h, *t, false),
        [h, t, "ro"] => (*h, *t, true),
        [h, t, "rw"] => (*h, *t, false),
        _ => bail!("volume {spec:?} is not HOST:CTR[:ro|:rw]"),
    };
    if !host.starts_with('/') {
        bail!(
            "volume {spec:?}: the host path {host:?} must be absolute (named volumes are not supported)"
        );
    }
    if !target.starts_with('/') {
        bail!("volume {spec:?}: the container path {target:?} must be absolute");
    }
    let source = std::fs::canonicalize(host)
        .with_context(|| format!("volume {spec:?}: cannot find the host path {host}"))?;
    Ok(ExtraMount {
        kind: ExtraMountKind::Bind { source },
        target: PathBuf::from(target),
        readonly,
    })
}

/// The seccomp setting `--security-opt` asks for (the last `seccomp=` wins, as in docker).
/// `no-new-privileges` is accepted: every container runs with it.
pub fn parse_security_opts(opts: &[String]) -> anyhow::Result<Seccomp> {
    let mut seccomp = Seccomp::Default;
    for opt in opts {
        // docker also takes `key:value`.
        let (key, value) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .unwrap_or((opt, ""));
        match (key, value) {
            ("seccomp", "unconfined") => seccomp = Seccomp::Unconfined,
            ("seccomp", "") => bail!("--security-opt {opt:?}: name a profile file or `unconfined`"),
            ("seccomp", file) => {
                seccomp =
                    Seccomp::Profile(std::sync::Arc::new(Profile::from_file(Path::new(file))?))
            }
            ("no-new-privileges", "" | "true") => {}
            _ => bail!(
                "--security-opt {opt:?} is not supported: rbuild takes seccomp=unconfined, seccomp=FILE and no-new-privileges"
            ),
        }
    }
    Ok(seccomp)
}

fn run_container(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<u8> {
    let allow = super::network::entitlements(&args.allow)?;
    super::network::check_host_network(args.network == NetworkArg::Host, &allow)?;
    for h in &args.add_host {
        super::network::add_host(h)?;
    }
    let seccomp = parse_security_opts(&args.security_opt)?;
    let store = super::open_store(global)?;
    if (!args.publish.is_empty() || args.publish_all) && args.network != NetworkArg::Default {
        bail!(
            "-p and -P need the container's own network (--network default), not --network {}",
            args.network
                .to_possible_value()
                .map_or("?".into(), |v| v.get_name().to_owned())
        );
    }
    // The network starts while the image is found, unless the ports it forwards depend on
    // the image (-P).
    let mut started = if args.detach || args.publish_all {
        None
    } else {
        let ports = super::port::resolve(&args.publish, false, &[])?;
        Some(start_container(global, &store, args, &ports)?)
    };
    let pull = |store: &rbuild_cache::Store| {
        super::pull::pull_image(
            global,
            store,
            &args.image,
            args.platform.as_deref(),
            &args.registry_args,
        )
        .map(|pulled| pulled.descriptor)
    };
    let descriptor = match (args.pull, super::find_image(&store, &args.image)) {
        (PullPolicy::Always, _) => pull(&store)?,
        (_, Ok((_, descriptor))) => descriptor,
        (PullPolicy::Missing, Err(_)) => {
            pull(&store).map_err(|e| crate::missing::image_not_found(&store, &args.image, e))?
        }
        (PullPolicy::Never, Err(e)) => {
            return Err(e
                .context(format!("image {} is not in the store", args.image))
                .context(Hint(format!("pull it: rbuild pull {}", args.image))));
        }
    };
    // One platform's image: of an index, the one `--platform` names (else the host's best).
    // A platform the store's index lists but was never pulled is pulled, as a missing image is.
    let descriptor = match runnable(&store, &descriptor, args.platform.as_deref()) {
        Err(e)
            if args.pull == PullPolicy::Missing
                && matches!(
                    e.downcast_ref::<rbuild_cache::StoreError>(),
                    Some(rbuild_cache::StoreError::PlatformNotPulled { .. })
                ) =>
        {
            runnable(&store, &pull(&store)?, args.platform.as_deref())?
        }
        other => other?,
    };
    if args.detach {
        return run_detached(global, &store, &descriptor, args).map(|()| 0);
    }
    if args.health_args.any() {
        tracing::warn!(
            "health checks run for detached containers (rbuild run -d); the --health flags \
             have no effect here"
        );
    }
    let started = match started.take() {
        Some(started) => started,
        None => {
            let exposed = exposed_ports(&store, &descriptor)?;
            let ports = super::port::resolve(&args.publish, args.publish_all, &exposed)?;
            start_container(global, &store, args, &ports)?
        }
    };
    run_image(&store, &descriptor, args, seccomp, started)
}

/// The manifest of `descriptor` for `platform` (see [`super::image_for_platform`]), checked
/// to be runnable here: natively, or through an emulator the kernel has registered.
fn runnable(
    store: &rbuild_cache::Store,
    descriptor: &oci_spec::image::Descriptor,
    platform: Option<&str>,
) -> anyhow::Result<oci_spec::image::Descriptor> {
    let (manifest_desc, manifest) = super::image_for_platform(store, descriptor, platform)?;
    let config = store.read_config(&rbuild_cache::descriptor_digest(manifest.config())?)?;
    let image_platform = rbuild_compiler::plan::Platform::new(
        &config.os().to_string(),
        &config.architecture().to_string(),
        config.variant().as_deref(),
    );
    rbuild_executor::binfmt::handler_for(&image_platform)?;
    Ok(manifest_desc)
}

/// The image's raw config (what oci-spec does not model: `Healthcheck`, `StopSignal`).
fn raw_config(
    store: &rbuild_cache::Store,
    descriptor: &oci_spec::image::Descriptor,
) -> anyhow::Result<serde_json::Value> {
    let (_, manifest) = store.image_manifest(descriptor)?;
    let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
    serde_json::from_slice(&store.read_blob(&config_digest)?)
        .with_context(|| format!("image config {config_digest} is not JSON"))
}

/// The image's `ExposedPorts` (`80/tcp`).
fn exposed_ports(
    store: &rbuild_cache::Store,
    descriptor: &oci_spec::image::Descriptor,
) -> anyhow::Result<Vec<String>> {
    Ok(exposed_of(&raw_config(store, descriptor)?))
}

fn exposed_of(raw: &serde_json::Value) -> Vec<String> {
    raw.get("config")
        .and_then(|c| c.get("ExposedPorts"))
        .and_then(|e| e.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// `rbuild run -d`: records the container with its resolved settings, starts its
/// supervisor and prints its id once the command runs.
fn run_detached(
    global: &GlobalArgs,
    store: &rbuild_cache::Store,
    descriptor: &oci_spec::image::Descriptor,
    args: &RunArgs,
) -> anyhow::Result<()> {
    use super::container::{ContainerConfig, HealthConfig};
    if !args.limit_args.limits()?.is_empty() {
        // The supervisor runs the container from its recorded settings, which hold no limits.
        anyhow::bail!(
            "rbuild run -d does not take --memory, --memory-swap, --cpus or --pids-limit: a \
             detached container would run without them; run it in the foreground"
        );
    }
    let (manifest_desc, manifest) = store.image_manifest(descriptor)?;
    let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
    let config = store.read_config(&config_digest)?;
    let raw = raw_config(store, descriptor)?;
    let process = process(&config, args, &|k| std::env::var(k).ok())?;
    for v in &args.volume {
        parse_volume(v)?;
    }
    for h in &args.add_host {
        super::network::add_host(h)?;
    }
    let exposed = exposed_of(&raw);
    let ports = super::port::resolve(&args.publish, args.publish_all, &exposed)?;
    let containers = Containers::open(store.root())?;
    let id = new_id();
    let cfg = ContainerConfig {
        descriptor: descriptor.clone(),
        argv: process.argv.clone(),
        env: process.env,
        workdir: process.workdir,
        user: process.user,
        network: args
            .network
            .to_possible_value()
            .map_or("default".into(), |v| v.get_name().to_owned()),
        volumes: args.volume.clone(),
        add_hosts: args.add_host.clone(),
        security_opt: args.security_opt.clone(),
        tty: args.tty,
        interactive: args.interactive,
        ports,
        stop_signal: raw
            .get("config")
            .and_then(|c| c.get("StopSignal"))
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .to_owned(),
        healthcheck: args.health_args.apply(HealthConfig::from_image(&raw)),
    };
    let record = Record {
        id: id.clone(),
        name: args
            .name
            .clone()
            .unwrap_or_else(|| format!("run-{}", &id[..12])),
        image: args.image.clone(),
        image_digest: manifest_desc.digest().to_string(),
        command: process.argv,
        created: jiff::Timestamp::now().as_second(),
        state: State::Created,
        exit_code: None,
        finished: None,
        pid: 0,
        detached: true,
        init_pid: None,
        started: None,
        config: serde_json::to_value(&cfg).context("cannot record the container's settings")?,
        health: None,
    };
    let dir = containers.create(&record)?;
    let root = super::store_root(global)?;
    if let Err(e) = super::container::start_supervisor(global, &root, &containers, &id) {
        // A container whose command never started is not kept.
        containers.wait_unsupervised(&id, Some(Duration::from_secs(30)));
        let id_map = super::id_map(global, store)?;
        if let Err(e) = containers
            .forget(&id)
            .map_err(anyhow::Error::from)
            .and_then(|_| Ok(sandbox::remove_tree(&dir, &id_map)?))
        {
            tracing::warn!("cannot remove container {id}: {e:#}");
        }
        return Err(e);
    }
    crate::outln!("{id}");
    Ok(())
}

/// What a container gets before its image is looked at: the id map, and the network stack,
/// started first so that pasta configures the namespace while the image is found and the
/// root prepared (the command starts once it has).
struct Started {
    id_map: IdMap,
    net_stack: Option<Arc<NetStack>>,
}

fn start_container(
    global: &GlobalArgs,
    store: &rbuild_cache::Store,
    args: &RunArgs,
    ports: &[rbuild_executor::sandbox::PortForward],
) -> anyhow::Result<Started> {
    let id_map = super::id_map(global, store)?;
    if id_map.kind == MappingKind::Single {
        tracing::warn!(
            "no subordinate ids in /etc/subuid and /etc/subgid for this user: only root exists in the container"
        );
    }
    let net_stack = match args.network {
        NetworkArg::Default => Some(Arc::new(
            NetStack::start_forwarding(&id_map, ports)
                .context("cannot start the container's network")?,
        )),
        NetworkArg::Host | NetworkArg::None => None,
    };
    Ok(Started { id_map, net_stack })
}

fn run_image(
    store: &rbuild_cache::Store,
    descriptor: &oci_spec::image::Descriptor,
    args: &RunArgs,
    seccomp: Seccomp,
    Started { id_map, net_stack }: Started,
) -> anyhow::Result<u8> {
    let (manifest_desc, manifest) = store.image_manifest(descriptor)?;
    let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
    let config = store.read_config(&config_digest)?;
    let process = process(&config, args, &|k| std::env::var(k).ok())?;
    let mounts = args
        .volume
        .iter()
        .map(|v| parse_volume(v))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let layers = rbuild_engine::snapshots::ensure_snapshots(
        store,
        &config,
        &manifest,
        &id_map,
        &crate::limits::get()?,
    )?;

    let containers = Containers::open(store.root())?;
    let id = new_id();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("run-{}", &id[..12]));
    let mut record = Record {
        id: id.clone(),
        name,
        image: args.image.clone(),
        image_digest: manifest_desc.digest().to_string(),
        command: process.argv.clone(),
        created: jiff::Timestamp::now().as_second(),
        state: State::Running,
        exit_code: None,
        finished: None,
        pid: std::process::id(),
        detached: false,
        init_pid: None,
        started: None,
        config: serde_json::Value::Null,
        health: None,
    };
    let dir = containers.create(&record)?;
    let confined = Confinement {
        mounts,
        seccomp,
        net_stack,
    };
    let result = run_in(&dir, &layers, &process, args, confined, &id_map);
    let exit = match &result {
        Ok(outcome) => Some(outcome.exit_code),
        Err(e) => e
            .chain()
            .find_map(|c| match c.downcast_ref::<SandboxError>() {
                Some(SandboxError::Exec { code, .. }) => Some(*code),
                _ => None,
            }),
    };
    if args.rm {
        let forgot = containers.forget(&id);
        let removed = sandbox::remove_tree(&dir, &id_map);
        if let Err(e) = forgot {
            tracing::warn!("{e}");
        }
        if let Err(e) = removed {
            tracing::warn!("cannot remove container {id}: {e}");
        }
    } else {
        record.state = State::Exited;
        record.exit_code = Some(exit.unwrap_or(i32::from(EXIT_RBUILD)));
        record.finished = Some(jiff::Timestamp::now().as_second());
        containers.save(&record)?;
    }
    let outcome = result?;
    if outcome.oom_killed {
        return Err(
            anyhow::Error::new(crate::report::Exit(137)).context(format!(
                "container {} {}",
                record.name,
                oom_message(outcome.memory_limit)
            )),
        );
    }
    Ok(u8::try_from(outcome.exit_code).unwrap_or(255))
}

/// What the container gets besides the image's process: its volumes, its system call filter
/// and its network stack.
struct Confinement {
    mounts: Vec<ExtraMount>,
    seccomp: Seccomp,
    net_stack: Option<Arc<NetStack>>,
}

/// Prepares the root and runs the process, forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT.
fn run_in(
    dir: &Path,
    layers: &[PathBuf],
    process: &Process,
    args: &RunArgs,
    confined: Confinement,
    id_map: &IdMap,
) -> anyhow::Result<sandbox::Outcome> {
    let Confinement {
        mounts,
        seccomp,
        net_stack,
    } = confined;
    let mut spec = RunSpec::new(Command::Exec(process.argv.clone()));
    spec.seccomp = seccomp;
    spec.limits = args.limit_args.limits()?;
    if !spec.limits.is_empty() {
        spec.cgroup = Some(
            CgroupParent::detect(&spec.limits)
                .context("cannot honour the container's resource limits")?,
        );
    }
    spec.env = process.env.clone();
    spec.workdir = process.workdir.clone();
    spec.user = process.user.clone();
    spec.network = match args.network {
        NetworkArg::Default => Network::Private,
        NetworkArg::Host => Network::Host,
        NetworkArg::None => Network::None,
    };
    spec.net_stack = net_stack;
    spec.add_hosts = args
        .add_host
        .iter()
        .map(|h| super::network::add_host(h))
        .collect::<anyhow::Result<_>>()?;
    spec.mounts = mounts;
    spec.id_map = id_map.clone();
    spec.stdio = if args.tty {
        sandbox::Stdio::Tty
    } else {
        sandbox::Stdio::Inherit
    };
    if !args.interactive {
        // Like docker without -i: the command reads an empty stdin.
        let null = std::fs::File::open("/dev/null").context("cannot open /dev/null")?;
        rustix::stdio::dup2_stdin(&null).context("cannot redirect stdin")?;
    }
    spec.hostname = dir
        .file_name()
        .map(|n| n.to_string_lossy()[..12].to_owned())
        .unwrap_or_else(|| "rbuild".into());
    let fs_dir = dir.join("fs");
    std::fs::create_dir_all(&fs_dir)
        .and_then(|()| sandbox::give_to_container_root(&fs_dir, id_map))
        .with_context(|| format!("cannot create {}", fs_dir.display()))?;
    let root = snapshot::prepare(
        SnapshotterKind::detect(),
        layers,
        &fs_dir,
        &spec.mountpoints(),
    )
    .context("cannot prepare the container's root file system")?;
    let _forwarder = forward_signals(spec.cancel.clone())?;
    let outcome = sandbox::Sandbox::run(&spec, &root, &mut |_, _| {})
        .with_context(|| format!("cannot run {:?}", process.argv))?;
    Ok(outcome)
}

/// Forwards the stop signals to the command; kills the sandbox when it has not ended
/// [`STOP_GRACE`] after the first one.
pub(crate) fn forward_signals(
    cancel: CancelHandle,
) -> anyhow::Result<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        .context("cannot install signal handlers")?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        let armed = AtomicBool::new(false);
        for sig in signals.forever() {
            let Some(signal) = rustix::process::Signal::from_named_raw(sig) else {
                continue;
            };
            tracing::debug!("forwarding signal {sig} to the container");
            cancel.signal(signal);
            if !armed.swap(true, Ordering::SeqCst) {
                let cancel = cancel.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(STOP_GRACE);
                    cancel.cancel();
                });
            }
        }
    });
    Ok(handle)
}

/// A new container id: 64 hex digits.
pub(crate) fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut seed = Vec::new();
    seed.extend_from_slice(&nanos.to_le_bytes());
    seed.extend_from_slice(&std::process::id().to_le_bytes());
    if let Ok(random) = std::fs::read("/proc/sys/kernel/random/uuid") {
        seed.extend_from_slice(&random);
    }
    Digest::of(&seed).hex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(a: &[&str]) -> RunArgs {
        T::parse_from(std::iter::once("run").chain(a.iter().copied())).run
    }

    fn config() -> ImageConfiguration {
        serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
            "config":{"Entrypoint":["/ep"],"Cmd":["default"],"Env":["A=1","B=2"],
            "WorkingDir":"/w","User":"app"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn args_replace_cmd_and_entrypoint_clears_it() {
        let none = |_: &str| None;
        let p = process(&config(), &args(&["img"]), &none).unwrap();
        assert_eq!(p.argv, ["/ep", "default"]);
        assert_eq!((p.workdir.as_str(), p.user.as_str()), ("/w", "app"));
        let p = process(&config(), &args(&["img", "x", "-y"]), &none).unwrap();
        assert_eq!(p.argv, ["/ep", "x", "-y"]);
        let p = process(&config(), &args(&["--entrypoint", "sh", "img"]), &none).unwrap();
        assert_eq!(p.argv, ["sh"]);
        let p = process(&config(), &args(&["--entrypoint", "", "img", "ls"]), &none).unwrap();
        assert_eq!(p.argv, ["ls"]);
        assert!(process(&config(), &args(&["--entrypoint", "", "img"]), &none).is_err());
    }

    #[test]
    fn env_overrides_replace_by_name() {
        let host = |k: &str| (k == "H").then(|| "host".to_owned());
        let a = args(&["-e", "B=3", "-e", "H", "-e", "MISSING", "-e", "C=4", "img"]);
        let p = process(&config(), &a, &host).unwrap();
        assert_eq!(p.env, ["A=1", "B=3", "H=host", "C=4"]);
        let p = process(&config(), &args(&["-w", "/x", "-u", "0", "img"]), &host).unwrap();
        assert_eq!((p.workdir.as_str(), p.user.as_str()), ("/x", "0"));
        assert!(process(&config(), &args(&["-w", "rel", "img"]), &host).is_err());
    }

    #[test]
    fn volumes_parse() {
        let m = parse_volume("/tmp:/mnt:ro").unwrap();
        assert!(m.readonly);
        assert_eq!(m.target, PathBuf::from("/mnt"));
        assert!(!parse_volume("/tmp:/mnt").unwrap().readonly);
        for bad in [
            "named:/mnt",
            "/tmp:rel",
            "/tmp",
            "/tmp:/mnt:xx",
            "/no/such/dir:/mnt",
        ] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn security_opts_parse() {
        let opts =
            |o: &[&str]| parse_security_opts(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(matches!(opts(&[]).unwrap(), Seccomp::Default));
        assert!(matches!(
            opts(&["seccomp=unconfined"]).unwrap(),
            Seccomp::Unconfined
        ));
        assert!(matches!(
            opts(&["seccomp:unconfined", "no-new-privileges"]).unwrap(),
            Seccomp::Unconfined
        ));
        let e = format!(
            "{:#}",
            opts(&["seccomp=/no/such/profile.json"]).unwrap_err()
        );
        assert!(
            e.contains("cannot read seccomp profile /no/such/profile.json"),
            "{e}"
        );
        let e = format!("{:#}", opts(&["apparmor=unconfined"]).unwrap_err());
        assert!(
            e.contains("\"apparmor=unconfined\" is not supported"),
            "{e}"
        );
    }
}
