//! Transfer progress events, for progress bars and logs.

use std::sync::Arc;
use std::time::Duration;

use oci_spec::image::Digest;

/// Something that happened during a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A blob transfer starts.
    BlobStart {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// Bytes of a blob moved so far (restarts at 0 if the server restarts the transfer).
    BlobBytes {
        /// The blob.
        digest: Digest,
        /// Bytes done.
        done: u64,
        /// Its size in bytes.
        total: u64,
    },
    /// A blob transfer finished and was verified.
    BlobDone {
        /// The blob.
        digest: Digest,
    },
    /// A blob was not transferred: the destination already has it.
    BlobExists {
        /// The blob.
        digest: Digest,
    },
    /// A blob was mounted from another repository of the same registry.
    BlobMounted {
        /// The blob.
        digest: Digest,
        /// The repository it came from.
        from: String,
    },
    /// A request failed and is tried again after `delay`.
    Retry {
        /// What was being done.
        what: String,
        /// The attempt that failed (1 = the first).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
    },
}

/// A progress callback; called from the transfer tasks, so it must be quick.
pub type ProgressFn = Arc<dyn Fn(&ProgressEvent) + Send + Sync>;
