//! Reading the Dockerfile: from the context, a `-f` file or stdin, as untrusted as the rest
//! of the context.

use std::path::Path;

use rbuild_cache::context::file::{self, FileError, MAX_DOCKERFILE_SIZE};

/// Why the Dockerfile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    /// Reading stdin (`-f -`) failed.
    #[error("cannot read the Dockerfile from stdin")]
    Stdin(#[source] FileError),
    /// The Dockerfile does not exist.
    #[error("cannot read Dockerfile {file}: no such file")]
    NotFound {
        /// The Dockerfile as shown to the user.
        file: String,
    },
    /// The Dockerfile could not be read (not a regular file, too large, outside its
    /// directory, an I/O error).
    #[error("cannot read Dockerfile {file}")]
    Read {
        /// The Dockerfile as shown to the user.
        file: String,
        /// Why.
        #[source]
        source: FileError,
    },
    /// `-f` names a directory or nothing.
    #[error("-f {} does not name a file", path.display())]
    NotAFile {
        /// The `-f` value.
        path: std::path::PathBuf,
    },
    /// The Dockerfile holds bytes that are not UTF-8.
    #[error("{file}:{line}: the Dockerfile is not valid UTF-8 (byte {offset})")]
    NotUtf8 {
        /// The Dockerfile as shown to the user.
        file: String,
        /// The line of the first invalid byte.
        line: usize,
        /// The offset of the first invalid byte.
        offset: usize,
    },
}

/// Reads the Dockerfile named by `-f` (or CONTEXT/Dockerfile) and returns the name to show
/// in diagnostics with its text.
///
/// The Dockerfile is untrusted like the rest of the context: CONTEXT/Dockerfile is resolved
/// inside the context, and a `-f PATH` file name inside its own directory (a symlink there
/// resolves within that directory, as BuildKit's Dockerfile source does), so a link to
/// `/etc/shadow` or `/proc/self/environ` is never read. Only a regular file of at most
/// [`MAX_DOCKERFILE_SIZE`] is read; `-f -` reads stdin up to the same size.
pub fn read_dockerfile(
    file: Option<&Path>,
    context: &Path,
) -> Result<(String, String), DockerfileError> {
    match file {
        Some(path) if path.as_os_str() == "-" => {
            let bytes = file::read_capped(
                std::io::stdin().lock(),
                MAX_DOCKERFILE_SIZE,
                Path::new("<stdin>"),
            )
            .map_err(DockerfileError::Stdin)?;
            decode_dockerfile("<stdin>", bytes)
        }
        Some(path) => {
            let (dir, name) = split_file_name(path)?;
            read_dockerfile_in(dir, name, &path.display().to_string())
        }
        None => {
            let shown = context.join("Dockerfile").display().to_string();
            read_dockerfile_in(context, Path::new("Dockerfile"), &shown)
        }
    }
}

/// Reads the Dockerfile `name` resolved inside `dir` (see [`read_dockerfile`]); `shown`
/// names it in diagnostics and errors.
pub fn read_dockerfile_in(
    dir: &Path,
    name: &Path,
    shown: &str,
) -> Result<(String, String), DockerfileError> {
    match file::read_in(dir, name, MAX_DOCKERFILE_SIZE) {
        Ok(Some(bytes)) => decode_dockerfile(shown, bytes),
        Ok(None) => Err(DockerfileError::NotFound {
            file: shown.to_string(),
        }),
        Err(source) => Err(DockerfileError::Read {
            file: shown.to_string(),
            source,
        }),
    }
}

/// `-f PATH` as (its directory, its file name).
fn split_file_name(path: &Path) -> Result<(&Path, &Path), DockerfileError> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            Ok((dir, Path::new(name)))
        }
        _ => Err(DockerfileError::NotAFile {
            path: path.to_path_buf(),
        }),
    }
}

/// The Dockerfile's text; bytes that are not UTF-8 are reported by line and offset, never
/// shown.
pub fn decode_dockerfile(name: &str, bytes: Vec<u8>) -> Result<(String, String), DockerfileError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok((name.to_string(), text)),
        Err(err) => {
            let bytes = err.as_bytes();
            let at = err.utf8_error().valid_up_to();
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            Err(DockerfileError::NotUtf8 {
                file: name.to_string(),
                line,
                offset: at,
            })
        }
    }
}
