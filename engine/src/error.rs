//! The errors of a build: [`Error`], what [`crate::build`] returns, wraps the error of the
//! module that failed (each module has its own enum, whose variants name the file, line,
//! path, reference, digest, layer or step at fault); errors of the other crates stay in the
//! chain as sources. Some errors carry a hint, what the user can do about it: [`hint`]
//! finds it on any error of the chain, and the command line prints it as `hint:` after the
//! causes.

use std::error::Error as StdError;
use std::path::PathBuf;

pub use crate::solver::SolveError;

/// Why a build failed: the error of the module that failed, or one of the build's own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The context or the Dockerfile could not be loaded.
    #[error(transparent)]
    Context(#[from] crate::context::ContextError),
    /// The output flags are not valid.
    #[error(transparent)]
    Settings(#[from] crate::output::SettingsError),
    /// The Dockerfile does not plan: the diagnostic at its line, with a caret.
    #[error("{message}")]
    Dockerfile {
        /// The Dockerfile's name.
        file: String,
        /// The rendered diagnostic.
        message: String,
    },
    /// A base image could not be resolved.
    #[error(transparent)]
    Base(#[from] crate::bases::BaseError),
    /// A base image lacks blobs in the store.
    #[error("base image {image} is incomplete")]
    IncompleteBase {
        /// The image.
        image: String,
        /// Why.
        #[source]
        source: Box<rbuild_cache::gc::GcError>,
    },
    /// `--no-cache-filter` names no stage.
    #[error("--no-cache-filter {filter:?} names no stage of {file}")]
    NoCacheFilter {
        /// The filter.
        filter: String,
        /// The Dockerfile's name.
        file: String,
    },
    /// A step failed, or the plan could not be solved.
    #[error(transparent)]
    Solve(#[from] SolveError),
    /// The image could not be assembled.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// An output could not be written.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// An attestation could not be made.
    #[error(transparent)]
    Attest(#[from] crate::attest::AttestError),
    /// The cache could not be exported.
    #[error(transparent)]
    CacheExport(#[from] crate::remote_cache::CacheExportError),
    /// A part of the request holds one platform's image, and the build makes several.
    #[error(
        "{what} holds one platform's image, and this build makes {count} ({platforms}): {hint}"
    )]
    MultiPlatform {
        /// The output or cache export.
        what: String,
        /// How many platforms.
        count: usize,
        /// Which.
        platforms: String,
        /// What to use instead.
        hint: &'static str,
    },
    /// The `--iidfile` could not be written.
    #[error("cannot write --iidfile {}", path.display())]
    Iidfile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// What the user can do about it, when the error (not its causes) carries a hint.
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::Context(e) => e.hint(),
            Error::Solve(e) => e.hint(),
            _ => None,
        }
    }
}

/// The hint for an error at the layer size limit: the variable of the `rbuild` command that
/// sets [`crate::BuildRequest::limits`]'s layer size.
pub const LAYER_SIZE_HINT: &str = "RBUILD_MAX_LAYER_SIZE sets this limit (bytes, or a number with k, m, g, t or p: powers of 1024)";

/// The hint `err` itself carries, if it is an error of this crate that has one (its causes
/// are not looked at: walk the chain with `source()` and ask each). A boxed source (`Box<E>`)
/// is found too.
pub fn hint<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a str> {
    macro_rules! hint_of {
        ($($t:ty),*) => {
            $(
                if let Some(e) = err.downcast_ref::<$t>() {
                    return e.hint();
                }
                if let Some(e) = err.downcast_ref::<Box<$t>>() {
                    return e.hint();
                }
            )*
        };
    }
    hint_of!(
        Error,
        SolveError,
        crate::worker::WorkerError,
        crate::exec::ExecError,
        crate::context::ContextError,
        crate::snapshots::SnapshotError,
        crate::missing::ImageNotFound
    );
    None
}

/// `err` and its causes on one line, separated by `: ` (as `anyhow` shows `{:#}`).
pub fn chain_text(err: &(dyn StdError + 'static)) -> String {
    crate::missing::causes(err)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::ExecError;
    use crate::worker::WorkerError;

    /// The hints found on `err`'s chain, as the command line's renderer finds them.
    fn hints<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a str> {
        crate::missing::causes(err).filter_map(hint).collect()
    }

    #[test]
    fn a_failed_steps_hint_is_found_on_the_chain_of_the_build_error() {
        let failed = ExecError::Failed {
            argv: vec!["/bin/sh".into(), "-c".into(), "make".into()],
            code: 1,
            killed: String::new(),
            tail: String::new(),
            hint: Some("the file system of the store /s is full".into()),
        };
        let err = Error::Solve(SolveError::Step {
            located: "Dockerfile:3: RUN make failed".into(),
            source: Box::new(SolveError::Worker(WorkerError::Exec(failed))),
        });
        assert_eq!(
            chain_text(&err),
            "Dockerfile:3: RUN make failed: process [\"/bin/sh\", \"-c\", \"make\"] did not \
             complete successfully: exit code 1"
        );
        let found = hints(&err);
        assert!(
            found.contains(&"the file system of the store /s is full"),
            "{found:?}"
        );
    }

    #[test]
    fn a_context_past_the_layer_size_limit_carries_the_variable_as_hint() {
        let err = Error::Context(crate::context::ContextError::TooLarge {
            origin: "stdin".into(),
            limit: 10,
        });
        assert_eq!(hints(&err), [LAYER_SIZE_HINT]);
        let other = Error::NoCacheFilter {
            filter: "x".into(),
            file: "Dockerfile".into(),
        };
        assert!(hints(&other).is_empty());
    }
}
