//! `rbuild start`: starts stopped detached containers again, on the same file system
//! (their writable layer is kept until `rbuild rm`) with the same settings.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use rbuild_cache::containers::Containers;

use super::container::{self, Status};
use crate::cli::GlobalArgs;

/// `rbuild start NAME...`
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The containers (names or id prefixes).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: StartArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let root = super::store_root(global)?;
    let containers = Containers::open(store.root())?;
    container::for_each(&args.containers, |what| {
        let r = containers.find(what)?;
        if r.config.is_null() {
            bail!(
                "container {} ran in the foreground: its settings were not kept, run the image again",
                r.name
            );
        }
        match container::status(&containers, &r) {
            Status::Running => Ok(()),
            _ => container::start_supervisor(global, &root, &containers, &r.id),
        }
    })
}
