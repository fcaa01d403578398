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
    /// More log output on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the build plan (or the parse tree) of a Dockerfile.
    Plan(commands::plan::PlanArgs),
    /// Log in to a registry: check the credentials, then store them in the docker config.
    Login(commands::login::LoginArgs),
    /// Log out from a registry: remove its stored credentials.
    Logout(commands::logout::LogoutArgs),
}

pub fn parse() -> Cli {
    Cli::parse()
}
