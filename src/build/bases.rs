//! Base images: each reference the target needs is resolved once per build to a manifest
//! digest. The store's copy is used when it has one (as docker uses its local image);
//! `--pull`, or a missing image, asks the registry.

use std::collections::BTreeMap;

use anyhow::Context as _;
use oci_spec::image::Descriptor;
use rbuild_cache::action::LayerRecord;
use rbuild_compiler::plan::{ImageConfig, OpKind, Plan, Platform};

use super::Settings;

/// A resolved base image.
#[derive(Debug, Clone)]
pub struct Base {
    /// The name it was found under in the store.
    pub name: String,
    /// Its manifest.
    pub manifest_descriptor: Descriptor,
    /// The config document, as JSON (keeps fields rbuild does not model).
    pub config_json: serde_json::Value,
    /// The runtime config the planner inherits from.
    pub runtime_config: ImageConfig,
    /// Its layers, bottom first.
    pub layers: Vec<LayerRecord>,
}

impl Base {
    /// `sha256:...` of the manifest: what the cache keys record.
    pub fn digest(&self) -> String {
        self.manifest_descriptor.digest().to_string()
    }
}

fn platform_text(p: &Platform) -> String {
    if p.variant.is_empty() {
        format!("{}/{}", p.os, p.architecture)
    } else {
        format!("{}/{}/{}", p.os, p.architecture, p.variant)
    }
}

/// Resolves every image op's reference of `plan` (keyed as the plan writes it).
pub fn resolve(settings: &Settings, plan: &Plan) -> anyhow::Result<BTreeMap<String, Base>> {
    let mut out = BTreeMap::new();
    for op in &plan.ops {
        let OpKind::Image {
            reference,
            platform,
        } = &op.kind
        else {
            continue;
        };
        if out.contains_key(reference) {
            continue;
        }
        let base = resolve_one(settings, reference, platform)
            .with_context(|| format!("cannot resolve base image {reference}"))?;
        out.insert(reference.clone(), base);
    }
    Ok(out)
}

fn resolve_one(settings: &Settings, reference: &str, platform: &Platform) -> anyhow::Result<Base> {
    let store = &settings.store;
    let name = crate::names::normalize_name(reference)?;
    let local = if settings.pull {
        None
    } else {
        store
            .resolve(&name)
            .ok()
            .or_else(|| store.resolve(reference).ok())
    };
    let descriptor = match local {
        Some(d) => {
            tracing::debug!("base image {reference}: using the store's {name}");
            d
        }
        None => {
            let global = crate::cli::GlobalArgs {
                verbose: 0,
                quiet: settings.quiet,
                config: None,
                root: Some(store.root().to_path_buf()),
            };
            let pulled = crate::commands::pull::pull_image(
                &global,
                store,
                reference,
                Some(&platform_text(platform)),
                &settings.registry_args,
            )?;
            pulled.descriptor
        }
    };
    let (manifest_descriptor, manifest) = store.image_manifest(&descriptor)?;
    let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
    let bytes = store.read_blob(&config_digest)?;
    let config_json: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the config {config_digest} of {name} is not JSON"))?;
    let runtime_config: ImageConfig = match config_json.get("config") {
        Some(c) if !c.is_null() => serde_json::from_value(c.clone())
            .with_context(|| format!("the config {config_digest} of {name} is malformed"))?,
        _ => ImageConfig::default(),
    };
    let diff_ids: Vec<String> = config_json
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != manifest.layers().len() {
        anyhow::bail!(
            "{name}: the manifest lists {} layers but the config {} diff ids",
            manifest.layers().len(),
            diff_ids.len()
        );
    }
    let layers = manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| LayerRecord {
            digest: l.digest().to_string(),
            diff_id,
            size: l.size(),
            media_type: l.media_type().to_string(),
        })
        .collect();
    Ok(Base {
        name,
        manifest_descriptor,
        config_json,
        runtime_config,
        layers,
    })
}
