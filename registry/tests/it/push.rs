use std::process::Command;
use std::time::{Duration, Instant};

use rbuild_registry::{
    Client, ClientOptions, MemoryBlobs, PullOptions, PushImage, PushOptions, Reference,
};
use rbuild_test_support::{BusyboxLayout, Format, Registry, run};

use crate::proxy::Proxy;
use crate::{client, skopeo_digest, test_options};

async fn pulled(registry: &Registry, layout: &BusyboxLayout) -> (MemoryBlobs, PushImage) {
    layout.push_with_skopeo(registry, "src/busybox:latest", Format::Oci);
    let blobs = MemoryBlobs::new();
    let reference = Reference::parse(&format!("{}/src/busybox", registry.host())).unwrap();
    let image = client()
        .pull(&reference, &blobs, &PullOptions::default())
        .await
        .unwrap();
    (blobs, PushImage::from_manifest(&image.manifest).unwrap())
}

/// skopeo copies the image to an OCI layout, umoci unpacks it, and busybox is there.
fn check_with_skopeo_and_umoci(registry: &Registry, image: &str) {
    let dir = tempfile::tempdir().unwrap();
    let oci = dir.path().join("oci");
    run(Command::new("skopeo").args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{}/{image}", registry.host()),
        &format!("oci:{}:x", oci.display()),
    ]));
    let bundle = dir.path().join("bundle");
    run(Command::new("umoci")
        .args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:x", oci.display()),
        ])
        .arg(&bundle));
    let bb = std::fs::metadata(bundle.join("rootfs/bin/busybox")).unwrap();
    assert_eq!(bb.len(), std::fs::metadata("/bin/busybox").unwrap().len());
    let sh = std::fs::read_link(bundle.join("rootfs/bin/sh")).unwrap();
    assert_eq!(sh.to_str(), Some("busybox"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_plain_and_mounted_and_others_read_it() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    let (blobs, image) = pulled(&registry, &layout).await;
    let c = client();

    let plain = Reference::parse(&format!("{}/copy/plain:1", registry.host())).unwrap();
    let r = c
        .push(&plain, &image, &blobs, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(r.uploaded.len(), 2, "{r:?}");
    assert!(r.mounted.is_empty() && r.existing.is_empty(), "{r:?}");
    assert!(r.manifest_uploaded);
    assert_eq!(
        r.digest.to_string(),
        skopeo_digest(&format!("{}/copy/plain:1", registry.host()))
    );
    check_with_skopeo_and_umoci(&registry, "copy/plain:1");

    let mounted = Reference::parse(&format!("{}/copy/mounted:1", registry.host())).unwrap();
    let opts = PushOptions {
        mount_from: Some("src/busybox".into()),
        ..Default::default()
    };
    // An empty source proves nothing was uploaded: every blob must come from the mount.
    let r = c
        .push(&mounted, &image, &MemoryBlobs::new(), &opts)
        .await
        .unwrap();
    assert_eq!(r.mounted.len(), 2, "{r:?}");
    assert!(r.uploaded.is_empty(), "{r:?}");
    check_with_skopeo_and_umoci(&registry, "copy/mounted:1");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_with_small_threshold() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    let (blobs, image) = pulled(&registry, &layout).await;
    let proxy = Proxy::start(&registry.host()).await;
    let c = Client::new(ClientOptions {
        chunked_upload_threshold: 1024,
        chunk_size: 100 * 1024,
        ..test_options()
    });
    let dest = Reference::parse(&format!("{}/chunked:1", proxy.host())).unwrap();
    let r = c
        .push(&dest, &image, &blobs, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(r.uploaded.len(), 2);
    let layer_size = image.manifests[0].blobs[1].size();
    let patches = proxy
        .requests()
        .iter()
        .filter(|(m, _)| m == "PATCH")
        .count() as u64;
    assert!(
        layer_size > 200 * 1024,
        "busybox layer is {layer_size} bytes"
    );
    // The config (under the threshold) goes in one PUT; the layer in ceil(size / chunk) PATCHes.
    assert!(image.manifests[0].blobs[0].size() < 1024);
    assert_eq!(patches, layer_size.div_ceil(100 * 1024));
    check_with_skopeo_and_umoci(&registry, "chunked:1");
}

#[tokio::test(flavor = "multi_thread")]
async fn repush_costs_only_heads() {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    let (blobs, image) = pulled(&registry, &layout).await;
    let proxy = Proxy::start(&registry.host()).await;
    let dest = Reference::parse(&format!("{}/again:1", proxy.host())).unwrap();
    client()
        .push(&dest, &image, &blobs, &PushOptions::default())
        .await
        .unwrap();

    let c = client();
    // Set up the connection (the /v2/ ping) before measuring.
    c.check_login(&proxy.host()).await.unwrap();
    proxy.clear_log();
    let start = Instant::now();
    let r = c
        .push(&dest, &image, &blobs, &PushOptions::default())
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(r.existing.len(), 2);
    assert!(!r.manifest_uploaded);
    let mut reqs = proxy.requests();
    reqs.sort();
    let config = image.manifests[0].blobs[0].digest().to_string();
    let layer = image.manifests[0].blobs[1].digest().to_string();
    let mut want = vec![
        ("HEAD".to_string(), format!("/v2/again/blobs/{config}")),
        ("HEAD".to_string(), format!("/v2/again/blobs/{layer}")),
        ("HEAD".to_string(), "/v2/again/manifests/1".to_string()),
    ];
    want.sort();
    assert_eq!(reqs, want);
    eprintln!("re-push of an unchanged image took {took:?}");
    assert!(took.as_millis() < 1000, "re-push took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_an_index_with_its_manifests() {
    use rbuild_registry::{Platform, PushManifest};

    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_tag_with_skopeo("multi", &registry, "multi:latest", Format::Oci);
    let src = Reference::parse(&format!("{}/multi", registry.host())).unwrap();
    let c = client();
    let blobs = MemoryBlobs::new();
    let mut manifests = Vec::new();
    let mut index = None;
    for p in ["linux/amd64", "linux/arm64"] {
        let opts = PullOptions {
            platform: Platform::parse(p).unwrap(),
            ..PullOptions::default()
        };
        let image = c.pull(&src, &blobs, &opts).await.unwrap();
        manifests.push(
            PushManifest::from_bytes(&image.manifest.media_type, image.manifest.bytes.clone())
                .unwrap(),
        );
        index = image.index;
    }
    let index = index.unwrap();
    let push = PushImage::with_index(&index.media_type, index.bytes.clone(), manifests).unwrap();
    let dest = Reference::parse(&format!("{}/copy/multi:2", registry.host())).unwrap();
    let r = c
        .push(&dest, &push, &blobs, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(r.digest, index.digest);
    // Two configs and one shared layer.
    assert_eq!(r.uploaded.len(), 3, "{r:?}");
    assert_eq!(
        skopeo_digest(&format!("{}/copy/multi:2", registry.host())),
        index.digest.to_string()
    );
    check_with_skopeo_and_umoci(&registry, "copy/multi:2");

    // An index whose manifests are not all given is refused before anything is sent.
    let err =
        PushImage::with_index(&index.media_type, index.bytes.clone(), Vec::new()).unwrap_err();
    assert!(err.to_string().contains("index lists sha256:"), "{err}");
}

/// Pushes one blob through `push_blobs_as_ready` while a writer thread produces it in 256 KiB
/// chunks, `pause` apart; the writer hands its descriptor over (after putting it in `blobs`)
/// only if `finish`. Returns what the push reported and whether the writer got every chunk
/// out.
async fn push_while_written(
    c: &Client,
    dest: &Reference,
    data: &[u8],
    blobs: &MemoryBlobs,
    finish: bool,
    pause: std::time::Duration,
) -> (
    Result<
        Vec<(rbuild_registry::Digest, rbuild_registry::BlobPush)>,
        rbuild_registry::RegistryError,
    >,
    bool,
) {
    use rbuild_registry::{Descriptor, ReadyBlob, sha256_digest};
    let (ready, blobs_rx) = tokio::sync::mpsc::unbounded_channel();
    let (bytes, bytes_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let (done, done_rx) = tokio::sync::oneshot::channel();
    ready
        .send(ReadyBlob::Streaming {
            bytes: bytes_rx,
            done: done_rx,
        })
        .unwrap();
    drop(ready);
    let (data, store) = (data.to_vec(), blobs.clone());
    let writer = std::thread::spawn(move || {
        // A writer whose upload stopped goes on writing (it only loses its copy).
        let mut all_sent = true;
        for chunk in data.chunks(256 << 10) {
            std::thread::sleep(pause);
            all_sent &= bytes.blocking_send(chunk.to_vec()).is_ok();
        }
        drop(bytes);
        if finish {
            let digest = sha256_digest(&data);
            let desc = Descriptor::new(
                "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                data.len() as u64,
                digest.clone(),
            );
            store.insert(&digest, data);
            done.send(desc).unwrap();
        }
        all_sent
    });
    let r = c.push_blobs_as_ready(dest, blobs_rx, blobs, None).await;
    (r, writer.join().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_streams_while_written_or_is_pushed_from_its_stored_copy() {
    use rbuild_registry::{BlobPush, sha256_digest};
    let registry = Registry::start();
    let proxy = Proxy::start(&registry.host()).await;
    let count = |method: &str| {
        proxy
            .requests()
            .iter()
            .filter(|(m, p)| m == method && p.contains("/blobs/"))
            .count()
    };
    let blob = |n: u32| -> Vec<u8> {
        (0..3_000_000u32)
            .map(|i| (i.wrapping_add(n).wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    };
    let stored = async |data: &[u8], repo: &str| {
        let url = format!(
            "http://{}/v2/{repo}/blobs/{}",
            registry.host(),
            sha256_digest(data)
        );
        let got = reqwest::get(&url).await.unwrap();
        assert!(got.status().is_success(), "{url}: {}", got.status());
        assert!(got.bytes().await.unwrap().as_ref() == data, "{url} differs");
    };

    // Streamed: one session, one PATCH taking the bytes as they come, the PUT names the
    // digest; no HEAD and no second upload.
    let c = client();
    let data = blob(1);
    let blobs = MemoryBlobs::new();
    let dest = Reference::parse(&format!("{}/streamed/ok:1", proxy.host())).unwrap();
    let (r, all_sent) = push_while_written(&c, &dest, &data, &blobs, true, Duration::ZERO).await;
    assert_eq!(r.unwrap(), vec![(sha256_digest(&data), BlobPush::Uploaded)]);
    assert!(all_sent);
    assert_eq!(
        (count("POST"), count("PATCH"), count("PUT"), count("HEAD")),
        (1, 1, 1, 0),
        "{:?}",
        proxy.requests()
    );
    stored(&data, "streamed/ok").await;

    // The registry refuses a PATCH: the session is cancelled, the writer is not held up, and
    // the blob goes up from its stored copy once written.
    proxy.clear_log();
    proxy.inject(
        Some("PATCH"),
        "/blobs/uploads/",
        crate::proxy::Fault::Status(400, None),
        1,
    );
    let data = blob(2);
    let dest = Reference::parse(&format!("{}/streamed/fallback:1", proxy.host())).unwrap();
    let (r, _) = push_while_written(&c, &dest, &data, &blobs, true, Duration::ZERO).await;
    assert_eq!(r.unwrap(), vec![(sha256_digest(&data), BlobPush::Uploaded)]);
    assert_eq!(
        (count("HEAD"), count("POST"), count("DELETE")),
        (1, 2, 1),
        "{:?}",
        proxy.requests()
    );
    stored(&data, "streamed/fallback").await;

    // A registry that stops reading (the proxy holds the PATCH for 5 s): the upload is given
    // up after the read timeout of 1 s, the session cancelled, the stored blob pushed.
    proxy.clear_log();
    proxy.inject(
        Some("PATCH"),
        "/blobs/uploads/",
        crate::proxy::Fault::Delay(Duration::from_secs(5)),
        1,
    );
    let impatient = Client::new(ClientOptions {
        read_timeout: Duration::from_secs(1),
        ..test_options()
    });
    let data = blob(4);
    let dest = Reference::parse(&format!("{}/streamed/stalled:1", proxy.host())).unwrap();
    let started = Instant::now();
    let (r, _) = push_while_written(&impatient, &dest, &data, &blobs, true, Duration::ZERO).await;
    assert_eq!(r.unwrap(), vec![(sha256_digest(&data), BlobPush::Uploaded)]);
    assert!(
        started.elapsed().as_secs_f64() < 4.5,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (count("PATCH"), count("DELETE"), count("HEAD")),
        (1, 1, 1),
        "{:?}",
        proxy.requests()
    );
    stored(&data, "streamed/stalled").await;

    // A writer slower than the read timeout is not a stall: 3 MB in 12 pieces, 200 ms apart,
    // against a read timeout of 1 s still streams, in one PATCH.
    proxy.clear_log();
    let data = blob(5);
    let dest = Reference::parse(&format!("{}/streamed/slow:1", proxy.host())).unwrap();
    let pause = Duration::from_millis(200);
    let (r, all_sent) = push_while_written(&impatient, &dest, &data, &blobs, true, pause).await;
    assert_eq!(r.unwrap(), vec![(sha256_digest(&data), BlobPush::Uploaded)]);
    assert!(all_sent);
    assert_eq!(
        (count("PATCH"), count("HEAD"), count("DELETE")),
        (1, 0, 0),
        "{:?}",
        proxy.requests()
    );
    stored(&data, "streamed/slow").await;

    // The writer gives up: nothing is reported, the session is cancelled, no blob is left.
    proxy.clear_log();
    let data = blob(3);
    let dest = Reference::parse(&format!("{}/streamed/gone:1", proxy.host())).unwrap();
    let (r, all_sent) = push_while_written(&c, &dest, &data, &blobs, false, Duration::ZERO).await;
    assert_eq!(r.unwrap(), vec![]);
    assert!(all_sent);
    assert_eq!(
        (count("PUT"), count("DELETE")),
        (0, 1),
        "{:?}",
        proxy.requests()
    );
    assert!(
        !client()
            .blob_exists(&dest, &sha256_digest(&data))
            .await
            .unwrap()
    );
}
