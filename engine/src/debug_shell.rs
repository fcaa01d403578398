//! `--on-error=shell`: a shell in the file system of a failed RUN step, as the step left it.
//!
//! When a RUN command fails and the build asked for it ([`BuildRequest::on_error`]), the
//! step's sandbox is started once more, on the same root (the overlay upper directory, or the
//! copied tree, that holds what the failed command wrote) with the step's [`RunSpec`]: its
//! environment (build args included), working directory, user, network and mounts (cache
//! mounts still locked by the step, bind mounts with their scratch directories, secrets on
//! their tmpfs, the ssh agent socket). Only the process differs: an interactive `/bin/sh` on a
//! pseudo-terminal, or the user's command. Nothing of the session is kept: the step still
//! fails with its own error, no layer is written, no cache record is made, and the step
//! directory is removed as after any failure. A command reads an empty stdin, and its output,
//! stdout and stderr line by line, goes to rbuild's stdout (stderr is the progress's alone, so
//! `--progress json` stays valid); the shell's pty is copied to stdout too.
//!
//! Only the build's first failure gets the shell ([`CancelToken::claim_failure`]): the claim
//! fires the build's cancellation first, so the other running steps are killed as after any
//! failure, and a step that fails after that (or after Ctrl-C) ends as it always did. While
//! the shell runs the progress view is held ([`Events::suspend`]). Without a terminal on stdin
//! an interactive shell cannot work: the build says so once (a warning) and fails at once.
//!
//! [`BuildRequest::on_error`]: crate::BuildRequest::on_error
//! [`CancelToken::claim_failure`]: crate::worker::CancelToken::claim_failure
//! [`Events::suspend`]: crate::Events::suspend

use std::io::{IsTerminal as _, Write as _};

use rbuild_executor::sandbox::{
    CancelHandle, Command, RunSpec, Sandbox, SandboxError, Stdio, Stream,
};
use rbuild_executor::snapshot::PreparedRoot;

use crate::BuildRequest;
use crate::worker::StepEnv;

/// The shell opened when no command is given.
pub const DEFAULT_SHELL: &str = "/bin/sh";

/// The code of the warnings about the shell (no terminal, no shell in the image).
pub const WARNING_CODE: &str = "on-error-shell";

/// What a build does when a RUN step fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum OnError {
    /// End the build with the step's error (the default).
    #[default]
    Fail,
    /// First open a shell in the failed step's file system: an interactive
    /// [`DEFAULT_SHELL`] on a pseudo-terminal (`None`; needs a terminal on stdin), or run
    /// this command, its output to rbuild's stdout (`Some`; needs no terminal).
    Shell(Option<Vec<String>>),
}

/// The hint a failed RUN command's error carries: how to look inside the step. `None` when
/// the build asked for a shell already.
pub(crate) fn rerun_hint(settings: &BuildRequest) -> Option<String> {
    (settings.on_error == OnError::Fail).then(|| {
        "rerun with --on-error=shell to open a shell in the step's file system".to_string()
    })
}

/// Runs the shell of `--on-error=shell` (or its command) in the failed step's sandbox: `spec`
/// as the step ran, on `root` as the command left it. Does nothing when the build did not ask
/// for it, or when another step failed first or the build was interrupted. A shell that
/// cannot be started is a warning: the build fails with the step's error all the same.
pub(crate) fn after_failure(env: &StepEnv<'_>, spec: &RunSpec, root: &PreparedRoot) {
    let OnError::Shell(command) = &env.settings.on_error else {
        return;
    };
    if !env.cancel.claim_failure(env.step) {
        return;
    }
    let (argv, stdio) = match command {
        Some(argv) => (argv.clone(), Stdio::Lines),
        None if !std::io::stdin().is_terminal() => {
            env.progress.warn(
                WARNING_CODE,
                "no shell opened in the failed step: stdin is not a terminal \
                 (--on-error=shell:CMD runs a command without one)",
            );
            return;
        }
        None => (vec![DEFAULT_SHELL.to_string()], Stdio::Tty),
    };
    let mut shell = spec.clone();
    shell.command = Command::Exec(argv.clone());
    shell.stdio = stdio;
    shell.timeout = None;
    // Its own handle: the build's token has fired (the claim), and would kill it at once.
    shell.cancel = CancelHandle::new();
    let notice = match command {
        Some(_) => format!(
            "step #{} failed; running {argv:?} in its file system as the command left it",
            env.step
        ),
        None => format!(
            "step #{} failed; opening {DEFAULT_SHELL} in its file system as the command left \
             it, with the step's environment, working directory, user and mounts; exit the \
             shell to end the build with the step's error",
            env.step
        ),
    };
    env.progress.suspend(&notice);
    // A command's output, both streams, goes to stdout: stderr keeps the progress alone (a
    // `--progress json` stream stays valid). A pty's goes there too.
    let mut out = crate::stdout::stdout();
    let ran = Sandbox::run(&shell, root, &mut |_: Stream, line: &[u8]| {
        let _ = out.write_all(line).and_then(|()| out.write_all(b"\n"));
    });
    let _ = out.flush();
    env.progress.resume();
    match ran {
        Ok(outcome) => tracing::debug!(
            "the shell in step #{} exited with code {}",
            env.step,
            outcome.exit_code
        ),
        Err(SandboxError::Exec { code: 127, .. }) if command.is_none() => env.progress.warn(
            WARNING_CODE,
            &format!(
                "no shell opened in the failed step: its file system has no {DEFAULT_SHELL} \
                 (--on-error=shell:CMD runs a command of the image)"
            ),
        ),
        Err(e) => env.progress.warn(
            WARNING_CODE,
            &format!(
                "cannot run {argv:?} in the failed step: {}",
                crate::error::chain_text(&e)
            ),
        ),
    }
}
