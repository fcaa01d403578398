//! One module per subcommand. Each resolves its arguments into settings, then does the work.

pub mod login;
pub mod logout;
pub mod plan;
pub mod registry;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the command the user asked for and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan(args) => plan::run(args),
        Command::Login(args) => login::run(args),
        Command::Logout(args) => logout::run(args),
    }
}
