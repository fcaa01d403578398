//! `rbuild rm`: removes containers kept by `rbuild run` (their record and writable layer).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use rbuild_cache::containers::Containers;

use super::container::{self, Status};
use crate::cli::GlobalArgs;

/// `rbuild rm [-f] NAME|ID...`
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container (SIGKILL) before removing it.
    #[arg(short, long)]
    pub force: bool,
    /// Container names or id prefixes.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: RmArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    let id_map = super::id_map(global, &store)?;
    container::for_each(&args.containers, |what| {
        let r = containers.find(what)?;
        if container::status(&containers, &r) == Status::Running {
            if !args.force || !r.detached {
                bail!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    r.name
                );
            }
            let _ = container::signal(&containers, &r, rustix::process::Signal::KILL);
            if !containers.wait_unsupervised(&r.id, Some(Duration::from_secs(30))) {
                bail!("container {} did not stop after SIGKILL", r.name);
            }
        }
        let dir = containers.forget(&r.id)?;
        rbuild_executor::sandbox::remove_tree(&dir, &id_map)?;
        Ok(())
    })
}
