//! Store maintenance after a build: the automatic prune of `gc.threshold`.

use rbuild_cache::Store;
use rbuild_cache::gc::{self, PruneOptions};
use rbuild_executor::idmap::IdMap;
use rbuild_options::size::human as human_size;

/// When a build prunes the store after it is done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcPolicy {
    /// Prune when the store is larger than this many bytes (`gc.threshold`); never when
    /// `None`.
    pub threshold: Option<u64>,
    /// Down to this many bytes (`gc.keep_storage`; the threshold when `None`).
    pub keep_storage: Option<u64>,
}

/// Removes a tree the way the sandbox wrote it (files of other ids included).
pub fn remove_tree(path: &std::path::Path) -> std::io::Result<()> {
    rbuild_executor::sandbox::remove_tree(path, &IdMap::for_current_user())
        .map_err(|e| std::io::Error::other(crate::error::chain_text(&e)))
}

/// After a build: when `policy` sets a threshold (config `gc.threshold`) and the store is larger, prune it
/// (the default prune, least recently used first) down to `gc.keep_storage`, under the same
/// locks as `rbuild prune`. The build's own lease keeps what it used (`keep_own`). Failures
/// are logged, never fatal: the build succeeded.
pub fn auto_gc(store: &Store, policy: &GcPolicy) {
    let Some(threshold) = policy.threshold else {
        return;
    };
    let size = match gc::usage(store) {
        Ok(u) => u.total(),
        Err(e) => {
            tracing::warn!("automatic gc: {}", crate::error::chain_text(&e));
            return;
        }
    };
    if size <= threshold {
        return;
    }
    let opts = PruneOptions {
        keep_own: true,
        keep_storage: policy.keep_storage.or(Some(threshold)),
        ..PruneOptions::default()
    };
    match gc::prune(store, &opts, &remove_tree) {
        Ok(r) => {
            let t = r.total();
            tracing::info!(
                "automatic gc: the store was {} (gc.threshold {}): freed {} in {} objects",
                human_size(size),
                human_size(threshold),
                human_size(t.bytes),
                t.count
            );
        }
        Err(e) => tracing::warn!("automatic gc failed: {}", crate::error::chain_text(&e)),
    }
}
