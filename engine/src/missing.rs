//! What rbuild says when an image it was asked for is neither in the store nor pullable:
//! what was tried and why it failed in one line ([`pull_failure`]), the closest name the
//! store has ([`closest_image`]), and the whole cause chain only under `-v` ([`verbose`]).

use std::error::Error;

use rbuild_cache::Store;
use rbuild_registry::error::RegistryError;

/// An image that is neither in the store nor pullable ([`image_not_found`]).
#[derive(Debug, thiserror::Error)]
#[error("image {image} is not in the local store and could not be pulled\n  = note: {note}")]
pub struct ImageNotFound {
    /// The image as the user wrote it.
    pub image: String,
    /// What was tried, in one line ([`pull_failure`]).
    pub note: String,
    /// The closest local name, as `did you mean NAME?`.
    pub hint: Option<String>,
    /// The pull's error, kept only under `-v` (its cause chain is shown then).
    #[source]
    pub source: Option<Box<dyn Error + Send + Sync>>,
}

impl ImageNotFound {
    /// What the user can do about it: the closest local name.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// `err` and its causes, outermost first.
pub(crate) fn causes<'a>(
    err: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(err), |&e| e.source())
}

/// Whether the cause chains of errors are wanted (`-v`): the one-line summary is enough
/// otherwise.
pub fn verbose() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

/// `tried to pull NAME: GET URL: ROOT CAUSE`: the pull of `name` (its full form) that
/// `err` ended, in one line: the request that failed, when the registry was not reached,
/// and the innermost cause.
pub fn pull_failure(name: &str, err: &(dyn Error + 'static)) -> String {
    let mut out = format!("tried to pull {name}");
    let request = causes(err).find_map(|c| match c.downcast_ref::<RegistryError>() {
        Some(RegistryError::Http { method, url, .. }) => Some(format!("{method} {url}")),
        _ => None,
    });
    if let Some(request) = request {
        out.push_str(": ");
        out.push_str(&request);
    }
    if let Some(root) = causes(err).last() {
        out.push_str(": ");
        out.push_str(&root.to_string());
    }
    out.replace('\n', " ")
}

/// The name of an image of the store closest to `wanted` (as the user wrote it), shown as
/// the user would write it: short, and without `:latest` when `wanted` has no tag.
pub fn closest_image(store: &Store, wanted: &str) -> Option<String> {
    let full = crate::names::normalize_name(wanted).ok()?;
    let short = crate::names::short_name(&full);
    let names: Vec<String> = store.list().ok()?.into_iter().map(|i| i.name).collect();
    let shorts: Vec<&str> = names.iter().map(|n| crate::names::short_name(n)).collect();
    let best = rbuild_compiler::suggest::closest(short, shorts.iter().copied())?;
    let tagged = wanted
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
        || wanted.contains('@');
    Some(match best.strip_suffix(":latest") {
        Some(bare) if !tagged => bare.to_string(),
        _ => best.to_string(),
    })
}

/// The error for an image that is not in the store and whose pull failed with `err`:
/// `image NAME is not in the local store and could not be pulled`, the attempt in one line,
/// the closest local name as a hint; the pull's cause chain only under `-v`.
pub fn image_not_found(
    store: &Store,
    wanted: &str,
    err: impl Into<Box<dyn Error + Send + Sync>>,
) -> ImageNotFound {
    let err = err.into();
    let full = crate::names::normalize_name(wanted).unwrap_or_else(|_| wanted.to_string());
    ImageNotFound {
        image: wanted.to_string(),
        note: pull_failure(&full, err.as_ref()),
        hint: closest_image(store, wanted).map(|best| format!("did you mean {best}?")),
        source: verbose().then_some(err),
    }
}
