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
    /// The HTTP client could not be set up.
    #[error("cannot set up an HTTP client")]
    Setup(#[source] reqwest::Error),
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
    /// The file name docker gives it: the URL path's last component (`__unnamed__` when the
    /// path ends in `/`).
    pub file_name: String,
}

/// The name docker gives an ADD download: the last non-empty component of the URL path.
pub fn file_name_of(url: &url::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(&s))
        .unwrap_or_else(|| "__unnamed__".into())
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
        match once(&client, &parsed, out).await {
            Ok(mut f) => {
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
                return Ok(f);
            }
            Err(e @ FetchError::Status { status, .. }) if status < 500 && status != 429 => {
                return Err(e);
            }
            Err(e @ (FetchError::Write { .. } | FetchError::Checksum { .. })) => return Err(e),
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

async fn once(
    client: &reqwest::Client,
    url: &url::Url,
    out: &mut (dyn Write + Send),
) -> Result<Fetched, FetchError> {
    let http = |source| FetchError::Http {
        url: url.to_string(),
        source,
    };
    let resp = client.get(url.clone()).send().await.map_err(http)?;
    let status = resp.status();
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
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(http)?;
        hash.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).map_err(|source| FetchError::Write {
            url: url.to_string(),
            source,
        })?;
    }
    Ok(Fetched {
        digest: format!("sha256:{:x}", hash.finalize()),
        size,
        last_modified,
        file_name: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_url_path() {
        let n = |u: &str| file_name_of(&url::Url::parse(u).unwrap());
        assert_eq!(n("https://example.com/a/b/tool.tar.gz?x=1"), "tool.tar.gz");
        assert_eq!(n("https://example.com/"), "__unnamed__");
        assert_eq!(n("https://example.com/a%20b"), "a b");
    }
}
