//! `system df`: the store's usage by kind, every object with its size and last use, and
//! what `prune --all` would free now.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use serde::Serialize;

use super::error::GcError;
use super::inventory::{Inventory, Kind, Tally};
use super::lease::other_leases;
use super::plan::plan;
use super::sweep::PruneOptions;
use crate::Store;

/// One object of the store, as `system df --verbose` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its kind.
    pub kind: Kind,
    /// Its path relative to the root.
    pub path: String,
    /// Its size (allocated, hard links counted once).
    pub bytes: u64,
    /// Last use, seconds since the epoch.
    pub last_used: i64,
    /// Whether `prune --all` would remove it now.
    pub reclaimable: bool,
}

/// The store's usage by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Per kind: count and size (for images: how many images, their blobs counted in the
    /// size).
    pub kinds: BTreeMap<Kind, Tally>,
    /// Per kind: what `prune --all` would free now.
    pub reclaimable: BTreeMap<Kind, Tally>,
    /// Every object.
    pub entries: Vec<Entry>,
}

impl Usage {
    /// The store's total size.
    pub fn total(&self) -> u64 {
        self.kinds.values().map(|t| t.bytes).sum()
    }
}

/// The store's usage by kind, with what `prune --all` would free now.
pub fn usage(store: &Store) -> Result<Usage, GcError> {
    let root = store.root();
    let inv = Inventory::scan(store)?;
    let others = other_leases(root, true, false)?;
    let all = PruneOptions {
        all: true,
        dry_run: true,
        ..PruneOptions::default()
    };
    let (chosen, _) = plan(&inv, &all, &others, None);
    let chosen: HashSet<usize> = chosen.into_iter().collect();
    let mut usage = Usage::default();
    for (i, u) in inv.units.iter().enumerate() {
        let t = usage.kinds.entry(u.kind).or_default();
        if !u.object {
            // A directory itself, a lock: its size counts, it is no object.
            t.bytes += u.bytes;
            continue;
        }
        t.add(u.bytes);
        let reclaimable = chosen.contains(&i);
        if reclaimable {
            usage.reclaimable.entry(u.kind).or_default().add(u.bytes);
        }
        usage.entries.push(Entry {
            kind: u.kind,
            path: u.rel.clone(),
            bytes: u.bytes,
            last_used: u
                .mtime
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            reclaimable,
        });
    }
    // Images count as images, however many blobs they have.
    if let Some(t) = usage.kinds.get_mut(&Kind::Images) {
        t.count = inv.images;
    }
    Ok(usage)
}
