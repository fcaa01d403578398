//! Prunes and image removals on real stores, with live and stale leases of other
//! processes.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rustix::fs::{FlockOperation, flock};

use super::*;
use crate::action::{ActionCache, CacheRecord, LayerRecord, SCHEMA};
use crate::{Digest, Store};

fn age(path: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    let f = File::options().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

fn remove(p: &Path) -> io::Result<()> {
    std::fs::remove_dir_all(p)
}

/// A live lease of another process (a flock on its own open file) that lists `paths`;
/// the lock goes with the returned file.
fn other_lease(root: &Path, name: &str, paths: &[String]) -> File {
    let dir = root.join(LEASES_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut text: String = paths.iter().map(|p| format!("{p}\n")).collect();
    // A line still being written names nothing yet.
    text.push_str("blobs/sha256/partial");
    std::fs::write(&path, text).unwrap();
    let file = File::open(&path).unwrap();
    flock(&file, FlockOperation::LockExclusive).unwrap();
    file
}

fn blob_rel(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

#[test]
fn prune_keeps_what_other_live_leases_list_and_drops_stale_leases() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let free = store.put_blob(b"free dangling", None).unwrap();
    let listed = store.put_blob(b"listed dangling", None).unwrap();
    let held = other_lease(dir.path(), "lease-1-0-0.lease", &[blob_rel(&listed.digest)]);
    // A stale lease (nobody holds it) lists nothing that counts.
    let stale = dir.path().join(LEASES_DIR).join("lease-2-0-0.lease");
    std::fs::write(&stale, format!("{}\n", blob_rel(&free.digest))).unwrap();
    // Just written, and no lease lists it: nothing but leases protects.
    let r = prune(&store, &PruneOptions::default(), &remove).unwrap();
    assert!(!store.has_blob(&free.digest));
    assert!(store.has_blob(&listed.digest));
    assert_eq!(r.freed[&Kind::Dangling].count, 1);
    assert_eq!(r.in_use, 1);
    assert!(!stale.exists(), "stale lease left");
    // This process's own lease lists what it writes; its prune ignores it, the
    // automatic gc after a build (keep_own) keeps it.
    let own = Lease::acquire(dir.path()).unwrap();
    let mine = store.put_blob(b"mine", None).unwrap();
    let listing = std::fs::read_to_string(own.path()).unwrap();
    assert_eq!(listing, format!("{}\n", blob_rel(&mine.digest)));
    let keep_own = PruneOptions {
        keep_own: true,
        ..PruneOptions::default()
    };
    prune(&store, &keep_own, &remove).unwrap();
    assert!(store.has_blob(&mine.digest));
    prune(&store, &PruneOptions::default(), &remove).unwrap();
    assert!(!store.has_blob(&mine.digest));
    drop(own);
    // The other process ends: what it listed goes.
    drop(held);
    prune(&store, &PruneOptions::default(), &remove).unwrap();
    assert!(!store.has_blob(&listed.digest));
}

#[test]
fn remove_images_keeps_blobs_another_lease_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let blob = store.put_blob(b"layer", None).unwrap();
    let config = store.put_blob(b"{}", None).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest.to_string(), "size": config.size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob.digest.to_string(), "size": blob.size}],
    });
    let desc = store
        .put_document(
            oci_spec::image::MediaType::ImageManifest,
            &serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
    store.tag("x/y:1", &desc).unwrap();
    let held = other_lease(dir.path(), "lease-1-0-0.lease", &[blob_rel(&blob.digest)]);
    let removed = remove_images(&store, &["x/y:1".to_string()]).unwrap();
    assert_eq!(removed.kept, vec![blob.digest]);
    assert!(store.has_blob(&blob.digest) && !store.has_blob(&config.digest));
    drop(held);
    prune(&store, &PruneOptions::default(), &remove).unwrap();
    assert!(!store.has_blob(&blob.digest));
}

#[test]
fn records_go_with_their_blobs_and_all_drops_shared_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cache = ActionCache::open(dir.path()).unwrap();
    let layer = store.put_blob(b"layer tar", None).unwrap();
    let key = Digest::of(b"key");
    let record = CacheRecord {
        schema: SCHEMA,
        layer: Some(LayerRecord {
            digest: layer.digest,
            diff_id: layer.digest,
            size: layer.size,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        }),
        created: 0,
        description: "RUN x".into(),
    };
    cache.put(&key, &record).unwrap();
    // Another live process uses this record.
    let used = Digest::of(b"used");
    cache.put(&used, &record).unwrap();
    let rel = |k: &Digest| format!("cache-v1/keys/{}.json", k.hex());
    let held = other_lease(dir.path(), "lease-1-0-0.lease", &[rel(&used)]);
    let dry = PruneOptions {
        dry_run: true,
        ..PruneOptions::default()
    };
    let r = prune(&store, &dry, &remove).unwrap();
    assert_eq!(r.freed.get(&Kind::BuildCache).map(|t| t.count), Some(1));
    assert!(cache.get(&key).unwrap().is_some(), "dry run removed");
    prune(&store, &PruneOptions::default(), &remove).unwrap();
    assert!(cache.get(&key).unwrap().is_none());
    assert!(cache.get(&used).unwrap().is_some());
    // The blob is still referenced by the used record.
    assert!(store.has_blob(&layer.digest));
    drop(held);
    prune(&store, &PruneOptions::default(), &remove).unwrap();
    assert!(!store.has_blob(&layer.digest));
    assert!(cache.keys().unwrap().is_empty());
}

#[test]
fn keep_storage_removes_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut blobs = Vec::new();
    for (i, secs) in [(0u8, 4000u64), (1, 3000), (2, 2000), (3, 1000)] {
        let b = store.put_blob(&vec![i; 64 << 10], None).unwrap();
        age(&store.blob_path(&b.digest), secs);
        blobs.push(b.digest);
    }
    let before = usage(&store).unwrap().total();
    // Room for all but about 1.5 blobs: the two oldest go.
    let opts = PruneOptions {
        keep_storage: Some(before - (96 << 10)),
        ..PruneOptions::default()
    };
    let r = prune(&store, &opts, &remove).unwrap();
    assert_eq!(r.freed[&Kind::Dangling].count, 2);
    assert!(!store.has_blob(&blobs[0]) && !store.has_blob(&blobs[1]));
    assert!(store.has_blob(&blobs[2]) && store.has_blob(&blobs[3]));
    // until: only older than 1500 s.
    let opts = PruneOptions {
        until: Some(Duration::from_secs(1500)),
        ..PruneOptions::default()
    };
    prune(&store, &opts, &remove).unwrap();
    assert!(!store.has_blob(&blobs[2]) && store.has_blob(&blobs[3]));
}
