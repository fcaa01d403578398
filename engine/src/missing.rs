//! What rbuild says when an image it was asked for is neither in the store nor pullable:
//! what was tried and why it failed in one line ([`pull_failure`]), the closest name the
//! store has ([`closest_image`]), and the whole cause chain only under `-v` ([`verbose`]).

use rbuild_cache::Store;
use rbuild_registry::error::RegistryError;

/// Whether the cause chains of errors are wanted (`-v`): the one-line summary is enough
/// otherwise.
pub fn verbose() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

/// `tried to pull NAME: GET URL: ROOT CAUSE`: the pull of `name` (its full form) that
/// `err` ended, in one line: the request that failed, when the registry was not reached,
/// and the innermost cause.
pub fn pull_failure(name: &str, err: &anyhow::Error) -> String {
    let mut out = format!("tried to pull {name}");
    let request = err
        .chain()
        .find_map(|c| match c.downcast_ref::<RegistryError>() {
            Some(RegistryError::Http { method, url, .. }) => Some(format!("{method} {url}")),
            _ => None,
        });
    if let Some(request) = request {
        out.push_str(": ");
        out.push_str(&request);
    }
    if let Some(root) = err.chain().last() {
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
pub fn image_not_found(store: &Store, wanted: &str, err: anyhow::Error) -> anyhow::Error {
    let full = crate::names::normalize_name(wanted).unwrap_or_else(|_| wanted.to_string());
    let message = format!(
        "image {wanted} is not in the local store and could not be pulled\n  = note: {}",
        pull_failure(&full, &err)
    );
    let err = if verbose() {
        err.context(message)
    } else {
        anyhow::anyhow!(message)
    };
    match closest_image(store, wanted) {
        Some(best) => err.context(crate::Hint(format!("did you mean {best}?"))),
        None => err,
    }
}
