//! `plain`: one line per event, numbered like BuildKit's plain output, every line with its
//! control characters shown as escapes.

use std::collections::VecDeque;
use std::time::Duration;

use indicatif::HumanBytes;
use rbuild_compiler::text::escape_controls;
use rbuild_engine::Location;

use super::Summary;
use super::state::{Shared, State};
use super::text::{one_line, short_digest, shown};
use super::view::{TransferNote, View};

/// Line by line.
#[derive(Debug)]
pub(super) struct Plain;

/// Writes `text` with its control characters shown as escapes, whatever it quotes.
fn emit(sh: &Shared, text: &str) {
    sh.emit(&escape_controls(text));
}

impl View for Plain {
    fn start(&self, sh: &Shared, step: usize, label: &str, description: &str, _source: bool) {
        emit(
            sh,
            &format!("#{step} [{label}] {}\n", one_line(description)),
        );
    }

    fn line(&self, sh: &Shared, step: usize, since: f64, text: &str) {
        emit(sh, &format!("#{step} {since:.3} {}\n", shown(text)));
    }

    fn notice(&self, sh: &Shared, notice: &str) {
        emit(sh, &format!("{notice}\n"));
    }

    fn cached(&self, sh: &Shared, step: usize) {
        emit(sh, &format!("#{step} CACHED\n"));
    }

    fn miss(&self, sh: &Shared, step: usize, reason: &str) {
        emit(sh, &format!("#{step} cache miss: {reason}\n"));
    }

    fn done(&self, sh: &Shared, step: usize, took: Duration) {
        emit(sh, &format!("#{step} DONE {:.1}s\n", took.as_secs_f64()));
    }

    fn failed(
        &self,
        sh: &Shared,
        step: usize,
        message: &str,
        _tail: &VecDeque<(f64, String)>,
        _location: Option<Location<'_>>,
    ) {
        let first = message.lines().next().unwrap_or_default();
        emit(sh, &format!("#{step} ERROR: {first}\n"));
    }

    fn transfer(&self, sh: &Shared, step: usize, note: &TransferNote<'_>) {
        let text = match note {
            TransferNote::Start { digest, size } => {
                format!("{} {} started", short_digest(digest), HumanBytes(*size))
            }
            TransferNote::Bytes { .. } => return,
            TransferNote::Done {
                digest,
                done,
                total,
                since,
            } => format!(
                "{} {} / {} {since:.1}s done",
                short_digest(digest),
                HumanBytes(*done),
                HumanBytes(*total)
            ),
            TransferNote::Exists { digest } => format!("{} exists", short_digest(digest)),
            TransferNote::Mounted { digest, from } => {
                format!("{} mounted from {from}", short_digest(digest))
            }
            TransferNote::Retry { text, .. } => text.clone(),
        };
        emit(sh, &format!("#{step} {text}\n"));
    }

    fn finish(&self, sh: &Shared, _st: &mut State, summary: &Summary) {
        emit(sh, &summary.render());
    }
}
