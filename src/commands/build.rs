//! `rbuild build [OPTIONS] CONTEXT` (also `rbuild [OPTIONS] CONTEXT`): builds an image from
//! a Dockerfile into the store. The flags are docker build's where docker has the flag.
//! stdout gets the image id (the manifest digest); progress goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use super::registry::RegistryArgs;
use crate::cli::GlobalArgs;

/// `rbuild build`
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name the image `NAME[:TAG]` in the store; may be repeated.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads it from stdin. It may lie
    /// outside the context.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A build argument, `NAME=value`, or `NAME` to take the value from the environment.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Run every step; use no cached result.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Run every step of this stage; may be repeated.
    #[arg(long = "no-cache-filter", value_name = "STAGE", value_delimiter = ',')]
    pub no_cache_filter: Vec<String>,
    /// Look base images up in their registry even when the store has them.
    #[arg(long)]
    pub pull: bool,
    /// The platform to build for (`os/arch[/variant]`); default: this machine's.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// How progress is shown on stderr.
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,
    /// Say, for every step that runs, which input changed since the last build.
    #[arg(long = "explain-cache")]
    pub explain_cache: bool,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VAR`
    /// (`id=ID` alone reads the variable ID); may be repeated. Never stored.
    #[arg(long, value_name = "id=ID[,src=PATH|env=VAR]")]
    pub secret: Vec<String>,
    /// An SSH agent socket for `RUN --mount=type=ssh`: `default`, `ID=SOCKET` or `default=SOCKET`;
    /// may be repeated.
    #[arg(long, value_name = "default|ID[=SOCKET]")]
    pub ssh: Vec<String>,
    /// The network of RUN steps that do not say (`default` is the host's network).
    #[arg(long, value_enum, default_value_t = NetworkArg::Default)]
    pub network: NetworkArg,
    /// Set a label on the image, `KEY=VALUE`; may be repeated.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Manifest and config media types: OCI, or Docker's v2 schema 2.
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    pub format: FormatArg,
    /// How layers are stored: uncompressed by default, as in docker's image store (a 1 GB
    /// layer costs a copy, not a minute of gzip); pushes and OCI outputs gzip them unless
    /// this flag or their `compression=` key says otherwise. (Default: config
    /// `build.compression`, else uncompressed.)
    #[arg(long, value_enum, env = crate::env::RBUILD_COMPRESSION)]
    pub compression: Option<CompressionArg>,
    /// Compression level for layers compressed for an output or a push (gzip 0-9, zstd 1-22).
    #[arg(long = "compression-level", value_name = "N")]
    pub compression_level: Option<i32>,
    /// Re-compress every layer whose compression differs from the chosen one, the base
    /// image's too (by default only uncompressed layers are compressed).
    #[arg(long = "force-compression")]
    pub force_compression: bool,
    /// Where the result goes, as docker buildx: `type=image` (the store, the default),
    /// `type=oci|docker,dest=FILE`, `type=oci,dest=DIR,tar=false`, `type=local,dest=DIR`,
    /// `type=tar,dest=FILE`; `-o DIR` is `type=local,dest=DIR`, `dest=-` is stdout. May be
    /// repeated.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "type=TYPE[,KEY=VALUE...]|DIR"
    )]
    pub outputs: Vec<String>,
    /// Push every `-t` name to its registry after the build.
    #[arg(long)]
    pub push: bool,
    /// Write the build's result as JSON (image digest, config, descriptor, names, pushed
    /// references, duration, warnings) to FILE.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// An annotation, `[TYPE:]KEY=VALUE` where TYPE is `manifest` (the default) or
    /// `manifest-descriptor`, optionally with `[PLATFORM]`; may be repeated.
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Steps run at once (default: the number of CPUs).
    #[arg(short = 'j', long, value_name = "N", env = crate::env::RBUILD_JOBS)]
    pub jobs: Option<usize>,
    /// Write the image id (its manifest digest) to this file; not written when only
    /// `type=local` or `type=tar` outputs are asked for, which keep no image.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// After the build, report where the image's bytes go (`rbuild report`): text on
    /// stderr, or FORMAT into --report-file.
    #[arg(long)]
    pub report: bool,
    /// The report's format.
    #[arg(long = "report-format", value_enum, default_value_t = super::report::ReportFormat::Text)]
    pub report_format: super::report::ReportFormat,
    /// Write the report to FILE (implies --report).
    #[arg(long = "report-file", value_name = "FILE")]
    pub report_file: Option<PathBuf>,
    /// Exit with code 3 when the report crosses a threshold (implies --report), as
    /// `rbuild report --fail-on`: `efficiency<0.9`, `wasted>20MB`, `size>300MB`.
    #[arg(long = "fail-on", value_name = "EXPR")]
    pub fail_on: Vec<String>,
    /// Import cache records: `REF`, `type=registry,ref=REF` or `type=local,src=DIR`; may
    /// be repeated. A step whose key matches is not run; its layer is fetched only when
    /// needed. An import that fails is a warning.
    #[arg(
        long = "cache-from",
        value_name = "type=registry,ref=REF|type=local,src=DIR"
    )]
    pub cache_from: Vec<String>,
    /// Export this build's cache records: `type=registry,ref=REF` or `type=local,dest=DIR`,
    /// with `mode=min|max` (the final image's steps, or every step), `compression=gzip|
    /// uncompressed`, `ignore-error=true`; or `type=inline,ref=REF` (push the image to REF
    /// with its steps' records in its config); may be repeated.
    #[arg(
        long = "cache-to",
        value_name = "type=registry,ref=REF[,mode=max]|type=local,dest=DIR"
    )]
    pub cache_to: Vec<String>,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
    /// The build context: a directory, or `-` for a tar archive (or a Dockerfile) on stdin.
    #[arg(value_name = "CONTEXT")]
    pub context: PathBuf,
}

/// `--progress`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// `tty` on a terminal, `plain` otherwise.
    Auto,
    /// A live view of the running steps.
    Tty,
    /// Every event on its own line, prefixed `#N`.
    Plain,
    /// One JSON object per line.
    Json,
    /// Only errors.
    Quiet,
}

/// `--network`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// The host's network (what docker build's default gives a RUN step).
    Default,
    /// No network: only a loopback interface.
    None,
    /// The host's network.
    Host,
}

/// `--format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// OCI image manifest and config media types.
    Oci,
    /// Docker image manifest v2, schema 2.
    Docker,
}

/// `--compression`
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// gzip (every tool reads it).
    Gzip,
    /// zstd (smaller and faster; OCI format only).
    Zstd,
    /// No compression.
    Uncompressed,
}

pub fn run(global: &GlobalArgs, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let report = args.report || args.report_file.is_some() || !args.fail_on.is_empty();
    let report_format = args.report_format;
    let report_file = args.report_file.clone();
    let fail_on = args.fail_on.clone();
    let settings = crate::build::Settings::from_args(global, args)?;
    let store = settings.store.clone();
    let built = crate::build::build(settings)?;
    // As docker: when an output goes to stdout, the image id does not; with only file
    // system outputs there is no image id.
    if !built.stdout_used && built.makes_image {
        crate::outln!("{}", built.id);
    }
    if report {
        return super::report::report_built(
            store,
            &built.name,
            &built.descriptor,
            report_format,
            report_file.as_deref(),
            &fail_on,
        );
    }
    Ok(ExitCode::SUCCESS)
}
