//! Push: HEAD each blob first, mount from another repository when possible, upload the rest
//! (one PUT for small blobs, PATCH chunks for large ones) in parallel, then the manifests and
//! the index.

use std::io::Read;
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt, stream};
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{Body, Method, StatusCode};
use url::Url;

use crate::blob::BlobSource;
use crate::client::{Client, Host, Scopes, status_error, transient_error};
use crate::error::RegistryError;
use crate::progress::{ProgressEvent, ProgressFn};
use crate::pull::{FetchedManifest, sha256_digest};
use crate::reference::Reference;

const READ_CHUNK: usize = 256 << 10;

/// One image manifest to push, with the blobs it refers to.
#[derive(Debug, Clone)]
pub struct PushManifest {
    /// Its media type (OCI or Docker v2 schema 2 manifest).
    pub media_type: String,
    /// The exact bytes to upload.
    pub bytes: Vec<u8>,
    /// Config and layer descriptors, read from the manifest.
    pub blobs: Vec<Descriptor>,
}

impl PushManifest {
    /// Reads the blob descriptors from manifest bytes.
    pub fn from_bytes(media_type: &str, bytes: Vec<u8>) -> Result<Self, RegistryError> {
        let m: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::InvalidManifest {
                reference: sha256_digest(&bytes).to_string(),
                message: e.to_string(),
            })?;
        let mut blobs = vec![m.config().clone()];
        blobs.extend(m.layers().iter().cloned());
        Ok(Self {
            media_type: media_type.to_string(),
            bytes,
            blobs,
        })
    }

    /// The manifest's digest.
    pub fn digest(&self) -> Digest {
        sha256_digest(&self.bytes)
    }
}

/// What to push: one manifest, or an index with the manifests it lists.
#[derive(Debug, Clone)]
pub struct PushImage {
    /// Image manifests (all of those an index lists, or exactly one).
    pub manifests: Vec<PushManifest>,
    /// The index (media type, bytes), if the image has one.
    pub index: Option<(String, Vec<u8>)>,
}

impl PushImage {
    /// A single-manifest image.
    pub fn single(manifest: PushManifest) -> Self {
        Self {
            manifests: vec![manifest],
            index: None,
        }
    }

    /// An index and its manifests; every manifest the index lists must be given.
    pub fn with_index(
        media_type: &str,
        index: Vec<u8>,
        manifests: Vec<PushManifest>,
    ) -> Result<Self, RegistryError> {
        let parsed: ImageIndex =
            serde_json::from_slice(&index).map_err(|e| RegistryError::InvalidManifest {
                reference: sha256_digest(&index).to_string(),
                message: e.to_string(),
            })?;
        for entry in parsed.manifests() {
            if !manifests.iter().any(|m| m.digest() == *entry.digest()) {
                return Err(RegistryError::InvalidManifest {
                    reference: sha256_digest(&index).to_string(),
                    message: format!("index lists {} but it was not given", entry.digest()),
                });
            }
        }
        Ok(Self {
            manifests,
            index: Some((media_type.to_string(), index)),
        })
    }

    /// The image manifest of a pull (its index is not pushed: only one platform was pulled).
    pub fn from_manifest(m: &FetchedManifest) -> Result<Self, RegistryError> {
        Ok(Self::single(PushManifest::from_bytes(
            &m.media_type,
            m.bytes.clone(),
        )?))
    }

    /// The digest of what the tag will point at.
    pub fn digest(&self) -> Digest {
        match &self.index {
            Some((_, b)) => sha256_digest(b),
            None => self.manifests[0].digest(),
        }
    }
}

/// A blob handed to `Client::push_blobs_as_ready`.
#[derive(Debug)]
pub enum ReadyBlob {
    /// Complete in the blob source.
    Stored(Descriptor),
    /// Still being written: its bytes in order as they are produced, then its descriptor once
    /// the source holds all of it (the descriptor's sender dropped: the blob was abandoned).
    Streaming {
        /// The bytes, in order; the channel closes when the writer is done.
        bytes: tokio::sync::mpsc::Receiver<Vec<u8>>,
        /// The finished blob.
        done: tokio::sync::oneshot::Receiver<Descriptor>,
    },
}

/// What `push` does besides the defaults.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// A repository on the same registry that holds the blobs (mount them from there).
    pub mount_from: Option<String>,
    /// Blobs this push already sent to the destination repository (with `push_blobs_as_ready`
    /// while they were being produced): neither checked nor sent again, and reported with
    /// what happened to them.
    pub pushed: Vec<(Digest, BlobPush)>,
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResult {
    /// The digest the destination tag now points at.
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: Vec<Digest>,
    /// Blobs mounted from another repository.
    pub mounted: Vec<Digest>,
    /// Blobs the registry already had.
    pub existing: Vec<Digest>,
    /// Whether any manifest or the index was uploaded.
    pub manifest_uploaded: bool,
}

/// What pushing one blob did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The repository had it.
    Existed,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Its bytes were uploaded.
    Uploaded,
}

impl Client {
    /// Pushes an image to `dest`, reading blobs from `source`.
    pub async fn push(
        &self,
        dest: &Reference,
        image: &PushImage,
        source: &dyn BlobSource,
        opts: &PushOptions,
    ) -> Result<PushResult, RegistryError> {
        let host = self.host(dest.registry()).await?;
        let mut blobs: Vec<&Descriptor> = Vec::new();
        for m in &image.manifests {
            for b in &m.blobs {
                if !blobs.iter().any(|x| x.digest() == b.digest()) {
                    blobs.push(b);
                }
            }
        }
        let mount_from = opts
            .mount_from
            .as_deref()
            .filter(|from| *from != dest.repository());
        blobs.retain(|b| !opts.pushed.iter().any(|(d, _)| d == b.digest()));
        let limit = self.inner.opts.max_concurrent_uploads.max(1);
        let mut outcomes: Vec<(Digest, BlobPush)> = stream::iter(blobs.into_iter().map(|desc| {
            let host = &host;
            async move {
                let o = self
                    .push_blob_to(host, dest.repository(), desc, source, mount_from)
                    .await?;
                Ok::<_, RegistryError>((desc.digest().clone(), o))
            }
        }))
        .buffer_unordered(limit)
        .try_collect()
        .await?;
        outcomes.extend(opts.pushed.iter().cloned());
        let mut result = PushResult {
            digest: image.digest(),
            uploaded: Vec::new(),
            mounted: Vec::new(),
            existing: Vec::new(),
            manifest_uploaded: false,
        };
        for (d, o) in outcomes {
            match o {
                BlobPush::Existed => result.existing.push(d),
                BlobPush::Mounted => result.mounted.push(d),
                BlobPush::Uploaded => result.uploaded.push(d),
            }
        }
        match &image.index {
            None => {
                let m = &image.manifests[0];
                result.manifest_uploaded = self
                    .put_manifest_if_changed(&host, dest, &m.media_type, &m.bytes)
                    .await?;
            }
            Some((media_type, bytes)) => {
                for m in &image.manifests {
                    let pinned = dest.with_digest(m.digest());
                    result.manifest_uploaded |= self
                        .put_manifest_if_changed(&host, &pinned, &m.media_type, &m.bytes)
                        .await?;
                }
                result.manifest_uploaded |= self
                    .put_manifest_if_changed(&host, dest, media_type, bytes)
                    .await?;
            }
        }
        Ok(result)
    }

    /// Uploads (or mounts) one blob unless the repository has it.
    pub async fn push_blob(
        &self,
        dest: &Reference,
        descriptor: &Descriptor,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
    ) -> Result<BlobPush, RegistryError> {
        let host = self.host(dest.registry()).await?;
        self.push_blob_to(&host, dest.repository(), descriptor, source, mount_from)
            .await
    }

    /// Pushes blobs to `dest`'s repository as they arrive on `ready` (while the sender is
    /// still producing the next ones), up to `max_concurrent_uploads` at a time, until the
    /// sender is dropped. Stops at the first failure. What it returns goes to
    /// `PushOptions::pushed` of the `push` that ends with the manifest.
    pub async fn push_blobs_as_ready(
        &self,
        dest: &Reference,
        ready: tokio::sync::mpsc::UnboundedReceiver<ReadyBlob>,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
    ) -> Result<Vec<(Digest, BlobPush)>, RegistryError> {
        let host = self.host(dest.registry()).await?;
        let mount_from = mount_from.filter(|from| *from != dest.repository());
        let limit = self.inner.opts.max_concurrent_uploads.max(1);
        let (host, repo) = (&host, dest.repository());
        let pushed: Vec<Option<(Digest, BlobPush)>> =
            stream::unfold(
                ready,
                |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
            )
            .map(|blob| async move {
                match blob {
                    ReadyBlob::Stored(desc) => {
                        let o = self
                            .push_blob_to(host, repo, &desc, source, mount_from)
                            .await?;
                        Ok(Some((desc.digest().clone(), o)))
                    }
                    ReadyBlob::Streaming { bytes, done } => {
                        self.push_streamed(host, repo, bytes, done, source, mount_from)
                            .await
                    }
                }
            })
            .buffer_unordered(limit)
            .try_collect()
            .await?;
        Ok(pushed.into_iter().flatten().collect())
    }

    /// Uploads a blob while it is written: its bytes go to an upload session as they come (one
    /// PATCH without a length; the digest is only needed by the closing PUT, which verifies
    /// it). When that fails anywhere, the session is cancelled and the complete blob is pushed
    /// from `source` the usual way once it is written. `None` when the writer abandoned the
    /// blob.
    async fn push_streamed(
        &self,
        host: &Host,
        repo: &str,
        bytes: tokio::sync::mpsc::Receiver<Vec<u8>>,
        done: tokio::sync::oneshot::Receiver<Descriptor>,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
    ) -> Result<Option<(Digest, BlobPush)>, RegistryError> {
        let scopes = Scopes::push(repo);
        // Returns (dropping `bytes`) once the writer has finished or the upload failed, so the
        // writer never waits on a full channel nobody reads.
        let streamed = self.stream_upload(host, repo, bytes, &scopes).await;
        let Ok(desc) = done.await else {
            if let Ok((location, _)) = streamed {
                self.cancel_upload(host, &location, &scopes).await;
            }
            return Ok(None);
        };
        let digest = desc.digest().clone();
        match streamed {
            Ok((location, Ok(sent))) if sent == desc.size() => {
                match self.finish_upload(host, &scopes, &location, &digest).await {
                    Ok(()) => {
                        self.emit(ProgressEvent::BlobStart {
                            digest: digest.clone(),
                            size: sent,
                        });
                        self.emit(ProgressEvent::BlobBytes {
                            digest: digest.clone(),
                            done: sent,
                            total: sent,
                        });
                        self.emit(ProgressEvent::BlobDone {
                            digest: digest.clone(),
                        });
                        return Ok(Some((digest, BlobPush::Uploaded)));
                    }
                    Err(e) => {
                        tracing::debug!(%digest, error = %e, "streamed upload not accepted");
                        self.cancel_upload(host, &location, &scopes).await;
                    }
                }
            }
            Ok((location, Ok(sent))) => {
                tracing::debug!(%digest, sent, size = desc.size(), "streamed upload incomplete");
                self.cancel_upload(host, &location, &scopes).await;
            }
            Ok((location, Err(e))) => {
                tracing::debug!(%digest, error = %e, "streamed upload failed");
                self.cancel_upload(host, &location, &scopes).await;
            }
            Err(e) => tracing::debug!(%digest, error = %e, "streamed upload not started"),
        }
        let o = self
            .push_blob_to(host, repo, &desc, source, mount_from)
            .await?;
        Ok(Some((digest, o)))
    }

    /// Starts an upload session and streams `bytes` into it with one PATCH without a length,
    /// as docker's own push does. reqwest's read timeout would end such a request after that
    /// long whatever it was doing, so it goes through a client without one and is watched
    /// here instead: it is abandoned when the connection takes no bytes for the read timeout
    /// while we have bytes to give (waiting for the writer does not count), or no answer comes
    /// that long after the last byte. Nothing is retried (the bytes are gone): the caller falls
    /// back to the stored blob. Returns the session's location (to finish or cancel it) with
    /// how the sending ended: the byte count, or why it stopped.
    async fn stream_upload(
        &self,
        host: &Host,
        repo: &str,
        bytes: tokio::sync::mpsc::Receiver<Vec<u8>>,
        scopes: &Scopes,
    ) -> Result<(Url, Result<u64, RegistryError>), RegistryError> {
        let what = format!("streamed upload to {repo}");
        let start = host.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let resp = self
            .send_empty(
                host,
                scopes,
                Method::POST,
                &start,
                &what,
                Some(StatusCode::ACCEPTED),
            )
            .await?;
        let location = host.location(&resp)?;
        Ok(
            match self.stream_patch(host, scopes, &location, bytes).await {
                Ok((next, sent)) => (next, Ok(sent)),
                Err(e) => (location, Err(e)),
            },
        )
    }

    async fn stream_patch(
        &self,
        host: &Host,
        scopes: &Scopes,
        location: &Url,
        bytes: tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) -> Result<(Url, u64), RegistryError> {
        let http = self.stream_http(host)?;
        let mut req = http
            .request(Method::PATCH, location.clone())
            .header(CONTENT_TYPE, "application/octet-stream");
        if location.origin() == host.base.origin()
            && let Some(auth) = self.authorization(host, scopes).await?
        {
            req = req.header(reqwest::header::AUTHORIZATION, auth);
        }
        // (when something last moved, whether the connection is waiting for the writer)
        let moved = Arc::new(Mutex::new((std::time::Instant::now(), false)));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let body = {
            let (moved, sent) = (moved.clone(), sent.clone());
            stream::unfold(bytes, move |mut rx| {
                let (moved, sent) = (moved.clone(), sent.clone());
                async move {
                    *moved.lock().unwrap_or_else(|e| e.into_inner()) =
                        (std::time::Instant::now(), true);
                    let piece = rx.recv().await;
                    *moved.lock().unwrap_or_else(|e| e.into_inner()) =
                        (std::time::Instant::now(), false);
                    let piece = piece?;
                    sent.fetch_add(piece.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(piece)), rx))
                }
            })
        };
        let request = req.body(Body::wrap_stream(body)).send();
        tokio::pin!(request);
        let limit = self.inner.opts.read_timeout;
        let tick = limit.min(std::time::Duration::from_millis(250));
        let resp = loop {
            tokio::select! {
                r = &mut request => break r.map_err(|source| RegistryError::Http {
                    method: "PATCH".into(),
                    url: location.to_string(),
                    source,
                })?,
                () = tokio::time::sleep(tick) => {
                    let (at, waiting) = *moved.lock().unwrap_or_else(|e| e.into_inner());
                    if !waiting && at.elapsed() >= limit {
                        return Err(RegistryError::UploadStalled {
                            url: location.to_string(),
                            after: limit,
                        });
                    }
                }
            }
        };
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(Method::PATCH, location, resp).await);
        }
        // The registry answers with the session's next location; the PUT goes there.
        let next = host.location(&resp)?;
        Ok((next, sent.load(std::sync::atomic::Ordering::Relaxed)))
    }

    /// Closes an upload session with the blob's digest, which the registry verifies.
    async fn finish_upload(
        &self,
        host: &Host,
        scopes: &Scopes,
        location: &Url,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let mut put = location.clone();
        put.query_pairs_mut().append_pair("digest", digest.as_ref());
        let what = format!("upload of blob {digest}");
        self.send_empty(
            host,
            scopes,
            Method::PUT,
            &put,
            &what,
            Some(StatusCode::CREATED),
        )
        .await?;
        Ok(())
    }

    /// Sends a request without a body (upload sessions are started and closed this way); with
    /// `expect`, any other status is an error naming the request.
    async fn send_empty(
        &self,
        host: &Host,
        scopes: &Scopes,
        method: Method,
        url: &Url,
        what: &str,
        expect: Option<StatusCode>,
    ) -> Result<reqwest::Response, RegistryError> {
        let resp = self
            .send(host, scopes, method.clone(), url, what, |r| {
                Ok(r.header(CONTENT_LENGTH, "0"))
            })
            .await?;
        match expect {
            Some(status) if resp.status() != status => Err(status_error(method, url, resp).await),
            _ => Ok(resp),
        }
    }

    /// Ends an upload session that will not be completed (best effort: the registry expires
    /// it anyway).
    async fn cancel_upload(&self, host: &Host, location: &Url, scopes: &Scopes) {
        let what = "cancel of an upload";
        if let Err(e) = self
            .send(host, scopes, Method::DELETE, location, what, Ok)
            .await
        {
            tracing::debug!(error = %e, "cannot cancel upload {location}");
        }
    }

    /// Whether `repository` (on `dest`'s registry) has a blob (HEAD).
    pub async fn blob_exists(
        &self,
        dest: &Reference,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let host = self.host(dest.registry()).await?;
        self.blob_exists_on(
            &host,
            dest.repository(),
            digest,
            &Scopes::pull(dest.repository()),
        )
        .await
    }

    async fn blob_exists_on(
        &self,
        host: &Host,
        repo: &str,
        digest: &Digest,
        scopes: &Scopes,
    ) -> Result<bool, RegistryError> {
        let url = host.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .send(
                host,
                scopes,
                Method::HEAD,
                &url,
                &format!("blob {digest}"),
                Ok,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(status_error(Method::HEAD, &url, resp).await),
        }
    }

    async fn push_blob_to(
        &self,
        host: &Host,
        repo: &str,
        desc: &Descriptor,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
    ) -> Result<BlobPush, RegistryError> {
        let digest = desc.digest();
        let mut scopes = Scopes::push(repo);
        if let Some(from) = mount_from {
            scopes = scopes.and_pull(from);
        }
        if self.blob_exists_on(host, repo, digest, &scopes).await? {
            self.emit(ProgressEvent::BlobExists {
                digest: digest.clone(),
            });
            return Ok(BlobPush::Existed);
        }
        let policy = self.inner.opts.retry.clone();
        let mut failures = 0;
        loop {
            match self
                .upload_once(host, repo, desc, source, mount_from, &scopes)
                .await
            {
                Ok(o) => return Ok(o),
                // `send` has already retried error statuses; a broken connection or stream
                // restarts the upload session.
                Err(e)
                    if transient_error(&e)
                        && !matches!(e, RegistryError::Status { .. })
                        && failures + 1 < policy.max_attempts =>
                {
                    failures += 1;
                    let delay = policy
                        .base_delay
                        .saturating_mul(2u32.saturating_pow(failures - 1))
                        .min(policy.max_delay);
                    tracing::debug!(%digest, error = %e, ?delay, "blob upload failed; retrying");
                    self.emit(ProgressEvent::Retry {
                        what: format!("upload of blob {digest}"),
                        attempt: failures,
                        delay,
                    });
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn upload_once(
        &self,
        host: &Host,
        repo: &str,
        desc: &Descriptor,
        source: &dyn BlobSource,
        mount_from: Option<&str>,
        scopes: &Scopes,
    ) -> Result<BlobPush, RegistryError> {
        let digest = desc.digest();
        let size = desc.size();
        let what = format!("upload of blob {digest}");
        let mut start = host.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        if let Some(from) = mount_from {
            start
                .query_pairs_mut()
                .append_pair("mount", digest.as_ref())
                .append_pair("from", from);
        }
        let resp = self
            .send_empty(host, scopes, Method::POST, &start, &what, None)
            .await?;
        match resp.status() {
            StatusCode::CREATED if mount_from.is_some() => {
                self.emit(ProgressEvent::BlobMounted {
                    digest: digest.clone(),
                    from: mount_from.unwrap_or_default().to_string(),
                });
                return Ok(BlobPush::Mounted);
            }
            StatusCode::ACCEPTED => {}
            _ => return Err(status_error(Method::POST, &start, resp).await),
        }
        let mut location = host.location(&resp)?;
        self.emit(ProgressEvent::BlobStart {
            digest: digest.clone(),
            size,
        });
        let progress = self.inner.opts.progress.clone();
        if size < self.inner.opts.chunked_upload_threshold {
            let mut put = location.clone();
            put.query_pairs_mut().append_pair("digest", digest.as_ref());
            let failed = SourceFailure::default();
            let resp = self
                .send(host, scopes, Method::PUT, &put, &what, |r| {
                    let body =
                        stream_body(source, digest, 0, size, progress.clone(), 0, size, &failed)?;
                    Ok(r.header(CONTENT_LENGTH, size)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .body(body))
                })
                .await;
            let resp = failed.check(digest, resp)?;
            if resp.status() != StatusCode::CREATED {
                return Err(status_error(Method::PUT, &put, resp).await);
            }
        } else {
            let chunk = self.inner.opts.chunk_size.max(1);
            let mut offset = 0u64;
            while offset < size {
                let len = chunk.min(size - offset);
                let failed = SourceFailure::default();
                let at = location.clone();
                let resp = self
                    .send(host, scopes, Method::PATCH, &at, &what, |r| {
                        let body = stream_body(
                            source,
                            digest,
                            offset,
                            len,
                            progress.clone(),
                            offset,
                            size,
                            &failed,
                        )?;
                        Ok(r.header(CONTENT_LENGTH, len)
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header("content-range", format!("{}-{}", offset, offset + len - 1))
                            .body(body))
                    })
                    .await;
                let resp = failed.check(digest, resp)?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(status_error(Method::PATCH, &at, resp).await);
                }
                location = host.location(&resp)?;
                offset += len;
            }
            self.finish_upload(host, scopes, &location, digest).await?;
        }
        self.emit(ProgressEvent::BlobDone {
            digest: digest.clone(),
        });
        Ok(BlobPush::Uploaded)
    }

    /// HEADs the manifest at `reference`; PUTs `bytes` unless it already has their digest.
    /// Returns whether it uploaded.
    async fn put_manifest_if_changed(
        &self,
        host: &Host,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<bool, RegistryError> {
        let digest = sha256_digest(bytes);
        if let Some((have, _, _)) = self.head_manifest(reference).await? {
            if have == digest {
                return Ok(false);
            }
        }
        self.put_manifest_on(host, reference, media_type, bytes)
            .await?;
        Ok(true)
    }

    /// Uploads a manifest or index to `reference` (its tag, or its digest if it has no tag).
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let host = self.host(reference.registry()).await?;
        self.put_manifest_on(&host, reference, media_type, bytes)
            .await
    }

    async fn put_manifest_on(
        &self,
        host: &Host,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let digest = sha256_digest(bytes);
        let target = match reference.tag() {
            Some(t) if reference.digest().is_none() => t.to_string(),
            _ => digest.to_string(),
        };
        let url: Url = host.url(&format!(
            "/v2/{}/manifests/{target}",
            reference.repository()
        ))?;
        let body = bytes.to_vec();
        let resp = self
            .send(
                host,
                &Scopes::push(reference.repository()),
                Method::PUT,
                &url,
                &format!("manifest {reference}"),
                |r| Ok(r.header(CONTENT_TYPE, media_type).body(body.clone())),
            )
            .await?;
        if resp.status() != StatusCode::CREATED && !resp.status().is_success() {
            return Err(status_error(Method::PUT, &url, resp).await);
        }
        Ok(digest)
    }
}

/// Records a read error of the caller's source during an upload, so the error names the blob
/// instead of showing as a broken request.
#[derive(Default, Clone)]
struct SourceFailure(Arc<Mutex<Option<std::io::Error>>>);

impl SourceFailure {
    fn check<T>(&self, digest: &Digest, r: Result<T, RegistryError>) -> Result<T, RegistryError> {
        if let Some(source) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(RegistryError::Source {
                digest: digest.clone(),
                source,
            });
        }
        r
    }
}

/// A request body streaming `len` bytes of a blob from `offset`, read on a blocking thread.
#[allow(clippy::too_many_arguments)]
fn stream_body(
    source: &dyn BlobSource,
    digest: &Digest,
    offset: u64,
    len: u64,
    progress: Option<ProgressFn>,
    progress_base: u64,
    total: u64,
    failed: &SourceFailure,
) -> Result<Body, RegistryError> {
    let reader = source
        .open(digest, offset)
        .map_err(|source| RegistryError::Source {
            digest: digest.clone(),
            source,
        })?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let failed = failed.clone();
    let digest = digest.clone();
    tokio::task::spawn_blocking(move || {
        let mut reader = reader.take(len);
        let mut done = 0u64;
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            match reader.read(&mut buf) {
                Ok(0) => {
                    if done < len {
                        let e = std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("blob ended after {} of {len} bytes", offset + done),
                        );
                        *failed.0.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(std::io::Error::new(e.kind(), e.to_string()));
                        let _ = tx.blocking_send(Err(e));
                    }
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    done += n as u64;
                    if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                        return;
                    }
                    if let Some(p) = &progress {
                        p(&ProgressEvent::BlobBytes {
                            digest: digest.clone(),
                            done: progress_base + done,
                            total,
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    *failed.0.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(std::io::Error::new(e.kind(), e.to_string()));
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Body::wrap_stream(s))
}
