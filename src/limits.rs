//! The limits every reader of untrusted layers and archives keeps, as this process applies
//! them: [`rbuild_tarlimits::Limits`], with the layer size from
//! [`crate::env::RBUILD_MAX_LAYER_SIZE`]. `load`, `import`, `run`, `report` and the build (its
//! context from stdin, ADD, outputs and cache imports) all take them from [`get`].

use rbuild_tarlimits::{LimitError, Limits};

use crate::env;
use crate::report::Hint;

/// The limits for this process: the defaults, and the layer size from the environment.
pub fn get() -> anyhow::Result<Limits> {
    Ok(Limits {
        max_layer_bytes: env::max_layer_size()?,
        ..Limits::default()
    })
}

/// The limit a cause of an error names: a limiter's (also inside an I/O error), or one a
/// reader's own error carries.
fn limit_of<'e>(cause: &'e (dyn std::error::Error + 'static)) -> Option<&'e LimitError> {
    use rbuild_cache::import::ImportError;
    use rbuild_executor::fileop::FileOpError;
    if let Some(limit) = cause.downcast_ref::<LimitError>() {
        return Some(limit);
    }
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        return LimitError::of(io);
    }
    match cause.downcast_ref::<FileOpError>() {
        Some(FileOpError::ArchiveLimit { limit, .. }) => return Some(limit),
        Some(_) => return None,
        None => {}
    }
    match cause.downcast_ref::<ImportError>() {
        Some(ImportError::Limit { limit, .. }) => Some(limit),
        _ => None,
    }
}

/// Whether `err` stopped at the layer size limit.
fn crossed_layer_size(err: &anyhow::Error) -> bool {
    use rbuild_cache::archive::ArchiveError;
    use rbuild_report::scan::ScanError;
    err.chain().any(|cause| {
        matches!(limit_of(cause), Some(LimitError::TooLarge { .. }))
            || matches!(
                cause.downcast_ref::<ArchiveError>(),
                Some(ArchiveError::TooLarge { .. })
            )
            || matches!(
                cause.downcast_ref::<ScanError>(),
                Some(ScanError::TooLarge { .. })
            )
    })
}

/// The hint for an error at the layer size limit: which variable sets it.
pub fn layer_size_hint() -> Hint {
    Hint(format!(
        "{} sets this limit (bytes, or a number with k, m, g, t or p: powers of 1024)",
        env::RBUILD_MAX_LAYER_SIZE
    ))
}

/// The hint for `err`: the variable that sets the limit it crossed, when that limit can be
/// set.
pub fn hint_for(err: &anyhow::Error) -> Option<Hint> {
    crossed_layer_size(err).then(layer_size_hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_size_limit_gets_a_hint() {
        let e = anyhow::Error::new(LimitError::TooLarge { limit: 1 }.into_io()).context("layer x");
        assert!(hint_for(&e).is_some_and(|h| h.0.starts_with("RBUILD_MAX_LAYER_SIZE")));
        let other = anyhow::Error::new(LimitError::TooManyEntries { limit: 1 });
        assert!(hint_for(&other).is_none());
    }
}
