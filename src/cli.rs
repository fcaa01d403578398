//! The command line: global options and one subcommand per file in `commands/`.

use clap::{Args, Parser, Subcommand};

use crate::commands;

/// A daemonless, rootless OCI image builder and Dockerfile compiler.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output on stderr (-v: debug, -vv: trace). Given before the subcommand
    /// (`rbuild -v run ...`): `run -v` is a volume, as in docker.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The store directory (default: `$XDG_DATA_HOME/rbuild`, or `/var/lib/rbuild` for root).
    #[arg(long, global = true, value_name = "DIR", env = crate::env::RBUILD_ROOT)]
    pub root: Option<std::path::PathBuf>,
    /// As root: `host` (container ids are host ids, the default), `remap` (onto root's
    /// /etc/subuid and /etc/subgid ranges) or `remap:UID:GID:SIZE`. A store keeps the
    /// mapping it was first used with.
    #[arg(long, global = true, value_name = "MODE", value_parser = clap::value_parser!(crate::config::Userns))]
    pub userns: Option<crate::config::Userns>,
    /// The config file (default: `$XDG_CONFIG_HOME/rbuild/config.toml` when it exists).
    #[arg(long, global = true, value_name = "FILE", env = crate::env::RBUILD_CONFIG)]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile (`rbuild -t NAME .` is `rbuild build -t NAME .`).
    Build(Box<commands::build::BuildArgs>),
    /// Build the targets of compose files and docker bake files (HCL, JSON) in one process,
    /// as `docker buildx bake`: a step two targets share runs once.
    Bake(Box<commands::bake::BakeArgs>),
    /// Print the build plan (or the parse tree) of a Dockerfile.
    Plan(commands::plan::PlanArgs),
    /// Check a Dockerfile: BuildKit's build checks, best practices, and what only the
    /// resolved build shows (base image ENV and users, .dockerignore, secrets in the context).
    Check(commands::check::CheckArgs),
    /// Make an image from a root file system directory or tarball.
    Import(commands::import::ImportArgs),
    /// List the images in the store.
    Images(commands::images::ImagesArgs),
    /// Give an image another name.
    Tag(commands::tag::TagArgs),
    /// Remove images (their blobs go when no other image and no running rbuild uses them).
    Rmi(commands::rmi::RmiArgs),
    /// Show a container's or an image's details as JSON.
    Inspect(commands::inspect::InspectArgs),
    /// Write images to a docker-archive or OCI-archive tarball.
    Save(commands::save::SaveArgs),
    /// Read images from a docker-archive or OCI-archive tarball.
    Load(commands::load::LoadArgs),
    /// Log in to a registry: check the credentials, then store them in the docker config.
    Login(commands::login::LoginArgs),
    /// Log out from a registry: remove its stored credentials.
    Logout(commands::logout::LogoutArgs),
    /// Run a command in a new container from an image.
    Run(commands::run::RunArgs),
    /// List containers.
    Ps(commands::ps::PsArgs),
    /// Remove containers (`-f`: running ones too).
    Rm(commands::rm::RmArgs),
    /// Show the output of a detached container.
    Logs(commands::logs::LogsArgs),
    /// Stop detached containers: the image's stop signal, then SIGKILL after a timeout.
    Stop(commands::stop::StopArgs),
    /// Send a signal to detached containers (SIGKILL by default).
    Kill(commands::kill::KillArgs),
    /// Start stopped detached containers again.
    Start(commands::start::StartArgs),
    /// Wait until containers stop and print their exit codes.
    Wait(commands::wait::WaitArgs),
    /// Run a command in a running detached container.
    Exec(commands::exec::ExecArgs),
    /// List a container's published ports.
    Port(commands::port::PortArgs),
    /// The supervisor of a detached container (started by `run -d` and `start`).
    #[command(name = "container-supervise", hide = true)]
    ContainerSupervise(commands::supervise::SuperviseArgs),
    /// Where an image's bytes go, what is wasted, and what to change (exit 3 on --fail-on).
    Report(commands::report::ReportArgs),
    /// The packages an image holds (dpkg, apk, rpm, Python, npm, Go, Java, Rust), as a table, SPDX or CycloneDX.
    Sbom(commands::sbom::SbomArgs),
    /// Fetch an image from a registry into the store.
    Pull(commands::pull::PullArgs),
    /// Upload an image of the store to a registry.
    Push(commands::push::PushArgs),
    /// Remove build cache and blobs no tagged image needs.
    Prune(commands::prune::PruneArgs),
    /// The store: `system df` (disk usage by kind), `system config` (the settings in effect).
    System(commands::system::SystemArgs),
}

pub fn parse() -> Cli {
    let args = match with_default_subcommand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => explain_unknown_flag(e, &args).exit(),
    }
}

/// `rbuild [GLOBAL OPTIONS] ARGS...` where the first argument after the global options is
/// not a subcommand is `rbuild [GLOBAL OPTIONS] build ARGS...`, as the design's CLI says
/// (`rbuild -t app .`). A first word that names no file, directory or URL and is close to a
/// subcommand is a typo of it, not a build context: `unknown command imagse; did you mean
/// images?`.
fn with_default_subcommand(
    mut args: Vec<std::ffi::OsString>,
) -> Result<Vec<std::ffi::OsString>, clap::Error> {
    use clap::CommandFactory as _;
    let cmd = Cli::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .flat_map(|s| {
            std::iter::once(s.get_name().to_string()).chain(s.get_all_aliases().map(str::to_string))
        })
        .chain(["help".to_string()])
        .collect();
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        match a.as_ref() {
            "-q" | "--quiet" => i += 1,
            "--root" | "--config" | "--userns" => i += 2,
            s if s.starts_with("--root=")
                || s.starts_with("--config=")
                || s.starts_with("--userns=")
                || s == "--verbose" =>
            {
                i += 1
            }
            s if s.starts_with("-v") && s[1..].chars().all(|c| c == 'v') => i += 1,
            "-h" | "--help" | "-V" | "--version" => return Ok(args),
            s if names.iter().any(|n| n == s) => return Ok(args),
            s => {
                if !s.starts_with('-')
                    && !names_a_context(&args[i])
                    && let Some(best) =
                        rbuild_compiler::suggest::closest(s, names.iter().map(String::as_str))
                {
                    return Err(Cli::command().error(
                        clap::error::ErrorKind::InvalidSubcommand,
                        format!(
                            "unknown command {}; did you mean {best}?",
                            rbuild_compiler::text::escape_controls(s)
                        ),
                    ));
                }
                args.insert(i, "build".into());
                return Ok(args);
            }
        }
    }
    Ok(args)
}

/// Whether a word can be meant as a build context: `-`, a URL, or an existing path.
fn names_a_context(word: &std::ffi::OsStr) -> bool {
    let text = word.to_string_lossy();
    text == "-"
        || text.contains("://")
        || text.starts_with("git@")
        || std::fs::symlink_metadata(word).is_ok()
}

/// Docker flags rbuild does not have, per subcommand: what to use instead (empty when there
/// is nothing).
const DOCKER_FLAGS: &[(&str, &[&str], &str)] = &[
    (
        "build",
        &["--squash"],
        "to get one layer, copy the last stage onto an empty one: `FROM scratch` then `COPY --from=STAGE / /`",
    ),
    (
        "build",
        &["--load"],
        "the image always goes into rbuild's store (`-o type=docker,dest=FILE` writes a file for `docker load`)",
    ),
    (
        "build",
        &["--rm", "--force-rm"],
        "rbuild keeps no intermediate containers; leave the flag out",
    ),
    (
        "build",
        &[
            "--cpu-shares",
            "--cpuset-cpus",
            "--cpuset-mems",
            "--shm-size",
            "--ulimit",
            "--cgroup-parent",
        ],
        "build steps take --memory, --memory-swap, --cpu-quota and --cpu-period (config `limits.*`) and no other cgroup setting",
    ),
    (
        "build",
        &["--builder"],
        "rbuild builds in its own process; there are no builder instances",
    ),
    (
        "build",
        &[
            "--add-host",
            "--security-opt",
            "--isolation",
            "--allow",
            "--compress",
            "--stream",
            "--disable-content-trust",
        ],
        "",
    ),
    (
        "run",
        &["--expose"],
        "publish the port with `-p HOSTPORT:CTRPORT` (or EXPOSE it in the Dockerfile and use -P)",
    ),
    (
        "run",
        &["--restart"],
        "rbuild has no daemon to restart containers; use a service manager (systemd)",
    ),
    (
        "run",
        &["--cpu-shares", "--cpuset-cpus", "--shm-size", "--ulimit"],
        "containers take --memory, --memory-swap, --cpus and --pids-limit and no other cgroup setting",
    ),
    (
        "run",
        &["--mount"],
        "use `-v HOST:CTR[:ro]` for a bind mount",
    ),
    (
        "run",
        &["--privileged", "--cap-add", "--cap-drop", "--device"],
        "containers get docker's default capabilities and devices, no more",
    ),
    (
        "run",
        &[
            "--hostname",
            "--add-host",
            "--dns",
            "-l",
            "--label",
            "--log-driver",
            "-a",
            "--attach",
        ],
        "",
    ),
];

/// The subcommand `args` run (after [`with_default_subcommand`]), if any.
fn subcommand_of(args: &[std::ffi::OsString]) -> Option<String> {
    use clap::CommandFactory as _;
    let cmd = Cli::command();
    args.iter()
        .skip(1)
        .map(|a| a.to_string_lossy())
        .find(|a| cmd.find_subcommand(a.as_ref()).is_some())
        .map(|a| a.into_owned())
}

/// clap's "unexpected argument" error without its tip to pass the flag as a value after
/// `--` (the build context or the container's command, never what was meant). A docker flag
/// rbuild does not have is named as such, with what to use instead.
fn explain_unknown_flag(err: clap::Error, args: &[std::ffi::OsString]) -> clap::Error {
    use clap::CommandFactory as _;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::UnknownArgument {
        return err;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return err;
    };
    let flag = arg.split_once('=').map_or(arg.as_str(), |(f, _)| f);
    let sub = subcommand_of(args);
    let mut root = Cli::command();
    root.build();
    let mut cmd = match &sub {
        Some(s) => root
            .find_subcommand(s)
            .cloned()
            .unwrap_or_else(|| root.clone()),
        None => root.clone(),
    };
    let shown = rbuild_compiler::text::escape_controls(flag);
    let docker = sub.as_deref().and_then(|s| {
        DOCKER_FLAGS
            .iter()
            .find(|(c, flags, _)| *c == s && flags.contains(&flag))
            .map(|(_, _, instead)| *instead)
    });
    let verbose =
        matches!(flag, "--verbose") || (flag.len() > 1 && flag[1..].chars().all(|c| c == 'v'));
    let message = match (docker, &sub) {
        _ if verbose && sub.is_some() => format!(
            "unknown flag {shown} for rbuild {s}: -v goes before the subcommand (rbuild -v {s} ...)",
            s = sub.as_deref().unwrap_or_default()
        ),
        (Some(""), Some(s)) => format!("rbuild {s} does not support {shown} (a docker flag)"),
        (Some(instead), Some(s)) => {
            format!("rbuild {s} does not support {shown} (a docker flag): {instead}")
        }
        _ => {
            let mut m = format!("unknown flag {shown}");
            let longs: Vec<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long())
                .map(|l| format!("--{l}"))
                .collect();
            if flag.starts_with("--")
                && let Some(best) =
                    rbuild_compiler::suggest::closest(flag, longs.iter().map(String::as_str))
            {
                m.push_str(&format!("; did you mean {best}?"));
            }
            m
        }
    };
    cmd.error(ErrorKind::UnknownArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: &[&str]) -> Vec<String> {
        with_default_subcommand(args.iter().map(Into::into).collect())
            .expect("no typo")
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn build_is_the_default_subcommand() {
        assert_eq!(
            expand(&["rbuild", "-t", "x", "."]),
            ["rbuild", "build", "-t", "x", "."]
        );
        assert_eq!(
            expand(&["rbuild", "--root", "/r", "-v", "."]),
            ["rbuild", "--root", "/r", "-v", "build", "."]
        );
        assert_eq!(
            expand(&["rbuild", "--userns", "remap", "-t", "x", "."]),
            ["rbuild", "--userns", "remap", "build", "-t", "x", "."]
        );
        assert_eq!(expand(&["rbuild", "run", "img"]), ["rbuild", "run", "img"]);
        assert_eq!(expand(&["rbuild", "--help"]), ["rbuild", "--help"]);
        assert_eq!(expand(&["rbuild"]), ["rbuild"]);
        assert_eq!(
            expand(&["rbuild", "-q", "images"]),
            ["rbuild", "-q", "images"]
        );
    }

    #[test]
    fn a_typo_of_a_subcommand_is_not_a_build_context() {
        let typo = |args: &[&str]| {
            with_default_subcommand(args.iter().map(Into::into).collect())
                .expect_err("a typo")
                .to_string()
        };
        assert!(
            typo(&["rbuild", "imagse"]).contains("unknown command imagse; did you mean images?")
        );
        assert!(
            typo(&["rbuild", "--root", "/r", "inspekt", "x"])
                .contains("unknown command inspekt; did you mean inspect?")
        );
        // Words that are nothing like a subcommand, and paths, stay build contexts.
        assert_eq!(
            expand(&["rbuild", "no-such-dir-here"]),
            ["rbuild", "build", "no-such-dir-here"]
        );
        assert_eq!(expand(&["rbuild", "-"]), ["rbuild", "build", "-"]);
    }
}
