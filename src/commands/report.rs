//! `rbuild report IMAGE`: where an image's bytes go, what is wasted, and what to change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use rbuild_cache::{Digest, Store, archive};
use rbuild_compiler::text::escape_owned;
use rbuild_compress::{Compression, Decoder};
use rbuild_engine::inventory::StoreLayers;
use rbuild_report::{Analysis, Gate, ImageInput, Options, render};

use crate::cli::GlobalArgs;
use crate::report::Exit;

/// `rbuild report [--format text|json|html] [--fail-on EXPR]... IMAGE`,
/// `rbuild report --diff OLD NEW`
///
/// IMAGE is a name or id in the store, `oci-archive:FILE[:NAME]`,
/// `docker-archive:FILE[:NAME]` or `docker://REF`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The image: a name or id in the store (pulled into it when missing, as `rbuild run`
    /// does); `docker-archive:FILE[:NAME]` (what `docker save` and `rbuild save` write) or
    /// `oci-archive:FILE[:NAME]` (an OCI layout in a tar), read without touching the store;
    /// `docker://REF`, read from its registry without touching the store. With --diff, the
    /// old and the new image.
    #[arg(required = true, num_args = 1..=2, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Compare two images: what grew, by layer and by path.
    #[arg(long)]
    pub diff: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Write the report to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How many largest files, directories and duplicates to list.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub top: usize,
    /// Exit with code 3 when a condition holds: `efficiency<0.9`, `wasted>20MB`,
    /// `size>300MB` (also shadowed, duplicate, compressed, final, layers; <, <=, >, >=;
    /// kB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024). Repeatable.
    #[arg(long = "fail-on", value_name = "EXPR")]
    pub fail_on: Vec<String>,
    /// Threads that read layers (default: one per CPU).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Do not read the package databases: no packages section, no findings that name
    /// packages.
    #[arg(long)]
    pub no_packages: bool,
    /// The platform to report on (os/arch[/variant]): of an index, that platform's image;
    /// from a registry, the platform pulled. Default: this machine's.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// For an index: every platform side by side (a table of each platform's totals, or with
    /// `--format json` an array of per-platform reports).
    #[arg(long, conflicts_with_all = ["platform", "diff"])]
    pub all_platforms: bool,
    #[command(flatten)]
    pub registry_args: super::registry::RegistryArgs,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A readable report.
    Text,
    /// The JSON schema of `report/SCHEMA.md`.
    Json,
    /// One self-contained HTML page (treemap and layer timeline).
    Html,
}

/// An image opened for analysis; keeps a temporary store alive for archives.
pub(super) struct Opened {
    pub(super) name: String,
    pub(super) store: Store,
    pub(super) id: String,
    pub(super) manifest: Vec<u8>,
    pub(super) config: Vec<u8>,
    pub(super) layers: Vec<Digest>,
    base_layers: Option<usize>,
    _temp: Option<tempfile::TempDir>,
}

pub fn run(global: &GlobalArgs, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let gates: Vec<Gate> = args
        .fail_on
        .iter()
        .map(|expr| expr.parse::<Gate>())
        .collect::<Result<_, _>>()
        .map_err(|e| usage(e.to_string()))?;
    let options = Options {
        top: args.top,
        threads: args.threads,
        limits: crate::limits::get()?,
        packages: !args.no_packages,
        ..Options::default()
    };
    if args.diff {
        let [old, new] = &args.images[..] else {
            return Err(usage("rbuild report --diff takes two images: OLD NEW"));
        };
        if args.format == ReportFormat::Html {
            return Err(usage("rbuild report --diff writes text or json, not html"));
        }
        let old = analyze(global, &args, old, &options)?;
        let new = analyze(global, &args, new, &options)?;
        let diff = rbuild_report::diff(&old, &new, args.top);
        let text = match args.format {
            ReportFormat::Json => serde_json::to_string_pretty(&diff)? + "\n",
            _ => escape_owned(render::diff_text(&diff)),
        };
        write_output(args.output.as_deref(), text.as_bytes())?;
        return check_gates(&gates, &new);
    }
    let [image] = &args.images[..] else {
        return Err(usage(
            "rbuild report takes one image (use --diff OLD NEW to compare two)",
        ));
    };
    if args.all_platforms {
        return all_platforms(global, &args, image, &options);
    }
    let analysis = analyze(global, &args, image, &options)?;
    // The text formats quote file names, instructions and names from the image: their
    // control characters are shown as escapes. JSON keeps them exact (JSON-escaped), the
    // HTML page escapes what HTML needs.
    let text = match args.format {
        ReportFormat::Text => escape_owned(render::text(&analysis.report)),
        ReportFormat::Json => serde_json::to_string_pretty(&analysis.report)? + "\n",
        ReportFormat::Html => render::html(&analysis),
    };
    write_output(args.output.as_deref(), text.as_bytes())?;
    check_gates(&gates, &analysis)
}

/// `rbuild build --report`: reports on the image just built (named `name` in the store) and
/// applies the `--fail-on` gates. The text report goes to stderr unless `output` names a
/// file (stdout carries the image id).
pub fn report_built(
    store: Store,
    name: &str,
    descriptor: &oci_spec::image::Descriptor,
    format: ReportFormat,
    output: Option<&Path>,
    fail_on: &[String],
) -> anyhow::Result<ExitCode> {
    let gates: Vec<Gate> = fail_on
        .iter()
        .map(|expr| expr.parse::<Gate>())
        .collect::<Result<_, _>>()
        .map_err(|e| usage(e.to_string()))?;
    let opened = open_in_store(store, name.to_string(), descriptor, None)?;
    let options = Options {
        limits: crate::limits::get()?,
        ..Options::default()
    };
    let analysis = analyze_opened(&opened, &options, name)?;
    let text = match format {
        ReportFormat::Text => escape_owned(render::text(&analysis.report)),
        ReportFormat::Json => serde_json::to_string_pretty(&analysis.report)? + "\n",
        ReportFormat::Html => render::html(&analysis),
    };
    match output {
        Some(path) => write_output(Some(path), text.as_bytes())?,
        None => {
            use std::io::Write as _;
            std::io::stderr()
                .write_all(text.as_bytes())
                .context("cannot write the report")?;
        }
    }
    check_gates(&gates, &analysis)
}

/// A usage error: exit code 2.
pub(super) fn usage(message: impl std::fmt::Display + Send + Sync + 'static) -> anyhow::Error {
    anyhow::Error::new(Exit(2)).context(message)
}

fn check_gates(gates: &[Gate], analysis: &Analysis) -> anyhow::Result<ExitCode> {
    let failed: Vec<String> = gates
        .iter()
        .filter_map(|g| g.check(&analysis.report))
        .collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    Err(anyhow::Error::new(Exit(3)).context(format!(
        "image {} fails {}",
        analysis.report.image.name,
        failed.join("; ")
    )))
}

pub(super) fn write_output(path: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match path {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
        }
        _ => {
            let mut out = crate::out::stdout();
            out.write_all(bytes)
                .and_then(|()| out.flush())
                .context("cannot write the report to stdout")
        }
    }
}

fn analyze(
    global: &GlobalArgs,
    args: &ReportArgs,
    arg: &str,
    options: &Options,
) -> anyhow::Result<Analysis> {
    let opened = open(global, args.platform.as_deref(), &args.registry_args, arg)?;
    let started = std::time::Instant::now();
    let analysis = analyze_opened(&opened, options, arg)?;
    tracing::debug!(
        "analysed {} ({} layers) in {:.3}s",
        opened.name,
        opened.layers.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(analysis)
}

/// `--all-platforms`: every platform of the index `arg` names (in the store), side by side.
fn all_platforms(
    global: &GlobalArgs,
    args: &ReportArgs,
    arg: &str,
    options: &Options,
) -> anyhow::Result<ExitCode> {
    if args.format == ReportFormat::Html {
        return Err(usage(
            "rbuild report --all-platforms writes text or json, not html",
        ));
    }
    let store = super::open_store(global)?;
    let (name, descriptor) = super::find_image(&store, arg)?;
    let name = name.unwrap_or_else(|| arg.to_string());
    if !rbuild_cache::is_index(descriptor.media_type()) {
        anyhow::bail!(
            "{name} is an image of one platform, not an index: rbuild report {arg} reports on it"
        );
    }
    let index = store.read_index_blob(&rbuild_cache::descriptor_digest(&descriptor)?)?;
    let mut reports = Vec::new();
    for entry in index
        .manifests()
        .iter()
        .filter(|d| !rbuild_cache::is_attestation_manifest(d))
    {
        let platform = rbuild_cache::descriptor_platform(entry)
            .map_or_else(|| "unknown".to_string(), |p| p.to_string());
        let opened = open_in_store(store.clone(), name.clone(), entry, None)?;
        let analysis = analyze_opened(&opened, options, &format!("{name} ({platform})"))?;
        reports.push((platform, analysis.report));
    }
    let text = match args.format {
        ReportFormat::Json => {
            let list: Vec<serde_json::Value> = reports
                .iter()
                .map(|(p, r)| serde_json::json!({"platform": p, "report": r}))
                .collect();
            serde_json::to_string_pretty(&list)? + "\n"
        }
        _ => {
            let size = rbuild_options::size::image;
            let mut out = format!(
                "{:<16} {:>6} {:>11} {:>13} {:>7} {:>10} {:>9}\n",
                "PLATFORM", "LAYERS", "COMPRESSED", "UNCOMPRESSED", "FILES", "EFFICIENCY", "WASTED"
            );
            for (p, r) in &reports {
                let t = &r.totals;
                out.push_str(&format!(
                    "{:<16} {:>6} {:>11} {:>13} {:>7} {:>9.1}% {:>9}\n",
                    p,
                    t.layers,
                    size(t.compressed_bytes),
                    size(t.uncompressed_bytes),
                    t.final_files,
                    t.efficiency * 100.0,
                    size(t.wasted_bytes)
                ));
            }
            escape_owned(out)
        }
    };
    write_output(args.output.as_deref(), text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// Analyses an opened image (`what` names it in errors).
fn analyze_opened(opened: &Opened, options: &Options, what: &str) -> anyhow::Result<Analysis> {
    let layers = StoreLayers {
        store: &opened.store,
        digests: &opened.layers,
        limits: crate::limits::get()?,
    };
    rbuild_report::analyze(
        ImageInput {
            name: &opened.name,
            id: Some(&opened.id),
            manifest: &opened.manifest,
            config: &opened.config,
            base_layers: opened.base_layers,
            layers: &layers,
        },
        options,
    )
    .with_context(|| format!("cannot report on {what}"))
}

/// Splits `FILE[:NAME]`: the whole text when it names an existing file, else at the last `:`.
fn archive_and_name(rest: &str) -> (PathBuf, Option<String>) {
    if Path::new(rest).exists() {
        return (PathBuf::from(rest), None);
    }
    match rest.rsplit_once(':') {
        Some((file, name)) if Path::new(file).exists() => {
            (PathBuf::from(file), Some(name.to_string()))
        }
        _ => (PathBuf::from(rest), None),
    }
}

/// Opens IMAGE: an archive (loaded into a temporary store), `docker://REF` (pulled into a
/// temporary store, leaving the user's store as it was), or a name in the store, pulled into
/// it first when it is not there (as `rbuild run` does).
pub(super) fn open(
    global: &GlobalArgs,
    platform: Option<&str>,
    registry_args: &super::registry::RegistryArgs,
    arg: &str,
) -> anyhow::Result<Opened> {
    let archive_path = arg
        .strip_prefix("oci-archive:")
        .or_else(|| arg.strip_prefix("docker-archive:"));
    if let Some(rest) = archive_path {
        return open_archive(arg, rest);
    }
    let pull = |store: &Store, name: &str| {
        super::pull::pull_image(global, store, name, platform, registry_args)
            .with_context(|| format!("cannot read {arg} from its registry"))
    };
    if let Some(reference) = arg.strip_prefix("docker://") {
        let temp = tempfile::Builder::new()
            .prefix("rbuild-report-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let store = Store::open(temp.path().join("store"))?;
        let pulled = pull(&store, reference)?;
        let name = crate::names::normalize_name(reference)?;
        return open_in_store(store, name, &pulled.descriptor, Some(temp));
    }
    let store = super::open_store(global)?;
    let (name, descriptor) = match super::find_image(&store, arg) {
        Ok((name, descriptor)) => (name.unwrap_or_else(|| arg.to_string()), descriptor),
        Err(_) if Path::new(arg).is_file() => return Err(archive_without_prefix(arg)),
        Err(_) => {
            let pulled =
                pull(&store, arg).map_err(|e| crate::missing::image_not_found(&store, arg, e))?;
            (crate::names::normalize_name(arg)?, pulled.descriptor)
        }
    };
    // One platform of an index (the host's unless --platform names another).
    let (descriptor, _) = super::image_for_platform(&store, &descriptor, platform)?;
    open_in_store(store, name, &descriptor, None)
}

/// The error for a file named without its `docker-archive:` or `oci-archive:` prefix: the
/// prefix to use, from what the archive holds (`manifest.json`: docker's; `oci-layout`: OCI).
fn archive_without_prefix(arg: &str) -> anyhow::Error {
    let kind = archive_kind(Path::new(arg));
    let shown = rbuild_compiler::text::escape_controls(arg);
    let prefix = match kind {
        Some("docker") => "docker-archive",
        _ => "oci-archive",
    };
    let what = match kind {
        Some("docker") => "this one is a docker archive".to_string(),
        Some(_) => "this one is an OCI archive".to_string(),
        None => format!("or docker-archive:{shown} for what docker save writes"),
    };
    usage(format!(
        "{shown} is a file, not an image of the store: name it {prefix}:{shown} ({what})"
    ))
}

/// `docker` when `path` is a tar (plain, gzip or zstd) holding `manifest.json` at its top
/// (docker's own, which may hold an OCI layout too), `oci` when it holds only `oci-layout` or
/// `index.json`; `None` otherwise. Reads at most 64 entries.
fn archive_kind(path: &Path) -> Option<&'static str> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path).ok()?);
    let reader = match Compression::detect(std::io::BufRead::fill_buf(&mut file).ok()?) {
        c @ (Compression::None | Compression::Gzip | Compression::Zstd) => {
            Decoder::new(file, c).ok()?
        }
        Compression::Bzip2 | Compression::Xz => return None,
    };
    let mut archive = tar::Archive::new(reader);
    let mut oci = false;
    for entry in archive.entries().ok()?.take(64) {
        let Ok(entry) = entry else { break };
        let Ok(name) = entry.path() else { continue };
        match name.to_string_lossy().trim_start_matches("./") {
            "manifest.json" => return Some("docker"),
            "oci-layout" | "index.json" => oci = true,
            _ => {}
        }
    }
    oci.then_some("oci")
}

/// Loads the archive into a temporary store (verifying every blob), then reads it there.
fn open_archive(arg: &str, rest: &str) -> anyhow::Result<Opened> {
    let (path, wanted) = archive_and_name(rest);
    let temp = tempfile::Builder::new()
        .prefix("rbuild-report-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let store = Store::open(temp.path().join("store"))?;
    let loaded = archive::load_with(&store, &path, &crate::limits::get()?)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let chosen = match &wanted {
        Some(want) => loaded
            .iter()
            .find(|l| {
                l.names.iter().any(|n| {
                    n == want
                        || crate::names::normalize_name(n).ok()
                            == crate::names::normalize_name(want).ok()
                })
            })
            .with_context(|| format!("archive {} has no image {want:?}", path.display()))?,
        None => {
            if loaded.len() > 1 {
                let names: Vec<String> = loaded.iter().flat_map(|l| l.names.clone()).collect();
                bail!(
                    "archive {} holds {} images ({}): name one as {arg}:NAME",
                    path.display(),
                    loaded.len(),
                    names.join(", ")
                );
            }
            loaded
                .first()
                .with_context(|| format!("archive {} holds no image", path.display()))?
        }
    };
    let descriptor = chosen.descriptor.clone();
    open_in_store(store, arg.to_string(), &descriptor, Some(temp))
}

fn open_in_store(
    store: Store,
    name: String,
    descriptor: &oci_spec::image::Descriptor,
    temp: Option<tempfile::TempDir>,
) -> anyhow::Result<Opened> {
    let (manifest_desc, manifest) = store.image_manifest(descriptor)?;
    let manifest_bytes = store.read_blob(&rbuild_cache::descriptor_digest(&manifest_desc)?)?;
    let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
    let config = store.read_blob(&config_digest)?;
    let layers = manifest
        .layers()
        .iter()
        .map(rbuild_cache::descriptor_digest)
        .collect::<Result<Vec<_>, _>>()?;
    let base_layers = base_layers(&store, &manifest_bytes, &config);
    Ok(Opened {
        name,
        store,
        // The image id: the digest of the manifest (or index) that names the image.
        id: descriptor.digest().to_string(),
        manifest: manifest_bytes,
        config,
        layers,
        base_layers,
        _temp: temp,
    })
}

/// The number of base layers, when the image names its base (annotation or label) and the
/// store has that image with layers that are the first ones of this image.
fn base_layers(store: &Store, manifest: &[u8], config: &[u8]) -> Option<usize> {
    let (name, digest) = rbuild_report::base_annotations(manifest, config);
    let ours = diff_ids(config)?;
    let mut candidates = Vec::new();
    if let Some(digest) = digest.as_deref().and_then(|d| d.parse::<Digest>().ok())
        && let Ok(bytes) = store.read_blob(&digest)
    {
        candidates.push(bytes);
    }
    if let Some(name) = &name {
        let full = crate::names::normalize_name(name).unwrap_or_else(|_| name.clone());
        for n in [name.as_str(), full.as_str()] {
            if let Ok(descriptor) = store.resolve(n)
                && let Ok((d, _)) = store.image_manifest(&descriptor)
                && let Ok(digest) = rbuild_cache::descriptor_digest(&d)
                && let Ok(bytes) = store.read_blob(&digest)
            {
                candidates.push(bytes);
            }
        }
    }
    for manifest in candidates {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&manifest) else {
            continue;
        };
        // An index has no config: it cannot be matched layer by layer.
        let Some(config_digest) = value["config"]["digest"]
            .as_str()
            .and_then(|d| d.parse::<Digest>().ok())
        else {
            continue;
        };
        let Some(base) = store
            .read_blob(&config_digest)
            .ok()
            .and_then(|c| diff_ids(&c))
        else {
            continue;
        };
        if !base.is_empty() && base.len() <= ours.len() && ours[..base.len()] == base[..] {
            return Some(base.len());
        }
        tracing::warn!(
            "the base image the annotations name does not share its layers with the image; finding the base from the history"
        );
    }
    None
}

fn diff_ids(config: &[u8]) -> Option<Vec<String>> {
    let value: serde_json::Value = serde_json::from_slice(config).ok()?;
    Some(
        value["rootfs"]["diff_ids"]
            .as_array()?
            .iter()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect(),
    )
}
