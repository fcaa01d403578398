//! `rbuild stop`: ends detached containers, with the image's stop signal first and SIGKILL
//! once the timeout has passed.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use rbuild_cache::containers::Containers;

use super::container::{self, ContainerConfig, Status};
use crate::cli::GlobalArgs;

/// `rbuild stop [-t SECONDS] NAME...`
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before killing the container.
    #[arg(
        short = 't',
        long = "time",
        value_name = "SECONDS",
        default_value_t = 10
    )]
    pub time: u64,
    /// The containers (names or id prefixes).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: StopArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    container::for_each(&args.containers, |what| {
        stop(&containers, what, Duration::from_secs(args.time))
    })
}

/// Stops the container `what` (nothing to do when it is not running).
pub fn stop(containers: &Containers, what: &str, grace: Duration) -> anyhow::Result<()> {
    let r = containers.find(what)?;
    if container::status(containers, &r) != Status::Running {
        return Ok(());
    }
    if !r.detached {
        bail!(
            "container {} runs in the foreground (pid {}): stop that rbuild process",
            r.name,
            r.pid
        );
    }
    let stop_signal = ContainerConfig::of(&r)
        .ok()
        .map(|c| c.stop_signal)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "SIGTERM".into());
    let sig = container::parse_signal(&stop_signal)?;
    // Gone meanwhile: nothing left to stop.
    let _ = container::signal(containers, &r, sig);
    if containers.wait_unsupervised(&r.id, Some(grace)) {
        return Ok(());
    }
    tracing::debug!(
        "container {} did not stop within {} s: killing it",
        r.name,
        grace.as_secs()
    );
    let _ = container::signal(containers, &r, rustix::process::Signal::KILL);
    if !containers.wait_unsupervised(&r.id, Some(Duration::from_secs(30))) {
        bail!("container {} did not stop after SIGKILL", r.name);
    }
    Ok(())
}
