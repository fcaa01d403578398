//! The HTTP side: one connection pool per registry, TLS roots, plain-HTTP policy, the auth
//! handshake (Basic and Bearer tokens per repository scope) and retries with backoff.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::sync::OnceCell;
use url::Url;

use crate::credentials::{Credential, CredentialStore};
use crate::error::RegistryError;
use crate::progress::{ProgressEvent, ProgressFn};
use crate::reference::api_host;

/// What a download must receive within [`ClientOptions::stall_timeout`] not to be stalled.
pub const STALL_PROGRESS_BYTES: u64 = 1024;

/// How failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub base_delay: Duration,
    /// Upper bound of the computed delay.
    pub max_delay: Duration,
    /// Upper bound of a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry `attempt` (from 1): doubling from `base_delay`, at most
    /// `max_delay`.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Settings of a [`Client`]; `ClientOptions::default()` reads credentials from the
/// environment and uses the system's CA roots.
#[derive(Clone)]
pub struct ClientOptions {
    /// Where credentials come from.
    pub credentials: CredentialStore,
    /// PEM files with extra CA certificates trusted for every registry.
    pub ca_files: Vec<PathBuf>,
    /// `certs.d`-style directories: `DIR/HOST[:PORT]/*.crt` are trusted for that registry.
    pub certs_dirs: Vec<PathBuf>,
    /// Registries (`host[:port]`) spoken to over plain HTTP. Loopback registries fall back to
    /// plain HTTP on their own when they do not speak TLS.
    pub insecure_registries: Vec<String>,
    /// Retries of failed requests and transfers.
    pub retry: RetryPolicy,
    /// Timeout for establishing a connection.
    pub connect_timeout: Duration,
    /// Timeout for each read from a connection, and for the answer to a request.
    pub read_timeout: Duration,
    /// A blob or manifest download that receives less than [`STALL_PROGRESS_BYTES`] in this
    /// long is stalled (a connection that stopped, or a registry that trickles): it ends with
    /// [`RegistryError::Stalled`], and a blob then resumes with `Range`, up to
    /// [`RetryPolicy::max_attempts`] times in all, without waiting further.
    pub stall_timeout: Duration,
    /// Blobs fetched at the same time.
    pub max_concurrent_downloads: usize,
    /// Blobs uploaded at the same time.
    pub max_concurrent_uploads: usize,
    /// Blobs at least this large are uploaded in chunks (PATCH); smaller ones in one PUT.
    pub chunked_upload_threshold: u64,
    /// Size of one upload chunk.
    pub chunk_size: u64,
    /// Largest manifest or index accepted.
    pub max_manifest_size: usize,
    /// Receives transfer progress.
    pub progress: Option<ProgressFn>,
    /// The `User-Agent` header.
    pub user_agent: String,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("credentials", &self.credentials)
            .field("ca_files", &self.ca_files)
            .field("certs_dirs", &self.certs_dirs)
            .field("insecure_registries", &self.insecure_registries)
            .field("retry", &self.retry)
            .field("stall_timeout", &self.stall_timeout)
            .field("max_concurrent_downloads", &self.max_concurrent_downloads)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .field("chunked_upload_threshold", &self.chunked_upload_threshold)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            credentials: CredentialStore::from_env(),
            ca_files: Vec::new(),
            certs_dirs: vec![
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ],
            insecure_registries: Vec::new(),
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(30),
            max_concurrent_downloads: 4,
            max_concurrent_uploads: 4,
            chunked_upload_threshold: 64 << 20,
            chunk_size: 16 << 20,
            max_manifest_size: 4 << 20,
            progress: None,
            user_agent: concat!("rbuild/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// An OCI distribution client. Cheap to clone; clones share connections and tokens.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) opts: ClientOptions,
    hosts: Mutex<HashMap<String, Arc<OnceCell<Arc<Host>>>>>,
}

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    None,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Token {
    value: String,
    expires: Instant,
}

/// One registry: its base URL, connection pool, credential and tokens.
pub(crate) struct Host {
    pub(crate) registry: String,
    pub(crate) base: Url,
    pub(crate) http: reqwest::Client,
    /// A client without the read timeout, for streamed uploads (made on first use): reqwest's
    /// read timeout runs from the start of a request to its response, so it would end any
    /// upload that streams for longer; those watch for stalls themselves.
    stream_http: std::sync::OnceLock<reqwest::Client>,
    credential: Option<Credential>,
    challenge: Mutex<Challenge>,
    tokens: Mutex<HashMap<String, Token>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("registry", &self.registry)
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// Repository access a request needs, for token scopes (`repository:NAME:pull,push`).
#[derive(Debug, Clone)]
pub(crate) struct Scopes(pub(crate) Vec<String>);

impl Scopes {
    pub(crate) fn pull(repo: &str) -> Self {
        Self(vec![format!("repository:{repo}:pull")])
    }
    pub(crate) fn push(repo: &str) -> Self {
        Self(vec![format!("repository:{repo}:pull,push")])
    }
    pub(crate) fn and_pull(mut self, repo: &str) -> Self {
        self.0.push(format!("repository:{repo}:pull"));
        self
    }
    fn key(&self) -> String {
        self.0.join(" ")
    }
}

/// Whether a registry name (`host[:port]`) is on the loopback interface.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    /// A client with the given options.
    pub fn new(opts: ClientOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                opts,
                hosts: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    pub(crate) fn emit(&self, event: ProgressEvent) {
        if let Some(p) = &self.inner.opts.progress {
            p(&event);
        }
    }

    /// Checks that the registry answers its API root (`/v2/`) with the configured credentials,
    /// as `login` does. Anonymous registries pass too.
    pub async fn check_login(&self, registry: &str) -> Result<(), RegistryError> {
        let host = self.host(registry).await?;
        let url = host.url("/v2/")?;
        let resp = self
            .send(
                &host,
                &Scopes(Vec::new()),
                Method::GET,
                &url,
                "the registry API",
                Ok,
            )
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(status_error(Method::GET, &url, resp).await)
        }
    }

    /// The set-up state of a registry, made on first use (TLS, scheme, auth challenge).
    pub(crate) async fn host(&self, registry: &str) -> Result<Arc<Host>, RegistryError> {
        let cell = {
            let mut hosts = self.inner.hosts.lock().unwrap_or_else(|e| e.into_inner());
            hosts.entry(registry.to_string()).or_default().clone()
        };
        cell.get_or_try_init(|| self.connect(registry))
            .await
            .cloned()
    }

    async fn connect(&self, registry: &str) -> Result<Arc<Host>, RegistryError> {
        let opts = &self.inner.opts;
        let http = self.build_http(registry, true)?;
        let credential = {
            let store = opts.credentials.clone();
            let reg = registry.to_string();
            tokio::task::spawn_blocking(move || store.get(&reg))
                .await
                .expect("credential lookup does not panic")?
        };
        let api = api_host(registry);
        let insecure = opts.insecure_registries.iter().any(|r| r == registry);
        let mk = |scheme: &str| -> Result<Url, RegistryError> {
            Url::parse(&format!("{scheme}://{api}/")).map_err(|_| RegistryError::BadUrl {
                registry: registry.to_string(),
                url: format!("{scheme}://{api}/"),
            })
        };
        let candidates = if insecure {
            vec![mk("http")?]
        } else if is_loopback_registry(registry) {
            vec![mk("https")?, mk("http")?]
        } else {
            vec![mk("https")?]
        };
        let mut first_err = None;
        for (i, base) in candidates.into_iter().enumerate() {
            let ping = base.join("v2/").expect("static path joins");
            match http.get(ping.clone()).send().await {
                // A plain-HTTP fallback must look like a registry; a TLS server answering 400
                // to plain HTTP means the TLS error above is the real problem.
                Ok(resp)
                    if i > 0
                        && !matches!(resp.status(), StatusCode::OK | StatusCode::UNAUTHORIZED) => {}
                Ok(resp) => {
                    let challenge = parse_challenge(resp.headers().get(WWW_AUTHENTICATE));
                    tracing::debug!(registry, base = %base, ?challenge, "registry set up");
                    return Ok(Arc::new(Host {
                        registry: registry.to_string(),
                        base,
                        http,
                        stream_http: std::sync::OnceLock::new(),
                        credential,
                        challenge: Mutex::new(challenge),
                        tokens: Mutex::new(HashMap::new()),
                    }));
                }
                Err(source) => {
                    tracing::debug!(registry, url = %ping, error = %source, "ping failed");
                    if first_err.is_none() {
                        first_err = Some(RegistryError::Http {
                            method: "GET".into(),
                            url: ping.to_string(),
                            source,
                        });
                    }
                }
            }
        }
        Err(first_err.unwrap_or_else(|| RegistryError::BadUrl {
            registry: registry.to_string(),
            url: format!("{api}/v2/"),
        }))
    }

    /// The client for streamed uploads to `host` (no read timeout).
    pub(crate) fn stream_http<'h>(
        &self,
        host: &'h Host,
    ) -> Result<&'h reqwest::Client, RegistryError> {
        if let Some(c) = host.stream_http.get() {
            return Ok(c);
        }
        let c = self.build_http(&host.registry, false)?;
        Ok(host.stream_http.get_or_init(|| c))
    }

    fn build_http(
        &self,
        registry: &str,
        read_timeout: bool,
    ) -> Result<reqwest::Client, RegistryError> {
        let opts = &self.inner.opts;
        let mut b = reqwest::Client::builder()
            .user_agent(&opts.user_agent)
            .connect_timeout(opts.connect_timeout);
        if read_timeout {
            b = b.read_timeout(opts.read_timeout);
        }
        let mut b = b.pool_max_idle_per_host(
            opts.max_concurrent_downloads
                .max(opts.max_concurrent_uploads)
                + 2,
        );
        let mut pems: Vec<PathBuf> = opts.ca_files.clone();
        for dir in &opts.certs_dirs {
            let host_dir = dir.join(registry);
            if let Ok(entries) = std::fs::read_dir(&host_dir) {
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                    .collect();
                found.sort();
                pems.extend(found);
            }
        }
        for path in pems {
            let bytes = std::fs::read(&path).map_err(|e| RegistryError::Certificate {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&bytes).map_err(|e| {
                RegistryError::Certificate {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(RegistryError::Certificate {
                    path,
                    message: "no PEM certificate in the file".into(),
                });
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        b.build().map_err(|source| RegistryError::ClientSetup {
            registry: registry.to_string(),
            source,
        })
    }

    /// Sends a request with auth and retries. `build` adds headers and a body to the request
    /// (it is called again for every attempt). Returns any response that is not 401, 429 or
    /// 5xx (or the last one of those when attempts run out).
    pub(crate) async fn send(
        &self,
        host: &Host,
        scopes: &Scopes,
        method: Method,
        url: &Url,
        what: &str,
        mut build: impl FnMut(RequestBuilder) -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let policy = &self.inner.opts.retry;
        let same_origin = url.origin() == host.base.origin();
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let mut req = host.http.request(method.clone(), url.clone());
            if same_origin {
                if let Some(auth) = self.authorization(host, scopes).await? {
                    req = req.header(AUTHORIZATION, auth);
                }
            }
            let req = build(req)?;
            let result = req.send().await;
            let retry_after = match result {
                Err(source) => {
                    let err = RegistryError::Http {
                        method: method.to_string(),
                        url: url.to_string(),
                        source,
                    };
                    if attempt >= policy.max_attempts || !transient_reqwest(&err) {
                        return Err(err);
                    }
                    None
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED && same_origin {
                        let challenge = parse_challenge(resp.headers().get(WWW_AUTHENTICATE));
                        if reauthenticated || challenge == Challenge::None {
                            return Err(RegistryError::Unauthorized {
                                registry: host.registry.clone(),
                                what: what.to_string(),
                            });
                        }
                        // The token expired or lacks a scope, or the registry now wants auth:
                        // forget cached tokens and try once more.
                        reauthenticated = true;
                        *host.challenge.lock().unwrap_or_else(|e| e.into_inner()) = challenge;
                        host.tokens
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&scopes.key());
                        attempt -= 1;
                        continue;
                    }
                    if !(status == StatusCode::TOO_MANY_REQUESTS
                        || matches!(status.as_u16(), 500 | 502 | 503 | 504))
                        || attempt >= policy.max_attempts
                    {
                        return Ok(resp);
                    }
                    parse_retry_after(resp.headers().get(RETRY_AFTER))
                }
            };
            let delay = retry_after
                .map(|d| d.min(policy.max_retry_after))
                .unwrap_or_else(|| policy.delay(attempt));
            tracing::debug!(%method, %url, attempt, ?delay, "retrying");
            self.emit(ProgressEvent::Retry {
                what: what.to_string(),
                attempt,
                delay,
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// The `Authorization` value for a request needing `scopes`, fetching a token if needed.
    pub(crate) async fn authorization(
        &self,
        host: &Host,
        scopes: &Scopes,
    ) -> Result<Option<HeaderValue>, RegistryError> {
        let challenge = host
            .challenge
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match challenge {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(match &host.credential {
                Some(Credential::Basic { username, password }) => {
                    Some(basic_header(username, password.expose()))
                }
                _ => None,
            }),
            Challenge::Bearer { realm, service } => {
                let key = scopes.key();
                {
                    let tokens = host.tokens.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(t) = tokens.get(&key) {
                        if t.expires > Instant::now() {
                            return Ok(Some(bearer_header(&t.value)));
                        }
                    }
                }
                let token = self
                    .fetch_token(host, &realm, service.as_deref(), scopes)
                    .await?;
                let header = bearer_header(&token.value);
                host.tokens
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, token);
                Ok(Some(header))
            }
        }
    }

    async fn fetch_token(
        &self,
        host: &Host,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
    ) -> Result<Token, RegistryError> {
        let terr = |message: String| RegistryError::Token {
            registry: host.registry.clone(),
            realm: realm.to_string(),
            message,
        };
        let mut url = Url::parse(realm).map_err(|_| RegistryError::BadUrl {
            registry: host.registry.clone(),
            url: realm.to_string(),
        })?;
        if url.scheme() != "https" && !is_loopback_registry(url.host_str().unwrap_or_default()) {
            let realm_host = url.host_str().unwrap_or_default().to_string();
            if !self.inner.opts.insecure_registries.contains(&realm_host) {
                return Err(terr(
                    "refusing to send credentials to a plain-HTTP token server".into(),
                ));
            }
        }
        let resp = match &host.credential {
            Some(Credential::IdentityToken { token }) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("refresh_token", token.expose())
                    .append_pair("client_id", "rbuild");
                if let Some(s) = service {
                    form.append_pair("service", s);
                }
                if !scopes.0.is_empty() {
                    form.append_pair("scope", &scopes.key());
                }
                host.http
                    .post(url.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form.finish())
                    .send()
                    .await
            }
            cred => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in &scopes.0 {
                        q.append_pair("scope", s);
                    }
                    if let Some(Credential::Basic { username, .. }) = cred {
                        q.append_pair("account", username);
                    }
                }
                let mut req = host.http.get(url.clone());
                if let Some(Credential::Basic { username, password }) = cred {
                    req = req.header(AUTHORIZATION, basic_header(username, password.expose()));
                }
                req.send().await
            }
        };
        let resp = resp.map_err(|e| terr(format!("request failed: {e}")))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: host.registry.clone(),
                what: format!("a token for {}", scopes.key()),
            });
        }
        if !status.is_success() {
            return Err(terr(format!("returned {status}")));
        }
        #[derive(serde::Deserialize)]
        struct Reply {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| terr(format!("cannot read reply: {e}")))?;
        let reply: Reply =
            serde_json::from_slice(&bytes).map_err(|_| terr("reply is not token JSON".into()))?;
        let value = reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| terr("reply has no token".into()))?;
        // The spec's default lifetime is 60 s; renew a little before the token expires.
        let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(60));
        let margin = (lifetime / 2).min(Duration::from_secs(5));
        Ok(Token {
            value,
            expires: Instant::now() + lifetime - margin,
        })
    }
}

impl Host {
    /// A URL on this registry from an absolute path (`/v2/...`).
    pub(crate) fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|_| RegistryError::BadUrl {
            registry: self.registry.clone(),
            url: path.to_string(),
        })
    }

    /// Resolves a `Location` header value against this registry.
    pub(crate) fn location(&self, resp: &Response) -> Result<Url, RegistryError> {
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::BadUrl {
                registry: self.registry.clone(),
                url: "<missing Location header>".into(),
            })?;
        resp.url().join(loc).map_err(|_| RegistryError::BadUrl {
            registry: self.registry.clone(),
            url: loc.to_string(),
        })
    }
}

fn transient_reqwest(err: &RegistryError) -> bool {
    match err {
        RegistryError::Http { source, .. } => {
            source.is_connect() || source.is_timeout() || source.is_request() || source.is_body()
        }
        _ => false,
    }
}

pub(crate) fn transient_error(err: &RegistryError) -> bool {
    transient_reqwest(err) || err.is_transient()
}

/// Turns an unexpected response into an error carrying the start of its body.
pub(crate) async fn status_error(method: Method, url: &Url, resp: Response) -> RegistryError {
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let mut body: String = body.chars().take(300).collect();
    body = body.trim().to_string();
    RegistryError::Status {
        method: method.to_string(),
        url: url.to_string(),
        status,
        body,
    }
}

fn basic_header(username: &str, password: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!(
        "Basic {}",
        BASE64.encode(format!("{username}:{password}"))
    ))
    .expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}

fn bearer_header(token: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

fn parse_retry_after(v: Option<&HeaderValue>) -> Option<Duration> {
    let s = v?.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(s).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Parses `WWW-Authenticate` (`Bearer realm="...",service="...",scope="..."` or `Basic ...`).
pub(crate) fn parse_challenge(v: Option<&HeaderValue>) -> Challenge {
    let Some(s) = v.and_then(|v| v.to_str().ok()) else {
        return Challenge::None;
    };
    let s = s.trim();
    let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Challenge::Basic;
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Challenge::None;
    }
    let params = parse_auth_params(rest);
    match params.get("realm") {
        Some(realm) => Challenge::Bearer {
            realm: realm.clone(),
            service: params.get("service").cloned(),
        },
        None => Challenge::None,
    }
}

fn parse_auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let h = HeaderValue::from_static(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            parse_challenge(Some(&h)),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            }
        );
        let h = HeaderValue::from_static(r#"Basic realm="Registry Realm""#);
        assert_eq!(parse_challenge(Some(&h)), Challenge::Basic);
        assert_eq!(parse_challenge(None), Challenge::None);
    }

    #[test]
    fn retry_after_and_backoff() {
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("3"))),
            Some(Duration::from_secs(3))
        );
        let past = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(Some(&past)), Some(Duration::ZERO));
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(350));
    }

    #[test]
    fn loopback_registries() {
        assert!(is_loopback_registry("localhost:5000"));
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("127.1.2.3"));
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("registry.example:5000"));
        assert!(!is_loopback_registry("10.0.0.1:5000"));
    }
}
