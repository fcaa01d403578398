//! The errors of garbage collection: [`GcError`], naming the path or the store.

use std::io;
use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// Errors of garbage collection; each names the path or object.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// A file or directory of the store could not be read, locked or removed.
    #[error("cannot access {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the images of the store failed.
    #[error("cannot read the images of the store at {root}")]
    Store {
        /// The store root.
        root: PathBuf,
        /// The cause.
        #[source]
        source: StoreError,
    },
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> GcError + '_ {
    move |source| GcError::Io {
        path: path.to_owned(),
        source,
    }
}
