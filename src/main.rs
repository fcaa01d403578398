//! `rbuild`: a daemonless, rootless OCI image builder.
//!
//! The binary parses the command line into settings, runs one command, and renders any
//! error as `error:` / `Caused by:` / `hint:` on stderr. Data goes to stdout; logs and
//! progress go to stderr.

mod build;
mod cli;
mod commands;
mod config;
mod env;
mod limits;
mod names;
mod progress;
mod report;
mod transfer;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    report::init_logging(cli.global.verbose, cli.global.quiet);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => report::render_error(&err),
    }
}
