//! `rbuild wait`: waits until containers stop, printing their exit codes.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use rbuild_cache::containers::Containers;

use super::container::{self, Status};
use crate::cli::GlobalArgs;

/// `rbuild wait NAME...`
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The containers (names or id prefixes).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: WaitArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    let mut failed = false;
    for what in &args.containers {
        let waited = (|| -> anyhow::Result<i32> {
            let r = containers.find(what)?;
            if r.detached {
                containers.wait_unsupervised(&r.id, None);
            } else {
                while container::status(&containers, &r) == Status::Running {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
            let r = containers.find(&r.id)?;
            r.exit_code
                .with_context(|| format!("container {} ended without an exit code", r.name))
        })();
        match waited {
            Ok(code) => crate::outln!("{code}"),
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
