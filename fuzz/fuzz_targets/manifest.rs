//! Manifest, index and config decoding as the store and the registry client do it never
//! panics; the store's reading agrees with the registry client's; what decodes re-encodes to
//! something that decodes to the same value; digests of descriptors are checked before use.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use rbuild_cache::{Store, descriptor_digest};
use rbuild_registry::pull::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, detect_media_type,
};
use rbuild_registry::{Platform, PushImage, PushManifest};

/// A store in a temp dir, replaced every few thousand inputs so the disk does not fill.
struct Scratch {
    dir: tempfile::TempDir,
    store: Store,
    puts: u32,
}

static SCRATCH: Mutex<Option<Scratch>> = Mutex::new(None);

fn with_store(f: impl FnOnce(&Store)) {
    let mut guard = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_none_or(|s| s.puts >= 4096) {
        *guard = None;
        let dir = tempfile::Builder::new()
            .prefix("rbuild-fuzz-store-")
            .tempdir_in(scratch_dir())
            .expect("temp dir");
        let store = Store::open(dir.path().join("store")).expect("open store");
        *guard = Some(Scratch {
            dir,
            store,
            puts: 0,
        });
    }
    let scratch = guard.as_mut().expect("scratch store");
    let _ = scratch.dir.path();
    scratch.puts += 1;
    f(&scratch.store);
}

fn check_descriptor(d: &oci_spec::image::Descriptor) {
    if let Ok(digest) = descriptor_digest(d) {
        assert_eq!(digest.to_string(), d.digest().to_string(), "digest changed");
    }
}

fuzz_target!(|data: &[u8]| {
    let manifest = ImageManifest::from_reader(data);
    let index = ImageIndex::from_reader(data);
    let config = ImageConfiguration::from_reader(data);

    // The registry client parses manifests with serde_json::from_slice: same verdict.
    let push = PushManifest::from_bytes(OCI_MANIFEST, data.to_vec());
    assert_eq!(
        manifest.is_ok(),
        push.is_ok(),
        "store and registry disagree on a manifest"
    );
    if let Ok(m) = &manifest {
        check_descriptor(m.config());
        m.layers().iter().for_each(check_descriptor);
        let again = ImageManifest::from_reader(m.to_string().expect("encode").as_bytes())
            .expect("a re-encoded manifest decodes");
        assert_eq!(&again, m, "manifest round trip");
        let p = push.expect("checked above");
        assert_eq!(p.blobs.len(), 1 + m.layers().len());
        let _ = PushImage::with_index(OCI_INDEX, data.to_vec(), vec![p]);
    }
    if let Ok(i) = &index {
        let host = Platform::host();
        for d in i.manifests() {
            check_descriptor(d);
            if let Some(p) = d.platform() {
                let entry = Platform::new(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                );
                let _ = host.rank(&entry);
            }
        }
        let again = ImageIndex::from_reader(i.to_string().expect("encode").as_bytes())
            .expect("a re-encoded index decodes");
        assert_eq!(&again, i, "index round trip");
    }
    if let Ok(c) = &config {
        let again = ImageConfiguration::from_reader(c.to_string().expect("encode").as_bytes())
            .expect("a re-encoded config decodes");
        assert_eq!(sorted_sets(again), sorted_sets(c.clone()), "config round trip");
    }
    for header in [
        None,
        Some(OCI_MANIFEST),
        Some(OCI_INDEX),
        Some(DOCKER_MANIFEST),
        Some(DOCKER_MANIFEST_LIST),
        Some("text/plain"),
    ] {
        if let Ok(t) = detect_media_type("fuzz", header, data) {
            assert!(
                [
                    OCI_MANIFEST,
                    OCI_INDEX,
                    DOCKER_MANIFEST,
                    DOCKER_MANIFEST_LIST
                ]
                .contains(&t.as_str())
            );
        }
    }

    // As the store reads what it holds.
    if manifest.is_err() && index.is_err() && config.is_err() {
        return;
    }
    with_store(|store| {
        for media_type in [
            MediaType::ImageManifest,
            MediaType::ImageIndex,
            MediaType::ImageConfig,
        ] {
            let d = store
                .put_document(media_type, data)
                .expect("store a document");
            let digest = descriptor_digest(&d).expect("the store's own digest");
            assert_eq!(store.read_manifest(&digest).is_ok(), manifest.is_ok());
            assert_eq!(store.read_index_blob(&digest).is_ok(), index.is_ok());
            assert_eq!(store.read_config(&digest).is_ok(), config.is_ok());
            let _ = store.image_manifest(&d);
            let _ = store.reachable(&d, false);
            let _ = store.reachable(&d, true);
        }
    });
});

/// oci-spec decodes `ExposedPorts` and `Volumes` (JSON objects used as sets) through a hash
/// map into a list, so their order after a round trip is arbitrary: compare them as sets.
fn sorted_sets(mut c: ImageConfiguration) -> ImageConfiguration {
    if let Some(mut config) = c.config().clone() {
        if let Some(mut ports) = config.exposed_ports().clone() {
            ports.sort();
            config.set_exposed_ports(Some(ports));
        }
        if let Some(mut volumes) = config.volumes().clone() {
            volumes.sort();
            config.set_volumes(Some(volumes));
        }
        c.set_config(Some(config));
    }
    c
}

/// A tmpfs when there is one (`/dev/shm`): several times faster than a disk for the many
/// small files made and removed per input.
fn scratch_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}
