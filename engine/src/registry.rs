//! How the engine reaches registries: the client's options, mirrors, and the async runtime
//! one operation runs its transfers on.

use std::collections::BTreeMap;

use rbuild_registry::ClientOptions;

/// What pulls, pushes and the remote cache use to talk to registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// The client's options: credentials, CAs, plain-HTTP registries, timeouts, retries.
    /// Its `progress` is set per transfer.
    pub client: ClientOptions,
    /// Per registry host, mirrors that pulls try first, in order, before the registry.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Fetch non-distributable ("foreign") layers from the URLs their descriptors name.
    pub allow_foreign_layers: bool,
}

impl RegistryConfig {
    /// The mirrors of `registry`, in order (none when it has none).
    pub fn mirrors(&self, registry: &str) -> Vec<String> {
        self.mirrors.get(registry).cloned().unwrap_or_default()
    }

    /// The client options with `progress` as the transfer's callback.
    pub fn client_options(&self, progress: Option<rbuild_registry::ProgressFn>) -> ClientOptions {
        let mut opts = self.client.clone();
        opts.progress = progress;
        opts
    }
}

/// The async runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the async runtime")]
pub struct RuntimeError(#[source] pub std::io::Error);

/// A small multi-threaded runtime for one operation's transfers.
pub fn runtime() -> Result<tokio::runtime::Runtime, RuntimeError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RuntimeError)
}
