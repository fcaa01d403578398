//! `rbuild rmi NAME...`: removes images; their blobs go when no remaining image and no running
//! process uses them.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use crate::cli::GlobalArgs;

/// `rbuild rmi NAME...`
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// The images (names, or ids for images with a single name).
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let mut names = Vec::new();
    for arg in &args.names {
        let (name, descriptor) = super::find_image(&store, arg)?;
        let name = match name {
            Some(name) => name,
            None => {
                let tagged: Vec<String> = store
                    .list()?
                    .into_iter()
                    .filter(|i| i.descriptor.digest() == descriptor.digest())
                    .map(|i| i.name)
                    .collect();
                if tagged.len() != 1 {
                    bail!(
                        "image id {arg} has {} names ({}): remove them by name",
                        tagged.len(),
                        tagged.join(", ")
                    );
                }
                tagged.into_iter().next().expect("one name")
            }
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let removed = rbuild_cache::gc::remove_images(&store, &names)?;
    for name in &removed.untagged {
        crate::outln!("Untagged: {}", crate::names::short_name(name));
    }
    for digest in &removed.deleted {
        crate::outln!("Deleted: {digest}");
    }
    if !removed.kept.is_empty() {
        eprintln!(
            "kept {} blobs that a running command uses; `rbuild prune` removes them once it is done",
            removed.kept.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
