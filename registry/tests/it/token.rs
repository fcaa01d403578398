//! Bearer token flow against docker-registry's `token` auth, with a small token server written
//! here: it checks Basic credentials and issues ES256 JWTs signed with a key generated in the
//! test (the registry trusts its certificate through `rootcertbundle`).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rbuild_registry::{
    Client, ClientOptions, Credential, CredentialStore, MemoryBlobs, PullOptions, PushImage,
    PushOptions, Reference, RegistryError, Secret,
};
use rbuild_test_support::{BusyboxLayout, PASSWORD, Registry, USER};
use rcgen::{CertificateParams, KeyPair, SigningKey as _};

use crate::test_options;

const SERVICE: &str = "rbuild-test-registry";
const ISSUER: &str = "rbuild-test-issuer";

/// Scopes of each token request, and whether it carried the right credentials.
type Issued = Arc<Mutex<Vec<(Vec<String>, bool)>>>;

struct TokenServer {
    port: u16,
    /// The `scope` parameters of every token issued, and whether credentials came along.
    issued: Issued,
    /// When set, the next token grants nothing (the registry will refuse it).
    withhold_next: Arc<std::sync::atomic::AtomicBool>,
    cert_pem: String,
}

impl TokenServer {
    async fn start(lifetime: Duration) -> Self {
        let key = Arc::new(KeyPair::generate().unwrap());
        let mut params = CertificateParams::new(vec!["token-signer".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rbuild token signer");
        let cert = params.self_signed(key.as_ref()).unwrap();
        let cert_der = STANDARD.encode(cert.der());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let issued: Issued = Arc::new(Mutex::new(Vec::new()));
        let iss = issued.clone();
        let withhold_next = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let withhold = withhold_next.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (key, cert_der, iss) = (key.clone(), cert_der.clone(), iss.clone());
                let withhold = withhold.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let empty = withhold.swap(false, std::sync::atomic::Ordering::SeqCst);
                        let (key, cert_der, iss) = (key.clone(), cert_der.clone(), iss.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let r = issue(&parts, &body, &key, &cert_der, lifetime, empty, &iss);
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            port,
            issued,
            withhold_next,
            cert_pem: cert.pem(),
        }
    }

    fn auth_yaml(&self, dir: &std::path::Path) -> String {
        let bundle = dir.join("token-signer.pem");
        std::fs::write(&bundle, &self.cert_pem).unwrap();
        format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.port,
            bundle.display()
        )
    }
}

/// The refresh token (docker's `identitytoken`) the server accepts.
const REFRESH_TOKEN: &str = "refresh-me-123";

fn issue(
    req: &hyper::http::request::Parts,
    body: &[u8],
    key: &KeyPair,
    cert_der: &str,
    lifetime: Duration,
    grant_nothing: bool,
    issued: &Mutex<Vec<(Vec<String>, bool)>>,
) -> Response<Full<Bytes>> {
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let (authed, scopes): (bool, Vec<String>) = if req.method == hyper::Method::POST {
        // OAuth2 refresh-token grant: form fields, `scope` space-separated.
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        (
            field("grant_type").as_deref() == Some("refresh_token")
                && field("refresh_token").as_deref() == Some(REFRESH_TOKEN),
            field("scope")
                .map(|s| s.split(' ').map(str::to_string).collect())
                .unwrap_or_default(),
        )
    } else {
        let url = url::Url::parse(&format!("http://x{}", req.uri)).unwrap();
        (
            req.headers
                .get("authorization")
                .is_some_and(|v| v.as_bytes() == expected.as_bytes()),
            url.query_pairs()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.into_owned())
                .collect(),
        )
    };
    issued.lock().unwrap().push((scopes.clone(), authed));
    if !authed {
        return Response::builder()
            .status(401)
            .body(Full::new(Bytes::from_static(b"bad credentials")))
            .unwrap();
    }
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter(|_| !grant_nothing)
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({
                "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()
            }))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [cert_der]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
        // The token stays valid for the registry; `expires_in` below tells the client to
        // renew it after `lifetime`.
        "iat": now - 1, "nbf": now - 1, "exp": now + 3600,
        "jti": format!("{now}-{}", issued.lock().unwrap().len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let der = key.sign(signing_input.as_bytes()).unwrap();
    let jwt = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(der_to_raw(&der))
    );
    let body = serde_json::json!({"token": jwt, "expires_in": lifetime.as_secs()});
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// An ECDSA signature from DER (`SEQUENCE { INTEGER r, INTEGER s }`) to JOSE's r || s.
fn der_to_raw(der: &[u8]) -> Vec<u8> {
    assert_eq!(der[0], 0x30);
    let mut i = if der[1] & 0x80 != 0 {
        2 + (der[1] & 0x7f) as usize
    } else {
        2
    };
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 0x02);
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

fn client_for(registry: &Registry, password: &str) -> Client {
    Client::new(ClientOptions {
        credentials: CredentialStore::anonymous().with_credential(
            &registry.host(),
            Credential::Basic {
                username: USER.into(),
                password: Secret::new(password),
            },
        ),
        ..test_options()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_per_scope_with_refresh() {
    let tokens = TokenServer::start(Duration::from_secs(1)).await;
    let scratch = tempfile::tempdir().unwrap();
    let registry = Registry::start_with_auth_config(&tokens.auth_yaml(scratch.path()));
    // skopeo does its own token dance, so the seed image comes from an independent client.
    let layout = BusyboxLayout::build();
    let mut cmd = std::process::Command::new("skopeo");
    cmd.args([
        "--insecure-policy",
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
    ])
    .arg(format!("--dest-creds={USER}:{PASSWORD}"))
    .arg(format!("oci:{}:latest", layout.path().display()))
    .arg(format!("docker://{}/src/busybox:latest", registry.host()));
    rbuild_test_support::run(&mut cmd);
    tokens.issued.lock().unwrap().clear();

    let c = client_for(&registry, PASSWORD);
    let src = Reference::parse(&format!("{}/src/busybox", registry.host())).unwrap();
    let blobs = MemoryBlobs::new();
    let image = c.pull(&src, &blobs, &PullOptions::default()).await.unwrap();
    {
        let issued = tokens.issued.lock().unwrap();
        // One token for the pull scope serves the manifest and all blobs.
        assert_eq!(
            issued
                .iter()
                .filter(|(s, _)| s == &["repository:src/busybox:pull"])
                .count(),
            1,
            "{issued:?}"
        );
    }

    // Push with a mount: the token covers push on the destination and pull on the source.
    let dest = Reference::parse(&format!("{}/dst/busybox:1", registry.host())).unwrap();
    let opts = PushOptions {
        mount_from: Some("src/busybox".into()),
        ..Default::default()
    };
    let push = PushImage::from_manifest(&image.manifest).unwrap();
    let r = c.push(&dest, &push, &blobs, &opts).await.unwrap();
    assert_eq!(r.mounted.len(), 2, "{r:?}");
    assert!(
        tokens.issued.lock().unwrap().iter().any(|(s, _)| s
            == &[
                "repository:dst/busybox:pull,push",
                "repository:src/busybox:pull"
            ]),
        "{:?}",
        tokens.issued.lock().unwrap()
    );

    // Tokens are announced to live 1 s: after that the client fetches a fresh one.
    let count = |scope: &str| {
        tokens
            .issued
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| s == &[scope])
            .count()
    };
    let pull_scope = "repository:src/busybox:pull";
    assert_eq!(count(pull_scope), 1);
    c.fetch_manifest(&src).await.unwrap();
    assert_eq!(count(pull_scope), 1, "token reused while fresh");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.fetch_manifest(&src).await.unwrap();
    assert_eq!(count(pull_scope), 2, "token renewed after expires_in");

    // A token the registry refuses (401) is dropped and a new one fetched, once.
    let fresh = client_for(&registry, PASSWORD);
    tokens
        .withhold_next
        .store(true, std::sync::atomic::Ordering::SeqCst);
    fresh.fetch_manifest(&src).await.unwrap();
    assert_eq!(count(pull_scope), 4);

    // Wrong credentials: the token server refuses, the error names the registry.
    let wrong = client_for(&registry, "nope");
    let err = wrong
        .pull(&src, &MemoryBlobs::new(), &PullOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains(&registry.host()), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_token_is_exchanged_at_the_token_server() {
    let tokens = TokenServer::start(Duration::from_secs(60)).await;
    let scratch = tempfile::tempdir().unwrap();
    let registry = Registry::start_with_auth_config(&tokens.auth_yaml(scratch.path()));
    let with = |token: &str| {
        Client::new(ClientOptions {
            credentials: CredentialStore::anonymous().with_credential(
                &registry.host(),
                Credential::IdentityToken {
                    token: Secret::new(token),
                },
            ),
            ..test_options()
        })
    };
    // Pushing a manifest-less blob needs push scope: a real write with the exchanged token.
    let blobs = MemoryBlobs::new();
    let data = b"identity token blob".to_vec();
    let digest = rbuild_registry::sha256_digest(&data);
    blobs.insert(&digest, data.clone());
    let desc = rbuild_registry::Descriptor::new(
        "application/octet-stream".into(),
        data.len() as u64,
        digest.clone(),
    );
    let dest = Reference::parse(&format!("{}/idt/blob:1", registry.host())).unwrap();
    assert_eq!(
        with(REFRESH_TOKEN)
            .push_blob(&dest, &desc, &blobs, None)
            .await
            .unwrap(),
        rbuild_registry::BlobPush::Uploaded
    );
    assert!(
        with(REFRESH_TOKEN)
            .blob_exists(&dest, &digest)
            .await
            .unwrap()
    );
    assert!(
        tokens
            .issued
            .lock()
            .unwrap()
            .iter()
            .any(|(s, authed)| *authed && s == &["repository:idt/blob:pull,push"])
    );
    let err = with("wrong").blob_exists(&dest, &digest).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
}
