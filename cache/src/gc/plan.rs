//! What a prune removes: from the inventory, the other live leases and the options, the
//! units to remove (leftovers first, then least recently used first within
//! `keep_storage`), each record taking the blob and snapshot only it needed.

use std::collections::HashMap;
use std::time::SystemTime;

use super::inventory::{Action, Inventory, Unit};
use super::lease::Others;
use super::sweep::PruneOptions;
use crate::Digest;

/// Decides what to remove. Returns the indexes of removed units, and how many were left
/// because they are in use. An object may go when no live lease of `others` lists it (and,
/// with `until`, it was last used before then); a leftover when it is older than every
/// other live lease.
pub(super) fn plan(
    inv: &Inventory,
    opts: &PruneOptions,
    others: &Others,
    until: Option<SystemTime>,
) -> (Vec<usize>, u64) {
    let units = &inv.units;
    let total: u64 = units.iter().map(|u| u.bytes).sum();
    let mut removed = vec![false; units.len()];
    let mut freed = 0u64;
    let mut in_use = 0u64;
    let listed = |u: &Unit| match &u.action {
        // A slot is its files `<stem>.json` and `<stem>.key`.
        Action::Slot { .. } => {
            let prefix = format!("{}.", u.rel);
            others.used.iter().any(|r| r.starts_with(&prefix))
        }
        _ => others.used.contains(&u.rel),
    };
    let old = |u: &Unit| !listed(u) && until.is_none_or(|c| u.mtime < c);
    let temp_cutoff = others.temp_cutoff();
    let old_temp = |u: &Unit| u.mtime < temp_cutoff && until.is_none_or(|c| u.mtime < c);
    let mut blob_refs: HashMap<Digest, usize> = HashMap::new();
    let mut snap_refs: HashMap<Digest, usize> = HashMap::new();
    let mut blob_unit: HashMap<Digest, usize> = HashMap::new();
    let mut snap_unit: HashMap<Digest, usize> = HashMap::new();
    let mut record_keys: HashMap<Digest, usize> = HashMap::new();
    for (i, u) in units.iter().enumerate() {
        match &u.action {
            Action::Record {
                blob, diff, key, ..
            } => {
                if let Some(b) = blob {
                    *blob_refs.entry(*b).or_default() += 1;
                }
                if let Some(d) = diff {
                    *snap_refs.entry(*d).or_default() += 1;
                }
                if let Some(k) = key {
                    record_keys.insert(*k, i);
                }
            }
            Action::Variant { blob: Some(b), .. } => *blob_refs.entry(*b).or_default() += 1,
            Action::Blob(d) => {
                blob_unit.insert(*d, i);
            }
            Action::Snapshot(d) => {
                snap_unit.insert(*d, i);
            }
            _ => {}
        }
    }
    let present = |d: &Digest| blob_unit.contains_key(d) || inv.tagged.contains(d);

    // Leftovers first, whatever the size limit: they are garbage, not cache.
    for (i, u) in units.iter().enumerate() {
        if let Action::Temp { .. } = u.action {
            if old_temp(u) {
                removed[i] = true;
                freed += u.bytes;
            } else {
                in_use += 1;
            }
        }
    }

    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&i| (units[i].mtime, i));
    let over = |freed: u64| {
        opts.keep_storage
            .is_none_or(|k| total.saturating_sub(freed) > k)
    };
    let mut changed = true;
    let mut counted_busy = vec![false; units.len()];
    while changed && over(freed) {
        changed = false;
        for &i in &order {
            if !over(freed) {
                break;
            }
            if removed[i] {
                continue;
            }
            let u = &units[i];
            let candidate = match &u.action {
                Action::Record { blob, .. } => {
                    opts.all
                        || blob.is_none_or(|b| !inv.tagged.contains(&b))
                        || blob.is_some_and(|b| !present(&b))
                }
                Action::Variant { layer, .. } => {
                    opts.all || layer.is_none_or(|l| !inv.tagged.contains(&l))
                }
                Action::Blob(d) => {
                    !inv.tagged.contains(d) && blob_refs.get(d).copied().unwrap_or(0) == 0
                }
                Action::Snapshot(d) => {
                    opts.all
                        || (!inv.tagged_layers.contains(d)
                            && snap_refs.get(d).copied().unwrap_or(0) == 0)
                }
                Action::Mount(_) | Action::Context(_) => opts.all,
                Action::Checkout(_) => true,
                Action::Slot { .. } | Action::Temp { .. } | Action::Keep => false,
            };
            if !candidate {
                continue;
            }
            if !old(u) {
                if !counted_busy[i] {
                    counted_busy[i] = true;
                    in_use += 1;
                }
                continue;
            }
            removed[i] = true;
            freed += u.bytes;
            changed = true;
            // What only this unit needed goes with it.
            let (blob, diff) = match &u.action {
                Action::Record { blob, diff, .. } => (*blob, *diff),
                Action::Variant { blob, .. } => (*blob, None),
                _ => (None, None),
            };
            if let Some(b) = blob {
                let n = blob_refs.entry(b).or_default();
                *n = n.saturating_sub(1);
                if *n == 0
                    && !inv.tagged.contains(&b)
                    && let Some(&j) = blob_unit.get(&b)
                    && !removed[j]
                    && old(&units[j])
                {
                    removed[j] = true;
                    freed += units[j].bytes;
                }
            }
            if let Some(d) = diff {
                let n = snap_refs.entry(d).or_default();
                *n = n.saturating_sub(1);
                if *n == 0
                    && (opts.all || !inv.tagged_layers.contains(&d))
                    && let Some(&j) = snap_unit.get(&d)
                    && !removed[j]
                    && old(&units[j])
                {
                    removed[j] = true;
                    freed += units[j].bytes;
                }
            }
        }
    }
    // Slots whose record is gone (or was never written) go too.
    for (i, u) in units.iter().enumerate() {
        if let Action::Slot { key, .. } = &u.action {
            let kept = key
                .and_then(|k| record_keys.get(&k))
                .is_some_and(|&j| !removed[j]);
            if !kept && old(u) {
                removed[i] = true;
            }
        }
    }
    let out = (0..units.len()).filter(|&i| removed[i]).collect();
    (out, in_use)
}
