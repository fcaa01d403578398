//! `rbuild inspect NAME...`: an image's descriptor, manifest and config as JSON.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use crate::cli::GlobalArgs;

/// `rbuild inspect NAME...`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The images (names or ids).
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let mut out = Vec::new();
    for arg in &args.names {
        let (name, descriptor) = super::find_image(&store, arg)?;
        let (manifest_desc, manifest) = store.image_manifest(&descriptor)?;
        let manifest_digest = rbuild_cache::descriptor_digest(&manifest_desc)?;
        let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
        let manifest: Value = serde_json::from_slice(&store.read_blob(&manifest_digest)?)
            .with_context(|| format!("manifest {manifest_digest} of {arg} is not JSON"))?;
        let config: Value = serde_json::from_slice(&store.read_blob(&config_digest)?)
            .with_context(|| format!("config {config_digest} of {arg} is not JSON"))?;
        out.push(json!({
            "name": name,
            "id": descriptor.digest().to_string(),
            "descriptor": descriptor,
            "manifestDescriptor": manifest_desc,
            "manifest": manifest,
            "config": config,
        }));
    }
    crate::outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
