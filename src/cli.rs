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
    /// Print the build plan (or the parse tree) of a Dockerfile.
    Plan(commands::plan::PlanArgs),
    /// Make an image from a root file system directory or tarball.
    Import(commands::import::ImportArgs),
    /// List the images in the store.
    Images(commands::images::ImagesArgs),
    /// Give an image another name.
    Tag(commands::tag::TagArgs),
    /// Remove images (their blobs go when no other image uses them).
    Rmi(commands::rmi::RmiArgs),
    /// Show an image's manifest and config as JSON.
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
    /// Remove containers.
    Rm(commands::rm::RmArgs),
    /// Where an image's bytes go, what is wasted, and what to change (exit 3 on --fail-on).
    Report(commands::report::ReportArgs),
    /// Fetch an image from a registry into the store.
    Pull(commands::pull::PullArgs),
    /// Upload an image of the store to a registry.
    Push(commands::push::PushArgs),
    /// Remove build cache and blobs no tagged image needs.
    Prune(commands::prune::PruneArgs),
    /// Store maintenance: `system df` shows the store's disk usage.
    System(commands::system::SystemArgs),
}

pub fn parse() -> Cli {
    Cli::parse_from(with_default_subcommand(std::env::args_os().collect()))
}

/// `rbuild [GLOBAL OPTIONS] ARGS...` where the first argument after the global options is
/// not a subcommand is `rbuild [GLOBAL OPTIONS] build ARGS...`, as the design's CLI says
/// (`rbuild -t app .`).
fn with_default_subcommand(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
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
            "-h" | "--help" | "-V" | "--version" => return args,
            s if names.iter().any(|n| n == s) => return args,
            _ => {
                args.insert(i, "build".into());
                return args;
            }
        }
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: &[&str]) -> Vec<String> {
        with_default_subcommand(args.iter().map(Into::into).collect())
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
}
