//! Builds a bake's targets in one process: each target is a [`BuildRequest`] built as
//! [`crate::build_with`] builds it, all of them side by side with one shared
//! [`solver::Inflight`] — a step two targets share (the same base, the same RUN over the
//! same inputs) runs once, the other target waits for it and takes its record — and at
//! most `jobs` steps run at once across the targets. A target with `target:NAME` contexts
//! starts once those targets are built, their images its named contexts. The first target
//! that fails stops the others (their running steps are cancelled) and fails the bake with
//! its name.

use std::sync::mpsc;

use crate::context::NamedContextArg;
use crate::{BuildRequest, Built, Error, Events, Worker, solver};

/// Why a bake failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A target's build failed.
    #[error("target {target} failed")]
    Target {
        /// The target.
        target: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A `target:` context's name is not one a Dockerfile can use.
    #[error(
        "target {target}: context {name:?} is not a valid name (a lower-case image name other \
         than scratch and context)"
    )]
    ContextName {
        /// The target.
        target: String,
        /// The context's name.
        name: String,
    },
    /// A `target:` context names a target that is not part of this bake, or targets wait
    /// for each other.
    #[error("target {target}: waits for {waits_for}, which this bake does not build")]
    Unbuildable {
        /// The target.
        target: String,
        /// The targets it waits for.
        waits_for: String,
    },
}

/// One target to build.
#[derive(Debug)]
pub struct BakeTarget {
    /// Its name.
    pub name: String,
    /// What to build.
    pub request: BuildRequest,
    /// Its `target:` contexts: context name, and the target whose image it is.
    pub after: Vec<(String, String)>,
}

/// Builds `targets` (a target's `after` targets first), at most `jobs` steps at once
/// across them; returns what each built, by name, in the order they finished.
pub fn build_all(
    targets: Vec<BakeTarget>,
    jobs: usize,
    progress: &dyn Events,
    worker: &dyn Worker,
) -> Result<Vec<(String, Built)>, RunError> {
    let shared = solver::Inflight::with_jobs(jobs);
    let mut waiting: Vec<BakeTarget> = Vec::new();
    for mut t in targets {
        for (name, _) in &t.after {
            let key = rbuild_compiler::plan::named_context_key(name).ok_or_else(|| {
                RunError::ContextName {
                    target: t.name.clone(),
                    name: name.clone(),
                }
            })?;
            // Replaced by the built image before the target starts.
            t.request.named_contexts.remove(&key);
        }
        waiting.push(t);
    }
    for t in &waiting {
        if let Some((_, missing)) = t
            .after
            .iter()
            .find(|(_, dep)| !waiting.iter().any(|w| &w.name == dep))
        {
            return Err(RunError::Unbuildable {
                target: t.name.clone(),
                waits_for: missing.clone(),
            });
        }
    }
    let mut built: Vec<(String, Built)> = Vec::new();
    let mut failure: Option<RunError> = None;
    let (tx, rx) = mpsc::channel::<(String, Result<Built, Error>)>();
    std::thread::scope(|scope| {
        let mut running = 0usize;
        loop {
            if failure.is_none() {
                // Start every target whose `target:` contexts are built.
                let (ready, rest): (Vec<BakeTarget>, Vec<BakeTarget>) =
                    std::mem::take(&mut waiting).into_iter().partition(|t| {
                        t.after
                            .iter()
                            .all(|(_, dep)| built.iter().any(|(n, _)| n == dep))
                    });
                waiting = rest;
                for mut t in ready {
                    for (name, dep) in &t.after {
                        let Some(key) = rbuild_compiler::plan::named_context_key(name) else {
                            continue;
                        };
                        let Some((_, b)) = built.iter().find(|(n, _)| n == dep) else {
                            continue;
                        };
                        t.request
                            .named_contexts
                            .insert(key, NamedContextArg::Stored(b.descriptor.clone()));
                    }
                    let (tx, shared) = (tx.clone(), &shared);
                    running += 1;
                    scope.spawn(move || {
                        let r = crate::build_beside(
                            &t.request,
                            progress,
                            worker,
                            Some((shared, &t.name)),
                        );
                        let _ = tx.send((t.name, r));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let Ok((name, result)) = rx.recv() else {
                break;
            };
            running -= 1;
            match result {
                Ok(b) => built.push((name, b)),
                Err(source) => {
                    if failure.is_none() {
                        shared.stop();
                        failure = Some(RunError::Target {
                            target: name,
                            source: Box::new(source),
                        });
                    }
                }
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(t) = waiting.first() {
        return Err(RunError::Unbuildable {
            target: t.name.clone(),
            waits_for: t
                .after
                .iter()
                .map(|(_, d)| d.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(built)
}
