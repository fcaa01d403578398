//! The three renderings of a [`Plan`] that `rbuild plan` prints: text for people, JSON
//! for tools, and Graphviz DOT.
//!
#![doc = include_str!("SCHEMA.md")]

use std::fmt::Write as _;

use super::{OpKind, Plan, StageBase};

fn op_summary(kind: &OpKind, description: &str) -> String {
    match kind {
        OpKind::Scratch => "scratch".into(),
        OpKind::Image {
            reference,
            platform,
        } => format!("{reference} ({platform})"),
        OpKind::Context {
            include,
            exclude,
            name,
        } => {
            let mut s = match name {
                Some(n) => format!("context {n}: {}", include.join(" ")),
                None => format!("context {}", include.join(" ")),
            };
            if !exclude.is_empty() {
                let _ = write!(s, " (exclude {})", exclude.join(" "));
            }
            s
        }
        OpKind::Http { url, .. } | OpKind::Git { url, .. } => url.clone(),
        _ => description.to_string(),
    }
}

fn base_text(plan: &Plan, base: &StageBase) -> String {
    match base {
        StageBase::Scratch => "scratch".into(),
        StageBase::Image { reference } => reference.clone(),
        StageBase::Stage { index } => format!("stage {}", plan.stages[*index].label()),
    }
}

/// One header line per stage and one line per op (`#id  stage  line N  kind  what  <- inputs
/// digest`), then the warnings.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let target = plan.target_stage();
    let _ = writeln!(
        out,
        "target {} (stage {}), platform {}, build platform {}",
        target.label(),
        target.index,
        plan.target_platform,
        plan.build_platform
    );
    for (name, value) in &plan.global_args {
        match value {
            Some(v) => {
                let _ = writeln!(out, "global ARG {name}={v}");
            }
            None => {
                let _ = writeln!(out, "global ARG {name} (no value)");
            }
        }
    }
    for stage in &plan.stages {
        let _ = write!(
            out,
            "stage {} {:?} line {}: FROM {}",
            stage.index,
            stage.label(),
            stage.span.start.line,
            base_text(plan, &stage.base)
        );
        if !stage.built {
            let _ = writeln!(out, " (not built: the target does not need it)");
            continue;
        }
        if stage.base_config == super::BaseConfigState::Unresolved {
            let _ = write!(out, " (base config unresolved: ONBUILD triggers unknown");
            if !stage.unresolved_variables.is_empty() {
                let _ = write!(
                    out,
                    "; {} may come from its ENV",
                    stage
                        .unresolved_variables
                        .iter()
                        .map(|v| format!("${v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let _ = write!(out, ")");
        }
        let _ = writeln!(out);
    }
    let width = plan.ops.len().to_string().len();
    for op in &plan.ops {
        let stage = &plan.stages[op.stage];
        let inputs: Vec<String> = op.inputs.iter().map(|i| format!("#{}", i.op)).collect();
        let _ = write!(
            out,
            "#{:<width$} {:<10} line {:<4} {:<7} {}",
            op.id,
            stage.label(),
            op.span.start.line,
            op.kind.name(),
            op_summary(&op.kind, &op.description)
                .replace('\\', "\\\\")
                .replace('\n', "\\n"),
        );
        if !inputs.is_empty() {
            let _ = write!(out, "  <- {}", inputs.join(" "));
        }
        let _ = writeln!(out, "  [{}]", op.digest.short());
    }
    for w in &plan.warnings {
        match w.span {
            Some(s) => {
                let _ = writeln!(out, "warning: line {}: {}", s.start.line, w.message);
            }
            None => {
                let _ = writeln!(out, "warning: {}", w.message);
            }
        }
    }
    out
}

/// The plan as JSON (pretty-printed, keys sorted); see `SCHEMA.md`.
pub fn render_json(plan: &Plan) -> String {
    // Going through `Value` sorts object keys, so the output does not depend on struct
    // field order.
    let value = serde_json::to_value(plan).expect("a plan always serializes");
    let mut s = serde_json::to_string_pretty(&value).expect("a value always serializes");
    s.push('\n');
    s
}

fn dot_escape(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= 60 {
            out.push_str("...");
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' => out.push(' '),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A Graphviz digraph: one cluster per stage, one node per op, one edge per input
/// (labelled by its role). Pruned stages appear as dashed empty clusters.
pub fn render_dot(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str("digraph plan {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n  edge [fontsize=9];\n");
    for stage in &plan.stages {
        let _ = writeln!(out, "  subgraph cluster_{} {{", stage.index);
        let _ = writeln!(
            out,
            "    label=\"{}\";",
            dot_escape(&format!(
                "stage {} {} (line {})",
                stage.index,
                stage.label(),
                stage.span.start.line
            ))
        );
        if !stage.built {
            let _ = writeln!(out, "    style=dashed;");
            let _ = writeln!(
                out,
                "    pruned_{} [label=\"not built\", shape=plaintext];",
                stage.index
            );
        }
        for &id in &stage.ops {
            let op = &plan.ops[id];
            let _ = writeln!(
                out,
                "    op{} [label=\"#{} {}\\n{}\"];",
                id,
                id,
                op.kind.name(),
                dot_escape(&op_summary(&op.kind, &op.description))
            );
        }
        out.push_str("  }\n");
    }
    for op in &plan.ops {
        for input in &op.inputs {
            let _ = writeln!(
                out,
                "  op{} -> op{} [label=\"{}\"];",
                input.op,
                op.id,
                input.role.as_str()
            );
        }
    }
    out.push_str("}\n");
    out
}
