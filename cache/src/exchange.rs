//! The portable form of action cache records: what `--cache-to` exports and `--cache-from`
//! imports, between machines (through a registry) or through a directory (a CI cache).
//!
//! A cache export is an OCI image manifest whose `artifactType` is [`ARTIFACT_TYPE`], whose
//! config blob (media type [`CONFIG_MEDIA_TYPE`]) is a [`CacheConfig`], and whose layers are
//! the layer blobs the records name, compressed as registries want them. Each record maps a
//! cache key to what the step produced, as the local [`CacheRecord`] does, plus the
//! descriptor of the blob in the artifact that holds its layer: the layer as the producing
//! store kept it (`local`: digest, diff_id, size, media type) may be uncompressed while the
//! artifact holds a gzip variant of the same tar.
//!
//! Nothing here touches the network: the engine fetches the manifest and config and hands
//! their bytes to [`CacheConfig::parse`], which checks every record against the manifest, so
//! a corrupt or hostile artifact yields an error or fewer records, never a record that names
//! a blob the artifact does not hold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Digest;
use crate::action::{CacheRecord, LayerRecord, SCHEMA};

/// The `artifactType` of a cache export's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.rbuild.cache.v1";
/// The media type of a cache export's config blob (a [`CacheConfig`]).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";
/// The version of [`CacheConfig`]'s format.
pub const EXCHANGE_SCHEMA: u32 = 1;
/// The field of an image config that holds inline cache records (a [`CacheConfig`]).
///
/// A top-level config field rather than a label: labels are part of the runtime config that
/// images built `FROM` this one inherit (stale records would travel into every child image)
/// and that `docker inspect` shows; runtimes ignore unknown top-level fields, and the engine
/// drops this one from a base's config.
pub const INLINE_FIELD: &str = "rbuild.cache.v1";
/// The largest cache config read (about 100,000 records).
pub const MAX_CONFIG_SIZE: u64 = 64 << 20;

/// Reading an exported cache failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The manifest is not JSON or not an image manifest.
    #[error("cache manifest {digest} is not an OCI image manifest")]
    Manifest {
        /// The manifest's digest.
        digest: Digest,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest is something other than an rbuild cache (an image, another tool's cache).
    #[error("manifest {digest} is not an rbuild cache (config media type {media_type})")]
    NotACache {
        /// The manifest's digest.
        digest: Digest,
        /// Its config's media type.
        media_type: String,
    },
    /// The config does not decode.
    #[error("cache config {digest} is not valid")]
    Config {
        /// The config's digest.
        digest: Digest,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The config was written by another version of the format.
    #[error("cache config {digest} has schema {found}, expected {EXCHANGE_SCHEMA}")]
    Schema {
        /// The config's digest.
        digest: Digest,
        /// Its schema.
        found: u32,
    },
    /// An image config without inline cache records.
    #[error("image config {digest} holds no inline cache ({INLINE_FIELD})")]
    NoInline {
        /// The config's digest.
        digest: Digest,
    },
    /// The manifest names its config by a digest that is not a sha256 digest.
    #[error("cache manifest {manifest} names its config {config:?}, which is not a sha256 digest")]
    ConfigDigest {
        /// The manifest's digest.
        manifest: Digest,
        /// The config digest it names.
        config: String,
        /// Why it is not one.
        #[source]
        source: rbuild_digest::DigestError,
    },
    /// The config is too large to be a cache config.
    #[error("cache config {digest} is {size} bytes, more than {MAX_CONFIG_SIZE}")]
    TooLarge {
        /// The config's digest, as the manifest names it.
        digest: String,
        /// Its size.
        size: u64,
    },
}

/// A layer blob as the artifact holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type (gzip or zstd layer).
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// A layer a step added: as the exporting store kept it, and the artifact's blob of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedLayer {
    /// The layer as the cache record names it (and as images built from it list it).
    pub local: LayerRecord,
    /// The blob of the artifact holding the same tar.
    pub blob: BlobRef,
}

/// One exported record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedRecord {
    /// The layer the step added, or `None` when it changed no file.
    pub layer: Option<ExportedLayer>,
    /// When the step ran (seconds since the epoch): images rebuilt from the records get the
    /// same times, so the same digest.
    pub created: i64,
    /// The step as the image history shows it.
    pub description: String,
}

impl ExportedRecord {
    /// The local record this stands for.
    pub fn to_record(&self) -> CacheRecord {
        CacheRecord {
            schema: SCHEMA,
            layer: self.layer.as_ref().map(|l| l.local.clone()),
            created: self.created,
            description: self.description.clone(),
        }
    }
}

/// The config blob of a cache export: records by cache key.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CacheConfig {
    /// [`EXCHANGE_SCHEMA`].
    pub schema: u32,
    /// The action cache schema the keys were computed with ([`SCHEMA`]).
    #[serde(rename = "keySchema")]
    pub key_schema: u32,
    /// Records by key (`sha256:...`).
    pub records: BTreeMap<String, ExportedRecord>,
}

/// A [`CacheConfig`] whose records are not decoded yet.
#[derive(Deserialize)]
struct RawCacheConfig {
    schema: u32,
    #[serde(rename = "keySchema")]
    key_schema: u32,
    records: BTreeMap<String, serde_json::Value>,
}

/// A manifest as far as this module reads it. Its descriptors keep their digests as text:
/// a manifest may list blobs of other algorithms, which only the records naming them lose.
#[derive(Deserialize)]
struct ManifestView {
    config: RawDescriptor,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    digest: String,
    size: u64,
    #[serde(rename = "mediaType")]
    media_type: String,
}

impl CacheConfig {
    /// An empty config of the current schemas.
    pub fn new() -> CacheConfig {
        CacheConfig {
            schema: EXCHANGE_SCHEMA,
            key_schema: SCHEMA,
            records: BTreeMap::new(),
        }
    }

    /// The config's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain maps, strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The config descriptor's digest named by a cache manifest, and its size; an error when
    /// the manifest is not a cache (an image config, another tool's artifact).
    pub fn config_of(manifest: &[u8]) -> Result<BlobRef, ExchangeError> {
        let digest = Digest::of(manifest);
        let m: ManifestView = serde_json::from_slice(manifest)
            .map_err(|source| ExchangeError::Manifest { digest, source })?;
        if m.config.media_type != CONFIG_MEDIA_TYPE {
            return Err(ExchangeError::NotACache {
                digest,
                media_type: m.config.media_type,
            });
        }
        if m.config.size > MAX_CONFIG_SIZE {
            return Err(ExchangeError::TooLarge {
                digest: m.config.digest,
                size: m.config.size,
            });
        }
        let config_digest =
            m.config
                .digest
                .parse()
                .map_err(|source| ExchangeError::ConfigDigest {
                    manifest: digest,
                    config: m.config.digest.clone(),
                    source,
                })?;
        Ok(BlobRef {
            digest: config_digest,
            size: m.config.size,
            media_type: m.config.media_type,
        })
    }

    /// Decodes a config fetched for `manifest` and keeps the records that are sound: keys
    /// and digests well formed, every layer blob listed in the manifest with the same size
    /// and media type, an uncompressed layer's digest equal to its diff_id. The others are
    /// dropped with a debug log (returned count).
    pub fn parse(manifest: &[u8], config: &[u8]) -> Result<(CacheConfig, usize), ExchangeError> {
        let m: ManifestView =
            serde_json::from_slice(manifest).map_err(|source| ExchangeError::Manifest {
                digest: Digest::of(manifest),
                source,
            })?;
        let digest = Digest::of(config);
        if config.len() as u64 > MAX_CONFIG_SIZE {
            return Err(ExchangeError::TooLarge {
                digest: digest.to_string(),
                size: config.len() as u64,
            });
        }
        // Records are decoded one by one, so that one malformed record (a digest that is no
        // digest) drops that record, not the whole cache.
        let raw: RawCacheConfig = serde_json::from_slice(config)
            .map_err(|source| ExchangeError::Config { digest, source })?;
        let mut undecodable = 0;
        let mut parsed = CacheConfig {
            schema: raw.schema,
            key_schema: raw.key_schema,
            records: BTreeMap::new(),
        };
        for (key, value) in raw.records {
            match serde_json::from_value::<ExportedRecord>(value) {
                Ok(record) => {
                    parsed.records.insert(key, record);
                }
                Err(e) => {
                    tracing::debug!("cache config {digest}: record {key} dropped ({e})");
                    undecodable += 1;
                }
            }
        }
        if parsed.schema != EXCHANGE_SCHEMA {
            return Err(ExchangeError::Schema {
                digest,
                found: parsed.schema,
            });
        }
        if parsed.key_schema != SCHEMA {
            // Keys of another schema can never match: nothing to import.
            tracing::debug!(
                "cache config {digest} has key schema {}, not {SCHEMA}",
                parsed.key_schema
            );
            let n = undecodable + parsed.records.len();
            parsed.records.clear();
            return Ok((parsed, n));
        }
        // Matched by digest and size: an image pushed with inline records may name its
        // layers with Docker's media types; the manifest's type is the one kept.
        let listed: BTreeMap<(Digest, u64), &str> = m
            .layers
            .iter()
            .filter_map(|l| Some(((l.digest.parse().ok()?, l.size), l.media_type.as_str())))
            .collect();
        let before = parsed.records.len();
        parsed.records.retain(|key, record| {
            if let Some(l) = &mut record.layer
                && let Some(media_type) = listed.get(&(l.blob.digest, l.blob.size))
            {
                l.blob.media_type = media_type.to_string();
            }
            let ok = key.parse::<Digest>().is_ok()
                && record.layer.as_ref().is_none_or(|l| {
                    sound_layer(l) && listed.contains_key(&(l.blob.digest, l.blob.size))
                });
            if !ok {
                tracing::debug!("cache config {digest}: record {key} dropped (unsound)");
            }
            ok
        });
        let dropped = undecodable + before - parsed.records.len();
        Ok((parsed, dropped))
    }
}

/// Whether a config media type is an image config (OCI or Docker): the manifest is then an
/// image that may carry inline cache records.
pub fn is_image_config(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.config.v1+json"
        || media_type == "application/vnd.docker.container.image.v1+json"
}

/// The inline cache records of an image config document, as [`CacheConfig`] bytes.
pub fn inline_of(image_config: &[u8]) -> Result<Vec<u8>, ExchangeError> {
    let digest = Digest::of(image_config);
    let value: serde_json::Value = serde_json::from_slice(image_config)
        .map_err(|source| ExchangeError::Config { digest, source })?;
    match value.get(INLINE_FIELD) {
        Some(v) if v.is_object() => Ok(serde_json::to_vec(v).unwrap_or_default()),
        _ => Err(ExchangeError::NoInline { digest }),
    }
}

/// Whether a layer media type is an uncompressed tar.
pub fn is_uncompressed(media_type: &str) -> bool {
    media_type.ends_with(".tar") || media_type.ends_with("diff.tar")
}

fn sound_layer(l: &ExportedLayer) -> bool {
    if l.blob.digest == l.local.digest {
        // Exported as the store holds it.
        l.blob.size == l.local.size
    } else {
        // A gzip (or zstd) variant of an uncompressed layer, whose digest is its diff_id.
        is_uncompressed(&l.local.media_type)
            && l.local.digest == l.local.diff_id
            && !is_uncompressed(&l.blob.media_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> String {
        Digest::of(s.as_bytes()).to_string()
    }

    fn digest(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    fn config_and_manifest() -> (CacheConfig, Vec<u8>) {
        let tar = digest("tar");
        let gz = BlobRef {
            digest: digest("gz"),
            size: 10,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        };
        let mut config = CacheConfig::new();
        config.records.insert(
            d("key1"),
            ExportedRecord {
                layer: Some(ExportedLayer {
                    local: LayerRecord {
                        digest: tar,
                        diff_id: tar,
                        size: 100,
                        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                    },
                    blob: gz.clone(),
                }),
                created: 7,
                description: "RUN make".into(),
            },
        );
        config.records.insert(
            d("key2"),
            ExportedRecord {
                layer: None,
                created: 8,
                description: "RUN true".into(),
            },
        );
        let bytes = config.to_bytes();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": Digest::of(&bytes).to_string(), "size": bytes.len()},
            "layers": [gz],
        });
        (config, serde_json::to_vec(&manifest).unwrap())
    }

    #[test]
    fn round_trip_keeps_sound_records() {
        let (config, manifest) = config_and_manifest();
        let desc = CacheConfig::config_of(&manifest).unwrap();
        assert_eq!(desc.media_type, CONFIG_MEDIA_TYPE);
        let (parsed, dropped) = CacheConfig::parse(&manifest, &config.to_bytes()).unwrap();
        assert_eq!(dropped, 0);
        assert_eq!(parsed, config);
        let rec = parsed.records[&d("key1")].to_record();
        assert_eq!(rec.created, 7);
        assert_eq!(rec.layer.unwrap().size, 100);
    }

    #[test]
    fn unsound_records_are_dropped_and_bad_documents_refused() {
        let (mut config, manifest) = config_and_manifest();
        // A layer blob the manifest does not list.
        let mut bad = config.records[&d("key1")].clone();
        bad.layer.as_mut().unwrap().blob.digest = digest("elsewhere");
        config.records.insert(d("key3"), bad);
        // An uncompressed layer whose digest is not its diff_id.
        let mut bad = config.records[&d("key1")].clone();
        bad.layer.as_mut().unwrap().local.diff_id = digest("other tar");
        config.records.insert(d("key4"), bad);
        // An uncompressed layer exported as it is (compression=uncompressed): kept, when the
        // manifest lists it.
        let mut plain = config.records[&d("key1")].clone();
        let l = plain.layer.as_mut().unwrap();
        l.blob = BlobRef {
            digest: l.local.digest,
            size: l.local.size,
            media_type: l.local.media_type.clone(),
        };
        config.records.insert(d("key5"), plain);
        // A key that is no digest.
        config
            .records
            .insert("../../etc".into(), config.records[&d("key2")].clone());
        // A layer whose digest is no digest: that record is dropped, not the whole config.
        let mut doc = serde_json::to_value(&config).unwrap();
        let mut broken = doc["records"][d("key1")].clone();
        broken["layer"]["local"]["digest"] = "sha256:../../etc/passwd".into();
        doc["records"][d("key6")] = broken;
        let bytes = serde_json::to_vec(&doc).unwrap();
        let (parsed, dropped) = CacheConfig::parse(&manifest, &bytes).unwrap();
        // key5's blob is not in this manifest.
        assert_eq!(dropped, 5);
        assert_eq!(parsed.records.len(), 2);
        assert!(!parsed.records.contains_key(&d("key6")));
        let mut with_plain: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        with_plain["layers"].as_array_mut().unwrap().push(
            serde_json::to_value(&config.records[&d("key5")].layer.as_ref().unwrap().blob).unwrap(),
        );
        let (parsed, dropped) = CacheConfig::parse(
            &serde_json::to_vec(&with_plain).unwrap(),
            &config.to_bytes(),
        )
        .unwrap();
        assert_eq!((parsed.records.len(), dropped), (3, 3));

        // A manifest that also lists a blob of another algorithm, and a record naming that
        // blob: the record alone is dropped.
        let sha512 = format!("sha512:{}", "ab".repeat(64));
        let mut mixed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        mixed["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": sha512,
                "size": 10,
            }));
        let mut doc = serde_json::to_value(CacheConfig {
            records: [d("key1"), d("key2")]
                .into_iter()
                .map(|k| (k.clone(), config.records[&k].clone()))
                .collect(),
            ..CacheConfig::new()
        })
        .unwrap();
        let mut other = doc["records"][d("key1")].clone();
        other["layer"]["blob"]["digest"] = sha512.clone().into();
        doc["records"][d("key7")] = other;
        let (parsed, dropped) = CacheConfig::parse(
            &serde_json::to_vec(&mixed).unwrap(),
            &serde_json::to_vec(&doc).unwrap(),
        )
        .unwrap();
        assert_eq!(dropped, 1);
        let mut kept: Vec<_> = parsed.records.keys().cloned().collect();
        kept.sort();
        let mut want = vec![d("key1"), d("key2")];
        want.sort();
        assert_eq!(kept, want);
        // A cache manifest naming its config by another algorithm is refused, naming it.
        let mut odd: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        odd["config"]["digest"] = sha512.clone().into();
        let err = CacheConfig::config_of(&serde_json::to_vec(&odd).unwrap()).unwrap_err();
        assert!(matches!(err, ExchangeError::ConfigDigest { .. }), "{err:?}");
        assert!(err.to_string().contains(&sha512), "{err}");

        assert!(matches!(
            CacheConfig::parse(&manifest, b"{not json"),
            Err(ExchangeError::Config { .. })
        ));
        let mut future = CacheConfig::new();
        future.schema = 99;
        assert!(matches!(
            CacheConfig::parse(&manifest, &future.to_bytes()),
            Err(ExchangeError::Schema { found: 99, .. })
        ));
        let image = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("c"), "size": 2},
            "layers": [],
        });
        assert!(matches!(
            CacheConfig::config_of(&serde_json::to_vec(&image).unwrap()),
            Err(ExchangeError::NotACache { .. })
        ));
        assert!(matches!(
            CacheConfig::config_of(b"[]"),
            Err(ExchangeError::Manifest { .. })
        ));
        assert!(matches!(
            inline_of(br#"{"architecture":"amd64"}"#),
            Err(ExchangeError::NoInline { .. })
        ));
        let image_config = serde_json::json!({"architecture": "amd64", INLINE_FIELD: config});
        let inline = inline_of(&serde_json::to_vec(&image_config).unwrap()).unwrap();
        assert_eq!(
            CacheConfig::parse(&manifest, &inline)
                .unwrap()
                .0
                .records
                .len(),
            2
        );
    }
}
