//! `rbuild save NAME... -o FILE`: images to a docker-archive or OCI-archive tarball.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use rbuild_cache::archive::{self, Format, SaveImage};

use crate::cli::GlobalArgs;

/// `rbuild save [--format docker|oci] -o FILE NAME...`
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The images (names or ids).
    #[arg(required = true)]
    pub names: Vec<String>,
    /// The archive to write (default: stdout, when it is not a terminal).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// `docker`: what `docker load` reads; `oci`: an OCI image layout in a tar.
    #[arg(long, value_enum, default_value_t = SaveFormat::Docker)]
    pub format: SaveFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaveFormat {
    /// docker-archive (`docker save` format).
    Docker,
    /// oci-archive.
    Oci,
}

pub fn run(global: &GlobalArgs, args: SaveArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let mut images = Vec::new();
    for arg in &args.names {
        let (name, descriptor) = super::find_image(&store, arg)?;
        let short_name = name
            .as_deref()
            .map(|n| crate::names::short_name(n).to_string());
        images.push(SaveImage {
            short_name,
            name,
            descriptor,
        });
    }
    let format = match args.format {
        SaveFormat::Docker => Format::Docker,
        SaveFormat::Oci => Format::Oci,
    };
    match &args.output {
        Some(path) if path.as_os_str() != "-" => {
            // The archive is an ordinary file, readable by all.
            rbuild_cache::atomic::write_with(path, None, Some(0o644), |w| {
                archive::save(&store, &images, format, w)?;
                Ok::<(), anyhow::Error>(())
            })
            .with_context(|| format!("cannot write {}", path.display()))?;
        }
        _ => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            let out = std::io::BufWriter::with_capacity(1 << 20, crate::out::stdout());
            let mut out = archive::save(&store, &images, format, out)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
