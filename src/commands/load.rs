//! `rbuild load -i FILE`: images from a docker-archive or OCI-archive tarball.

use std::io::{IsTerminal, Read as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use rbuild_cache::archive;

use crate::cli::GlobalArgs;

/// `rbuild load [-i FILE]`
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The archive (docker or OCI; plain, gzip or zstd). Default: stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

pub fn run(global: &GlobalArgs, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let limits = crate::limits::get()?;
    // Loading seeks in the archive: stdin is first copied to the store's temp space, as far
    // as the layer size limit (as a compressed archive may expand only that far).
    let mut spooled = None;
    let path = match &args.input {
        Some(path) if path.as_os_str() != "-" => path.clone(),
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("rbuild load: stdin is a terminal; use -i FILE or redirect stdin");
            }
            let mut tmp = tempfile::Builder::new()
                .prefix("spool-")
                .suffix(".tmp")
                .tempfile_in(store.tmp_dir())
                .context("cannot create a temp file in the store")?;
            let limit = limits.max_layer_bytes;
            let copied = std::io::copy(&mut stdin.lock().take(limit.saturating_add(1)), &mut tmp)
                .context("cannot read the archive from stdin")?;
            if copied > limit {
                return Err(anyhow::anyhow!(
                    "the archive read from stdin is larger than {limit} bytes"
                )
                .context(crate::limits::layer_size_hint()));
            }
            let path = tmp.path().to_path_buf();
            spooled = Some(tmp);
            path
        }
    };
    let loaded = archive::load_with(&store, &path, &limits)
        .with_context(|| format!("cannot load {}", path.display()))?;
    drop(spooled);
    for image in loaded {
        let mut named = false;
        for raw in &image.names {
            // A bare OCI tag ("latest") names no repository.
            if !raw.contains('/') && !raw.contains(':') {
                tracing::warn!(
                    "archive names an image only {raw:?}, which is a tag without a repository"
                );
                continue;
            }
            let name = crate::names::normalize_name(raw)
                .with_context(|| format!("archive {} names an image {raw:?}", path.display()))?;
            store.tag(&name, &image.descriptor)?;
            crate::outln!("Loaded image: {}", crate::names::short_name(&name));
            named = true;
        }
        if !named {
            // The image id: its manifest's digest, as every command shows it.
            crate::outln!("Loaded image ID: {}", image.descriptor.digest());
        }
    }
    Ok(ExitCode::SUCCESS)
}
