//! The errors of a build: [`Error`], what [`crate::build`] returns, wraps the error of the
//! module that failed (each module has its own enum, whose variants name the file, line,
//! path, reference, digest, layer or step at fault); errors of the other crates stay in the
//! chain as sources. Some errors carry a hint, what the user can do about it: [`hint`]
//! finds it on any error of the chain, and the command line prints it as `hint:` after the
//! causes.

use std::error::Error as StdError;

/// The hint for an error at the layer size limit: the variable of the `rbuild` command that
/// sets [`crate::BuildRequest::limits`]'s layer size.
pub const LAYER_SIZE_HINT: &str =
    "RBUILD_MAX_LAYER_SIZE sets this limit (bytes, or a number with K, M, G or T)";

/// The hint `err` itself carries, if it is an error of this crate that has one (its causes
/// are not looked at: walk the chain with `source()` and ask each).
pub fn hint<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a str> {
    if let Some(e) = err.downcast_ref::<crate::missing::ImageNotFound>() {
        return e.hint();
    }
    None
}

/// `err` and its causes on one line, separated by `: ` (as `anyhow` shows `{:#}`).
pub fn chain_text(err: &(dyn StdError + 'static)) -> String {
    crate::missing::causes(err)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
