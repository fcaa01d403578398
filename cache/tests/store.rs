//! Integration tests of the store on a real file system.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use oci_spec::image::{Descriptor, MediaType};
use rbuild_cache::import::{ImportOptions, import_dir};
use rbuild_cache::{BlobError, Digest, Expected, Store, StoreError};

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every blob's content hashes to its file name.
fn assert_blobs_verify(store: &Store) {
    for name in files_in(&store.blobs_dir()) {
        let digest =
            Digest::from_hex(&name).unwrap_or_else(|_| panic!("stray file {name} in blobs/"));
        let bytes = std::fs::read(store.blob_path(&digest)).unwrap();
        assert_eq!(Digest::of(&bytes), digest, "blob {name} is corrupt");
    }
}

#[test]
fn open_creates_an_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.root().join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.root().join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 0);
    assert!(store.blobs_dir().is_dir());
    // Opening again keeps what is there.
    store.put_blob(b"x", None).unwrap();
    let again = Store::open(store.root()).unwrap();
    assert!(again.has_blob(&Digest::of(b"x")));
}

#[test]
fn blob_writer_commits_verified_content_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data = vec![7u8; 3 * 1024 * 1024 + 5];
    let digest = Digest::of(&data);
    let mut writer = store
        .blob_writer(Some(Expected {
            digest,
            size: Some(data.len() as u64),
        }))
        .unwrap();
    for chunk in data.chunks(65536) {
        writer.write_all(chunk).unwrap();
    }
    // Nothing is visible under blobs/ before the commit.
    assert!(!store.has_blob(&digest));
    assert_eq!(files_in(&store.tmp_dir()).len(), 1);
    let committed = writer.commit().unwrap();
    assert_eq!(committed.digest, digest);
    assert_eq!(committed.size, data.len() as u64);
    assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), data);
    assert!(
        files_in(&store.tmp_dir()).is_empty(),
        "temp file left behind"
    );
}

fn blob_sync_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == "blob-sync")
        })
        .count()
}

#[test]
fn a_large_blob_syncs_while_written_and_commits_intact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data: Vec<u8> = (0..150u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let digest = Digest::of(&data);
    let mut writer = store.blob_writer(None).unwrap();
    let mut syncing = false;
    for chunk in data.chunks(1 << 20) {
        writer.write_all(chunk).unwrap();
        syncing |= blob_sync_threads() > 0;
    }
    assert!(syncing, "no background sync while 150 MiB were written");
    let committed = writer.commit().unwrap();
    assert_eq!(committed.digest, digest);
    assert_eq!(
        blob_sync_threads(),
        0,
        "the sync thread outlived the commit"
    );
    assert!(std::fs::read(store.blob_path(&digest)).unwrap() == data);
    assert!(files_in(&store.tmp_dir()).is_empty());

    // Dropped half way: the temp file goes, nothing enters the store.
    let mut writer = store.blob_writer(None).unwrap();
    writer.write_all(&data[..100 << 20]).unwrap();
    drop(writer);
    assert!(files_in(&store.tmp_dir()).is_empty());
    assert_eq!(files_in(&store.blobs_dir()), vec![digest.hex().to_string()]);
}

#[test]
fn digest_mismatch_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let expected = Digest::of(b"the real content");
    let mut writer = store.blob_writer(Some(Expected::digest(expected))).unwrap();
    writer.write_all(b"something else").unwrap();
    match writer.commit() {
        Err(BlobError::DigestMismatch {
            expected: e,
            actual,
        }) => {
            assert_eq!(e, expected);
            assert_eq!(actual, Digest::of(b"something else"));
        }
        other => panic!("mismatch accepted: {other:?}"),
    }
    assert!(files_in(&store.blobs_dir()).is_empty());
    assert!(files_in(&store.tmp_dir()).is_empty());

    // A stream longer than announced fails on write, before it fills the disk.
    let mut writer = store
        .blob_writer(Some(Expected {
            digest: Digest::of(b"abc"),
            size: Some(3),
        }))
        .unwrap();
    assert!(writer.write_all(b"abcd").is_err());
    drop(writer);
    assert!(files_in(&store.blobs_dir()).is_empty());
    assert!(files_in(&store.tmp_dir()).is_empty());
}

#[test]
fn interrupted_download_resumes_from_the_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let expected = Expected {
        digest: Digest::of(&data),
        size: Some(data.len() as u64),
    };
    let mut writer = store.blob_writer_resumable(expected).unwrap();
    assert_eq!(writer.offset(), 0);
    writer.write_all(&data[..40_000]).unwrap();
    drop(writer); // the connection broke
    let mut writer = store.blob_writer_resumable(expected).unwrap();
    assert_eq!(writer.offset(), 40_000);
    writer.write_all(&data[40_000..]).unwrap();
    assert_eq!(writer.commit().unwrap().digest, expected.digest);
    assert_eq!(
        std::fs::read(store.blob_path(&expected.digest)).unwrap(),
        data
    );
    assert!(files_in(&store.tmp_dir()).is_empty());

    // A partial with wrong bytes does not get in: the commit refuses it.
    let other = b"0123456789".repeat(100);
    let expected = Expected {
        digest: Digest::of(&other),
        size: Some(other.len() as u64),
    };
    std::fs::write(
        store
            .tmp_dir()
            .join(format!("sha256-{}.partial", expected.digest.hex())),
        b"XXXX",
    )
    .unwrap();
    let mut writer = store.blob_writer_resumable(expected).unwrap();
    assert_eq!(writer.offset(), 4);
    writer.write_all(&other[4..]).unwrap();
    assert!(matches!(
        writer.commit(),
        Err(BlobError::DigestMismatch { .. })
    ));
    assert!(!store.has_blob(&expected.digest));
    // restart() recovers by starting from zero.
    std::fs::write(
        store
            .tmp_dir()
            .join(format!("sha256-{}.partial", expected.digest.hex())),
        b"XXXX",
    )
    .unwrap();
    let mut writer = store.blob_writer_resumable(expected).unwrap();
    writer.restart().unwrap();
    writer.write_all(&other).unwrap();
    assert_eq!(writer.commit().unwrap().digest, expected.digest);
}

#[test]
fn leftover_temp_files_are_ignored_and_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let old = SystemTime::now() - Duration::from_secs(3600);
    let stale = store.tmp_dir().join("blob-1-dead-0.tmp");
    std::fs::write(&stale, b"half a blob from a killed process").unwrap();
    File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let fresh = store.tmp_dir().join("blob-2-beef-0.tmp");
    std::fs::write(&fresh, b"being written right now").unwrap();
    // A file another writer holds locked stays even when old.
    let busy = store.tmp_dir().join("blob-3-cafe-0.tmp");
    std::fs::write(&busy, b"slow writer").unwrap();
    let busy_file = File::options().write(true).open(&busy).unwrap();
    busy_file.set_modified(old).unwrap();
    rustix::fs::flock(&busy_file, rustix::fs::FlockOperation::LockExclusive).unwrap();

    // The store works with the garbage there...
    let c = store.put_blob(b"content", None).unwrap();
    assert!(store.has_blob(&c.digest));
    // ...and the next open removes only what nobody is writing.
    let store = Store::open(dir.path()).unwrap();
    assert!(!stale.exists(), "stale temp file kept");
    assert!(fresh.exists(), "young temp file removed");
    assert!(busy.exists(), "locked temp file removed");
    assert_blobs_verify(&store);
    drop(busy_file);
}

fn image(store: &Store, layers: &[&[u8]]) -> Descriptor {
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let c = store.put_blob(layer, None).unwrap();
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": c.digest.to_string(),
            "size": c.size,
        }));
        diff_ids.push(c.digest.to_string());
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = store
        .put_document(MediaType::ImageConfig, config.to_string().as_bytes())
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layer_descs,
    });
    store
        .put_document(MediaType::ImageManifest, manifest.to_string().as_bytes())
        .unwrap()
}

#[test]
fn rmi_keeps_blobs_still_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = image(&store, &[b"shared layer", b"only in a"]);
    let b = image(&store, &[b"shared layer", b"only in b"]);
    store.tag("example.com/a:1", &a).unwrap();
    store.tag("example.com/a:also", &a).unwrap();
    store.tag("example.com/b:1", &b).unwrap();
    let all = files_in(&store.blobs_dir()).len();
    assert_eq!(all, 7); // 3 layers, 2 configs, 2 manifests

    // A second name keeps everything.
    let removed = store
        .remove(&["example.com/a:1".to_string()], &|_| false)
        .unwrap();
    assert_eq!(removed.untagged, ["example.com/a:1"]);
    assert!(removed.deleted.is_empty());
    assert_eq!(files_in(&store.blobs_dir()).len(), all);

    let removed = store
        .remove(&["example.com/a:also".to_string()], &|_| false)
        .unwrap();
    assert_eq!(
        removed.deleted.len(),
        3,
        "a's manifest, config and own layer"
    );
    assert!(store.has_blob(&Digest::of(b"shared layer")));
    assert!(!store.has_blob(&Digest::of(b"only in a")));
    assert!(store.has_blob(&Digest::of(b"only in b")));
    assert_eq!(store.resolve("example.com/b:1").unwrap(), b);

    // Unknown names are an error naming the image, and change nothing.
    match store.remove(
        &["example.com/b:1".to_string(), "nope:1".to_string()],
        &|_| false,
    ) {
        Err(StoreError::NotFound { name }) => assert_eq!(name, "nope:1"),
        other => panic!("{other:?}"),
    }
    assert!(store.resolve("example.com/b:1").is_ok());

    store
        .remove(&["example.com/b:1".to_string()], &|_| false)
        .unwrap();
    assert!(files_in(&store.blobs_dir()).is_empty());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn tag_replaces_and_refuses_incomplete_images() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = image(&store, &[b"one"]);
    let b = image(&store, &[b"two"]);
    store.tag("x/y:1", &a).unwrap();
    store.tag("x/y:1", &b).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.resolve("x/y:1").unwrap(), b);
    assert_eq!(store.untag("x/y:1").unwrap(), b);
    assert!(matches!(
        store.resolve("x/y:1"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.has_blob(&Digest::of(b"two")), "untag must keep blobs");

    std::fs::remove_file(store.blob_path(&Digest::of(b"one"))).unwrap();
    match store.tag("x/y:2", &a) {
        Err(StoreError::Incomplete { digest, .. }) => assert_eq!(digest, Digest::of(b"one")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.tag("Bad Name", &b),
        Err(StoreError::InvalidName { .. })
    ));
}

#[test]
fn concurrent_tags_from_8_threads_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let img = image(&store, &[b"layer"]);
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = store.clone();
            let img = img.clone();
            s.spawn(move || {
                for i in 0..25 {
                    store.tag(&format!("example.com/t{t}:n{i}"), &img).unwrap();
                }
            });
        }
    });
    let names = store.list().unwrap();
    assert_eq!(names.len(), 200);
    for t in 0..8 {
        for i in 0..25 {
            assert!(
                store.resolve(&format!("example.com/t{t}:n{i}")).is_ok(),
                "t{t}:n{i} lost"
            );
        }
    }
    assert!(files_in(&store.tmp_dir()).is_empty());
}

#[test]
fn resolve_id_finds_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = image(&store, &[b"one"]);
    store.tag("x/y:1", &a).unwrap();
    let id = rbuild_cache::descriptor_digest(&a).unwrap();
    assert_eq!(
        store.resolve_id(&id.short()).unwrap().unwrap().digest(),
        a.digest()
    );
    assert_eq!(
        store.resolve_id(&id.to_string()).unwrap().unwrap().digest(),
        a.digest()
    );
    // The image id is the manifest's digest; the config's is not an id.
    let (_, manifest) = store.image_manifest(&a).unwrap();
    let config = rbuild_cache::descriptor_digest(manifest.config()).unwrap();
    assert!(store.resolve_id(&config.short()).unwrap().is_none());
    assert!(store.resolve_id("zzzz").unwrap().is_none());
}

#[test]
fn import_dir_makes_a_reproducible_one_layer_image() {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/hostname"), b"box\n").unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let mut options = ImportOptions::new(Some(1_700_000_000), "imported from rootfs");
    options.clamp_mtime = Some(1_700_000_000);
    let one = import_dir(&store, &rootfs, &options).unwrap();
    let two = import_dir(&store, &rootfs, &options).unwrap();
    assert_eq!(one.manifest, two.manifest);
    let config = store.read_config(&one.config).unwrap();
    assert_eq!(config.created().as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(config.rootfs().diff_ids(), &vec![one.diff_id.to_string()]);
    assert_eq!(
        config.architecture().to_string(),
        rbuild_compiler::plan::Platform::host().architecture
    );
    let history = config.history().as_ref().unwrap();
    assert_eq!(
        history[0].comment().as_deref(),
        Some("imported from rootfs")
    );
    assert!(files_in(&store.tmp_dir()).is_empty());
    assert_blobs_verify(&store);
}

#[test]
fn layer_writer_and_copy_blob_store_streams() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tar: Vec<u8> = (0..9_000_000u32).map(|i| (i % 97) as u8).collect();
    let mut writer = rbuild_cache::layer::LayerWriter::new(&store, 2).unwrap();
    writer.write_all(&tar).unwrap();
    let layer = writer.finish().unwrap();
    assert_eq!(layer.diff_id, Digest::of(&tar));
    let mut unpacked = Vec::new();
    flate2::read::MultiGzDecoder::new(store.open_blob(&layer.digest).unwrap())
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, tar);
    assert_eq!(layer.descriptor().media_type(), &MediaType::ImageLayerGzip);
    // The store gzips with the writer builds and pushes use: the same tar, the same blob.
    let mut gz = rbuild_compress::ParallelGzip::new(Vec::new(), 1);
    gz.write_all(&tar).unwrap();
    assert_eq!(layer.digest, Digest::of(&gz.finish().unwrap()));

    let copied = store
        .copy_blob(
            &mut &b"streamed"[..],
            Some(Expected::digest(Digest::of(b"streamed"))),
        )
        .unwrap();
    assert!(store.has_blob(&copied.digest));
    assert!(
        store
            .copy_blob(&mut &b"other"[..], Some(Expected::digest(Digest::of(b"x"))))
            .is_err()
    );
    assert_blobs_verify(&store);
    assert!(files_in(&store.tmp_dir()).is_empty());
}

/// A chain of `depth` indexes, each listing the next, ending in an empty index; returns the
/// top's descriptor.
fn nested_indexes(store: &Store, depth: usize) -> Descriptor {
    let mut d = store
        .put_document(
            MediaType::ImageIndex,
            br#"{"schemaVersion":2,"manifests":[]}"#,
        )
        .unwrap();
    for _ in 0..depth {
        let bytes = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{}","size":{}}}]}}"#,
            d.digest(),
            d.size()
        );
        d = store
            .put_document(MediaType::ImageIndex, bytes.as_bytes())
            .unwrap();
    }
    d
}

#[test]
fn deeply_nested_indexes_are_refused_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    // A few levels are fine.
    let shallow = nested_indexes(&store, 3);
    assert_eq!(store.reachable(&shallow, true).unwrap().len(), 4);
    // More than MAX_INDEX_DEPTH levels are an error, however many (a crafted archive can hold
    // tens of thousands, which recursion would follow until the stack overflows).
    let deep = nested_indexes(&store, 100);
    let e = store.reachable(&deep, true).unwrap_err();
    assert!(matches!(e, StoreError::TooDeep { .. }), "{e}");
    assert!(e.to_string().contains(&deep.digest().to_string()), "{e}");
    let e = store.image_manifest(&deep).unwrap_err();
    assert!(matches!(e, StoreError::TooDeep { .. }), "{e}");
}

#[test]
fn an_archive_of_deeply_nested_indexes_is_refused_on_load() {
    let dir = tempfile::tempdir().unwrap();
    // The chain is made in a scratch store, then written out as an OCI archive.
    let scratch = Store::open(dir.path().join("scratch")).unwrap();
    let top = nested_indexes(&scratch, 100);
    let path = dir.path().join("deep.tar");
    let mut b = tar::Builder::new(File::create(&path).unwrap());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, bytes).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{}","size":{}}}]}}"#,
        top.digest(),
        top.size()
    );
    add("index.json", index.as_bytes());
    for entry in std::fs::read_dir(scratch.blobs_dir()).unwrap() {
        let entry = entry.unwrap();
        let name = format!("blobs/sha256/{}", entry.file_name().to_string_lossy());
        add(&name, &std::fs::read(entry.path()).unwrap());
    }
    b.into_inner().unwrap().sync_all().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let e = rbuild_cache::archive::load(&store, &path).unwrap_err();
    assert!(
        matches!(
            e,
            rbuild_cache::archive::ArchiveError::Store(StoreError::TooDeep { .. })
        ),
        "{e}"
    );
}

#[test]
fn oversized_documents_are_refused_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let mut big = b"{\"architecture\":\"amd64\",\"os\":\"linux\",\"x\":\"".to_vec();
    big.resize(rbuild_cache::MAX_DOCUMENT_SIZE as usize + 1, b'a');
    let digest = store.put_blob(&big, None).unwrap().digest;
    for e in [
        store.read_config(&digest).map(|_| ()).unwrap_err(),
        store.read_manifest(&digest).map(|_| ()).unwrap_err(),
        store.read_index_blob(&digest).map(|_| ()).unwrap_err(),
    ] {
        assert!(matches!(e, StoreError::DocumentTooLarge { .. }), "{e}");
        assert!(e.to_string().contains(&digest.to_string()), "{e}");
    }
}
