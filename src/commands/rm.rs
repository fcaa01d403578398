//! `rbuild rm`: removes containers kept by `rbuild run` (their record and writable layer).

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use rbuild_cache::containers::{Containers, State};

use crate::cli::GlobalArgs;

/// `rbuild rm NAME|ID...`
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Container names or id prefixes.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: RmArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    let id_map = super::id_map(global, &store)?;
    let mut failed = false;
    for what in &args.containers {
        let result = (|| -> anyhow::Result<()> {
            let r = containers.find(what)?;
            if r.state == State::Running
                && std::path::Path::new(&format!("/proc/{}", r.pid)).exists()
            {
                bail!("container {what} is running (pid {})", r.pid);
            }
            let dir = containers.forget(&r.id)?;
            rbuild_executor::sandbox::remove_tree(&dir, &id_map)?;
            Ok(())
        })();
        match result {
            Ok(()) => crate::outln!("{what}"),
            Err(e) => {
                crate::report::render_error(&e);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
