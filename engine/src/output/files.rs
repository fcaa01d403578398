//! Writing an output's file: atomically (a temp file beside the destination, renamed into
//! place, never through a symlink at the destination) or to stdout.

use std::io::{BufWriter, IsTerminal as _, Write};
use std::path::{Path, PathBuf};

use super::error::{BoxError, WriteError};
use super::settings::Dest;

/// Writes to stdout, or atomically to a file: a temp file beside it, renamed into place.
pub(super) fn write_to<E: Into<BoxError>>(
    dest: &Dest,
    write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<(), WriteError> {
    match dest {
        Dest::Stdout => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                return Err(WriteError::Terminal);
            }
            let mut w = BufWriter::with_capacity(1 << 20, crate::stdout::stdout());
            write(&mut w).map_err(|e| WriteError::Stdout(e.into()))?;
            w.flush().map_err(|e| WriteError::Stdout(e.into()))?;
        }
        Dest::Path(path) => atomic_file(path, write)?,
    }
    Ok(())
}

/// Writes `path` through a temp file beside it, renamed into place (never through a symlink
/// at `path`: the rename replaces it), readable by all.
pub(super) fn atomic_file<E: Into<BoxError>>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<(), WriteError> {
    rbuild_cache::atomic::write_with::<BoxError>(path, None, Some(0o644), |w| {
        write(w).map_err(Into::into)
    })
    .map_err(|e| write_error(path, e))
}

/// The error for `path` that `source` did not let be written.
pub(super) fn write_error(path: &Path, source: impl Into<BoxError>) -> WriteError {
    WriteError::File {
        path: path.to_path_buf(),
        source: source.into(),
    }
}

/// The directory `path` is in (`.` for a bare name).
pub(super) fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}
