use rbuild_registry::pull::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use rbuild_registry::{MemoryBlobs, Platform, PullOptions, Reference, RegistryError};
use rbuild_test_support::{BusyboxLayout, Format, Registry};

use crate::{client, sha256, skopeo_digest};

fn layout_blob(layout: &BusyboxLayout, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(layout.path().join("blobs/sha256").join(hex)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_oci_image_pushed_by_skopeo() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    let reference = Reference::parse(&format!("{}/busybox", registry.host())).unwrap();
    let blobs = MemoryBlobs::new();
    let image = client()
        .pull(&reference, &blobs, &PullOptions::default())
        .await
        .unwrap();
    assert!(image.index.is_none());
    assert_eq!(image.manifest.media_type, OCI_MANIFEST);
    assert_eq!(
        image.manifest.digest.to_string(),
        skopeo_digest(&format!("{}/busybox:latest", registry.host()))
    );
    let layers = image.image_manifest.layers();
    assert_eq!(layers.len(), 1);
    // Every pulled blob is byte-identical to what umoci wrote, and hashes to its digest.
    for d in std::iter::once(image.image_manifest.config()).chain(layers) {
        let got = blobs.get(d.digest()).expect("blob pulled");
        assert_eq!(sha256(&got), d.digest().to_string());
        assert_eq!(*got, layout_blob(&layout, d.digest().as_ref()));
    }
    assert_eq!(image.fetched.len(), 3, "manifest, config, layer");
    assert_eq!(blobs.len(), 3);

    // A second pull into the same target fetches nothing.
    let again = client()
        .pull(&reference, &blobs, &PullOptions::default())
        .await
        .unwrap();
    assert!(again.fetched.is_empty(), "{:?}", again.fetched);
    assert_eq!(again.skipped.len(), 3);

    // Pull by digest verifies the manifest against it.
    let pinned = Reference::parse(&format!(
        "{}/busybox@{}",
        registry.host(),
        image.manifest.digest
    ))
    .unwrap();
    let by_digest = client().fetch_manifest(&pinned).await.unwrap();
    assert_eq!(by_digest.bytes, image.manifest.bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn pulls_docker_v2s2_image() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "docker/busybox:v2", Format::DockerV2s2);
    let reference = Reference::parse(&format!("{}/docker/busybox:v2", registry.host())).unwrap();
    let blobs = MemoryBlobs::new();
    let image = client()
        .pull(&reference, &blobs, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(image.manifest.media_type, DOCKER_MANIFEST);
    assert_eq!(
        image.image_manifest.config().media_type().to_string(),
        "application/vnd.docker.container.image.v1+json"
    );
    assert_eq!(
        image.image_manifest.layers()[0].media_type().to_string(),
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    for d in std::iter::once(image.image_manifest.config()).chain(image.image_manifest.layers()) {
        assert_eq!(
            sha256(&blobs.get(d.digest()).unwrap()),
            d.digest().to_string()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn picks_platform_from_index() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_tag_with_skopeo("multi", &registry, "multi:latest", Format::Oci);
    let reference = Reference::parse(&format!("{}/multi", registry.host())).unwrap();
    let c = client();
    let mut archs = Vec::new();
    // Spellings of one platform pick the same entry (the index names `linux/arm64/v8`).
    for platform in ["linux/arm64", "linux/amd64", "aarch64", "linux/arm64/8"] {
        let blobs = MemoryBlobs::new();
        let opts = PullOptions {
            platform: Platform::parse(platform).unwrap(),
            ..PullOptions::default()
        };
        let image = c.pull(&reference, &blobs, &opts).await.unwrap();
        let index = image.index.as_ref().expect("pulled through an index");
        assert_eq!(index.media_type, OCI_INDEX);
        assert!(blobs.get(&index.digest).is_some(), "index stored");
        let config: serde_json::Value =
            serde_json::from_slice(&blobs.get(image.image_manifest.config().digest()).unwrap())
                .unwrap();
        archs.push(config["architecture"].as_str().unwrap().to_string());
    }
    assert_eq!(archs, ["arm64", "amd64", "arm64", "arm64"]);

    let err = c
        .resolve(&reference, &Platform::parse("linux/s390x").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NoMatchingPlatform { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("linux/s390x")
            && msg.contains("/multi:latest")
            && msg.contains("linux/arm64")
            && msg.contains("linux/amd64"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_manifest_is_a_clear_error() {
    let registry = Registry::start();
    let reference = Reference::parse(&format!("{}/nothing:here", registry.host())).unwrap();
    let err = client()
        .pull(&reference, &MemoryBlobs::new(), &PullOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), format!("manifest {reference} not found"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_progress_per_blob() {
    use std::sync::{Arc, Mutex};

    use rbuild_registry::{Client, ClientOptions, ProgressEvent};

    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let c = Client::new(ClientOptions {
        progress: Some(Arc::new(move |e: &ProgressEvent| {
            sink.lock().unwrap().push(e.clone())
        })),
        ..crate::test_options()
    });
    let reference = Reference::parse(&format!("{}/busybox", registry.host())).unwrap();
    let image = c
        .pull(&reference, &MemoryBlobs::new(), &PullOptions::default())
        .await
        .unwrap();
    let events = events.lock().unwrap();
    for d in std::iter::once(image.image_manifest.config()).chain(image.image_manifest.layers()) {
        let mine: Vec<&ProgressEvent> = events
            .iter()
            .filter(|e| match e {
                ProgressEvent::BlobStart { digest, .. }
                | ProgressEvent::BlobBytes { digest, .. }
                | ProgressEvent::BlobDone { digest } => digest == d.digest(),
                _ => false,
            })
            .collect();
        assert_eq!(
            mine.first(),
            Some(&&ProgressEvent::BlobStart {
                digest: d.digest().clone(),
                size: d.size()
            })
        );
        assert_eq!(
            mine.last(),
            Some(&&ProgressEvent::BlobDone {
                digest: d.digest().clone()
            })
        );
        let last_bytes = mine.iter().rev().find_map(|e| match e {
            ProgressEvent::BlobBytes { done, total, .. } => Some((*done, *total)),
            _ => None,
        });
        assert_eq!(last_bytes, Some((d.size(), d.size())));
    }
}
