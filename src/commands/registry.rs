//! What the registry commands share: TLS and plain-HTTP options, where credentials live, and
//! the atomic write of the credentials file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use rbuild_registry::{ClientOptions, CredentialStore, credentials};

/// Options of every command that talks to a registry.
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Extra CA certificate (PEM) to trust for registries; may be repeated.
    #[arg(long = "tls-ca", value_name = "PEM")]
    pub tls_ca: Vec<PathBuf>,
    /// A certs.d-style directory (DIR/HOST[:PORT]/*.crt); adds to /etc/containers/certs.d
    /// and /etc/docker/certs.d.
    #[arg(long = "cert-dir", value_name = "DIR")]
    pub cert_dir: Vec<PathBuf>,
    /// Talk to this registry (HOST[:PORT]) over plain HTTP; may be repeated. Loopback
    /// registries need no flag.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,
    /// Fetch non-distributable ("foreign") layers from the URLs their descriptors name
    /// (default: ask the registry itself for them, as for any blob).
    #[arg(long = "allow-nondistributable-artifacts")]
    pub allow_nondistributable: bool,
}

impl RegistryArgs {
    /// Client options from these flags and the environment.
    pub fn client_options(&self, credentials: CredentialStore) -> ClientOptions {
        let mut opts = ClientOptions {
            credentials,
            ca_files: self.tls_ca.clone(),
            // The flags add to the config file's (and RBUILD_INSECURE_REGISTRIES') list.
            insecure_registries: crate::config::get()
                .insecure_registries()
                .into_iter()
                .chain(self.insecure_registry.iter().cloned())
                .collect(),
            ..ClientOptions::default()
        };
        opts.certs_dirs.extend(self.cert_dir.iter().cloned());
        if let Some(stall) = crate::config::get().stall_timeout() {
            opts.stall_timeout = stall;
            // A longer stall timeout asks for patience with answers too.
            opts.read_timeout = opts.read_timeout.max(stall);
        }
        // Large blobs go up in few, large PATCH requests: each request is a round trip the
        // upload waits for (measured by bench/pullpush.sh; 16 MiB chunks made a 500 MB push
        // 1.25x slower than skopeo's single streamed PATCH).
        opts.chunk_size = 256 << 20;
        opts
    }
}

/// The credential sources named by `REGISTRY_AUTH_FILE` and `DOCKER_CONFIG` (for the pull and
/// push commands).
pub fn credential_store() -> CredentialStore {
    CredentialStore::from_env()
}

/// The file `login` and `logout` change: `REGISTRY_AUTH_FILE` when set, else docker's config.
pub fn credentials_file() -> PathBuf {
    credentials::auth_file_path().unwrap_or_else(credentials::docker_config_path)
}

/// Writes a credentials file atomically (temp file in the same directory, fsync, rename),
/// readable by its owner only.
pub fn write_credentials_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    // Private from the first byte.
    rbuild_cache::atomic::write(path, None, Some(0o600), bytes)
        .with_context(|| format!("cannot replace {}", path.display()))
}

/// A registry name as the user typed it (`docker.io`, `https://index.docker.io/v1/`,
/// `localhost:5000`), reduced to the form references use.
pub fn registry_name(input: Option<&str>) -> String {
    match input {
        None => "docker.io".to_string(),
        Some(s) => rbuild_registry::credentials::normalise_registry(s.trim()).to_string(),
    }
}

pub use rbuild_engine::registry::runtime;

/// The engine's registry configuration from these flags, the environment and the config
/// file: client options with the credential sources, and the mirrors of `registry.mirrors`.
pub fn registry_config(args: &RegistryArgs) -> rbuild_engine::registry::RegistryConfig {
    rbuild_engine::registry::RegistryConfig {
        client: args.client_options(credential_store()),
        mirrors: crate::config::get().all_mirrors(),
        allow_foreign_layers: args.allow_nondistributable,
    }
}
