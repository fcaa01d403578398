//! `rbuild push NAME [DEST]`: uploads an image of the store to a registry (to NAME itself, or
//! to DEST). Blobs the registry has cost one HEAD each; blobs of an image pulled from another
//! repository of the same registry are mounted from there. stdout gets the pushed reference
//! pinned to its digest.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use rbuild_engine::output::LayerCompression;
use rbuild_engine::push::push_descriptor;

use super::registry::RegistryArgs;
use crate::cli::GlobalArgs;

/// `rbuild push`
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The image in the store (name or id).
    pub name: String,
    /// Where to push it (default: its name): `registry.example:5000/app:1`.
    pub dest: Option<String>,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

pub fn run(global: &GlobalArgs, args: PushArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let (found_as, descriptor) = super::find_image(&store, &args.name)?;
    let dest_text = match (&args.dest, &found_as) {
        (Some(d), _) => d.clone(),
        (None, Some(name)) => name.clone(),
        (None, None) => bail!("{} is an image id: name a destination", args.name),
    };
    let dest = crate::names::parse_reference(&dest_text)?;
    let result = push_descriptor(
        &store,
        &descriptor,
        &dest,
        &super::registry::registry_config(&args.registry_args),
        crate::progress::reporter(crate::progress::Mode::detect(global.quiet), "pushing"),
        &LayerCompression::default(),
        None,
    )
    .with_context(|| format!("cannot push {} to {dest}", args.name))?;
    crate::outln!("{}@{}", dest.name(), result.digest);
    Ok(ExitCode::SUCCESS)
}
