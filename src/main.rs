//! `rbuild`: a daemonless, rootless OCI image builder.
//!
//! The binary parses the command line into settings, runs one command, and renders any
//! error as `error:` / `Caused by:` / `hint:` on stderr. Data goes to stdout; logs and
//! progress go to stderr.

#![forbid(unsafe_code)]

mod build_progress;
mod cli;
mod commands;
mod config;
mod env;
mod limits;
mod out;
mod progress;
mod report;

use rbuild_engine::{missing, names};

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    report::init_logging(cli.global.verbose, cli.global.quiet);
    let result = commands::run(cli);
    // A closed stdout ends the command quietly, whatever failed because of it.
    if out::closed() {
        return ExitCode::from(out::EXIT_CLOSED);
    }
    match result {
        Ok(code) => code,
        Err(err) => report::render_error(&err),
    }
}
