//! `rbuild tag SOURCE TARGET`: gives an image another name.

use std::process::ExitCode;

use clap::Args;

use crate::cli::GlobalArgs;

/// `rbuild tag SOURCE TARGET`
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image (name or id).
    pub source: String,
    /// The new name.
    pub target: String,
}

pub fn run(global: &GlobalArgs, args: TagArgs) -> anyhow::Result<ExitCode> {
    let target = crate::names::normalize_name(&args.target)?;
    let store = super::open_store(global)?;
    let (_, descriptor) = super::find_image(&store, &args.source)?;
    store.tag(&target, &descriptor)?;
    Ok(ExitCode::SUCCESS)
}
