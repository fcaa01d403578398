//! `rbuild import`: a root file system directory or tarball becomes a one-layer image.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use rbuild_cache::import::{self, ImportOptions};

use crate::cli::GlobalArgs;

/// `rbuild import SOURCE NAME`
///
/// The same input gives the same image (and id): the image is created at
/// `SOURCE_DATE_EPOCH` when it is set (newer file times are clamped to it), else at the
/// newest modification time among the files; it prints the image id.
#[derive(Debug, Args)]
#[command(
    after_help = "The same input gives the same image id: the image's creation time is SOURCE_DATE_EPOCH when set (newer file times clamped to it), else the newest file's modification time."
)]
pub struct ImportArgs {
    /// A directory, or a tar archive (plain, gzip or zstd); `-` reads a tar from stdin.
    pub source: PathBuf,
    /// The image name, e.g. `busybox:latest`.
    pub name: String,
    /// The history comment of the image (default: `imported from <source file name>`).
    #[arg(short, long)]
    pub message: Option<String>,
    /// The image's platform (`os/arch[/variant]`, e.g. `linux/arm64`); default: this machine's.
    #[arg(long)]
    pub platform: Option<String>,
}

pub fn run(global: &GlobalArgs, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let name = crate::names::normalize_name(&args.name)?;
    // The same input gives the same image: created at SOURCE_DATE_EPOCH (file times
    // clamped to it), else at the newest file's modification time.
    let epoch = super::source_date_epoch()?;
    let shown = args.source.file_name().map_or_else(
        || args.source.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let comment = args
        .message
        .clone()
        .unwrap_or_else(|| format!("imported from {shown}"));
    let mut options = ImportOptions::new(epoch, comment);
    if let Some(p) = &args.platform {
        options.platform = rbuild_compiler::plan::Platform::parse(p)
            .map_err(|e| anyhow::anyhow!("--platform: {e}"))?;
    }
    options.clamp_mtime = epoch.map(|e| u64::try_from(e).unwrap_or(0));
    options.limits = crate::limits::get()?;
    let store = super::open_store(global)?;
    let started = std::time::Instant::now();
    let imported = if args.source.as_os_str() == "-" {
        let stdin = std::io::stdin();
        if stdin.is_terminal() {
            bail!("rbuild import -: stdin is a terminal, not a tar archive");
        }
        import::import_tar(&store, &args.source, stdin.lock(), &options)
    } else {
        let meta = std::fs::metadata(&args.source)
            .with_context(|| format!("cannot import {}", args.source.display()))?;
        if meta.is_dir() {
            import::import_dir(&store, &args.source, &options)
        } else {
            let file = std::fs::File::open(&args.source)
                .with_context(|| format!("cannot open {}", args.source.display()))?;
            import::import_tar(&store, &args.source, file, &options)
        }
    }
    .with_context(|| format!("cannot import {} as {name}", args.source.display()))?;
    store.tag(&name, &imported.manifest)?;
    tracing::info!(
        "imported {} as {name}: layer {} ({} bytes) in {:.2?}",
        args.source.display(),
        imported.layer,
        imported.layer_size,
        started.elapsed()
    );
    crate::outln!("{}", imported.manifest.digest());
    Ok(ExitCode::SUCCESS)
}
