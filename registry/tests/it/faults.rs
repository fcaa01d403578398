use std::time::{Duration, Instant};

use rbuild_registry::{Client, ClientOptions, PullOptions, PulledImage, Reference, RegistryError};
use rbuild_test_support::{BusyboxLayout, Format, Registry};

use crate::proxy::{Fault, Proxy};
use crate::{CountingTarget, client, test_options};

struct Setup {
    _registry: Registry,
    proxy: Proxy,
    reference: Reference,
    layer: String,
    layer_size: u64,
}

async fn setup() -> Setup {
    let registry = Registry::start();
    let layout = BusyboxLayout::build();
    layout.push_with_skopeo(&registry, "busybox:latest", Format::Oci);
    let direct = Reference::parse(&format!("{}/busybox", registry.host())).unwrap();
    let m = client().fetch_manifest(&direct).await.unwrap();
    let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&m.bytes).unwrap();
    let layer = manifest.layers()[0].digest().to_string();
    let layer_size = manifest.layers()[0].size();
    let proxy = Proxy::start(&registry.host()).await;
    let reference = Reference::parse(&format!("{}/busybox", proxy.host())).unwrap();
    Setup {
        _registry: registry,
        proxy,
        reference,
        layer,
        layer_size,
    }
}

async fn pull(
    c: &Client,
    s: &Setup,
    target: &CountingTarget,
) -> Result<PulledImage, RegistryError> {
    c.pull(&s.reference, target, &PullOptions::default()).await
}

fn count(proxy: &Proxy, method: &str, path_contains: &str) -> usize {
    proxy
        .requests()
        .iter()
        .filter(|(m, p)| m == method && p.contains(path_contains))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_503_then_succeeds() {
    let s = setup().await;
    s.proxy
        .inject(Some("GET"), "/manifests/", Fault::Status(503, None), 2);
    s.proxy
        .inject(Some("GET"), &s.layer, Fault::Status(502, None), 1);
    let target = CountingTarget::default();
    pull(&client(), &s, &target).await.unwrap();
    assert_eq!(count(&s.proxy, "GET", "/manifests/latest"), 3);
    assert_eq!(count(&s.proxy, "GET", &s.layer), 2);
    assert!(target.aborted.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn honours_retry_after_on_429() {
    let s = setup().await;
    s.proxy
        .inject(Some("GET"), &s.layer, Fault::Status(429, Some(1)), 1);
    let start = Instant::now();
    pull(&client(), &s, &CountingTarget::default())
        .await
        .unwrap();
    // The test policy's own backoff is 20 ms; only Retry-After explains a 1 s wait.
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(count(&s.proxy, "GET", &s.layer), 2);
}

/// Where the one `Range` request the proxy saw (`bytes=N-`) starts.
fn resumed_from(proxy: &Proxy) -> u64 {
    let ranges = proxy.ranges();
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    ranges[0]
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_with_range_after_reset_mid_blob() {
    let s = setup().await;
    s.proxy
        .inject(Some("GET"), &s.layer, Fault::ResetMidBody, 1);
    let target = CountingTarget::default();
    let image = pull(&client(), &s, &target).await.unwrap();
    assert!(image.fetched.iter().any(|d| d.to_string() == s.layer));
    assert_eq!(count(&s.proxy, "GET", &s.layer), 2);
    let from = resumed_from(&s.proxy);
    assert!(
        from > 0 && from < s.layer_size,
        "resumed from {from} of {}",
        s.layer_size
    );
    assert!(target.aborted.lock().unwrap().is_empty());
}

/// A blob that arrives a byte at a time after its first half: the client ends the transfer
/// at the stall timeout and resumes it with `Range`; when every answer trickles, it gives up
/// after the policy's attempts, naming the blob and the registry.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_blob_resumes_or_fails_naming_blob_and_registry() {
    let s = setup().await;
    let c = Client::new(ClientOptions {
        stall_timeout: Duration::from_millis(500),
        ..test_options()
    });
    s.proxy.inject(
        Some("GET"),
        &s.layer,
        Fault::Trickle(Duration::from_millis(200)),
        1,
    );
    let target = CountingTarget::default();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), pull(&c, &s, &target))
        .await
        .expect("the stalled transfer was not ended")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let from = resumed_from(&s.proxy);
    // The first half, and at most the few bytes that trickled in the timeout.
    assert!(
        (s.layer_size / 2..s.layer_size / 2 + 5).contains(&from),
        "resumed from {from} of {}",
        s.layer_size
    );
    let layer: rbuild_registry::Digest = s.layer.parse().unwrap();
    assert_eq!(crate::sha256(&target.blobs.get(&layer).unwrap()), s.layer);

    s.proxy.inject(
        Some("GET"),
        &s.layer,
        Fault::Trickle(Duration::from_millis(200)),
        100,
    );
    let target = CountingTarget::default();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(30), pull(&c, &s, &target))
        .await
        .expect("the stalled transfer was not ended")
        .unwrap_err();
    // Four attempts (the test policy) of half a second each, no backoff between them.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, RegistryError::Stalled { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "blob {} from {} stalled: less than 1024 bytes arrived in 500ms",
            s.layer,
            s.proxy.host()
        )
    );
    assert!(target.aborted.lock().unwrap().contains(&s.layer));
    assert!(target.blobs.get(&layer).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn resumes_after_truncated_body() {
    let s = setup().await;
    s.proxy.inject(Some("GET"), &s.layer, Fault::Truncate, 1);
    let target = CountingTarget::default();
    pull(&client(), &s, &target).await.unwrap();
    assert_eq!(s.proxy.ranges(), [format!("bytes={}-", s.layer_size / 2)]);
    let layer: rbuild_registry::Digest = s.layer.parse().unwrap();
    assert_eq!(crate::sha256(&target.blobs.get(&layer).unwrap()), s.layer);
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_blob_is_never_committed() {
    let s = setup().await;
    s.proxy.inject(Some("GET"), &s.layer, Fault::Corrupt, 100);
    let target = CountingTarget::default();
    let err = pull(&client(), &s, &target).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("content of {} does not match its digest", s.layer)),
        "{err}"
    );
    let layer: rbuild_registry::Digest = s.layer.parse().unwrap();
    assert!(target.blobs.get(&layer).is_none());
    assert!(target.aborted.lock().unwrap().contains(&s.layer));
    assert!(!target.committed.lock().unwrap().contains(&s.layer));
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_manifest_is_rejected() {
    let s = setup().await;
    s.proxy
        .inject(Some("GET"), "/manifests/", Fault::Corrupt, 100);
    let err = client().fetch_manifest(&s.reference).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_server_times_out_then_retries_or_fails_clearly() {
    let s = setup().await;
    let c = Client::new(ClientOptions {
        read_timeout: Duration::from_millis(300),
        ..test_options()
    });
    s.proxy.inject(
        Some("GET"),
        &s.layer,
        Fault::Delay(Duration::from_secs(1)),
        1,
    );
    pull(&c, &s, &CountingTarget::default()).await.unwrap();
    assert_eq!(count(&s.proxy, "GET", &s.layer), 2);

    s.proxy.inject(
        Some("GET"),
        &s.layer,
        Fault::Delay(Duration::from_secs(1)),
        100,
    );
    let target = CountingTarget::default();
    let start = Instant::now();
    let err = pull(&c, &s, &target).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    let msg = err.to_string();
    assert!(
        msg.starts_with("request GET http://") && msg.contains(&s.layer),
        "{msg}"
    );
    assert!(std::error::Error::source(&err).is_some());
    let layer: rbuild_registry::Digest = s.layer.parse().unwrap();
    assert!(target.blobs.get(&layer).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_5xx_gives_up_naming_the_url() {
    let s = setup().await;
    s.proxy
        .inject(Some("GET"), &s.layer, Fault::Status(500, None), 100);
    let target = CountingTarget::default();
    let err = pull(&client(), &s, &target).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&s.layer), "{err}");
    // The policy allows 4 attempts in all.
    assert_eq!(count(&s.proxy, "GET", &s.layer), 4);
    assert!(target.aborted.lock().unwrap().contains(&s.layer));
}

/// A registry that redirects blob downloads to another host (as registries do to object
/// storage): the client follows, but the credentials stay with the registry.
#[tokio::test(flavor = "multi_thread")]
async fn redirect_to_another_host_drops_credentials() {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rbuild_registry::{Credential, CredentialStore, MemoryBlobs, Secret};

    let s = setup().await;
    let layer: rbuild_registry::Digest = s.layer.parse().unwrap();
    let blobs = MemoryBlobs::new();
    pull(
        &client(),
        &s,
        &crate::CountingTarget {
            blobs: blobs.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let bytes = Bytes::from(blobs.get(&layer).unwrap().to_vec());

    // "Object storage": another host name (localhost instead of 127.0.0.1), which records the
    // Authorization headers it receives.
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let storage_port = listener.local_addr().unwrap().port();
    let (seen2, bytes2) = (seen.clone(), bytes.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, bytes) = (seen2.clone(), bytes2.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    seen.lock().unwrap().push(
                        req.headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string()),
                    );
                    let body = bytes.clone();
                    async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(body))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    s.proxy.inject(
        Some("GET"),
        &s.layer,
        Fault::Redirect(format!("http://localhost:{storage_port}/blob")),
        1,
    );
    // Basic credentials for the proxy's registry name: the proxy's upstream has no auth, so
    // announce Basic through the proxy's /v2/ answer.
    s.proxy.inject(Some("GET"), "/v2/", Fault::Challenge, 1);
    let c = Client::new(ClientOptions {
        credentials: CredentialStore::anonymous().with_credential(
            &s.proxy.host(),
            Credential::Basic {
                username: "u".into(),
                password: Secret::new("p"),
            },
        ),
        ..test_options()
    });
    let target = CountingTarget::default();
    pull(&c, &s, &target).await.unwrap();
    assert_eq!(target.blobs.get(&layer).unwrap().as_slice(), &bytes[..]);
    assert_eq!(*seen.lock().unwrap(), vec![None]);
    assert!(s.proxy.authorized().iter().any(|a| a.starts_with("Basic ")));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_manifest_is_refused() {
    let s = setup().await;
    let c = Client::new(ClientOptions {
        max_manifest_size: 100,
        ..test_options()
    });
    let err = c.fetch_manifest(&s.reference).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestTooLarge { limit: 100, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("manifest {} is larger than 100 bytes", s.reference)
    );
}

/// A manifest whose layer is marked non-distributable with a URL: without the flag the layer
/// comes from the registry and the URL is never contacted; with it, from the URL.
#[tokio::test(flavor = "multi_thread")]
async fn foreign_layer_urls_need_the_flag() {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rbuild_registry::MemoryBlobs;

    let s = setup().await;
    let layer: rbuild_registry::Digest = s.layer.parse().unwrap();
    let blobs = MemoryBlobs::new();
    let image = client()
        .pull(&s.reference, &blobs, &PullOptions::default())
        .await
        .unwrap();
    let bytes = Bytes::from(blobs.get(&layer).unwrap().to_vec());

    let hits: Arc<Mutex<usize>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (hits2, bytes2) = (hits.clone(), bytes.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (hits, bytes) = (hits2.clone(), bytes2.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
                    *hits.lock().unwrap() += 1;
                    let body = bytes.clone();
                    async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(body))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
    manifest["layers"][0]["mediaType"] =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into();
    manifest["layers"][0]["urls"] = serde_json::json!([format!("http://127.0.0.1:{port}/layer")]);
    let body = serde_json::to_vec(&manifest).unwrap();
    s.proxy
        .inject(Some("GET"), "/manifests/", Fault::Replace(body.clone()), 2);
    s.proxy.clear_log();

    let target = CountingTarget::default();
    pull(&client(), &s, &target).await.unwrap();
    assert_eq!(*hits.lock().unwrap(), 0, "URL contacted without the flag");
    assert_eq!(count(&s.proxy, "GET", &s.layer), 1);

    s.proxy.clear_log();
    let target = CountingTarget::default();
    let opts = PullOptions {
        allow_foreign_layers: true,
        ..PullOptions::default()
    };
    client().pull(&s.reference, &target, &opts).await.unwrap();
    assert_eq!(*hits.lock().unwrap(), 1);
    assert_eq!(count(&s.proxy, "GET", &s.layer), 0);
    assert_eq!(target.blobs.get(&layer).unwrap().as_slice(), &bytes[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_retries_then_succeeds_or_names_the_url() {
    use rbuild_registry::{MemoryBlobs, PushImage, PushOptions};

    let s = setup().await;
    let blobs = MemoryBlobs::new();
    let image = client()
        .pull(&s.reference, &blobs, &PullOptions::default())
        .await
        .unwrap();
    let push = PushImage::from_manifest(&image.manifest).unwrap();
    let dest = Reference::parse(&format!("{}/up/retry:1", s.proxy.host())).unwrap();
    // A 503 on the upload PUT and a reset on the session start are retried.
    s.proxy
        .inject(Some("PUT"), "/blobs/uploads/", Fault::Status(503, None), 1);
    s.proxy
        .inject(Some("POST"), "/blobs/uploads/", Fault::Status(502, None), 1);
    client()
        .push(&dest, &push, &blobs, &PushOptions::default())
        .await
        .unwrap();
    assert_eq!(
        crate::skopeo_digest(&format!("{}/up/retry:1", s._registry.host())),
        image.manifest.digest.to_string()
    );

    // A registry that keeps failing: a bounded number of attempts, an error naming the URL.
    let dest = Reference::parse(&format!("{}/up/fail:1", s.proxy.host())).unwrap();
    s.proxy.clear_log();
    s.proxy.inject(
        Some("POST"),
        "/blobs/uploads/",
        Fault::Status(500, None),
        1000,
    );
    let err = client()
        .push(&dest, &push, &blobs, &PushOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Status { status: 500, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/v2/up/fail/blobs/uploads/"),
        "{err}"
    );
    assert!(count(&s.proxy, "POST", "/blobs/uploads/") <= 8);
}
