//! The errors of a sandbox run and of the work done in a user namespace: [`SandboxError`],
//! each variant naming what failed.

use std::io;
use std::path::PathBuf;

use crate::user::UserError;

/// Errors of [`super::Sandbox::run`]; each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The image's user database does not resolve the user.
    #[error("cannot resolve user {user:?}")]
    User {
        /// The user as written.
        user: String,
        /// The cause.
        #[source]
        source: UserError,
    },
    /// A host-side step failed.
    #[error("cannot {what}")]
    Host {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The command could not be started (126: not executable or the
    /// process set-up failed, 127: not found), as a shell would report it.
    #[error("cannot start the command: {message}")]
    Exec {
        /// What went wrong.
        message: String,
        /// The exit code: 126 (not executable, or the set-up failed) or 127 (not found).
        code: i32,
    },
    /// A step inside the sandbox failed before the command started.
    #[error("sandbox setup failed: {message}")]
    Setup {
        /// What went wrong.
        message: String,
    },
    /// Unpacking a layer inside the user namespace failed.
    #[error("cannot unpack a layer into {dest}: {message}")]
    Unpack {
        /// The snapshot directory.
        dest: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Writing a layer inside the user namespace failed.
    #[error("cannot write the layer of {step}: {message}")]
    Layer {
        /// The step's root file system.
        step: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The user-mode network stack of [`super::Network::Private`] is not installed.
    #[error(
        "{program} not found in PATH: a build's or container's own network namespace needs it for outbound \
         access (Debian and Ubuntu package passt); install it, or choose --network none \
         (no network) or --network host with --allow network.host"
    )]
    NetworkStackMissing {
        /// The program looked for.
        program: String,
    },
    /// The user-mode network stack did not start.
    #[error("cannot start the network stack {}: {message}", program.display())]
    NetworkStack {
        /// The stack's program.
        program: PathBuf,
        /// What went wrong (its own message when it printed one).
        message: String,
    },
    /// The seccomp filter cannot be built.
    #[error("cannot build the sandbox's seccomp filter")]
    Seccomp {
        /// The cause.
        #[source]
        source: super::seccomp::SeccompError,
    },
    /// The sandbox's cgroup could not be made or joined.
    #[error("cannot set the sandbox's resource limits")]
    Cgroup {
        /// The cause.
        #[source]
        source: crate::cgroup::CgroupError,
    },
    /// Installing the id maps failed.
    #[error("cannot install id maps for pid {pid} with {tool}")]
    IdMap {
        /// The process whose id maps were being installed.
        pid: i32,
        /// The tool or `/proc` file that was used.
        tool: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

pub(super) fn host(what: impl Into<String>) -> impl FnOnce(io::Error) -> SandboxError {
    let what = what.into();
    move |source| SandboxError::Host { what, source }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
