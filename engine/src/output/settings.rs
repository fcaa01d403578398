//! The output flags (`--output`, `--push`, the compression flags, `--annotation`,
//! `--metadata-file`) and what they become: [`OutputSettings`], checked before the build
//! (every destination can be written).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rbuild_compress::Compression;

use super::error::{SettingsError, WriteError};
use super::files::parent_dir;

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
    pub(super) fn name(self) -> &'static str {
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

fn parse_bool(key: &str, value: &str) -> Result<bool, SettingsError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(SettingsError::Bool {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

fn parse_compression(value: &str) -> Result<Compression, SettingsError> {
    match value {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "uncompressed" => Ok(Compression::None),
        _ => Err(SettingsError::Compression {
            value: value.to_string(),
        }),
    }
}

fn check_level(kind: Compression, level: i32) -> Result<(), SettingsError> {
    let (low, high) = match kind {
        Compression::Gzip => (0, 9),
        Compression::Zstd => (1, 22),
        Compression::None | Compression::Bzip2 | Compression::Xz => return Ok(()),
    };
    if !(low..=high).contains(&level) {
        return Err(SettingsError::LevelRange {
            level,
            kind: format!("{kind:?}"),
            low,
            high,
        });
    }
    Ok(())
}

/// Parses one `--output` value.
pub fn parse_output(spec: &str) -> Result<Output, SettingsError> {
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
            return Err(SettingsError::Empty);
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
    let pairs =
        rbuild_options::csv::pairs(spec).map_err(|problem| SettingsError::Csv { problem })?;
    for (key, value) in &pairs {
        let key = key.as_str();
        let value =
            value
                .as_deref()
                .map(str::trim_end)
                .ok_or_else(|| SettingsError::NotKeyValue {
                    field: key.to_string(),
                })?;
        match key {
            "type" => kind = Some(value.to_string()),
            "dest" => {
                if value.is_empty() {
                    return Err(SettingsError::EmptyDest {
                        spec: spec.to_string(),
                    });
                }
                out.dest = Some(if value == "-" {
                    Dest::Stdout
                } else {
                    Dest::Path(PathBuf::from(value))
                });
            }
            "name" => {
                for n in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    out.names
                        .push(crate::names::normalize_name(n).map_err(|source| {
                            SettingsError::Name {
                                name: n.to_string(),
                                source,
                            }
                        })?);
                }
            }
            "push" => push = parse_bool(key, value)?,
            "tar" => {
                tar = parse_bool(key, value)?;
                tar_given = true;
            }
            "compression" => out.compression = Some(parse_compression(value)?),
            "compression-level" => {
                out.level = Some(value.parse().map_err(|_| SettingsError::Level {
                    value: value.to_string(),
                })?)
            }
            "force-compression" => out.force = Some(parse_bool(key, value)?),
            other => {
                return Err(SettingsError::UnknownKey {
                    key: other.to_string(),
                    spec: spec.to_string(),
                });
            }
        }
    }
    let kind = kind.ok_or_else(|| SettingsError::NoType {
        spec: spec.to_string(),
    })?;
    out.kind = match kind.as_str() {
        "image" => OutputKind::Image { push },
        "registry" => OutputKind::Image { push: true },
        "oci" => OutputKind::Oci { tar },
        "docker" => OutputKind::Docker,
        "local" => OutputKind::Local,
        "tar" => OutputKind::Tar,
        other => {
            return Err(SettingsError::UnknownType {
                kind: other.to_string(),
            });
        }
    };
    let kind = out.kind.name();
    if push && !matches!(out.kind, OutputKind::Image { .. }) {
        return Err(SettingsError::PushNotImage { kind });
    }
    if tar_given && !matches!(out.kind, OutputKind::Oci { .. }) {
        return Err(SettingsError::TarNotOci { kind });
    }
    if !out.names.is_empty() && matches!(out.kind, OutputKind::Local | OutputKind::Tar) {
        return Err(SettingsError::NameNotImage { kind });
    }
    if (out.compression.is_some() || out.level.is_some() || out.force.is_some())
        && matches!(out.kind, OutputKind::Local | OutputKind::Tar)
    {
        return Err(SettingsError::CompressionNotLayers { kind });
    }
    if out.kind == OutputKind::Docker
        && matches!(out.compression, Some(c) if c != Compression::None)
    {
        return Err(SettingsError::DockerCompressed);
    }
    match (&out.kind, &out.dest) {
        (OutputKind::Image { .. }, Some(_)) => return Err(SettingsError::ImageDest),
        (OutputKind::Image { .. }, None) => {}
        (OutputKind::Local, Some(Dest::Stdout)) => return Err(SettingsError::LocalStdout),
        (OutputKind::Oci { tar: false }, Some(Dest::Stdout)) => {
            return Err(SettingsError::OciDirStdout);
        }
        (_, None) => return Err(SettingsError::NoDest { kind }),
        _ => {}
    }
    if let (Some(c), Some(l)) = (out.compression, out.level) {
        check_level(c, l)?;
    }
    Ok(out)
}

/// Parses one `--annotation`: `[TYPE[PLATFORM],...:]KEY=VALUE`.
pub fn parse_annotation(spec: &str) -> Result<Vec<Annotation>, SettingsError> {
    let invalid = |problem: String| SettingsError::Annotation {
        spec: spec.to_string(),
        problem,
    };
    let (kv_start, types) = match spec.split_once('=') {
        Some((left, _)) => match left.find(':') {
            // What comes before the first colon is a type prefix only when it names types;
            // otherwise the colon belongs to the key (`com.example:x=1`).
            Some(i) if looks_like_types(&left[..i]) => (i + 1, Some(&left[..i])),
            _ => (0, None),
        },
        None => return Err(invalid("expected [TYPE:]KEY=VALUE".into())),
    };
    let (key, value) = spec[kv_start..]
        .split_once('=')
        .ok_or_else(|| invalid("expected [TYPE:]KEY=VALUE".into()))?;
    if key.is_empty() {
        return Err(invalid("the key is empty".into()));
    }
    let mut out = Vec::new();
    let types = types.unwrap_or("manifest");
    for t in types.split(',') {
        let (name, platform) = match t.split_once('[') {
            Some((n, rest)) => {
                let p = rest
                    .strip_suffix(']')
                    .ok_or_else(|| invalid(format!("unclosed [ in {t:?}")))?;
                (n, Some(p.to_string()))
            }
            None => (t, None),
        };
        let kind = match name {
            "manifest" => AnnotationKind::Manifest,
            "manifest-descriptor" => AnnotationKind::ManifestDescriptor,
            "index" | "index-descriptor" => {
                return Err(SettingsError::AnnotationType {
                    spec: spec.to_string(),
                    problem: format!(
                        "type {name} needs an image index, and rbuild builds a single-platform \
                         image (a manifest, no index): use manifest or manifest-descriptor"
                    ),
                });
            }
            other => {
                return Err(SettingsError::AnnotationType {
                    spec: spec.to_string(),
                    problem: format!(
                        "unknown type {other:?} (expected manifest, manifest-descriptor, index \
                         or index-descriptor)"
                    ),
                });
            }
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
    pub fn from_flags(
        args: &OutputFlags,
        tags: &[String],
    ) -> Result<OutputSettings, SettingsError> {
        let mut outputs = args
            .outputs
            .iter()
            .map(|o| {
                parse_output(o).map_err(|e| SettingsError::Output {
                    spec: o.clone(),
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
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
            return Err(SettingsError::TwoStdout);
        }
        for o in &outputs {
            if o.kind == (OutputKind::Image { push: true }) && o.names.is_empty() && tags.is_empty()
            {
                return Err(SettingsError::PushWithoutName);
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
            probe_parent(path).map_err(|source| SettingsError::MetadataFile {
                path: path.clone(),
                source,
            })?;
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
    pub fn manifest_annotations(
        &self,
        platform: &str,
    ) -> Result<BTreeMap<String, String>, SettingsError> {
        self.annotations_of(AnnotationKind::Manifest, platform)
    }

    /// The `manifest-descriptor` annotations for an image of `platform`.
    pub fn descriptor_annotations(
        &self,
        platform: &str,
    ) -> Result<BTreeMap<String, String>, SettingsError> {
        self.annotations_of(AnnotationKind::ManifestDescriptor, platform)
    }

    fn annotations_of(
        &self,
        kind: AnnotationKind,
        platform: &str,
    ) -> Result<BTreeMap<String, String>, SettingsError> {
        let mut out = BTreeMap::new();
        for a in self.annotations.iter().filter(|a| a.kind == kind) {
            if let Some(p) = &a.platform
                && !platform_matches(p, platform)
            {
                return Err(SettingsError::AnnotationPlatform {
                    key: a.key.clone(),
                    platform: p.clone(),
                    image: platform.to_string(),
                });
            }
            out.insert(a.key.clone(), a.value.clone());
        }
        Ok(out)
    }

    /// The compression of an output (or push) whose default is `default` (`None`: keep the
    /// layers as they are).
    pub(super) fn compression_for(
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
    pub(super) fn names_for(&self, output: &Output, tags: &[String]) -> Vec<String> {
        if output.names.is_empty() {
            tags.to_vec()
        } else {
            output.names.clone()
        }
    }
}

/// Whether an annotation's `[PLATFORM]` selector names the image's platform: the same platform
/// after normalisation (`linux/arm64/v8` is `linux/arm64`), or, for a selector without a
/// variant, the same os and architecture.
fn platform_matches(wanted: &str, actual: &str) -> bool {
    use rbuild_compiler::plan::Platform;
    let (Ok(w), Ok(a)) = (Platform::parse(wanted), Platform::parse(actual)) else {
        return false;
    };
    w == a
        || (wanted.trim().split('/').count() < 3
            && (w.os, w.architecture) == (a.os, a.architecture))
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
fn probe_parent(path: &Path) -> Result<(), WriteError> {
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(WriteError::NoDirectory { path: dir });
    }
    probe_dir(&dir)
}

/// Checks that a file can be made in the directory `dir`.
fn probe_dir(dir: &Path) -> Result<(), WriteError> {
    tempfile::Builder::new()
        .prefix(".rbuild-probe-")
        .tempfile_in(dir)
        .map_err(|source| WriteError::CreateIn {
            dir: dir.to_path_buf(),
            source,
        })?;
    Ok(())
}

/// Checks before the build that `dest` can be written.
fn check_dest(kind: OutputKind, dest: &Dest) -> Result<(), SettingsError> {
    let Dest::Path(path) = dest else {
        return Ok(());
    };
    let checked = match kind {
        OutputKind::Local | OutputKind::Oci { tar: false } => {
            let found = existing_ancestor(path);
            if found.is_dir() {
                probe_dir(&found)
            } else {
                Err(WriteError::NotADirectory { path: found })
            }
        }
        _ if path.is_dir() => Err(WriteError::IsADirectory { path: path.clone() }),
        _ => probe_parent(path),
    };
    checked.map_err(|source| SettingsError::Dest {
        kind: kind.name(),
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(platform_matches("linux/arm64/v8", "linux/arm64"));
        assert!(platform_matches("linux/arm", "linux/arm/v6"));
        assert!(!platform_matches("linux/arm/v7", "linux/arm/v6"));
        assert!(!platform_matches("not a platform", "linux/amd64"));
    }
}
