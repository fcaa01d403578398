//! Plain HTTP(S) downloads for `ADD <url>`: streamed into a caller's writer (this crate
//! never touches disk), hashed on the way (sha256), retried on connection errors and 5xx
//! with backoff, checked against `--checksum` when one is given. The response's
//! `Last-Modified` becomes the file's mtime and its name comes from the URL path, as in
//! docker.

use std::io::Write;
use std::time::Duration;

use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};

/// A download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not http(s) or does not parse.
    #[error("invalid URL {url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("GET {url}: server answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The connection failed (after retries).
    #[error("GET {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// Writing the body failed.
    #[error("cannot store the body of {url}")]
    Write {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The content does not match `--checksum`.
    #[error("{url}: content digest {actual} does not match --checksum {expected}")]
    Checksum {
        /// The URL.
        url: String,
        /// The checksum asked for.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The checksum is not `sha256:<64 hex>`.
    #[error("invalid --checksum {checksum}: expected sha256:<64 hex digits>")]
    BadChecksum {
        /// As written.
        checksum: String,
    },
    /// The body is larger than the download limit.
    #[error("{url} is larger than the download limit of {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The server answered 304 Not Modified to a request without an entity tag of ours.
    #[error("GET {url}: server answered 304 Not Modified to an unconditional request")]
    UnexpectedNotModified {
        /// The URL.
        url: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up an HTTP client")]
    Setup(#[source] reqwest::Error),
}

/// How to make a download.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions<'a> {
    /// `--checksum` (`sha256:<hex>`) the content must match.
    pub checksum: Option<&'a str>,
    /// Attempts on connection errors, 5xx and 429 (at least one).
    pub attempts: u32,
    /// The most bytes the body may have.
    pub max_bytes: Option<u64>,
    /// The entity tag of a copy the caller has: sent as `If-None-Match`, and a 304 answer
    /// gives [`Outcome::NotModified`].
    pub etag: Option<&'a str>,
}

/// What a conditional download gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The body, written to the caller's writer.
    Fetched(Fetched),
    /// The server's copy is the caller's (304 for the entity tag sent); nothing was written.
    NotModified,
}

/// What a download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// `sha256:` of the content.
    pub digest: String,
    /// Bytes written.
    pub size: u64,
    /// `Last-Modified`, seconds since the epoch.
    pub last_modified: Option<i64>,
    /// The file name docker gives it: the URL path's last non-empty component
    /// (`__unnamed__` for the bare host). A `Content-Disposition` name is not used: the
    /// Dockerfile frontend names the file from the URL.
    pub file_name: String,
    /// The response's `ETag`, for a later conditional request.
    pub etag: Option<String>,
}

/// The name docker gives an ADD download: the last non-empty component of the URL path, as
/// Go's `path.Base` takes it (`https://host/dir/` gives `dir`).
pub fn file_name_of(url: &url::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.rfind(|c| !c.is_empty()).map(str::to_string))
        .map(|s| percent_decode(&s))
        .unwrap_or_else(|| "__unnamed__".into())
}

/// [`file_name_of`] for a URL as written (`__unnamed__` when it does not parse).
pub fn url_file_name(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| file_name_of(&u))
        .unwrap_or_else(|_| "__unnamed__".into())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Downloads `url` into `out`, retrying up to `attempts` times (the writer is truncated by
/// the caller's `reset` before each retry).
pub async fn fetch(
    url: &str,
    checksum: Option<&str>,
    out: &mut (dyn Write + Send),
    reset: &mut (dyn FnMut() -> std::io::Result<()> + Send),
    attempts: u32,
) -> Result<Fetched, FetchError> {
    let opts = FetchOptions {
        checksum,
        attempts,
        ..FetchOptions::default()
    };
    match fetch_with(url, &opts, out, reset).await? {
        Outcome::Fetched(f) => Ok(f),
        Outcome::NotModified => Err(FetchError::UnexpectedNotModified {
            url: url.to_string(),
        }),
    }
}

/// Downloads `url` into `out` as `opts` says: retried, bounded, checked against the
/// checksum, and conditional on the caller's entity tag. Proxies come from the environment
/// (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`); up to 10 redirects are followed.
pub async fn fetch_with(
    url: &str,
    opts: &FetchOptions<'_>,
    out: &mut (dyn Write + Send),
    reset: &mut (dyn FnMut() -> std::io::Result<()> + Send),
) -> Result<Outcome, FetchError> {
    let (checksum, attempts) = (opts.checksum, opts.attempts);
    let parsed = url::Url::parse(url).map_err(|e| FetchError::BadUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(FetchError::BadUrl {
            url: url.to_string(),
            reason: format!("scheme {} is not http or https", parsed.scheme()),
        });
    }
    let expected = match checksum {
        Some(c) => {
            let hex = c
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| FetchError::BadChecksum {
                    checksum: c.to_string(),
                })?;
            Some(format!("sha256:{}", hex.to_ascii_lowercase()))
        }
        None => None,
    };
    let client = reqwest::Client::builder()
        .user_agent(concat!("rbuild/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(FetchError::Setup)?;
    let mut last_err = None;
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            reset().map_err(|source| FetchError::Write {
                url: url.to_string(),
                source,
            })?;
        }
        match once(&client, &parsed, opts, out).await {
            Ok(None) => return Ok(Outcome::NotModified),
            Ok(Some(mut f)) => {
                if let Some(want) = &expected
                    && *want != f.digest
                {
                    return Err(FetchError::Checksum {
                        url: url.to_string(),
                        expected: want.clone(),
                        actual: f.digest,
                    });
                }
                f.file_name = file_name_of(&parsed);
                return Ok(Outcome::Fetched(f));
            }
            Err(e @ FetchError::Status { status, .. }) if status < 500 && status != 429 => {
                return Err(e);
            }
            Err(
                e @ (FetchError::Write { .. }
                | FetchError::Checksum { .. }
                | FetchError::TooLarge { .. }),
            ) => return Err(e),
            Err(e) => {
                tracing::debug!("GET {url} attempt {} failed: {e}", attempt + 1);
                last_err = Some(e);
            }
        }
    }
    Err(last_err.unwrap_or(FetchError::BadUrl {
        url: url.to_string(),
        reason: "no attempt made".into(),
    }))
}

/// One request: `None` when the server answered 304 to the entity tag sent.
async fn once(
    client: &reqwest::Client,
    url: &url::Url,
    opts: &FetchOptions<'_>,
    out: &mut (dyn Write + Send),
) -> Result<Option<Fetched>, FetchError> {
    let http = |source| FetchError::Http {
        url: url.to_string(),
        source,
    };
    let mut request = client.get(url.clone());
    if let Some(etag) = opts.etag {
        request = request.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    let resp = request.send().await.map_err(http)?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED && opts.etag.is_some() {
        return Ok(None);
    }
    let too_large = |limit| FetchError::TooLarge {
        url: url.to_string(),
        limit,
    };
    if let (Some(limit), Some(length)) = (opts.max_bytes, resp.content_length())
        && length > limit
    {
        return Err(too_large(limit));
    }
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let last_modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    let etag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(http)?;
        hash.update(&chunk);
        size += chunk.len() as u64;
        if let Some(limit) = opts.max_bytes
            && size > limit
        {
            return Err(too_large(limit));
        }
        out.write_all(&chunk).map_err(|source| FetchError::Write {
            url: url.to_string(),
            source,
        })?;
    }
    Ok(Some(Fetched {
        digest: format!("sha256:{:x}", hash.finalize()),
        size,
        last_modified,
        file_name: String::new(),
        etag,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_url_path() {
        let n = |u: &str| file_name_of(&url::Url::parse(u).unwrap());
        assert_eq!(n("https://example.com/a/b/tool.tar.gz?x=1"), "tool.tar.gz");
        assert_eq!(n("https://example.com/"), "__unnamed__");
        assert_eq!(n("https://example.com/a/dir/"), "dir");
        assert_eq!(n("https://example.com/a%20b"), "a b");
    }
}
