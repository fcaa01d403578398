//! Layer media types and the compression they name, for OCI and Docker v2 manifests.

use crate::Compression;

/// The manifest format a layer media type belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// OCI image manifests (`application/vnd.oci.image.layer.v1.tar...`).
    Oci,
    /// Docker v2 schema 2 manifests (`application/vnd.docker.image.rootfs.diff.tar...`).
    Docker,
}

impl std::fmt::Display for ManifestFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ManifestFormat::Oci => "OCI",
            ManifestFormat::Docker => "Docker v2",
        })
    }
}

impl ManifestFormat {
    /// The format's name after an indefinite article: `an OCI`, `a Docker v2`.
    fn with_article(self) -> &'static str {
        match self {
            ManifestFormat::Oci => "an OCI",
            ManifestFormat::Docker => "a Docker v2",
        }
    }
}

/// A compression has no layer media type in a manifest format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaTypeError {
    /// No layer media type of `format` names `compression` (zstd in a Docker v2 manifest,
    /// bzip2 or xz anywhere).
    #[error("{compression} layers cannot be in {} manifest", .format.with_article())]
    NoMediaType {
        /// The layer's compression.
        compression: Compression,
        /// The manifest format.
        format: ManifestFormat,
    },
}

impl Compression {
    /// The compression named by an OCI or Docker layer media type (`+gzip`, `.tar.gzip`,
    /// `+zstd`, `.tar`, also the nondistributable and foreign variants), or `None` for a
    /// media type that names no layer compression.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("+zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// The layer media type of this compression in a `format` manifest.
    pub fn media_type(self, format: ManifestFormat) -> Result<&'static str, MediaTypeError> {
        Ok(match (format, self) {
            (ManifestFormat::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
            (ManifestFormat::Oci, Compression::Gzip) => {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            }
            (ManifestFormat::Oci, Compression::Zstd) => {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            }
            (ManifestFormat::Docker, Compression::None) => {
                "application/vnd.docker.image.rootfs.diff.tar"
            }
            (ManifestFormat::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (_, compression) => {
                return Err(MediaTypeError::NoMediaType {
                    compression,
                    format,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_map_both_ways() {
        for format in [ManifestFormat::Oci, ManifestFormat::Docker] {
            for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
                match c.media_type(format) {
                    Ok(mt) => assert_eq!(Compression::from_media_type(mt), Some(c), "{mt}"),
                    Err(e) => assert_eq!(
                        (format, c),
                        (ManifestFormat::Docker, Compression::Zstd),
                        "{e}"
                    ),
                }
            }
        }
        for (mt, c) in [
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Compression::Zstd,
            ),
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
        ] {
            assert_eq!(Compression::from_media_type(mt), Some(c), "{mt}");
        }
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.config.v1+json"),
            None
        );
    }

    #[test]
    fn kinds_without_a_media_type_name_the_kind_and_the_format() {
        let err = Compression::Zstd
            .media_type(ManifestFormat::Docker)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "zstd layers cannot be in a Docker v2 manifest"
        );
        let err = Compression::Xz.media_type(ManifestFormat::Oci).unwrap_err();
        assert_eq!(err.to_string(), "xz layers cannot be in an OCI manifest");
    }
}
