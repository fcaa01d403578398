//! The views of check results: text for people (rbuild's diagnostic format with the source
//! excerpt, the fix and the rule's page), JSON, and SARIF 2.1.0 for code-scanning tools.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{Checked, RULES, Severity, rule};
use crate::parser::render_diagnostic;
use crate::text::escape_controls;

/// One checked file: its name as shown, its text, and what was found.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The file name shown (a path as given).
    pub file: &'a str,
    /// Its text.
    pub source: &'a str,
    /// The result.
    pub checked: &'a Checked,
}

/// Text: one diagnostic per finding (`file:line:col: warning[Rule]: message`, the source
/// line with carets under the span, `hint:` with the fix, the rule's page), then what could
/// not be checked, then a summary line. Empty when nothing was found and nothing limited.
pub fn render_text(reports: &[Report<'_>]) -> String {
    let mut out = String::new();
    let (mut warnings, mut errors, mut infos) = (0, 0, 0);
    for r in reports {
        for f in &r.checked.findings {
            match f.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
                Severity::Info => infos += 1,
            }
            let message = format!("{}[{}]: {}", f.severity.as_str(), f.rule, f.message);
            out.push_str(&render_diagnostic(
                &message,
                f.span,
                Some(&f.fix),
                r.file,
                r.source,
            ));
            if let Some(info) = rule(f.rule) {
                let _ = write!(out, "\n  = see: {}", info.doc_url());
            }
            out.push_str("\n\n");
        }
        for limit in &r.checked.limits {
            let _ = writeln!(
                out,
                "{}: note: {}",
                escape_controls(r.file),
                escape_controls(limit)
            );
        }
    }
    if warnings + errors + infos > 0 {
        let _ = writeln!(
            out,
            "{} file{} checked: {errors} error{}, {warnings} warning{}, {infos} note{}",
            reports.len(),
            plural(reports.len()),
            plural(errors),
            plural(warnings),
            plural(infos)
        );
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// JSON: `{"files": [{"file", "findings": [...], "limits": [...]}]}`, each finding with its
/// rule, severity, 1-based line/column span (end exclusive), message, fix and page.
pub fn render_json(reports: &[Report<'_>]) -> String {
    let files: Vec<Value> = reports
        .iter()
        .map(|r| {
            let findings: Vec<Value> = r
                .checked
                .findings
                .iter()
                .map(|f| {
                    json!({
                        "rule": f.rule,
                        "severity": f.severity,
                        "line": f.span.start.line,
                        "column": f.span.start.column,
                        "end_line": f.span.end.line,
                        "end_column": f.span.end.column,
                        "message": f.message,
                        "fix": f.fix,
                        "url": rule(f.rule).map(|i| i.doc_url()),
                    })
                })
                .collect();
            json!({ "file": r.file, "findings": findings, "limits": r.checked.limits })
        })
        .collect();
    let mut s =
        serde_json::to_string_pretty(&json!({ "version": 1, "files": files })).unwrap_or_default();
    s.push('\n');
    s
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// A relative path as a URI reference: unreserved characters and `/` as they are, the
/// rest percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// SARIF 2.1.0: one run of the `rbuild` driver listing every rule, one result per finding
/// with its physical location, the fix as a result property, and the limits as
/// tool execution notifications.
pub fn render_sarif(reports: &[Report<'_>]) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.name,
                "name": r.name,
                "shortDescription": { "text": r.summary },
                "helpUri": r.doc_url(),
                "defaultConfiguration": { "level": sarif_level(r.severity) },
                "properties": { "origin": r.origin, "hadolint": r.hadolint },
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut notes = Vec::new();
    for r in reports {
        for f in &r.checked.findings {
            let index = RULES.iter().position(|x| x.name == f.rule);
            let mut result = json!({
                "ruleId": f.rule,
                "level": sarif_level(f.severity),
                "message": { "text": f.message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(r.file) },
                        "region": {
                            "startLine": f.span.start.line.max(1),
                            "startColumn": f.span.start.column.max(1),
                            "endLine": f.span.end.line.max(f.span.start.line).max(1),
                            "endColumn": f.span.end.column.max(1),
                        }
                    }
                }],
                "properties": { "fix": f.fix },
            });
            if let Some(i) = index {
                result["ruleIndex"] = json!(i);
            }
            results.push(result);
        }
        for limit in &r.checked.limits {
            notes.push(json!({
                "level": "note",
                "message": { "text": limit },
                "locations": [{ "physicalLocation": { "artifactLocation": { "uri": uri(r.file) } } }],
            }));
        }
    }
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "rbuild",
                "informationUri": "https://github.com/rbuild/rbuild",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notes,
            }],
            "results": results,
        }],
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}
