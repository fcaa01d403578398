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
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
}

pub fn parse() -> Cli {
    Cli::parse()
}
