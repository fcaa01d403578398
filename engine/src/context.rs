//! Where the build context and the Dockerfile come from: a directory (the Dockerfile in it
//! or anywhere with `-f`, or on stdin with `-f -`), or stdin (`rbuild build -`): a tar
//! archive, plain or compressed, unpacked into a private temp dir of the store (a relative
//! `-f` names a file of the archive), or a bare Dockerfile with an empty context, as docker
//! does. The Dockerfile is read as [`crate::dockerfile::read_dockerfile`] says: resolved
//! inside its directory, a regular file of at most 16 MiB.

use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rbuild_cache::context::file::{self, MAX_DOCKERFILE_SIZE};
use rbuild_cache::context::{Context, IndexOptions, index_context};

use crate::BuildRequest;
use crate::dockerfile::DockerfileError;
use crate::exec::ExecError;

/// Why the context or the Dockerfile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// `-` as the context and `-f -`.
    #[error("the context and the Dockerfile cannot both come from stdin")]
    BothStdin,
    /// The context directory cannot be used.
    #[error("cannot use {} as the build context", path.display())]
    Use {
        /// The context argument.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The context argument is not a directory.
    #[error(
        "the build context {} is not a directory (use - to read a tar archive from stdin)",
        path.display()
    )]
    NotADirectory {
        /// The context argument.
        path: PathBuf,
    },
    /// The context cannot be indexed.
    #[error("cannot read the build context {}", path.display())]
    Index {
        /// The context directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: rbuild_cache::context::ContextError,
    },
    /// The Dockerfile cannot be read.
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
    /// A directory or temp file of the store cannot be made.
    #[error("cannot create {}", path.display())]
    Create {
        /// The directory (or where the temp file goes).
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The context on stdin cannot be read or unpacked.
    #[error("cannot {action}")]
    Stdin {
        /// What failed (`read the build context from stdin`...).
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The context on stdin is larger than the layer size limit.
    #[error("the build context read from stdin is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The temp dir of a stdin context cannot be made.
    #[error(transparent)]
    StepDir(Box<ExecError>),
}

impl ContextError {
    /// What the user can do about it (the variable that sets the limit crossed).
    pub fn hint(&self) -> Option<&str> {
        match self {
            ContextError::TooLarge { .. } => Some(crate::error::LAYER_SIZE_HINT),
            _ => None,
        }
    }
}

fn stdin_error(action: &'static str) -> impl FnOnce(std::io::Error) -> ContextError {
    move |source| ContextError::Stdin { action, source }
}

/// The CONTEXT argument.
#[derive(Debug, Clone)]
pub enum ContextArg {
    /// A directory.
    Dir(PathBuf),
    /// `-`: stdin.
    Stdin,
}

impl ContextArg {
    /// Checks the argument against `-f` (both cannot be stdin).
    pub fn new(arg: &Path, file: Option<&Path>) -> Result<ContextArg, ContextError> {
        if arg.as_os_str() == "-" {
            if file.is_some_and(|f| f.as_os_str() == "-") {
                return Err(ContextError::BothStdin);
            }
            return Ok(ContextArg::Stdin);
        }
        let md = std::fs::metadata(arg).map_err(|source| ContextError::Use {
            path: arg.to_path_buf(),
            source,
        })?;
        if !md.is_dir() {
            return Err(ContextError::NotADirectory {
                path: arg.to_path_buf(),
            });
        }
        Ok(ContextArg::Dir(arg.to_path_buf()))
    }
}

/// The Dockerfile and the context directory of one build.
#[derive(Debug)]
pub struct Source {
    /// The Dockerfile's name for diagnostics (`Dockerfile`, the `-f` path, `<stdin>`).
    pub dockerfile_name: String,
    /// Its text.
    pub dockerfile_text: String,
    /// The Dockerfile's path for `<Dockerfile>.dockerignore` (`None`: CONTEXT/Dockerfile;
    /// `-`: from stdin).
    pub dockerfile_path: Option<PathBuf>,
    /// The context directory (a temp dir for stdin contexts).
    pub root: PathBuf,
    /// Keeps a stdin context's temp dir alive.
    _temp: Option<super::exec::StepDir>,
    index: OnceLock<Context>,
}

impl Source {
    /// The context index, built on first use (a build that copies nothing never walks the
    /// context). The solver reports the special files it skipped as warnings.
    pub fn index(&self, settings: &BuildRequest) -> Result<&Context, ContextError> {
        if let Some(c) = self.index.get() {
            return Ok(c);
        }
        let opts = IndexOptions {
            dockerfile: self.dockerfile_path.clone(),
        };
        let started = std::time::Instant::now();
        let ctx = index_context(&settings.store, &self.root, &opts).map_err(|source| {
            ContextError::Index {
                path: self.root.clone(),
                source,
            }
        })?;
        let stats = ctx.stats();
        tracing::debug!(
            "context indexed in {:.2?}: {} entries, {} stated, {} hashed",
            started.elapsed(),
            ctx.entries().len(),
            stats.stated,
            stats.hashed
        );
        Ok(self.index.get_or_init(|| ctx))
    }

    /// A stable name of the context for explain records.
    pub fn identity(&self) -> String {
        if self._temp.is_some() {
            "<stdin>".into()
        } else {
            self.root.display().to_string()
        }
    }
}

/// Reads the Dockerfile and locates (or unpacks) the context.
pub fn load(settings: &BuildRequest) -> Result<Source, ContextError> {
    let file = settings.file.as_deref();
    match &settings.context {
        ContextArg::Dir(dir) => {
            let root = std::fs::canonicalize(dir).map_err(|source| ContextError::Use {
                path: dir.clone(),
                source,
            })?;
            let (name, text) = crate::dockerfile::read_dockerfile(file, &root)?;
            let dockerfile_path = file.map(|f| {
                if f.as_os_str() == "-" || f.is_absolute() {
                    f.to_path_buf()
                } else {
                    std::env::current_dir().unwrap_or_default().join(f)
                }
            });
            Ok(Source {
                dockerfile_name: display_name(&name, file),
                dockerfile_text: text,
                dockerfile_path,
                root,
                _temp: None,
                index: OnceLock::new(),
            })
        }
        ContextArg::Stdin => from_stdin(settings, file),
    }
}

fn display_name(name: &str, file: Option<&Path>) -> String {
    match file {
        None => "Dockerfile".into(),
        Some(_) => name.to_string(),
    }
}

fn from_stdin(settings: &BuildRequest, file: Option<&Path>) -> Result<Source, ContextError> {
    let tmp = settings.store.tmp_dir();
    let create = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContextError::Create { path, source }
    };
    std::fs::create_dir_all(&tmp).map_err(create(&tmp))?;
    let mut spool = tempfile::tempfile_in(&tmp).map_err(create(&tmp))?;
    let limit = settings.limits.max_layer_bytes;
    let copied = std::io::copy(
        &mut std::io::stdin().lock().take(limit.saturating_add(1)),
        &mut spool,
    )
    .map_err(stdin_error("read the build context from stdin"))?;
    if copied > limit {
        return Err(ContextError::TooLarge { limit });
    }
    spool
        .rewind()
        .map_err(stdin_error("read the spooled context"))?;
    let mut head = Vec::new();
    rbuild_compress::decompress(&spool, None)
        .map_err(stdin_error("read the context from stdin"))?
        .take(512)
        .read_to_end(&mut head)
        .map_err(stdin_error("read the context from stdin"))?;
    spool
        .rewind()
        .map_err(stdin_error("read the spooled context"))?;
    let dir = super::exec::StepDir::new(settings, "context-")
        .map_err(|e| ContextError::StepDir(Box::new(e)))?;
    // The context proper is a subdirectory: the step dir also holds its lock file.
    let ctx = dir.path().join("context");
    std::fs::create_dir(&ctx).map_err(create(&ctx))?;
    if is_tar(&head) {
        let reader = rbuild_compress::decompress(&spool, None)
            .map_err(stdin_error("read the context archive from stdin"))?;
        let mut archive = tar::Archive::new(settings.limits.reader(reader));
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(true);
        // tar's unpack refuses entries that would land outside the directory (`..`,
        // absolute paths, paths through symlinks it created).
        archive
            .unpack(&ctx)
            .map_err(stdin_error("unpack the context archive from stdin"))?;
        let root = ctx.clone();
        // A relative `-f` names a file of the archive, as with docker.
        let (name, text) = match file {
            Some(f) if f.is_relative() => {
                crate::dockerfile::read_dockerfile_in(&root, f, &f.display().to_string())?
            }
            _ => crate::dockerfile::read_dockerfile(file, &root)?,
        };
        Ok(Source {
            dockerfile_name: display_name(&name, file),
            dockerfile_text: text,
            dockerfile_path: file.map(Path::to_path_buf),
            root,
            _temp: Some(dir),
            index: OnceLock::new(),
        })
    } else {
        // A bare Dockerfile: the context is empty.
        let bytes = file::read_capped(&spool, MAX_DOCKERFILE_SIZE, Path::new("<stdin>"))
            .map_err(DockerfileError::Stdin)?;
        let (_, text) = crate::dockerfile::decode_dockerfile("<stdin>", bytes)?;
        Ok(Source {
            dockerfile_name: "<stdin>".into(),
            dockerfile_text: text,
            dockerfile_path: Some(PathBuf::from("-")),
            root: ctx,
            _temp: Some(dir),
            index: OnceLock::new(),
        })
    }
}

/// Whether a 512-byte block is a tar header: its checksum field matches.
fn is_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    let Ok(want) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_are_told_from_dockerfiles() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "Dockerfile", &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        assert!(is_tar(&bytes[..512]));
        let mut text = b"FROM scratch\n".to_vec();
        text.resize(512, b' ');
        assert!(!is_tar(&text));
    }
}
