//! `rbuild pull [--platform os/arch[/variant]] NAME`: fetches an image from its registry into
//! the store and names it there by its full name (`REGISTRY/REPOSITORY:TAG`, or
//! `REGISTRY/REPOSITORY@sha256:...` for a pull by digest). stdout gets the pulled reference
//! pinned to the digest the registry gave for the name.

use std::process::ExitCode;

use clap::Args;
pub use rbuild_engine::pull::Pulled;

use super::registry::RegistryArgs;
use crate::cli::GlobalArgs;

/// `rbuild pull`
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The platform to pick from a multi-platform image (os/arch[/variant]; default: this
    /// machine's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Pull every platform of a multi-platform image; the store names its index.
    #[arg(long, conflicts_with = "platform")]
    pub all_platforms: bool,
    /// The image: `busybox`, `registry.example:5000/app:1`, `app@sha256:...`.
    pub name: String,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

pub fn run(global: &GlobalArgs, args: PullArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let platform = args.platform.as_deref();
    let pulled = if args.all_platforms {
        let progress =
            crate::progress::reporter(crate::progress::Mode::detect(global.quiet), "pulling");
        rbuild_engine::pull::pull_all_platforms(
            &store,
            &args.name,
            &super::registry::registry_config(&args.registry_args),
            progress,
        )?
    } else {
        pull_image(global, &store, &args.name, platform, &args.registry_args)?
    };
    crate::outln!("{}", pulled.pinned);
    Ok(ExitCode::SUCCESS)
}

/// Pulls `name` into the store and tags it there by its full name, with transfer progress
/// on stderr; `rbuild pull` and the commands that pull a missing image (`rbuild run`,
/// `rbuild report`) share it.
pub fn pull_image(
    global: &GlobalArgs,
    store: &rbuild_cache::Store,
    name: &str,
    platform: Option<&str>,
    registry_args: &RegistryArgs,
) -> anyhow::Result<Pulled> {
    let progress =
        crate::progress::reporter(crate::progress::Mode::detect(global.quiet), "pulling");
    Ok(rbuild_engine::pull::pull_image_with(
        store,
        name,
        platform,
        &super::registry::registry_config(registry_args),
        progress,
    )?)
}
