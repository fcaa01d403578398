//! Integration tests against a real `docker-registry`, images pushed by skopeo, read back by
//! skopeo and umoci, and a fault-injecting proxy.

mod auth;
mod faults;
mod proxy;
mod pull;
mod push;
mod token;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rbuild_registry::{
    BlobSink, BlobTarget, Client, ClientOptions, CredentialStore, Descriptor, Digest, MemoryBlobs,
    RetryPolicy,
};

/// Client options for tests: no credentials from the environment, fast retries.
pub fn test_options() -> ClientOptions {
    ClientOptions {
        credentials: CredentialStore::anonymous(),
        certs_dirs: Vec::new(),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
        },
        read_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

pub fn client() -> Client {
    Client::new(test_options())
}

/// A target that counts commits and aborts, over in-memory blobs.
#[derive(Debug, Clone, Default)]
pub struct CountingTarget {
    pub blobs: MemoryBlobs,
    pub aborted: Arc<Mutex<Vec<String>>>,
    pub committed: Arc<Mutex<Vec<String>>>,
}

struct CountingSink {
    inner: Box<dyn BlobSink>,
    target: CountingTarget,
    digest: String,
}

impl BlobSink for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write(buf)
    }
    fn reset(&mut self) -> std::io::Result<()> {
        self.inner.reset()
    }
    fn commit(self: Box<Self>, digest: &Digest) -> std::io::Result<()> {
        self.target
            .committed
            .lock()
            .unwrap()
            .push(digest.to_string());
        self.inner.commit(digest)
    }
    fn abort(self: Box<Self>) {
        self.target
            .aborted
            .lock()
            .unwrap()
            .push(self.digest.clone());
        self.inner.abort();
    }
}

impl BlobTarget for CountingTarget {
    fn has(&self, digest: &Digest) -> bool {
        self.blobs.has(digest)
    }
    fn sink(&self, descriptor: &Descriptor) -> std::io::Result<Box<dyn BlobSink>> {
        Ok(Box::new(CountingSink {
            inner: self.blobs.sink(descriptor)?,
            target: self.clone(),
            digest: descriptor.digest().to_string(),
        }))
    }
}

/// The sha256 of bytes, as a digest string.
pub fn sha256(bytes: &[u8]) -> String {
    rbuild_registry::sha256_digest(bytes).to_string()
}

/// `skopeo inspect --raw` digest of an image in a plain-HTTP registry.
pub fn skopeo_digest(image: &str) -> String {
    let raw = rbuild_test_support::run(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]));
    sha256(raw.as_bytes())
}
