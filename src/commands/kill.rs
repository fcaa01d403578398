//! `rbuild kill`: sends a signal to the command of running detached containers.

use std::process::ExitCode;

use clap::Args;
use rbuild_cache::containers::Containers;

use super::container;
use crate::cli::GlobalArgs;

/// `rbuild kill [-s SIGNAL] NAME...`
#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal (name or number).
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// The containers (names or id prefixes).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: KillArgs) -> anyhow::Result<ExitCode> {
    let sig = container::parse_signal(&args.signal)?;
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    container::for_each(&args.containers, |what| {
        let r = containers.find(what)?;
        container::signal(&containers, &r, sig)
    })
}
