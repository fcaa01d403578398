//! A fault-injecting HTTP proxy between the client and the real registry. It forwards every
//! request, records (method, path), and applies the first matching fault rule.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What to do to a matching response.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status (and `Retry-After` seconds) without forwarding.
    Status(u16, Option<u64>),
    /// Send the headers with the full Content-Length, half the body, then break the connection.
    ResetMidBody,
    /// Send half the body, then the rest one byte at a time, this far apart.
    Trickle(Duration),
    /// Send half the body without Content-Length and end cleanly.
    Truncate,
    /// Flip one byte of the body (same length).
    Corrupt,
    /// Wait this long before answering.
    Delay(Duration),
    /// Forward, then send these bytes as the body instead (without `Docker-Content-Digest`).
    Replace(Vec<u8>),
    /// Answer 307 with this Location without forwarding.
    Redirect(String),
    /// Answer 401 with a Basic challenge unless the request carries Authorization (forwarded
    /// otherwise).
    Challenge,
}

#[derive(Debug, Clone)]
struct Rule {
    method: Option<String>,
    path_contains: String,
    fault: Fault,
    times: usize,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    log: Vec<(String, String)>,
    ranges: Vec<String>,
    authorized: Vec<String>,
}

/// A running proxy; stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct Proxy {
    state: Arc<Mutex<State>>,
    port: u16,
}

impl Proxy {
    /// Starts a proxy forwarding to `upstream` (`127.0.0.1:PORT`, plain HTTP).
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("proxy client");
        let upstream = upstream.to_string();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        handle(st.clone(), client.clone(), upstream.clone(), port, req)
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { state, port }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to the next `times` requests whose path contains `path_contains`
    /// (and whose method is `method`, if given).
    pub fn inject(&self, method: Option<&str>, path_contains: &str, fault: Fault, times: usize) {
        self.state.lock().unwrap().rules.push(Rule {
            method: method.map(str::to_string),
            path_contains: path_contains.to_string(),
            fault,
            times,
        });
    }

    /// Requests seen so far, as (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().log.clone()
    }

    /// `Range` headers seen so far.
    pub fn ranges(&self) -> Vec<String> {
        self.state.lock().unwrap().ranges.clone()
    }

    /// `Authorization` headers seen so far.
    pub fn authorized(&self) -> Vec<String> {
        self.state.lock().unwrap().authorized.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(b: Bytes) -> Body {
    http_body_util::Full::new(b)
        .map_err(|never| match never {})
        .boxed()
}

async fn handle(
    state: Arc<Mutex<State>>,
    client: reqwest::Client,
    upstream: String,
    port: u16,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let fault = {
        let mut st = state.lock().unwrap();
        st.log.push((method.clone(), path.clone()));
        if let Some(r) = req.headers().get("range").and_then(|v| v.to_str().ok()) {
            st.ranges.push(r.to_string());
        }
        if let Some(a) = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            st.authorized.push(a.to_string());
        }
        let mut found = None;
        for r in st.rules.iter_mut() {
            if r.times > 0
                && path.contains(&r.path_contains)
                && r.method.as_deref().is_none_or(|m| m == method)
            {
                r.times -= 1;
                found = Some(r.fault.clone());
                break;
            }
        }
        found
    };
    if let Some(Fault::Status(code, retry_after)) = &fault {
        let mut b = Response::builder().status(*code);
        if let Some(s) = retry_after {
            b = b.header("retry-after", s.to_string());
        }
        return Ok(b.body(full(Bytes::from_static(b"injected fault"))).unwrap());
    }
    if let Some(Fault::Redirect(to)) = &fault {
        return Ok(Response::builder()
            .status(307)
            .header("location", to.as_str())
            .body(full(Bytes::new()))
            .unwrap());
    }
    if matches!(fault, Some(Fault::Challenge)) && !req.headers().contains_key("authorization") {
        return Ok(Response::builder()
            .status(401)
            .header("www-authenticate", "Basic realm=\"test\"")
            .body(full(Bytes::new()))
            .unwrap());
    }
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let url = format!("http://{upstream}{path_q}");
    let mut fwd = client.request(parts.method.clone(), &url);
    for (k, v) in &parts.headers {
        if k != "host" {
            fwd = fwd.header(k, v);
        }
    }
    let resp = match fwd.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            return Ok(Response::builder()
                .status(502)
                .body(full(Bytes::from(e.to_string())))
                .unwrap());
        }
    };
    let status = resp.status();
    let mut out = Response::builder().status(status.as_u16());
    for (k, v) in resp.headers() {
        if k == "location" {
            let loc = v
                .to_str()
                .unwrap_or_default()
                .replace(&upstream, &format!("127.0.0.1:{port}"));
            out = out.header(k, loc);
        } else if k != "transfer-encoding" && k != "connection" {
            if matches!(fault, Some(Fault::Truncate)) && k == "content-length" {
                continue;
            }
            if matches!(fault, Some(Fault::Replace(_)))
                && (k == "content-length" || k == "docker-content-digest")
            {
                continue;
            }
            out = out.header(k, v);
        }
    }
    let bytes = resp.bytes().await.unwrap_or_default();
    let body = match fault {
        Some(Fault::ResetMidBody) => {
            let half = bytes.slice(..bytes.len() / 2);
            let s = futures_util::stream::iter(vec![
                Ok(Frame::data(half)),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected reset",
                )),
            ]);
            StreamBody::new(s).boxed()
        }
        Some(Fault::Trickle(every)) => {
            let half = bytes.len() / 2;
            let head = futures_util::stream::iter([Ok(Frame::data(bytes.slice(..half)))]);
            let tail = futures_util::stream::unfold(half, move |at| {
                let bytes = bytes.clone();
                async move {
                    if at >= bytes.len() {
                        return None;
                    }
                    tokio::time::sleep(every).await;
                    Some((Ok(Frame::data(bytes.slice(at..at + 1))), at + 1))
                }
            });
            StreamBody::new(futures_util::StreamExt::chain(head, tail)).boxed()
        }
        Some(Fault::Truncate) => full(bytes.slice(..bytes.len() / 2)),
        Some(Fault::Replace(b)) => full(Bytes::from(b)),
        Some(Fault::Corrupt) => {
            let mut v = bytes.to_vec();
            let mid = v.len() / 2;
            if let Some(b) = v.get_mut(mid) {
                *b ^= 0xff;
            }
            full(Bytes::from(v))
        }
        _ => full(bytes),
    };
    Ok(out.body(body).unwrap())
}
