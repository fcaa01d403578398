//! What `rbuild check` needs from outside the Dockerfile: the ignore file, the list of
//! context files, and the configs and `/etc/passwd` of the base images the store has.
//! Reading only: nothing is pulled, no lease is taken, the context is listed without
//! following symbolic links. The rules themselves are `rbuild_compiler::check`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rbuild_compiler::check::Facts;
use rbuild_compiler::plan::{BaseConfigs, ImageConfig, Platform};

/// The most context entries listed; a larger context is not listed (its rules are skipped).
pub const MAX_CONTEXT_ENTRIES: usize = 200_000;

/// The largest ignore file read.
const MAX_IGNORE_FILE: u64 = 1 << 20;

/// Base image configs from a store, looked up once per reference.
#[derive(Debug, Default)]
pub struct StoredBases {
    store: Option<rbuild_cache::Store>,
    cache: Mutex<HashMap<String, Option<ImageConfig>>>,
    files: Mutex<HashMap<(String, String), Option<String>>>,
}

impl StoredBases {
    /// Configs from `store` (none without one).
    pub fn new(store: Option<rbuild_cache::Store>) -> StoredBases {
        StoredBases {
            store,
            cache: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
        }
    }
}

impl BaseConfigs for StoredBases {
    fn base_config(&self, reference: &str, _: &Platform) -> Option<ImageConfig> {
        let store = self.store.as_ref()?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(reference.to_string())
            .or_insert_with(|| crate::bases::stored_config(store, reference))
            .clone()
    }

    fn base_platform(&self, reference: &str) -> Option<Platform> {
        crate::bases::stored_platform(self.store.as_ref()?, reference)
    }

    fn base_file(&self, reference: &str, path: &str) -> Option<String> {
        let store = self.store.as_ref()?;
        let key = (reference.to_string(), path.to_string());
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files
            .entry(key)
            .or_insert_with(|| image_file(store, reference, path))
            .clone()
    }
}

/// The largest file [`image_file`] reads.
const MAX_IMAGE_FILE: u64 = 1 << 20;

/// The text of `path` (relative, `etc/passwd`) in the stored image `reference`: the top
/// layer that has it or deletes it decides. `None` when the store lacks the image, a layer
/// cannot be read, or the file is absent, larger than 1 MiB or not a regular file.
pub fn image_file(store: &rbuild_cache::Store, reference: &str, path: &str) -> Option<String> {
    use std::io::Read as _;
    let descriptor = crate::bases::local_image(store, reference)?;
    let (_, manifest) = store.image_manifest(&descriptor).ok()?;
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let whiteout = if dir.is_empty() {
        format!(".wh.{name}")
    } else {
        format!("{dir}/.wh.{name}")
    };
    let opaque = if dir.is_empty() {
        ".wh..wh..opq".to_string()
    } else {
        format!("{dir}/.wh..wh..opq")
    };
    for layer in manifest.layers().iter().rev() {
        let digest = rbuild_cache::descriptor_digest(layer).ok()?;
        let file = store.open_blob(&digest).ok()?;
        let media = layer.media_type().to_string();
        let reader = rbuild_compress::decompress(file, Some(&media)).ok()?;
        let mut archive = tar::Archive::new(reader);
        let mut hidden_below = false;
        for entry in archive.entries().ok()? {
            let mut entry = entry.ok()?;
            let p = entry.path().ok()?.to_string_lossy().into_owned();
            let p = p
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_string();
            if p == whiteout {
                return None;
            }
            if p == opaque {
                hidden_below = true;
            }
            if p == path {
                if !entry.header().entry_type().is_file() || entry.size() > MAX_IMAGE_FILE {
                    return None;
                }
                let mut text = String::new();
                entry.read_to_string(&mut text).ok()?;
                return Some(text);
            }
        }
        if hidden_below {
            return None;
        }
    }
    None
}

/// Gathers facts for the Dockerfiles of one context: the context is listed once.
#[derive(Debug)]
pub struct Gatherer {
    context: PathBuf,
    files: Option<Option<Vec<String>>>,
    /// The bases' configs.
    pub bases: StoredBases,
    /// Whether the context is listed (default); without it the rules that need the list
    /// are skipped.
    pub list_context: bool,
}

impl Gatherer {
    /// For builds of `context`, with base images from `store`.
    pub fn new(context: &Path, store: Option<rbuild_cache::Store>) -> Gatherer {
        Gatherer {
            context: context.to_path_buf(),
            files: None,
            bases: StoredBases::new(store),
            list_context: true,
        }
    }

    /// The facts for the Dockerfile `file` (`None`: CONTEXT/Dockerfile).
    pub fn facts(&mut self, file: Option<&Path>) -> Facts {
        let ignore = self.ignore_file(file);
        if self.files.is_none() {
            self.files = Some(if self.list_context {
                list_context(&self.context)
            } else {
                None
            });
        }
        Facts {
            ignore,
            context_files: self.files.clone().flatten(),
        }
    }

    /// `<Dockerfile>.dockerignore` beside the Dockerfile when it exists, else the context's
    /// `.dockerignore`.
    fn ignore_file(&self, file: Option<&Path>) -> Option<(String, String)> {
        let mut candidates = Vec::new();
        if let Some(f) = file.filter(|f| f.as_os_str() != "-") {
            let mut beside = f.as_os_str().to_owned();
            beside.push(".dockerignore");
            candidates.push(PathBuf::from(beside));
        }
        candidates.push(self.context.join(".dockerignore"));
        for c in candidates {
            let Ok(meta) = std::fs::metadata(&c) else {
                continue;
            };
            if !meta.is_file() || meta.len() > MAX_IGNORE_FILE {
                tracing::debug!("not reading ignore file {}", c.display());
                return None;
            }
            match std::fs::read(&c) {
                Ok(bytes) => {
                    return Some((
                        c.display().to_string(),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    ));
                }
                Err(e) => {
                    tracing::debug!("cannot read ignore file {}: {e}", c.display());
                    return None;
                }
            }
        }
        None
    }
}

/// Every regular file of `root` (relative, `/`-separated), symbolic links not followed;
/// `None` when the context cannot be listed or has more than [`MAX_CONTEXT_ENTRIES`].
fn list_context(root: &Path) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    let mut seen = 0usize;
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!("not listing context directory {}: {e}", dir.display());
                if rel.is_empty() {
                    return None;
                }
                continue;
            }
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_CONTEXT_ENTRIES {
                tracing::debug!("context {} is too large to list", root.display());
                return None;
            }
            let Ok(ty) = entry.file_type() else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if ty.is_dir() {
                stack.push((entry.path(), path));
            } else if ty.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    Some(out)
}
