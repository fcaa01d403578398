//! Image assembly: the target stage's layers, its config (the planner's runtime config over
//! the base image's config document) and its history (the base's, then one entry per
//! instruction with `empty_layer` where the step changed no file) become a config and a
//! manifest in the store (named by the outputs, [`super::output`]). `--annotation`s of
//! type `manifest` go into the manifest.
//!
//! History entries of steps that add a layer carry `comment: "Dockerfile:LINE"`, which
//! `rbuild report` uses to point at the instruction. With `SOURCE_DATE_EPOCH` every time
//! in the config is that instant (and layer mtimes are clamped to it), so two clean builds
//! of the same context give the same digest.

use std::collections::BTreeMap;

use oci_spec::image::MediaType;
use rbuild_cache::action::LayerRecord;
use rbuild_compiler::plan::{InputRole, OpKind, Plan};
use serde_json::{Value, json};

use crate::BuildRequest;
use crate::ImageFormat as FormatArg;
use crate::bases::Bases;
use crate::solver::OpResult;

/// Why the image could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A layer compressed with zstd in a Docker manifest.
    #[error(
        "layer of type {media_type} cannot be in a Docker v2 manifest: build with --format oci"
    )]
    DockerLayer {
        /// The layer's media type.
        media_type: String,
    },
    /// The target stage builds nothing.
    #[error("stage {stage} has nothing to build")]
    NothingToBuild {
        /// The stage.
        stage: String,
    },
    /// The plan and its results disagree (a bug).
    #[error("internal error: stage {stage}: {problem}")]
    Internal {
        /// The stage.
        stage: String,
        /// What is wrong.
        problem: String,
    },
    /// The config or manifest could not be written as JSON.
    #[error("cannot serialize the image {what} of stage {stage}")]
    Json {
        /// `config`, `manifest`.
        what: &'static str,
        /// The stage.
        stage: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The store did not take the config or manifest.
    #[error("cannot store the image {what}")]
    Store {
        /// `config`, `manifest`.
        what: &'static str,
        /// Why.
        #[source]
        source: rbuild_cache::StoreError,
    },
    /// An `--annotation` does not fit the image.
    #[error(transparent)]
    Annotation(#[from] crate::output::SettingsError),
    /// `--annotation` with `--format docker`.
    #[error("--annotation needs --format oci: Docker v2 manifests have no annotations")]
    DockerAnnotations,
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The layer media type for the chosen format.
fn layer_media_type(format: FormatArg, media_type: &str) -> Result<String, ImageError> {
    let gzip = media_type.ends_with("gzip");
    let zstd = media_type.ends_with("zstd");
    let nondist = media_type.contains("nondistributable") || media_type.contains("foreign");
    Ok(match format {
        FormatArg::Oci => {
            let base = if nondist {
                "application/vnd.oci.image.layer.nondistributable.v1.tar"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            };
            if gzip {
                format!("{base}+gzip")
            } else if zstd {
                format!("{base}+zstd")
            } else {
                base.to_string()
            }
        }
        FormatArg::Docker => {
            if zstd {
                return Err(ImageError::DockerLayer {
                    media_type: media_type.to_string(),
                });
            }
            match (nondist, gzip) {
                (false, true) => "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
                (false, false) => "application/vnd.docker.image.rootfs.diff.tar".into(),
                (true, _) => "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip".into(),
            }
        }
    })
}

/// RFC 3339 UTC time of `secs`.
fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Assembles the target stage's image; returns its manifest's descriptor (with its platform),
/// not yet named.
pub fn assemble(
    settings: &BuildRequest,
    plan: &Plan,
    bases: &Bases,
    results: &[Option<OpResult>],
) -> Result<oci_spec::image::Descriptor, ImageError> {
    let stage = plan.target_stage();
    let documents = stage_documents(settings, plan, stage, bases, results)?;
    let (manifest_type, config_type) = manifest_types(settings.format);
    settings
        .store
        .put_document(MediaType::Other(config_type.into()), &documents.config)
        .map_err(|source| ImageError::Store {
            what: "config",
            source,
        })?;
    let manifest_desc = settings
        .store
        .put_document(MediaType::Other(manifest_type.into()), &documents.manifest)
        .map_err(|source| ImageError::Store {
            what: "manifest",
            source,
        })?;
    let mut tagged = manifest_desc.clone();
    tagged.set_media_type(match settings.format {
        FormatArg::Oci => MediaType::ImageManifest,
        FormatArg::Docker => MediaType::Other(DOCKER_MANIFEST.into()),
    });
    let mut platform = oci_spec::image::Platform::default();
    platform.set_os(stage.platform.os.as_str().into());
    platform.set_architecture(stage.platform.architecture.as_str().into());
    if !stage.platform.variant.is_empty() {
        platform.set_variant(Some(stage.platform.variant.clone()));
    }
    tagged.set_platform(Some(platform));
    Ok(tagged)
}

/// A built stage other than the target whose packages an SBOM attestation lists (its
/// `BUILDKIT_SBOM_SCAN_STAGE` ARG, or `--sbom=scan-stages=true`).
#[derive(Debug, Clone)]
pub(crate) struct ScannedStage {
    /// Its name, or `stage-N`.
    pub label: String,
    pub documents: StageDocuments,
    /// Its layers' blobs, bottom first.
    pub layers: Vec<rbuild_cache::Digest>,
}

/// The stages of `plan` an SBOM attestation also lists: those the target needs (never one
/// not built, as in BuildKit) that ask for it, or all of them with `all`.
pub(crate) fn scanned_stages(
    settings: &BuildRequest,
    plan: &Plan,
    bases: &Bases,
    results: &[Option<OpResult>],
    all: bool,
) -> Result<Vec<ScannedStage>, ImageError> {
    let mut out = Vec::new();
    for stage in &plan.stages {
        if !stage.built || stage.index == plan.target || !(all || stage.sbom_scan) {
            continue;
        }
        let Some(state) = stage.result.and_then(|r| results[r].as_ref()) else {
            continue;
        };
        out.push(ScannedStage {
            label: stage.label(),
            documents: stage_documents(settings, plan, stage, bases, results)?,
            layers: state.layers.iter().map(|l| l.digest).collect(),
        });
    }
    Ok(out)
}

/// A stage's image as the build writes it: its config and manifest documents.
#[derive(Debug, Clone)]
pub(crate) struct StageDocuments {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

/// Makes the config and manifest of `stage`'s image (without storing them): the target
/// stage's for [`assemble`], another built stage's for its SBOM.
pub(crate) fn stage_documents(
    settings: &BuildRequest,
    plan: &Plan,
    stage: &rbuild_compiler::plan::StagePlan,
    bases: &Bases,
    results: &[Option<OpResult>],
) -> Result<StageDocuments, ImageError> {
    let internal = |problem: String| ImageError::Internal {
        stage: stage.label(),
        problem,
    };
    let json = |what: &'static str| {
        move |source| ImageError::Json {
            what,
            stage: stage.label(),
            source,
        }
    };
    let result_op = stage.result.ok_or_else(|| ImageError::NothingToBuild {
        stage: stage.label(),
    })?;
    let state = results[result_op]
        .as_ref()
        .ok_or_else(|| internal("it was not built".into()))?;
    let layers: &[LayerRecord] = &state.layers;

    // The chain of file-system ops from the root (image or scratch) to the result.
    let mut chain = Vec::new();
    let mut cur = result_op;
    let root = loop {
        let op = &plan.ops[cur];
        if matches!(
            op.kind,
            OpKind::Exec(_) | OpKind::Copy(_) | OpKind::Mkdir { .. }
        ) {
            chain.push(cur);
        }
        match op.inputs.iter().find(|i| i.role == InputRole::Parent) {
            Some(p) => cur = p.op,
            None => break cur,
        }
    };
    chain.reverse();
    let base = bases.of(&plan.ops[root].kind);

    // Times come from when the steps ran (kept in the cache records), so rebuilding from
    // the cache gives the same image; SOURCE_DATE_EPOCH fixes them all.
    let step_time = |op: usize| -> String {
        match settings.epoch {
            Some(e) => rfc3339(e),
            None => rfc3339(results[op].as_ref().map_or(0, |r| r.created)),
        }
    };
    let base_created = base
        .and_then(|b| b.config_json.get("created"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut created = match (settings.epoch, &base_created) {
        (Some(e), _) => rfc3339(e),
        (None, Some(c)) => c.clone(),
        (None, None) => rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        ),
    };
    if settings.epoch.is_none()
        && let Some(latest) = chain
            .iter()
            .filter_map(|&op| results[op].as_ref().map(|r| (r.created, op)))
            .max()
    {
        created = step_time(latest.1);
    }

    let mut history: Vec<Value> = base
        .and_then(|b| b.config_json.get("history"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut steps = chain.iter();
    let mut last_time = match (settings.epoch, chain.first()) {
        (Some(e), _) => rfc3339(e),
        (None, Some(&first)) => step_time(first),
        (None, None) => created.clone(),
    };
    for entry in &stage.image.history {
        let mut h = serde_json::Map::new();
        h.insert("created".into(), json!(last_time));
        h.insert("created_by".into(), json!(entry.created_by));
        let mut empty = entry.empty_layer;
        if !entry.empty_layer {
            let op = *steps.next().ok_or_else(|| {
                internal(format!("history entry {:?} has no step", entry.created_by))
            })?;
            let added = results[op].as_ref().is_some_and(|r| r.added);
            last_time = step_time(op);
            h.insert("created".into(), json!(last_time));
            empty = !added;
            h.insert(
                "comment".into(),
                json!(format!("Dockerfile:{}", plan.ops[op].span.start.line)),
            );
        }
        if empty {
            h.insert("empty_layer".into(), json!(true));
        }
        history.push(Value::Object(h));
    }
    if steps.next().is_some() {
        return Err(internal("it has more steps than history entries".into()));
    }

    let mut runtime = serde_json::to_value(&stage.image.config).map_err(json("config"))?;
    if !settings.labels.is_empty() {
        let obj = runtime
            .as_object_mut()
            .ok_or_else(|| internal("its config is not an object".into()))?;
        let labels = obj.entry("Labels").or_insert_with(|| json!({}));
        if let Some(map) = labels.as_object_mut() {
            for (k, v) in &settings.labels {
                map.insert(k.clone(), json!(v));
            }
        }
    }
    let mut config = match base {
        Some(b) if b.config_json.is_object() => b.config_json.clone(),
        _ => json!({}),
    };
    let obj = config
        .as_object_mut()
        .ok_or_else(|| internal("its config is not an object".into()))?;
    for legacy in [
        "container",
        "container_config",
        "docker_version",
        "id",
        "parent",
        // A base's inline cache records describe the base's build, not this one.
        rbuild_cache::exchange::INLINE_FIELD,
    ] {
        obj.remove(legacy);
    }
    obj.insert("config".into(), runtime);
    obj.insert("created".into(), json!(created));
    obj.insert("os".into(), json!(stage.platform.os));
    obj.insert("architecture".into(), json!(stage.platform.architecture));
    if stage.platform.variant.is_empty() {
        obj.remove("variant");
    } else {
        obj.insert("variant".into(), json!(stage.platform.variant));
    }
    if let Some(author) = &stage.image.author {
        obj.insert("author".into(), json!(author));
    }
    obj.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id).collect::<Vec<_>>()}),
    );
    obj.insert("history".into(), Value::Array(history));

    let (manifest_type, config_type) = manifest_types(settings.format);
    let config_bytes = serde_json::to_vec(&config).map_err(json("config"))?;
    let mut layer_descs = Vec::new();
    for l in layers {
        layer_descs.push(json!({
            "mediaType": layer_media_type(settings.format, &l.media_type)?,
            "digest": l.digest,
            "size": l.size,
        }));
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {
            "mediaType": config_type,
            "digest": rbuild_cache::Digest::of(&config_bytes).to_string(),
            "size": config_bytes.len(),
        },
        "layers": layer_descs,
    });
    // The base image, as BuildKit records it (OCI manifests only: Docker's have no
    // annotations); `rbuild report` uses it to separate the base's layers. Then the
    // `--annotation`s (which may override those).
    let mut annotations = BTreeMap::new();
    if let (FormatArg::Oci, Some(b)) = (settings.format, base) {
        annotations.insert(
            "org.opencontainers.image.base.name".to_string(),
            b.name.clone(),
        );
        annotations.insert(
            "org.opencontainers.image.base.digest".to_string(),
            b.digest().to_string(),
        );
    }
    let extra = settings
        .output
        .manifest_annotations(&stage.platform.to_string())?;
    if !extra.is_empty() && settings.format == FormatArg::Docker {
        return Err(ImageError::DockerAnnotations);
    }
    annotations.extend(extra);
    if !annotations.is_empty() {
        manifest["annotations"] = json!(annotations);
    }
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(json("manifest"))?;
    Ok(StageDocuments {
        config: config_bytes,
        manifest: manifest_bytes,
    })
}

/// Writes the index of a multi-platform build's images (`images`, each descriptor naming its
/// platform) into the store: an OCI image index, or a Docker manifest list with `--format
/// docker`. Returns its descriptor.
pub fn assemble_index(
    settings: &BuildRequest,
    images: &[oci_spec::image::Descriptor],
) -> Result<oci_spec::image::Descriptor, ImageError> {
    write_index(&settings.store, settings.format, images)
}

/// Writes an index of `manifests` in `format` into the store; returns its descriptor.
pub fn write_index(
    store: &rbuild_cache::Store,
    format: FormatArg,
    manifests: &[oci_spec::image::Descriptor],
) -> Result<oci_spec::image::Descriptor, ImageError> {
    let media_type = match format {
        FormatArg::Oci => "application/vnd.oci.image.index.v1+json",
        FormatArg::Docker => rbuild_cache::DOCKER_MANIFEST_LIST,
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).map_err(|source| ImageError::Json {
        what: "index",
        stage: "the image index".into(),
        source,
    })?;
    let mut descriptor = store
        .put_document(MediaType::Other(media_type.into()), &bytes)
        .map_err(|source| ImageError::Store {
            what: "index",
            source,
        })?;
    descriptor.set_media_type(match format {
        FormatArg::Oci => MediaType::ImageIndex,
        FormatArg::Docker => MediaType::Other(media_type.into()),
    });
    Ok(descriptor)
}

/// The media types of a manifest and of its config in `format`.
pub fn manifest_types(format: FormatArg) -> (&'static str, &'static str) {
    match format {
        FormatArg::Oci => (OCI_MANIFEST, OCI_CONFIG),
        FormatArg::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG),
    }
}
