//! `rbuild sbom IMAGE`: the packages an image holds, from its own package databases.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rbuild_compiler::text::escape_owned;
use rbuild_report::sbom::render;
use rbuild_report::{ImageInput, SbomOptions};

use rbuild_engine::inventory::StoreLayers;

use super::report::{open, write_output};
use crate::cli::GlobalArgs;

/// `rbuild sbom [--format table|json|spdx-json|cyclonedx-json] [-o FILE] IMAGE`
#[derive(Debug, Args)]
pub struct SbomArgs {
    /// The image: a name or id in the store (pulled into it when missing),
    /// `docker-archive:FILE[:NAME]`, `oci-archive:FILE[:NAME]` (read without touching the
    /// store) or `docker://REF` (read from its registry without touching the store), as
    /// `rbuild report` takes it.
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Output format: a readable table, rbuild's own JSON inventory, an SPDX 2.3 JSON
    /// document or a CycloneDX 1.5 JSON BOM.
    #[arg(long, value_enum, default_value_t = SbomFormat::Table)]
    pub format: SbomFormat,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The platform (os/arch[/variant]): of an index, that platform's image; from a
    /// registry, the platform pulled. Default: this machine's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Threads that read layers (default: one per CPU).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    #[command(flatten)]
    pub registry_args: super::registry::RegistryArgs,
}

/// SBOM formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SbomFormat {
    /// One package a line, with its licence, file count and the layer that added it.
    Table,
    /// The whole inventory: packages with their files, layers, unowned files.
    Json,
    /// SPDX 2.3, JSON.
    SpdxJson,
    /// CycloneDX 1.5, JSON.
    CyclonedxJson,
}

pub fn run(global: &GlobalArgs, args: SbomArgs) -> anyhow::Result<ExitCode> {
    let opened = open(
        global,
        args.platform.as_deref(),
        &args.registry_args,
        &args.image,
    )?;
    let limits = crate::limits::get()?;
    let options = SbomOptions {
        threads: args.threads,
        limits,
        ..SbomOptions::default()
    };
    let layers = StoreLayers {
        store: &opened.store,
        digests: &opened.layers,
        limits,
    };
    let started = std::time::Instant::now();
    let inventory = rbuild_report::inventory(
        ImageInput {
            name: &opened.name,
            id: Some(&opened.id),
            manifest: &opened.manifest,
            config: &opened.config,
            base_layers: None,
            layers: &layers,
        },
        &options,
    )
    .with_context(|| format!("cannot list the packages of {}", args.image))?;
    tracing::debug!(
        "listed {} packages of {} in {:.3}s",
        inventory.packages.len(),
        opened.name,
        started.elapsed().as_secs_f64()
    );
    // The table quotes names from the image: their control characters are shown as
    // escapes. JSON keeps them exact (JSON-escaped).
    let text = match args.format {
        SbomFormat::Table => escape_owned(render::table(&inventory)),
        SbomFormat::Json => serde_json::to_string_pretty(&inventory)? + "\n",
        SbomFormat::SpdxJson => render::spdx_json(&inventory),
        SbomFormat::CyclonedxJson => render::cyclonedx_json(&inventory),
    };
    write_output(args.output.as_deref(), text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
