//! Build outputs, as docker buildx names them: where the built image goes after
//! [`super::image::assemble`] put its config and manifest into the store.
//!
//! - `type=image` (the default): the store, named by `-t` (or `name=`); `push=true` (or
//!   `--push`) pushes every name with the code of `rbuild push`.
//! - `type=oci,dest=FILE|DIR[,tar=false]`: an OCI image layout, in a tar or a directory.
//! - `type=docker,dest=FILE`: a docker archive (`docker load`), `RepoTags` from the names.
//! - `type=local,dest=DIR` / `type=tar,dest=FILE`: the final file system, whiteouts applied,
//!   written from one merged tar stream ([`flatten`]).
//!
//! Files are written atomically (a temp file beside the destination, renamed into place);
//! `dest=-` writes to stdout. Without a `type=image` output the image is not named in the
//! store (its blobs stay as cache), as with buildx.
//!
//! Layer compression of an output comes from its `compression=`, `compression-level=` and
//! `force-compression=` keys, else from `--compression`, `--compression-level` and
//! `--force-compression`, else the output's default: the store keeps layers as built,
//! pushes and OCI layouts get gzip, docker archives hold uncompressed tars (as `docker
//! save`). Converted layers are made once and remembered in `variants-v1/`.

mod flatten;

use std::collections::BTreeMap;
use std::io::{BufWriter, IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use oci_spec::image::{Descriptor, MediaType};
use rbuild_cache::archive::{self, Format, SaveImage};
use rbuild_cache::variants::Variant;
use rbuild_cache::{Digest, Store, descriptor_digest};
use rbuild_executor::compress::Compression;
use serde_json::{Value, json};

use crate::BuildRequest;
use crate::events::Events;

/// The output options of a build as buildx spells them (`--output` values, `--push`, the
/// compression flags, `--annotation` values, `--metadata-file`), before they are checked.
#[derive(Debug, Clone, Default)]
pub struct OutputFlags {
    /// `--output` values (`type=local,dest=out`, `-`, a directory).
    pub outputs: Vec<String>,
    /// `--push`.
    pub push: bool,
    /// `--compression`: how image outputs compress their layers.
    pub compression: Option<Compression>,
    /// `--compression-level`.
    pub compression_level: Option<i32>,
    /// `--force-compression`.
    pub force_compression: bool,
    /// `--annotation` values.
    pub annotations: Vec<String>,
    /// `--metadata-file`.
    pub metadata_file: Option<PathBuf>,
}

/// How layers are compressed for an output or a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerCompression {
    /// The compression layers get.
    pub kind: Compression,
    /// The level (gzip 0-9, zstd 1-22); `None` for the default.
    pub level: Option<i32>,
    /// Also convert layers compressed otherwise (a base image's gzip layers to zstd...);
    /// without it only uncompressed layers are converted.
    pub force: bool,
}

impl Default for LayerCompression {
    /// gzip at the default level: what registries and every runtime read.
    fn default() -> Self {
        LayerCompression {
            kind: Compression::Gzip,
            level: None,
            force: false,
        }
    }
}

/// The kinds of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// The store (and a registry with `push`).
    Image {
        /// Push every name after the build.
        push: bool,
    },
    /// An OCI image layout.
    Oci {
        /// In a tar (true) or a directory.
        tar: bool,
    },
    /// A docker archive.
    Docker,
    /// The final file system in a directory.
    Local,
    /// The final file system in one tar.
    Tar,
}

impl OutputKind {
    fn name(self) -> &'static str {
        match self {
            OutputKind::Image { .. } => "image",
            OutputKind::Oci { .. } => "oci",
            OutputKind::Docker => "docker",
            OutputKind::Local => "local",
            OutputKind::Tar => "tar",
        }
    }
}

/// Where an output is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// stdout (`dest=-`).
    Stdout,
    /// A file or a directory.
    Path(PathBuf),
}

/// One `--output`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Its type.
    pub kind: OutputKind,
    /// `dest=`, for every type but `image`.
    pub dest: Option<Dest>,
    /// `name=` (comma-separated in the value), normalized; empty: the `-t` names.
    pub names: Vec<String>,
    /// `compression=`.
    pub compression: Option<Compression>,
    /// `compression-level=`.
    pub level: Option<i32>,
    /// `force-compression=`.
    pub force: Option<bool>,
}

/// Where an annotation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationKind {
    /// The image manifest's `annotations`.
    Manifest,
    /// The manifest's descriptor: in the store's and an OCI layout's `index.json`.
    ManifestDescriptor,
}

/// One `--annotation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// Where it goes.
    pub kind: AnnotationKind,
    /// `[os/arch]` when given: the annotation applies only to that platform.
    pub platform: Option<String>,
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// The output part of a build's settings.
#[derive(Debug, Clone)]
pub struct OutputSettings {
    /// The outputs, in command-line order (`type=image` when none was given).
    pub outputs: Vec<Output>,
    /// `--compression`, when given.
    pub compression: Option<Compression>,
    /// `--compression-level`.
    pub level: Option<i32>,
    /// `--force-compression`.
    pub force: bool,
    /// `--annotation`s.
    pub annotations: Vec<Annotation>,
    /// `--metadata-file`.
    pub metadata_file: Option<PathBuf>,
}

fn parse_bool(key: &str, value: &str) -> anyhow::Result<bool> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("output key {key} must be true or false, not {value:?}"),
    }
}

fn parse_compression(value: &str) -> anyhow::Result<Compression> {
    match value {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "uncompressed" => Ok(Compression::None),
        _ => bail!("unknown compression {value:?}: expected gzip, zstd or uncompressed"),
    }
}

fn check_level(kind: Compression, level: i32) -> anyhow::Result<()> {
    let (lo, hi) = match kind {
        Compression::Gzip => (0, 9),
        Compression::Zstd => (1, 22),
        Compression::None => return Ok(()),
    };
    if !(lo..=hi).contains(&level) {
        bail!("compression level {level} is out of range for {kind:?} ({lo}-{hi})");
    }
    Ok(())
}

/// Parses one `--output` value.
pub fn parse_output(spec: &str) -> anyhow::Result<Output> {
    let mut out = Output {
        kind: OutputKind::Image { push: false },
        dest: None,
        names: Vec::new(),
        compression: None,
        level: None,
        force: None,
    };
    // Short forms: `-o -` is a tar on stdout, `-o DIR` a local directory.
    if !spec.contains('=') {
        if spec.is_empty() {
            bail!("empty --output: expected type=TYPE[,KEY=VALUE...] or a directory");
        }
        if spec == "-" {
            out.kind = OutputKind::Tar;
            out.dest = Some(Dest::Stdout);
        } else {
            out.kind = OutputKind::Local;
            out.dest = Some(Dest::Path(PathBuf::from(spec)));
        }
        return Ok(out);
    }
    let mut kind = None;
    let mut push = false;
    let mut tar = true;
    let mut tar_given = false;
    // One CSV record, as buildx reads it: `type=image,"name=a,b"`.
    // The caller names the flag and the value.
    let pairs = rbuild_options::csv::pairs(spec).map_err(|e| anyhow!("{e}"))?;
    for (key, value) in &pairs {
        let (key, value) = (key.as_str(), value.as_deref().map(str::trim_end));
        let value =
            value.ok_or_else(|| anyhow!("invalid --output field {key:?}: expected KEY=VALUE"))?;
        match key {
            "type" => kind = Some(value.to_string()),
            "dest" => {
                if value.is_empty() {
                    bail!("--output {spec:?}: dest is empty");
                }
                out.dest = Some(if value == "-" {
                    Dest::Stdout
                } else {
                    Dest::Path(PathBuf::from(value))
                });
            }
            "name" => {
                for n in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    out.names.push(
                        crate::names::normalize_name(n)
                            .with_context(|| format!("invalid name {n:?} in --output"))?,
                    );
                }
            }
            "push" => push = parse_bool(key, value)?,
            "tar" => {
                tar = parse_bool(key, value)?;
                tar_given = true;
            }
            "compression" => out.compression = Some(parse_compression(value)?),
            "compression-level" => {
                out.level =
                    Some(value.parse().map_err(|_| {
                        anyhow!("compression-level must be a number, not {value:?}")
                    })?)
            }
            "force-compression" => out.force = Some(parse_bool(key, value)?),
            other => bail!(
                "unknown key {other:?} in --output {spec:?} (rbuild knows type, dest, name, push, \
                 tar, compression, compression-level, force-compression)"
            ),
        }
    }
    let kind = kind.ok_or_else(|| anyhow!("--output {spec:?} has no type="))?;
    out.kind = match kind.as_str() {
        "image" => OutputKind::Image { push },
        "registry" => OutputKind::Image { push: true },
        "oci" => OutputKind::Oci { tar },
        "docker" => OutputKind::Docker,
        "local" => OutputKind::Local,
        "tar" => OutputKind::Tar,
        other => bail!(
            "unknown output type {other:?}: expected image, registry, oci, docker, local or tar"
        ),
    };
    let name = out.kind.name();
    if push && !matches!(out.kind, OutputKind::Image { .. }) {
        bail!("push=true applies to type=image only, not type={name}");
    }
    if tar_given && !matches!(out.kind, OutputKind::Oci { .. }) {
        bail!("tar= applies to type=oci only, not type={name}");
    }
    if !out.names.is_empty() && matches!(out.kind, OutputKind::Local | OutputKind::Tar) {
        bail!("name= does not apply to type={name}: it writes a file system, not an image");
    }
    if (out.compression.is_some() || out.level.is_some() || out.force.is_some())
        && matches!(out.kind, OutputKind::Local | OutputKind::Tar)
    {
        bail!("type={name} writes files, not layers: compression keys do not apply");
    }
    if out.kind == OutputKind::Docker
        && matches!(out.compression, Some(c) if c != Compression::None)
    {
        bail!(
            "type=docker writes a docker archive, whose layers are uncompressed tars (as docker \
             save writes them): use type=oci for compressed layers"
        );
    }
    match (&out.kind, &out.dest) {
        (OutputKind::Image { .. }, Some(_)) => {
            bail!("type=image takes no dest: it goes to the store (and registries with push=true)")
        }
        (OutputKind::Image { .. }, None) => {}
        (OutputKind::Local, Some(Dest::Stdout)) => {
            bail!("type=local cannot write to stdout: use type=tar,dest=-")
        }
        (OutputKind::Oci { tar: false }, Some(Dest::Stdout)) => {
            bail!("type=oci,tar=false writes a directory: it cannot go to stdout")
        }
        (_, None) => bail!("--output type={name} needs dest=PATH (or dest=- for stdout)"),
        _ => {}
    }
    if let (Some(c), Some(l)) = (out.compression, out.level) {
        check_level(c, l)?;
    }
    Ok(out)
}

/// Parses one `--annotation`: `[TYPE[PLATFORM],...:]KEY=VALUE`.
pub fn parse_annotation(spec: &str) -> anyhow::Result<Vec<Annotation>> {
    let (kv_start, types) = match spec.split_once('=') {
        Some((left, _)) => match left.find(':') {
            // What comes before the first colon is a type prefix only when it names types;
            // otherwise the colon belongs to the key (`com.example:x=1`).
            Some(i) if looks_like_types(&left[..i]) => (i + 1, Some(&left[..i])),
            _ => (0, None),
        },
        None => bail!("invalid --annotation {spec:?}: expected [TYPE:]KEY=VALUE"),
    };
    let (key, value) = spec[kv_start..]
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid --annotation {spec:?}: expected [TYPE:]KEY=VALUE"))?;
    if key.is_empty() {
        bail!("invalid --annotation {spec:?}: the key is empty");
    }
    let mut out = Vec::new();
    let types = types.unwrap_or("manifest");
    for t in types.split(',') {
        let (name, platform) = match t.split_once('[') {
            Some((n, rest)) => {
                let p = rest
                    .strip_suffix(']')
                    .ok_or_else(|| anyhow!("invalid --annotation {spec:?}: unclosed [ in {t:?}"))?;
                (n, Some(p.to_string()))
            }
            None => (t, None),
        };
        let kind = match name {
            "manifest" => AnnotationKind::Manifest,
            "manifest-descriptor" => AnnotationKind::ManifestDescriptor,
            "index" | "index-descriptor" => bail!(
                "--annotation {spec:?}: type {name} needs an image index, and rbuild builds a \
                 single-platform image (a manifest, no index): use manifest or manifest-descriptor"
            ),
            other => bail!(
                "--annotation {spec:?}: unknown type {other:?} (expected manifest, \
                 manifest-descriptor, index or index-descriptor)"
            ),
        };
        out.push(Annotation {
            kind,
            platform,
            key: key.to_string(),
            value: value.to_string(),
        });
    }
    Ok(out)
}

fn looks_like_types(prefix: &str) -> bool {
    prefix.split(',').all(|t| {
        let name = t.split('[').next().unwrap_or_default();
        matches!(
            name,
            "manifest" | "manifest-descriptor" | "index" | "index-descriptor"
        )
    })
}

impl OutputSettings {
    /// Resolves `--output`, `--push`, the compression flags, `--annotation` and
    /// `--metadata-file`, and checks every destination can be written before anything runs.
    pub fn from_flags(args: &OutputFlags, tags: &[String]) -> anyhow::Result<OutputSettings> {
        let mut outputs = args
            .outputs
            .iter()
            .map(|o| parse_output(o).with_context(|| format!("invalid --output {o:?}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        if args.push {
            match outputs
                .iter_mut()
                .find(|o| matches!(o.kind, OutputKind::Image { .. }))
            {
                Some(o) => o.kind = OutputKind::Image { push: true },
                None => outputs.push(parse_output("type=image,push=true")?),
            }
        }
        if outputs.is_empty() {
            outputs.push(parse_output("type=image")?);
        }
        if outputs
            .iter()
            .filter(|o| o.dest == Some(Dest::Stdout))
            .count()
            > 1
        {
            bail!("only one output can be written to stdout");
        }
        for o in &outputs {
            if o.kind == (OutputKind::Image { push: true }) && o.names.is_empty() && tags.is_empty()
            {
                bail!("pushing needs a name: give -t NAME (or name= in --output)");
            }
            if let Some(dest) = &o.dest {
                check_dest(o.kind, dest)?;
            }
        }
        let compression = args.compression;
        if let (Some(l), Some(c)) = (args.compression_level, compression) {
            check_level(c, l)?;
        }
        let mut annotations = Vec::new();
        for a in &args.annotations {
            annotations.extend(parse_annotation(a)?);
        }
        if let Some(path) = &args.metadata_file {
            probe_parent(path)
                .with_context(|| format!("cannot write --metadata-file {}", path.display()))?;
        }
        Ok(OutputSettings {
            outputs,
            compression,
            level: args.compression_level,
            force: args.force_compression,
            annotations,
            metadata_file: args.metadata_file.clone(),
        })
    }

    /// Whether an output holds an image (the store, a registry, an OCI layout or a docker
    /// archive); with only file system outputs (`type=local`, `type=tar`) there is no image
    /// and no image id, as with buildx.
    pub fn makes_image(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| !matches!(o.kind, OutputKind::Local | OutputKind::Tar))
    }

    /// Whether an output goes to stdout.
    pub fn writes_stdout(&self) -> bool {
        self.outputs.iter().any(|o| o.dest == Some(Dest::Stdout))
    }

    /// The `manifest` annotations for an image of `platform` (`os/arch[/variant]`).
    pub fn manifest_annotations(&self, platform: &str) -> anyhow::Result<BTreeMap<String, String>> {
        self.annotations_of(AnnotationKind::Manifest, platform)
    }

    /// The `manifest-descriptor` annotations for an image of `platform`.
    pub fn descriptor_annotations(
        &self,
        platform: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        self.annotations_of(AnnotationKind::ManifestDescriptor, platform)
    }

    fn annotations_of(
        &self,
        kind: AnnotationKind,
        platform: &str,
    ) -> anyhow::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for a in self.annotations.iter().filter(|a| a.kind == kind) {
            if let Some(p) = &a.platform
                && !platform_matches(p, platform)
            {
                bail!(
                    "--annotation {} is for platform {p}, but the image is for {platform}",
                    a.key
                );
            }
            out.insert(a.key.clone(), a.value.clone());
        }
        Ok(out)
    }

    /// The compression of an output (or push) whose default is `default` (`None`: keep the
    /// layers as they are).
    fn compression_for(
        &self,
        output: &Output,
        default: Option<Compression>,
    ) -> Option<LayerCompression> {
        let kind = output.compression.or(self.compression).or(default)?;
        Some(LayerCompression {
            kind,
            level: output.level.or(self.level),
            force: output.force.unwrap_or(self.force),
        })
    }

    /// The names an image output gives: its own `name=`, else the build's tags.
    fn names_for(&self, output: &Output, tags: &[String]) -> Vec<String> {
        if output.names.is_empty() {
            tags.to_vec()
        } else {
            output.names.clone()
        }
    }
}

/// `linux/amd64` matches `linux/amd64` and `linux/amd64/v1`-less spellings of the same.
fn platform_matches(wanted: &str, actual: &str) -> bool {
    let norm = |p: &str| p.trim().trim_end_matches('/').to_ascii_lowercase();
    let (w, a) = (norm(wanted), norm(actual));
    w == a || a.strip_prefix(&w).is_some_and(|rest| rest.starts_with('/'))
}

/// The nearest existing ancestor of `path` (itself included).
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut cur = if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(".").join(path)
    };
    loop {
        if std::fs::symlink_metadata(&cur).is_ok() {
            return cur;
        }
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p.to_path_buf(),
            _ => return PathBuf::from("."),
        }
    }
}

/// Checks that a file can be created beside `path`: its directory exists and a temp file
/// can be made there.
fn probe_parent(path: &Path) -> anyhow::Result<()> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        bail!("directory {} does not exist", dir.display());
    }
    tempfile::Builder::new()
        .prefix(".rbuild-probe-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Checks before the build that `dest` can be written.
fn check_dest(kind: OutputKind, dest: &Dest) -> anyhow::Result<()> {
    let Dest::Path(path) = dest else {
        return Ok(());
    };
    let what = || {
        format!(
            "cannot write output type={} to {}",
            kind.name(),
            path.display()
        )
    };
    match kind {
        OutputKind::Local | OutputKind::Oci { tar: false } => {
            let found = existing_ancestor(path);
            if !found.is_dir() {
                return Err(anyhow!("{} is not a directory", found.display())).with_context(what);
            }
            tempfile::Builder::new()
                .prefix(".rbuild-probe-")
                .tempfile_in(&found)
                .with_context(|| format!("cannot create a file in {}", found.display()))
                .with_context(what)?;
        }
        _ => {
            if path.is_dir() {
                return Err(anyhow!("{} is a directory", path.display())).with_context(what);
            }
            probe_parent(path).with_context(what)?;
        }
    }
    Ok(())
}

/// One image reference pushed.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference as named (`registry:5000/app:1`).
    pub reference: String,
    /// The manifest digest the registry has.
    pub digest: String,
}

/// One output written.
#[derive(Debug, Clone)]
pub struct Written {
    /// Its type (`image`, `oci`, `docker`, `local`, `tar`).
    pub kind: &'static str,
    /// Where (`-` for stdout; the names for `image`).
    pub dest: String,
    /// The manifest it holds, for image outputs.
    pub descriptor: Option<Descriptor>,
}

/// What [`export`] did.
#[derive(Debug, Clone, Default)]
pub struct Exported {
    /// References pushed, with their digests.
    pub pushed: Vec<Pushed>,
    /// Outputs written, in order.
    pub written: Vec<Written>,
}

/// The platform of the manifest descriptor, as `os/arch[/variant]`.
fn platform_text(descriptor: &Descriptor) -> String {
    descriptor
        .platform()
        .as_ref()
        .map_or_else(String::new, |p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
}

/// Writes every output of `settings` for the image `descriptor` (in the store, unnamed).
pub fn export(
    settings: &BuildRequest,
    descriptor: &Descriptor,
    progress: &dyn Events,
) -> anyhow::Result<Exported> {
    let store = &settings.store;
    let out = &settings.output;
    let mut exported = Exported::default();
    let mut base = descriptor.clone();
    let desc_annotations = out.descriptor_annotations(&platform_text(descriptor))?;
    if !desc_annotations.is_empty() {
        let mut a = base.annotations().clone().unwrap_or_default();
        a.extend(desc_annotations);
        base.set_annotations(Some(a));
    }
    for output in &out.outputs {
        let started = std::time::Instant::now();
        let names = out.names_for(output, &settings.tags);
        let dest_text = match &output.dest {
            Some(Dest::Stdout) => "-".to_string(),
            Some(Dest::Path(p)) => p.display().to_string(),
            None => names.join(","),
        };
        let what = || {
            format!(
                "cannot write output type={} to {dest_text}",
                output.kind.name()
            )
        };
        let mut written = Written {
            kind: output.kind.name(),
            dest: dest_text.clone(),
            descriptor: None,
        };
        match output.kind {
            OutputKind::Image { push } => {
                let image = match out.compression_for(output, None) {
                    Some(c) => convert_image(store, &base, &c).with_context(what)?,
                    None => base.clone(),
                };
                for name in &names {
                    store
                        .tag(name, &image)
                        .with_context(|| format!("cannot name the image {name}"))?;
                }
                if push {
                    let compression = out
                        .compression_for(output, Some(Compression::Gzip))
                        .unwrap_or_default();
                    let mut previous: Option<rbuild_registry::Reference> = None;
                    for name in &names {
                        let dest = crate::names::parse_reference(name)?;
                        // Later names on the same registry mount the blobs the first one
                        // uploaded.
                        let mount = previous
                            .as_ref()
                            .filter(|p| {
                                p.registry() == dest.registry()
                                    && p.repository() != dest.repository()
                            })
                            .map(|p| p.repository().to_string());
                        let transfer = progress.transfer("push", name);
                        let result = crate::push::push_descriptor(
                            store,
                            &image,
                            &dest,
                            &settings.registry,
                            transfer.reporter(),
                            &compression,
                            mount,
                        )
                        .with_context(|| format!("cannot push {name}"));
                        let result = match result {
                            Ok(r) => {
                                transfer.done();
                                r
                            }
                            Err(e) => {
                                transfer.failed(&format!("{e:#}"));
                                return Err(e);
                            }
                        };
                        tracing::info!("pushed {name}@{}", result.digest);
                        exported.pushed.push(Pushed {
                            reference: name.clone(),
                            digest: result.digest.to_string(),
                        });
                        previous.get_or_insert(dest);
                    }
                }
                written.descriptor = Some(image);
            }
            OutputKind::Oci { tar } => {
                let compression = out.compression_for(output, Some(Compression::Gzip));
                let image = match compression {
                    Some(c) => convert_image(store, &base, &c).with_context(what)?,
                    None => base.clone(),
                };
                let dest = output.dest.as_ref().expect("checked when parsed");
                if tar {
                    let images = save_images(&image, &names);
                    write_to(dest, |w| {
                        archive::save(store, &images, Format::Oci, w)?;
                        Ok(())
                    })
                    .with_context(what)?;
                } else {
                    let Dest::Path(dir) = dest else {
                        unreachable!("checked when parsed")
                    };
                    write_oci_dir(store, &image, names.first().map(String::as_str), dir)
                        .with_context(what)?;
                }
                written.descriptor = Some(image);
            }
            OutputKind::Docker => {
                let images = save_images(&base, &names);
                let dest = output.dest.as_ref().expect("checked when parsed");
                write_to(dest, |w| {
                    archive::save(store, &images, Format::Docker, w)?;
                    Ok(())
                })
                .with_context(what)?;
                written.descriptor = Some(base.clone());
            }
            OutputKind::Local => {
                let Some(Dest::Path(dir)) = &output.dest else {
                    unreachable!("checked when parsed")
                };
                let layers = image_layers(store, descriptor)?;
                flatten::write_dir(store, &layers, &settings.limits, dir).with_context(what)?;
            }
            OutputKind::Tar => {
                let layers = image_layers(store, descriptor)?;
                let dest = output.dest.as_ref().expect("checked when parsed");
                write_to(dest, |w| {
                    flatten::write_tar(store, &layers, &settings.limits, w).map(|_| ())
                })
                .with_context(what)?;
            }
        }
        tracing::info!(
            "wrote output type={} to {dest_text} in {:.2?}",
            output.kind.name(),
            started.elapsed()
        );
        exported.written.push(written);
    }
    Ok(exported)
}

/// The layers of an image manifest: (blob digest, media type).
fn image_layers(store: &Store, descriptor: &Descriptor) -> anyhow::Result<Vec<(Digest, String)>> {
    let (_, manifest) = store.image_manifest(descriptor)?;
    manifest
        .layers()
        .iter()
        .map(|l| Ok((descriptor_digest(l)?, l.media_type().to_string())))
        .collect()
}

fn save_images(descriptor: &Descriptor, names: &[String]) -> Vec<SaveImage> {
    if names.is_empty() {
        return vec![SaveImage {
            name: None,
            short_name: None,
            descriptor: descriptor.clone(),
        }];
    }
    names
        .iter()
        .map(|n| SaveImage {
            name: Some(n.clone()),
            short_name: Some(crate::names::short_name(n).to_string()),
            descriptor: descriptor.clone(),
        })
        .collect()
}

/// Writes to stdout, or atomically to a file: a temp file beside it, renamed into place.
fn write_to(
    dest: &Dest,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match dest {
        Dest::Stdout => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal: redirect stdout");
            }
            let mut w = BufWriter::with_capacity(1 << 20, crate::stdout::stdout());
            write(&mut w)?;
            w.flush().context("cannot write to stdout")?;
        }
        Dest::Path(path) => atomic_file(path, write)?,
    }
    Ok(())
}

/// Writes the image as an OCI layout directory: blobs first (each atomically, existing ones
/// of the right size kept), `oci-layout`, then `index.json` naming only this image.
fn write_oci_dir(
    store: &Store,
    descriptor: &Descriptor,
    name: Option<&str>,
    dir: &Path,
) -> anyhow::Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .with_context(|| format!("cannot create {}", blobs.display()))?;
    for digest in store.reachable(descriptor, true)? {
        let target = blobs.join(digest.hex());
        let size = store.blob_size(&digest)?;
        if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_file() && m.len() == size) {
            continue;
        }
        // std::fs::copy lets the kernel copy (copy_file_range: a reflink where the file
        // system shares extents), into a temp file renamed into place.
        let fail = || format!("cannot write {}", target.display());
        let tmp = rbuild_cache::atomic::AtomicFile::create(&target, None, Some(0o644))
            .with_context(fail)?;
        std::fs::copy(store.blob_path(&digest), tmp.temp_path()).with_context(fail)?;
        tmp.commit().with_context(fail)?;
    }
    atomic_file(&dir.join("oci-layout"), |w| {
        w.write_all(br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        Ok(())
    })?;
    let mut entry = descriptor.clone();
    if let Some(name) = name {
        let mut a = entry.annotations().clone().unwrap_or_default();
        a.insert(
            oci_spec::image::ANNOTATION_REF_NAME.to_string(),
            name.to_string(),
        );
        a.insert("io.containerd.image.name".to_string(), name.to_string());
        entry.set_annotations(Some(a));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry],
    });
    let bytes = serde_json::to_vec(&index)?;
    atomic_file(&dir.join("index.json"), |w| {
        w.write_all(&bytes)?;
        Ok(())
    })
}

/// Writes `path` through a temp file beside it, renamed into place (never through a
/// symlink at `path`: the rename replaces it), readable by all.
fn atomic_file(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    rbuild_cache::atomic::write_with(path, None, Some(0o644), write)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The media type of a layer in `format` (`docker` or OCI) with `kind` compression.
fn layer_type(docker: bool, kind: Compression) -> anyhow::Result<&'static str> {
    Ok(match (docker, kind) {
        (false, k) => k.media_type(),
        (true, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
        (true, Compression::Gzip) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        (true, Compression::Zstd) => {
            bail!("zstd layers cannot be in a Docker v2 manifest: build with --format oci")
        }
    })
}

/// The name of a converted layer in `variants-v1/`: `gzip` at the default level (shared with
/// `rbuild push`), `gzip9`, `zstd`, `zstd19`, `tar`.
fn variant_name(c: &LayerCompression) -> String {
    let base = match c.kind {
        Compression::None => "tar",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    match c.level {
        Some(l) if c.kind != Compression::None => format!("{base}{l}"),
        _ => base.to_string(),
    }
}

/// Converts one layer blob of the store to `c`, once: the result is remembered in
/// `variants-v1/`.
pub fn convert_layer(
    store: &Store,
    digest: &Digest,
    media_type: &str,
    c: &LayerCompression,
) -> anyhow::Result<Variant> {
    convert_layer_watched(store, digest, media_type, c, &mut ())
}

/// What a caller learns while layers are converted (a push uploads each layer as it is
/// written).
pub trait ConvertWatch {
    /// A layer's conversion starts: where to copy its converted bytes as they are written
    /// (`None`: nowhere). A failing copy is dropped; the conversion goes on.
    fn converting(&mut self) -> Option<Box<dyn Write + Send>>;
    /// A layer is converted (now, or found converted earlier): `from` makes it again.
    fn ready(&mut self, variant: &Variant, from: &Conversion);
    /// Whether converted layers must stay in the store. A push needs their bytes only while
    /// they upload, so it records just their digests.
    fn keeps_blobs(&self) -> bool {
        true
    }
    /// Whether a layer converted earlier whose blob was not kept may be used as it is (a push:
    /// the registry has it).
    fn has_unkept(&mut self, _variant: &Variant) -> bool {
        false
    }
}

impl ConvertWatch for () {
    fn converting(&mut self) -> Option<Box<dyn Write + Send>> {
        None
    }
    fn ready(&mut self, _: &Variant, _: &Conversion) {}
}

/// A layer conversion: which layer of the store (and its media type), to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The layer blob in the store.
    pub layer: Digest,
    /// Its media type.
    pub media_type: String,
    /// What it is converted to.
    pub compression: LayerCompression,
}

impl Conversion {
    /// Converts the layer into `out`, returning it when done.
    fn write_into<W: Write + Send>(&self, store: &Store, out: W) -> anyhow::Result<W> {
        let digest = &self.layer;
        let reader = store.open_blob(digest)?;
        // Read in 1 MiB pieces: `io::copy` alone reads a boxed reader 8 KiB at a time.
        let mut reader = std::io::BufReader::with_capacity(
            1 << 20,
            rbuild_executor::compress::decompress(reader, Some(&self.media_type))
                .with_context(|| format!("cannot read layer {digest}"))?,
        );
        let c = &self.compression;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let fail = || format!("cannot compress layer {digest}");
        Ok(match c.kind {
            Compression::None => {
                let mut w = out;
                std::io::copy(&mut reader, &mut w).with_context(fail)?;
                w
            }
            Compression::Gzip => {
                let mut gz = rbuild_executor::compress::ParallelGzip::new(out, threads);
                if let Some(l) = c.level {
                    gz = gz.with_level(l.clamp(0, 9) as u32);
                }
                std::io::copy(&mut reader, &mut gz).with_context(fail)?;
                gz.finish().with_context(fail)?
            }
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(out, c.level.unwrap_or(3))
                    .with_context(fail)?;
                std::io::copy(&mut reader, &mut z).with_context(fail)?;
                z.finish().with_context(fail)?
            }
        })
    }

    /// Converts the layer into `inner` and copies what it writes to `copy`. The copy ends
    /// (its reader sees the end) before `inner` is returned to be synced and committed.
    fn write_teed<W: Write + Send>(
        &self,
        store: &Store,
        inner: W,
        copy: Option<Box<dyn Write + Send>>,
    ) -> anyhow::Result<W> {
        let Tee { inner, copy } = self.write_into(store, Tee { inner, copy })?;
        drop(copy);
        Ok(inner)
    }

    /// Converts the layer again and stores the result, for a layer converted without keeping
    /// its blob whose bytes are needed after all (a push whose streamed upload failed). The
    /// conversion is deterministic; the store refuses bytes that do not have the recorded
    /// digest and size. The record then says the blob is stored.
    pub fn remake(&self, store: &Store, variant: &Variant) -> anyhow::Result<()> {
        let digest: Digest = variant
            .digest
            .parse()
            .with_context(|| format!("bad variant digest {}", variant.digest))?;
        let started = std::time::Instant::now();
        let writer = store.blob_writer(Some(rbuild_cache::Expected {
            digest,
            size: Some(variant.size),
        }))?;
        let committed = self
            .write_into(store, writer)
            .and_then(|w| Ok(w.commit()?))
            .with_context(|| {
                format!(
                    "cannot convert layer {} to {digest} again for its upload",
                    self.layer
                )
            })?;
        tracing::debug!(
            "converted layer {} again to {} in {:.2?}",
            self.layer,
            committed.digest,
            started.elapsed()
        );
        let variants = rbuild_cache::variants::Variants::open(store.root())?;
        let kept = Variant {
            stored: true,
            ..variant.clone()
        };
        variants.put(&self.layer, &variant_name(&self.compression), &kept)?;
        Ok(())
    }
}

/// Writes to `inner` and copies what it took into `copy`, until the copy fails.
struct Tee<W> {
    inner: W,
    copy: Option<Box<dyn Write + Send>>,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(copy) = &mut self.copy
            && let Err(e) = copy.write_all(&buf[..n])
        {
            tracing::debug!("the copy of a converted layer stopped: {e}");
            self.copy = None;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn convert_layer_watched(
    store: &Store,
    digest: &Digest,
    media_type: &str,
    c: &LayerCompression,
    watch: &mut dyn ConvertWatch,
) -> anyhow::Result<Variant> {
    let variants = rbuild_cache::variants::Variants::open(store.root())?;
    let name = variant_name(c);
    let conversion = Conversion {
        layer: *digest,
        media_type: media_type.to_string(),
        compression: c.clone(),
    };
    let keep = watch.keeps_blobs();
    if let Some(v) = variants.get(digest, &name).filter(|v| {
        if v.stored {
            v.digest.parse().is_ok_and(|d| store.has_blob(&d))
        } else {
            !keep && watch.has_unkept(v)
        }
    }) {
        watch.ready(&v, &conversion);
        return Ok(v);
    }
    let started = std::time::Instant::now();
    let copy = watch.converting();
    let (converted, size) = if keep {
        let blob = conversion.write_teed(store, store.blob_writer(None)?, copy)?;
        let committed = blob.commit()?;
        (committed.digest, committed.size)
    } else {
        let hashed = rbuild_cache::HashingWriter::new(std::io::sink());
        let (_, digest, size) = conversion.write_teed(store, hashed, copy)?.finish();
        (digest, size)
    };
    tracing::info!(
        "converted layer {digest} to {name}: {converted} ({size} bytes{}) in {:.2?}",
        if keep { "" } else { ", not kept" },
        started.elapsed()
    );
    let v = Variant {
        digest: converted.to_string(),
        size,
        media_type: c.kind.media_type().to_string(),
        stored: keep,
    };
    variants.put(digest, &name, &v)?;
    watch.ready(&v, &conversion);
    Ok(v)
}

/// A manifest whose layers are converted to `c` (uncompressed ones always, others only with
/// `force`; layers already in `c`'s compression are kept), stored in the store; `None` when
/// nothing changes. The config, and so the diff_ids, stay the same.
pub fn convert_layers(
    store: &Store,
    manifest: &[u8],
    c: &LayerCompression,
) -> anyhow::Result<Option<Vec<u8>>> {
    convert_layers_watched(store, manifest, c, &mut ())
}

/// `convert_layers`, telling `watch` about each layer it converts.
pub fn convert_layers_watched(
    store: &Store,
    manifest: &[u8],
    c: &LayerCompression,
    watch: &mut dyn ConvertWatch,
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut value: Value = serde_json::from_slice(manifest)?;
    let docker = value["mediaType"]
        .as_str()
        .is_some_and(|m| m.starts_with("application/vnd.docker."));
    let Some(layers) = value.get_mut("layers").and_then(|l| l.as_array_mut()) else {
        return Ok(None);
    };
    let mut changed = false;
    for layer in layers.iter_mut() {
        let Some(media_type) = layer["mediaType"].as_str().map(str::to_string) else {
            continue;
        };
        // Foreign and non-distributable layers are not ours to change.
        if media_type.contains("nondistributable") || media_type.contains("foreign") {
            continue;
        }
        let Some(current) = Compression::from_media_type(&media_type) else {
            continue;
        };
        if current == c.kind || (current != Compression::None && !c.force) {
            continue;
        }
        let digest: Digest = layer["digest"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("bad layer digest {}", layer["digest"]))?;
        let variant = convert_layer_watched(store, &digest, &media_type, c, watch)?;
        layer["mediaType"] = json!(layer_type(docker, c.kind)?);
        layer["digest"] = json!(variant.digest);
        layer["size"] = json!(variant.size);
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    let bytes = serde_json::to_vec(&value)?;
    let media_type = value["mediaType"]
        .as_str()
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();
    // Kept even when the layers are not: `--metadata-file` reads the pushed manifest's size.
    store.put_document(MediaType::Other(media_type), &bytes)?;
    Ok(Some(bytes))
}

/// The image `descriptor` with its layers converted to `c` (the same descriptor when nothing
/// changes): platform and annotations of the descriptor are kept.
pub fn convert_image(
    store: &Store,
    descriptor: &Descriptor,
    c: &LayerCompression,
) -> anyhow::Result<Descriptor> {
    let digest = descriptor_digest(descriptor)?;
    let bytes = store.read_blob(&digest)?;
    match convert_layers(store, &bytes, c)
        .with_context(|| format!("cannot convert the layers of {digest}"))?
    {
        None => Ok(descriptor.clone()),
        Some(converted) => {
            let mut d = descriptor.clone();
            d.set_digest(Digest::of(&converted).to_string().parse()?);
            d.set_size(converted.len() as u64);
            Ok(d)
        }
    }
}

/// Writes the `--metadata-file` JSON, buildx's keys and rbuild's own:
///
/// ```json
/// {
///   "containerimage.digest": "sha256:…",       // the image's manifest digest: as pushed
///                                               // (first name) when pushed, else as stored
///   "containerimage.config.digest": "sha256:…", // its config
///   "containerimage.descriptor": {"mediaType": "…", "digest": "sha256:…", "size": 1234,
///                                 "platform": {…}, "annotations": {…}},
///   "image.name": "registry/app:1,registry/app:latest",  // the names, comma-separated
///   "rbuild.image.id": "sha256:…",              // the id printed on stdout (store manifest)
///   "rbuild.pushed": [{"reference": "registry/app:1", "digest": "sha256:…"}],
///   "rbuild.outputs": [{"type": "oci", "dest": "out.tar", "digest": "sha256:…"}],
///   "rbuild.duration_seconds": 12.5,
///   "rbuild.warnings": ["…"]
/// }
/// ```
///
/// Keys without a value (no names, nothing pushed) are left out, except the lists.
pub fn write_metadata(
    path: &Path,
    settings: &BuildRequest,
    stored: &Descriptor,
    exported: &Exported,
    duration: Duration,
    warnings: &[String],
) -> anyhow::Result<()> {
    let store = &settings.store;
    let primary = exported
        .written
        .iter()
        .find_map(|w| w.descriptor.clone())
        .unwrap_or_else(|| stored.clone());
    let (_, manifest) = store.image_manifest(stored)?;
    let mut descriptor = serde_json::to_value(&primary)?;
    let mut digest = primary.digest().to_string();
    if let Some(p) = exported.pushed.first() {
        // The registry holds the pushed manifest: the descriptor names it.
        digest = p.digest.clone();
        descriptor["digest"] = json!(p.digest);
        let size = p
            .digest
            .parse::<Digest>()
            .ok()
            .and_then(|d| store.blob_size(&d).ok());
        if let Some(size) = size {
            descriptor["size"] = json!(size);
        }
    }
    let mut names: Vec<String> = Vec::new();
    for o in &settings.output.outputs {
        for n in settings.output.names_for(o, &settings.tags) {
            if matches!(o.kind, OutputKind::Local | OutputKind::Tar) || names.contains(&n) {
                continue;
            }
            names.push(n);
        }
    }
    let mut doc = serde_json::Map::new();
    doc.insert("containerimage.digest".into(), json!(digest));
    doc.insert(
        "containerimage.config.digest".into(),
        json!(manifest.config().digest().to_string()),
    );
    doc.insert("containerimage.descriptor".into(), descriptor);
    if !names.is_empty() {
        doc.insert("image.name".into(), json!(names.join(",")));
    }
    doc.insert("rbuild.image.id".into(), json!(stored.digest().to_string()));
    doc.insert(
        "rbuild.pushed".into(),
        Value::Array(
            exported
                .pushed
                .iter()
                .map(|p| json!({"reference": p.reference, "digest": p.digest}))
                .collect(),
        ),
    );
    doc.insert(
        "rbuild.outputs".into(),
        Value::Array(
            exported
                .written
                .iter()
                .map(|w| {
                    let mut o = json!({"type": w.kind, "dest": w.dest});
                    if let Some(d) = &w.descriptor {
                        o["digest"] = json!(d.digest().to_string());
                    }
                    o
                })
                .collect(),
        ),
    );
    doc.insert(
        "rbuild.duration_seconds".into(),
        json!((duration.as_secs_f64() * 1000.0).round() / 1000.0),
    );
    doc.insert("rbuild.warnings".into(), json!(warnings));
    let mut bytes = serde_json::to_vec_pretty(&Value::Object(doc))?;
    bytes.push(b'\n');
    atomic_file(path, |w| Ok(w.write_all(&bytes)?))
        .with_context(|| format!("cannot write --metadata-file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A push's view of conversions: copies what is converted, keeps no blob, and says
    /// whether the registry "has" unkept layers.
    #[derive(Default)]
    struct PushLike {
        copies: Vec<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>,
        ready: Vec<(Variant, Conversion)>,
        registry_has: bool,
    }

    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl ConvertWatch for PushLike {
        fn converting(&mut self) -> Option<Box<dyn Write + Send>> {
            let copy = std::sync::Arc::default();
            self.copies.push(std::sync::Arc::clone(&copy));
            Some(Box::new(Shared(copy)))
        }
        fn ready(&mut self, v: &Variant, from: &Conversion) {
            self.ready.push((v.clone(), from.clone()));
        }
        fn keeps_blobs(&self) -> bool {
            false
        }
        fn has_unkept(&mut self, _: &Variant) -> bool {
            self.registry_has
        }
    }

    #[test]
    fn a_push_keeps_no_converted_layer_and_one_made_again_is_checked() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // 9 MiB of poorly compressible bytes: three parallel gzip members.
        let mut layer = Vec::with_capacity(9 << 20);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        while layer.len() < 9 << 20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            layer.extend_from_slice(&x.to_le_bytes()[..3]);
        }
        let tar_type = "application/vnd.oci.image.layer.v1.tar";
        let layer_digest = store.put_blob(&layer, None).unwrap().digest;
        let gzip = LayerCompression::default();

        let mut push = PushLike::default();
        let v = convert_layer_watched(&store, &layer_digest, tar_type, &gzip, &mut push).unwrap();
        assert!(!v.stored);
        let sent = push.copies[0].lock().unwrap().clone();
        assert_eq!(v.digest, Digest::of(&sent).to_string());
        assert_eq!(v.size, sent.len() as u64);
        let d: Digest = v.digest.parse().unwrap();
        assert!(!store.has_blob(&d), "the gzip copy stays out of the store");
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&sent[..])
            .read_to_end(&mut plain)
            .unwrap();
        assert!(plain == layer, "the gzip stream holds the layer");
        let (_, from) = push.ready.pop().unwrap();
        assert_eq!(from.layer, layer_digest);

        // A record the conversion does not give again is refused, naming the layer.
        let wrong = Variant {
            size: v.size + 1,
            ..v.clone()
        };
        let err = format!("{:#}", from.remake(&store, &wrong).unwrap_err());
        assert!(err.contains(&layer_digest.to_string()), "{err}");
        assert!(!store.has_blob(&d));
        // Made again (an upload starting over): stored once, served from any offset.
        let blobs = crate::transfer::StoreBlobs::new(store.clone());
        blobs.remake(&v, &from);
        let oci_digest: rbuild_registry::Digest = d.to_string().parse().unwrap();
        let mut tail = Vec::new();
        rbuild_registry::BlobSource::open(&blobs, &oci_digest, 1000)
            .unwrap()
            .read_to_end(&mut tail)
            .unwrap();
        assert!(tail == sent[1000..], "opened at an offset");
        assert!(store.has_blob(&d));
        let variants = rbuild_cache::variants::Variants::open(store.root()).unwrap();
        assert!(variants.get(&layer_digest, "gzip").unwrap().stored);
        std::fs::remove_file(store.blob_path(&d)).unwrap();
        variants.put(&layer_digest, "gzip", &v).unwrap();

        // A push to a registry that has it converts nothing; one that lacks it converts again.
        let mut has = PushLike {
            registry_has: true,
            ..PushLike::default()
        };
        assert_eq!(
            convert_layer_watched(&store, &layer_digest, tar_type, &gzip, &mut has).unwrap(),
            v
        );
        assert!(has.copies.is_empty());
        let mut lacks = PushLike::default();
        convert_layer_watched(&store, &layer_digest, tar_type, &gzip, &mut lacks).unwrap();
        assert!(*lacks.copies[0].lock().unwrap() == sent);
        // Outputs that need the blob store it, under the same digest.
        let kept = convert_layer(&store, &layer_digest, tar_type, &gzip).unwrap();
        assert!(kept.stored && kept.digest == v.digest && store.has_blob(&d));
    }

    #[test]
    fn output_specs_parse_as_buildx_reads_them() {
        let o = parse_output("type=local,dest=out").unwrap();
        assert_eq!(o.kind, OutputKind::Local);
        assert_eq!(o.dest, Some(Dest::Path("out".into())));
        assert_eq!(parse_output("out").unwrap().kind, OutputKind::Local);
        let o = parse_output("-").unwrap();
        assert_eq!((o.kind, o.dest), (OutputKind::Tar, Some(Dest::Stdout)));
        let o = parse_output("type=oci,dest=d,tar=false,compression=zstd,compression-level=19")
            .unwrap();
        assert_eq!(o.kind, OutputKind::Oci { tar: false });
        assert_eq!(
            (o.compression, o.level),
            (Some(Compression::Zstd), Some(19))
        );
        let o = parse_output(r#"type=image,"name=a:1,b:2",push=true"#).unwrap();
        assert_eq!(o.kind, OutputKind::Image { push: true });
        assert_eq!(o.names, ["docker.io/library/a:1", "docker.io/library/b:2"]);
        assert_eq!(
            parse_output("type=registry").unwrap().kind,
            OutputKind::Image { push: true }
        );
        for (bad, says) in [
            ("type=floppy,dest=x", "unknown output type \"floppy\""),
            // A quote inside a field (buildx refuses it too), and one never closed.
            (r#"type=image,name="a,b""#, "field 2 (\"name=\\\"\")"),
            (r#"type=local,"dest=x"#, "field 2"),
            ("type=local", "needs dest="),
            ("type=tar", "needs dest="),
            ("type=local,dest=-", "cannot write to stdout"),
            ("type=oci,dest=x,colour=red", "unknown key \"colour\""),
            ("dest=x", "has no type="),
            ("type=image,dest=x", "takes no dest"),
            ("type=oci,dest=x,compression=lz4", "unknown compression"),
            (
                "type=oci,dest=x,compression=gzip,compression-level=12",
                "out of range",
            ),
            ("type=docker,dest=x,compression=zstd", "uncompressed tars"),
            (
                "type=local,dest=x,push=true",
                "push=true applies to type=image only",
            ),
        ] {
            let err = format!("{:#}", parse_output(bad).unwrap_err());
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn annotations_parse_with_types_and_platforms() {
        let a = parse_annotation("org.example.a=1").unwrap();
        assert_eq!(a[0].kind, AnnotationKind::Manifest);
        assert_eq!(
            (a[0].key.as_str(), a[0].value.as_str()),
            ("org.example.a", "1")
        );
        let a = parse_annotation("manifest-descriptor:k=v=w").unwrap();
        assert_eq!(a[0].kind, AnnotationKind::ManifestDescriptor);
        assert_eq!(a[0].value, "v=w");
        let a = parse_annotation("manifest[linux/amd64],manifest-descriptor:k=v").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].platform.as_deref(), Some("linux/amd64"));
        // A colon in a key that is not a type prefix stays in the key.
        let a = parse_annotation("com.example:thing=1").unwrap();
        assert_eq!(a[0].key, "com.example:thing");
        let a = parse_annotation("manifest:com.example:thing=1").unwrap();
        assert_eq!(a[0].key, "com.example:thing");
        let err = parse_annotation("index:k=v").unwrap_err().to_string();
        assert!(err.contains("single-platform"), "{err}");
        let err = parse_annotation("index-descriptor:k=v")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs an image index"), "{err}");
        assert!(parse_annotation("novalue").is_err());
        assert!(parse_annotation("=v").is_err());
        assert!(platform_matches("linux/amd64", "linux/amd64"));
        assert!(platform_matches("linux/arm64", "linux/arm64/v8"));
        assert!(!platform_matches("linux/arm64", "linux/amd64"));
    }

    #[test]
    fn variant_names_share_push_gzip() {
        assert_eq!(variant_name(&LayerCompression::default()), "gzip");
        let c = LayerCompression {
            kind: Compression::Zstd,
            level: Some(19),
            force: true,
        };
        assert_eq!(variant_name(&c), "zstd19");
    }
}
