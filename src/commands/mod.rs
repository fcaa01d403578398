//! One module per subcommand. Each resolves its arguments into settings, then does the work.

pub mod plan;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

/// Runs the command the user asked for and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan(args) => plan::run(args),
    }
}
