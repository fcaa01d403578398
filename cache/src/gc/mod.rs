//! Garbage collection of the store: `rbuild prune` and `rbuild system df`.
//!
//! # What is kept
//!
//! Every blob reachable from `index.json` (a tagged image) always stays. Everything else is
//! cache or garbage: action cache records (`cache-v1/keys`) and slot records
//! (`cache-v1/slots`), compressed variants (`variants-v1`), blobs only they reference,
//! blobs nothing references ("dangling"), unpacked snapshots (`snapshots-v1`), cache mounts
//! (`mounts-v1`), context indexes (`contexts-v1`), git checkouts (`git-v1`) and leftovers of killed processes (`tmp/`,
//! snapshot temp dirs, trash). The pull sources (`sources-v1`) of manifests no longer in the
//! store go with every prune and `rmi`.
//!
//! The default prune (like `docker builder prune`) removes what no tagged image shares:
//! records whose layer is not part of a tagged image, the blobs and snapshots only those
//! records needed, dangling blobs and snapshots, and leftovers. It keeps the records and
//! snapshots of tagged images' layers (removing them would free nothing, or only cost an
//! unpack) and cache mounts. `all` removes every record, snapshot, cache mount, variant and
//! context index as well. `keep_storage` removes least recently used first and stops once
//! the store is under the size; `until` removes only what was last used before then. Git
//! checkouts are fetched again when needed: every prune removes those no running process
//! uses.
//!
//! # Last use, and what a running process uses
//!
//! The modification time is the LRU clock: writing a blob, record or snapshot sets it, and
//! a process that reuses one ([`touch`]) sets it to now. It orders `keep_storage` and
//! decides `until`; it protects nothing by itself.
//!
//! Every process that uses the store holds a [`Lease`] for its whole run: a file in
//! `leases-v1/` held with an exclusive flock (a dead process's lease is free, hence
//! recognisably stale). The lease lists what its process uses: the path (relative to the
//! root) of every blob, snapshot, record, variant and context index it writes (appended
//! before the rename that publishes the object: [`record_use`], called by the blob writer,
//! atomic writes and snapshot commits) or reuses ([`touch`]). A prune removes nothing a
//! live lease of another process lists, and ignores its own lease, as BuildKit protects
//! only what leases hold: `rbuild build ... && rbuild prune --all` frees everything the
//! finished build used. Leftovers of killed processes (temp files and directories whose
//! lock is free) go only when older than the start of every other live lease (its file's
//! modification time), so a file another process has just created and not yet locked stays.
//!
//! The window between "a build finds an old object and decides to reuse it" and "the build
//! lists it" is closed by the gc lock (`gc.lock`): a prune holds it exclusively for its
//! mark and sweep; a process holds it shared while it acquires its lease and while it looks
//! up and touches what it will reuse ([`GcLock::shared`]). So a prune either ran entirely
//! before the lookup (the build then sees the object gone and makes it again) or sees it
//! listed. A new object is listed before its rename and the prune reads the leases after
//! it has listed the store, so an object it sees is listed by then. Blobs being written are
//! locked temp files until their rename; cache mounts in use hold their flock, and a prune
//! skips a mount whose lock it cannot take.
//!
//! # Crash safety
//!
//! Records go before the blobs they name; blobs are unlinked one by one; snapshot and cache
//! mount directories are first renamed to a `.trash-` name (one atomic rename, under the gc
//! lock) and deleted afterwards, so a prune killed at any point leaves a store the next
//! build uses as it is: at worst a trash directory, which the next prune deletes.
//!
//! # Where the parts are
//!
//! `lock` holds the gc lock; `lease` the leases (this process's, what it lists, and
//! reading the other processes'), and marking reused objects; `inventory` lists the store
//! as units of a [`Kind`], each with its size, last use and what removing it means; `plan`
//! decides which units a prune removes; `sweep` removes them ([`prune`], and
//! [`remove_images`] for `rbuild rmi`); `usage` is `system df`; `human` holds the sizes and
//! durations people read and write.

mod error;
mod human;
mod inventory;
mod lease;
mod lock;
mod plan;
mod sweep;
mod usage;

pub use error::GcError;
pub use human::parse_duration;
pub use inventory::{Kind, Tally};
pub use lease::{Lease, mark_image_used, mark_record_used, record_use, touch};
pub use lock::GcLock;
pub use sweep::{PruneOptions, PruneReport, RemoveTree, prune, remove_images};
pub use usage::{Entry, Usage, usage};

/// The lock file a prune holds exclusively, and users of the store shared for short windows.
pub const GC_LOCK: &str = "gc.lock";
/// The folder of leases: one file per live process using the store.
pub const LEASES_DIR: &str = "leases-v1";
/// The folder of git checkouts, one directory per commit (`<commit>`, or `<commit>-git`
/// with the repository's `.git`): cache a build fetches again when it is gone, removed by
/// every prune that finds it unused.
pub const GIT_CHECKOUTS_DIR: &str = "git-v1";
/// The prefix of directories renamed for deletion.
const TRASH_PREFIX: &str = ".trash-";

#[cfg(test)]
mod tests;
