//! The stage graph: a stage's edges are its base stage (FROM) and the stages it copies or
//! mounts from; the target's dependencies are walked in dependency order, and a cycle is
//! reported with every line on it.

use super::context::stage_label_plain;
use super::eval::StageWork;
use super::{PlanError, PlanErrorKind, StageBase};
use crate::instructions::Span;

/// Edge `k` of stage `w`: its base stage first (at its FROM line), then what it copies or
/// mounts from (at the referring instruction).
fn stage_edge(w: &StageWork, k: usize) -> Option<(usize, Span)> {
    match w.base {
        StageBase::Stage { index } if k == 0 => Some((index, w.span)),
        StageBase::Stage { .. } => w.deps.get(k - 1).copied(),
        _ => w.deps.get(k).copied(),
    }
}

/// Depth-first walk from `target` over stage references; returns the stages it needs in
/// dependency order and reports cycles with every line involved. The walk keeps its own
/// stack, so a chain of many thousands of stages cannot overflow the thread's.
pub(super) fn dependency_order(
    works: &[StageWork],
    names: &[Option<String>],
    target: usize,
) -> Result<Vec<usize>, PlanError> {
    const OPEN: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![0u8; works.len()];
    let mut order = Vec::new();
    // The stages being walked, each with its next edge; `path` holds, for all but the last,
    // the stage and the place where it refers to the next one.
    let mut stack: Vec<(usize, usize)> = vec![(target, 0)];
    let mut path: Vec<(usize, Span)> = Vec::new();
    state[target] = OPEN;
    while let Some((i, next)) = stack.last_mut() {
        let i = *i;
        let Some((d, sp)) = stage_edge(&works[i], *next) else {
            state[i] = DONE;
            order.push(i);
            stack.pop();
            path.pop();
            continue;
        };
        *next += 1;
        path.push((i, sp));
        match state[d] {
            DONE => {
                path.pop();
            }
            OPEN => return Err(cycle_error(names, &path, d)),
            _ => {
                state[d] = OPEN;
                stack.push((d, 0));
            }
        }
    }
    Ok(order)
}

/// The error for reaching stage `d` again along `path` (which ends with the reference
/// that closes the cycle).
fn cycle_error(names: &[Option<String>], path: &[(usize, Span)], d: usize) -> PlanError {
    let start = path.iter().position(|(s, _)| *s == d).unwrap_or(0);
    let mut names_in: Vec<String> = path[start..]
        .iter()
        .map(|(s, _)| stage_label_plain(names, *s))
        .collect();
    names_in.push(stage_label_plain(names, d));
    let (_, last_span) = path[path.len() - 1];
    let mut err = PlanError::at(
        PlanErrorKind::Cycle {
            cycle: names_in.join(" -> "),
        },
        last_span,
    );
    for (s, sp) in &path[start..path.len() - 1] {
        err = err.note(
            *sp,
            format!(
                "stage {} refers to the next one here",
                stage_label_plain(names, *s)
            ),
        );
    }
    err
}
