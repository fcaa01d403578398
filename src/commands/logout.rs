//! `rbuild logout [REGISTRY]`: removes the stored credentials for a registry.

use std::process::ExitCode;

use clap::Args;
use rbuild_registry::DockerConfig;
use rbuild_registry::credentials::helper_erase;

use super::registry::{credentials_file, registry_name, write_credentials_file};

/// `rbuild logout`
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (default: docker.io).
    pub registry: Option<String>,
}

pub fn run(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_name(args.registry.as_deref());
    let path = credentials_file();
    let Some(mut config) = DockerConfig::load_if_exists(&path)? else {
        eprintln!("not logged in to {registry}");
        return Ok(ExitCode::SUCCESS);
    };
    let mut removed = false;
    if let Some(helper) = config.helper_for(&registry) {
        helper_erase(&helper, &registry)?;
        removed = true;
    }
    if config.remove(&registry) {
        write_credentials_file(&path, &config.to_json())?;
        removed = true;
    }
    if removed {
        eprintln!("removed credentials for {registry} from {}", path.display());
    } else {
        eprintln!("not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}
