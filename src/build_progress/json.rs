//! `json`: one object per line, with the exact text (JSON-escaped); the schema is in the
//! module docs of `build_progress` and `docs/progress-json.md`.

use std::collections::VecDeque;
use std::time::Duration;

use rbuild_engine::Location;

use super::state::{Shared, State};
use super::view::{TransferNote, View};
use super::{JSON_VERSION, Summary, Warning};

/// JSON lines.
#[derive(Debug)]
pub(super) struct Json;

/// Writes one event: the version, the time since the start, the name, then `fields`.
fn event(sh: &Shared, name: &str, fields: serde_json::Value) {
    let mut v = serde_json::json!({
        "v": JSON_VERSION,
        "time": sh.elapsed(),
        "event": name,
    });
    if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), fields) {
        o.extend(e);
    }
    sh.emit(&format!("{v}\n"));
}

/// An event of one step: `"step":N` first among its fields.
fn step_event(sh: &Shared, step: usize, name: &str, fields: serde_json::Value) {
    let mut f = serde_json::json!({"step": step});
    if let (Some(o), serde_json::Value::Object(e)) = (f.as_object_mut(), fields) {
        o.extend(e);
    }
    event(sh, name, f);
}

impl View for Json {
    fn start(&self, sh: &Shared, step: usize, label: &str, description: &str, source: bool) {
        step_event(
            sh,
            step,
            "start",
            serde_json::json!({
                "label": label,
                "description": description,
                "kind": if source { "source" } else { "step" },
            }),
        );
    }

    fn line(&self, sh: &Shared, step: usize, _since: f64, text: &str) {
        // The one event a chatty step sends thousands of times: written directly rather
        // than through a `serde_json::Value` map.
        sh.emit(&format!(
            "{{\"v\":{JSON_VERSION},\"time\":{},\"event\":\"output\",\"step\":{step},\"text\":{}}}\n",
            sh.elapsed(),
            serde_json::Value::from(text)
        ));
    }

    fn cached(&self, sh: &Shared, step: usize) {
        step_event(sh, step, "cached", serde_json::json!({}));
    }

    fn miss(&self, sh: &Shared, step: usize, reason: &str) {
        step_event(sh, step, "miss", serde_json::json!({"reason": reason}));
    }

    fn layer(&self, sh: &Shared, step: usize, size: u64) {
        step_event(sh, step, "layer", serde_json::json!({"size": size}));
    }

    fn done(&self, sh: &Shared, step: usize, took: Duration) {
        step_event(
            sh,
            step,
            "done",
            serde_json::json!({"seconds": took.as_secs_f64()}),
        );
    }

    fn failed(
        &self,
        sh: &Shared,
        step: usize,
        message: &str,
        tail: &VecDeque<(f64, String)>,
        location: Option<Location<'_>>,
    ) {
        step_event(
            sh,
            step,
            "error",
            serde_json::json!({
                "message": message,
                "output": tail.iter().map(|(_, t)| t).collect::<Vec<_>>(),
                "file": location.as_ref().map(|l| l.file),
                "lines": location.as_ref().map(|l| [l.lines.0, l.lines.1]),
            }),
        );
    }

    fn warning(&self, sh: &Shared, warning: &Warning) {
        event(
            sh,
            "warning",
            serde_json::to_value(warning).unwrap_or_default(),
        );
    }

    fn transfer(&self, sh: &Shared, step: usize, note: &TransferNote<'_>) {
        let fields = match note {
            TransferNote::Start { digest, size } => {
                serde_json::json!({"action": "start", "blob": digest, "size": size})
            }
            TransferNote::Bytes {
                digest,
                done,
                total,
            } => serde_json::json!({
                "action": "bytes", "blob": digest, "done": done, "total": total,
            }),
            TransferNote::Done { digest, .. } => {
                serde_json::json!({"action": "done", "blob": digest})
            }
            TransferNote::Exists { digest } => {
                serde_json::json!({"action": "exists", "blob": digest})
            }
            TransferNote::Mounted { digest, from } => {
                serde_json::json!({"action": "mounted", "blob": digest, "from": from})
            }
            TransferNote::Retry {
                what,
                attempt,
                delay,
                ..
            } => {
                step_event(
                    sh,
                    step,
                    "retry",
                    serde_json::json!({"what": what, "attempt": attempt, "delay": delay.as_secs_f64()}),
                );
                return;
            }
        };
        step_event(sh, step, "transfer", fields);
    }

    fn finish(&self, sh: &Shared, _st: &mut State, summary: &Summary) {
        event(sh, "summary", summary.to_json());
    }
}
