//! Registries that lie, end to end through `rbuild pull`: a manifest whose bytes do not match
//! its digest, an oversized manifest or config, a blob redirect to another host (which must not see the
//! credentials), and a token realm on another host. The registry is a small HTTP/1.1 responder
//! written here, on loopback addresses only: a real registry cannot be made to misbehave this
//! way. `limits.rs` uses it too, for registries that trickle.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use crate::support::{self, Dir, fails, ok, rbuild};
use crate::{Entry, gzip, sha256, tar};

/// A request as the responder saw it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HashMap<String, String>,
}

/// What to answer.
pub(crate) struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send this many bytes of the body at once, then the rest one byte at a time, this far
    /// apart.
    trickle: Option<(usize, Duration)>,
}

impl Response {
    pub(crate) fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            trickle: None,
        }
    }
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
    /// Sends the first `fast` bytes of the body, then one byte every `every`.
    pub(crate) fn trickle(mut self, fast: usize, every: Duration) -> Response {
        self.trickle = Some((fast, every));
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A threaded HTTP/1.1 responder on `ip` (a loopback address), one request per connection.
pub(crate) struct Server {
    pub(crate) addr: String,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub(crate) fn start(
        ip: &str,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind((ip, 0)).expect("bind loopback");
        let addr = listener.local_addr().expect("addr").to_string();
        let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, h) = (s.clone(), handler.clone());
                std::thread::spawn(move || answer(conn, &s, &*h));
            }
        });
        Server { addr, seen, stop }
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn answer(conn: TcpStream, seen: &Mutex<Vec<Request>>, handler: &Handler) {
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let req = Request {
        method,
        path,
        headers,
    };
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(req.clone());
    let resp = handler(&req);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut conn = conn;
    let _ = conn.write_all(out.as_bytes());
    if req.method == "HEAD" {
        return;
    }
    let Some((fast, every)) = resp.trickle else {
        let _ = conn.write_all(&resp.body);
        return;
    };
    let (head, tail) = resp.body.split_at(fast.min(resp.body.len()));
    if conn.write_all(head).is_err() {
        return;
    }
    for byte in tail {
        std::thread::sleep(every);
        // The client hung up: stop.
        if conn.write_all(std::slice::from_ref(byte)).is_err() {
            return;
        }
    }
}

/// A one-layer image: (manifest bytes, blobs by digest).
fn image() -> (Vec<u8>, HashMap<String, Vec<u8>>) {
    image_of(gzip(&tar(&[Entry::file("hello", b"hello\n")])))
}

/// A one-layer image of `layer`: (manifest bytes, blobs by digest).
pub(crate) fn image_of(layer: crate::Blob) -> (Vec<u8>, HashMap<String, Vec<u8>>) {
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": crate::host_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": layer.media_type, "digest": sha256(&layer.bytes), "size": layer.bytes.len()}],
    }))
    .expect("json");
    let mut blobs = HashMap::new();
    blobs.insert(sha256(&config), config);
    blobs.insert(sha256(&layer.bytes), layer.bytes);
    (manifest, blobs)
}

pub(crate) const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The blob digest a `/v2/NAME/blobs/DIGEST` path asks for.
pub(crate) fn blob_of(path: &str) -> Option<&str> {
    path.split_once("/blobs/").map(|(_, d)| d)
}

/// A docker config that holds `user:password` for `registry`.
fn docker_config(dir: &Dir, registry: &str) -> std::path::PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode("rbuild:hunter2");
    let conf = dir.mkdir("docker");
    std::fs::write(
        conf.join("config.json"),
        serde_json::to_vec(&serde_json::json!({"auths": {registry: {"auth": auth}}}))
            .expect("json"),
    )
    .expect("write docker config");
    conf
}

const BASIC: &str = "Basic cmJ1aWxkOmh1bnRlcjI=";

fn store_is_empty(root: &Path) {
    let blobs = root.join("blobs/sha256");
    let n = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "blobs were stored from a refused pull");
    assert_eq!(support::verified_blobs(root).len(), 0);
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_refused() {
    let (manifest, _) = image();
    let claimed = sha256(b"something else");
    let m = manifest.clone();
    let c = claimed.clone();
    let server = Server::start("127.0.0.1", move |req| {
        if req.path == "/v2/" {
            return Response::new(200, "{}");
        }
        if req.path.contains("/manifests/") {
            return Response::new(200, m.clone())
                .header("Content-Type", MANIFEST_TYPE)
                .header("Docker-Content-Digest", c.clone());
        }
        Response::new(404, "")
    });
    let dir = Dir::new();
    let root = dir.join("store");
    // By tag: the registry's Docker-Content-Digest does not match the bytes.
    let r = fails(
        rbuild(&root)
            .arg("pull")
            .arg(format!("{}/lying/image:latest", server.addr)),
    );
    assert!(
        r.stderr.contains(&claimed) && r.stderr.contains(&sha256(&manifest)),
        "the error names neither digest:\n{}",
        r.stderr
    );
    // By digest: the bytes are not what the reference pins.
    let r = fails(
        rbuild(&root)
            .arg("pull")
            .arg(format!("{}/lying/image@{claimed}", server.addr)),
    );
    assert!(r.stderr.contains(&claimed), "{}", r.stderr);
    store_is_empty(&root);
}

#[test]
fn an_oversized_manifest_is_refused() {
    let server = Server::start("127.0.0.1", move |req| {
        if req.path == "/v2/" {
            return Response::new(200, "{}");
        }
        if req.path.contains("/manifests/") {
            let mut body = b"{\"schemaVersion\":2,\"layers\":[".to_vec();
            body.resize(16 << 20, b' ');
            return Response::new(200, body).header("Content-Type", MANIFEST_TYPE);
        }
        Response::new(404, "")
    });
    let dir = Dir::new();
    let root = dir.join("store");
    let r = fails(
        rbuild(&root)
            .arg("pull")
            .arg(format!("{}/huge/image:latest", server.addr)),
    );
    assert!(
        r.stderr.contains("huge/image:latest") && r.stderr.contains("larger than"),
        "{}",
        r.stderr
    );
    store_is_empty(&root);
}

#[test]
fn a_blob_redirect_to_another_host_gets_no_credentials() {
    let (manifest, blobs) = image();
    let blobs = Arc::new(blobs);
    // "Object storage" on another loopback address, so another host.
    let b = blobs.clone();
    let storage = Server::start("127.0.0.2", move |req| {
        match blob_of(&req.path).and_then(|d| b.get(d)) {
            Some(bytes) => Response::new(200, bytes.clone()),
            None => Response::new(404, ""),
        }
    });
    let storage_addr = storage.addr.clone();
    let m = manifest.clone();
    let registry = Server::start("127.0.0.1", move |req| {
        if req.headers.get("authorization").map(String::as_str) != Some(BASIC) {
            return Response::new(401, "").header("WWW-Authenticate", "Basic realm=\"hostile\"");
        }
        if req.path == "/v2/" {
            return Response::new(200, "{}");
        }
        if req.path.contains("/manifests/") {
            return Response::new(200, m.clone()).header("Content-Type", MANIFEST_TYPE);
        }
        if let Some(d) = blob_of(&req.path) {
            return Response::new(307, "").header(
                "Location",
                format!("http://{storage_addr}/storage/blobs/{d}"),
            );
        }
        Response::new(404, "")
    });
    let dir = Dir::new();
    let root = dir.join("store");
    let conf = docker_config(&dir, &registry.addr);
    ok(rbuild(&root)
        .env("DOCKER_CONFIG", &conf)
        .env_remove("REGISTRY_AUTH_FILE")
        .arg("pull")
        .arg(format!("{}/redirect/image:latest", registry.addr)));
    let fetched = storage.requests();
    assert!(!fetched.is_empty(), "the redirect was not followed");
    for req in &fetched {
        assert_eq!(
            req.headers.get("authorization"),
            None,
            "credentials sent to another host: {req:?}"
        );
    }
    assert!(
        registry
            .requests()
            .iter()
            .any(|r| r.headers.get("authorization").map(String::as_str) == Some(BASIC)),
        "the registry itself never got the credentials"
    );
    let stored = support::verified_blobs(&root);
    for d in blobs.keys() {
        assert!(
            stored.contains(&d["sha256:".len()..].to_owned()),
            "{d} not stored"
        );
    }
}

#[test]
fn a_token_realm_on_another_host() {
    let (manifest, blobs) = image();
    // The token server, on another loopback host, hands out a token for the credentials.
    let tokens = Server::start("127.0.0.2", |req| {
        if req.headers.get("authorization").map(String::as_str) == Some(BASIC) {
            Response::new(200, r#"{"token":"t0ken","expires_in":300}"#)
        } else {
            Response::new(401, "")
        }
    });
    let realm = format!("http://{}/token", tokens.addr);
    let registry_for = |realm: String| {
        let (m, b) = (manifest.clone(), blobs.clone());
        Server::start("127.0.0.1", move |req| {
            if req.headers.get("authorization").map(String::as_str) != Some("Bearer t0ken") {
                return Response::new(401, "").header(
                    "WWW-Authenticate",
                    format!("Bearer realm=\"{realm}\",service=\"hostile\""),
                );
            }
            if req.path == "/v2/" {
                return Response::new(200, "{}");
            }
            if req.path.contains("/manifests/") {
                return Response::new(200, m.clone()).header("Content-Type", MANIFEST_TYPE);
            }
            match blob_of(&req.path).and_then(|d| b.get(d)) {
                Some(bytes) => Response::new(200, bytes.clone()),
                None => Response::new(404, ""),
            }
        })
    };

    // A loopback realm: the credentials go to it (as Docker sends them to the realm the
    // registry names); the registry only ever sees the token.
    let registry = registry_for(realm);
    let dir = Dir::new();
    let root = dir.join("store");
    let conf = docker_config(&dir, &registry.addr);
    ok(rbuild(&root)
        .env("DOCKER_CONFIG", &conf)
        .env_remove("REGISTRY_AUTH_FILE")
        .arg("pull")
        .arg(format!("{}/token/image:latest", registry.addr)));
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.path.contains("service=hostile"))
    );
    for req in registry.requests() {
        assert_ne!(
            req.headers.get("authorization").map(String::as_str),
            Some(BASIC),
            "the password went to the registry instead of the token server: {req:?}"
        );
    }

    // A plain-HTTP realm on a host that is not loopback: refused before any request is made
    // (`.invalid` never resolves, so nothing could leave the machine anyway).
    let registry = registry_for("http://rbuild-token.invalid/token".to_owned());
    let dir = Dir::new();
    let root = dir.join("store");
    let conf = docker_config(&dir, &registry.addr);
    let r = fails(
        rbuild(&root)
            .env("DOCKER_CONFIG", &conf)
            .env_remove("REGISTRY_AUTH_FILE")
            .arg("pull")
            .arg(format!("{}/token/image:latest", registry.addr)),
    );
    assert!(
        r.stderr
            .contains("refusing to send credentials to a plain-HTTP token server")
            && r.stderr.contains("rbuild-token.invalid"),
        "{}",
        r.stderr
    );
    store_is_empty(&root);
}

#[test]
fn a_manifest_with_a_huge_config_is_refused_before_any_blob() {
    let (manifest, _) = image();
    let mut m: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    m["config"]["size"] = serde_json::json!(1u64 << 40);
    let manifest = serde_json::to_vec(&m).expect("json");
    let server = Server::start("127.0.0.1", move |req| {
        if req.path == "/v2/" {
            return Response::new(200, "{}");
        }
        if req.path.contains("/manifests/") {
            return Response::new(200, manifest.clone()).header("Content-Type", MANIFEST_TYPE);
        }
        Response::new(404, "")
    });
    let dir = Dir::new();
    let root = dir.join("store");
    let r = fails(
        rbuild(&root)
            .arg("pull")
            .arg(format!("{}/config/image:latest", server.addr)),
    );
    assert!(
        r.stderr
            .contains("its config is 1099511627776 bytes, more than the 67108864"),
        "{}",
        r.stderr
    );
    assert!(
        !server.requests().iter().any(|r| r.path.contains("/blobs/")),
        "a blob was fetched"
    );
    store_is_empty(&root);
}
