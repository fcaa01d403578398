//! Dockerfile checks: BuildKit's build checks with its names and semantics, the
//! best-practice rules hadolint users rely on (on a real parse of the shell in RUN), and the
//! checks that need the resolved plan. No I/O: the caller supplies the text, the base image
//! configs ([`crate::plan::BaseConfigs`]) and, for the checks that need the build context
//! or the store, runs them itself and adds their [`Finding`]s.
//!
//! ```
//! use rbuild_compiler::check::{self, CheckOptions};
//! use rbuild_compiler::plan::NoBaseConfigs;
//!
//! let out = check::check("from alpine AS Build\nRUN echo hi\n", &CheckOptions::default(), &NoBaseConfigs).unwrap();
//! let rules: Vec<&str> = out.findings.iter().map(|f| f.rule).collect();
//! assert!(rules.contains(&"StageNameCasing"));
//! assert!(rules.contains(&"ConsistentInstructionCasing"));
//! ```

mod buildkit;
mod config;
mod practice;
mod render;
mod resolved;
mod rules;
pub mod sh;

use std::collections::BTreeSet;

pub use config::{CheckConfig, ConfigError, parse_check_options};
pub use render::{Report, render_json, render_sarif, render_text};
pub use rules::{Origin, RULES, RuleInfo, rule};

use crate::parser::{self, Node, ParseError, Parsed, Span};
use crate::plan::{BaseConfigs, Plan, PlanOptions};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never fails a command.
    Info,
    /// Should be fixed; fails with `--fail-on=warning`.
    Warning,
    /// Fails the check (and, through `# check=error=true`, the build).
    Error,
}

impl Severity {
    /// `info`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One finding: a rule, where it applies, why, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The rule's name (`UndefinedVar`, `AptGetNoInstallRecommends`).
    pub rule: &'static str,
    /// How much it matters.
    pub severity: Severity,
    /// Where in the Dockerfile.
    pub span: Span,
    /// What is wrong, in one line.
    pub message: String,
    /// What to do about it, in one line.
    pub fix: String,
}

/// What to check with.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Target, build arguments and platforms, as for planning.
    pub plan: PlanOptions,
    /// The settings from `--check-config` or the config file; the file's `# check=`
    /// directive is merged over them.
    pub config: CheckConfig,
    /// What the caller found in the build context and the store.
    pub facts: Facts,
}

/// What the rules that know the build need from outside the Dockerfile; the caller reads
/// it (the compiler does no I/O). Each part is optional: a rule without its part is
/// skipped. Base images' configs and files come through [`BaseConfigs`].
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The ignore file that applies to the build: its name and text.
    pub ignore: Option<(String, String)>,
    /// The files of the context (relative, `/`-separated), when it was listed.
    pub context_files: Option<Vec<String>>,
}

/// The result of checking one Dockerfile.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Findings in source order.
    pub findings: Vec<Finding>,
    /// What could not be checked fully, and why (a base image the caller had no config for).
    pub limits: Vec<String>,
    /// The effective configuration (the caller's, merged with the file's directive).
    pub config: CheckConfig,
    /// The plan, when the file plans (the checks that need the build context use it).
    pub plan: Option<Plan>,
}

impl Checked {
    /// Adds findings made elsewhere (the context and store checks), applying the skip
    /// list and `error=true`, and keeps source order.
    pub fn add(&mut self, findings: impl IntoIterator<Item = Finding>) {
        for f in findings {
            if let Some(f) = self.config.apply(f) {
                self.findings.push(f);
            }
        }
        self.findings
            .sort_by_key(|f| (f.span.start.line, f.span.start.column));
    }

    /// The names of the rules that found something, sorted (BuildKit's error for
    /// `error=true` lists them).
    pub fn violated_rules(&self) -> Vec<&'static str> {
        let set: BTreeSet<&'static str> = self.findings.iter().map(|f| f.rule).collect();
        set.into_iter().collect()
    }
}

/// Checks `source`: BuildKit's rules, the best-practice rules and the plan-level rules. The
/// file must parse (a parse error is returned as it is); a file that parses but does not plan
/// is still checked, without the plan-level rules.
pub fn check(
    source: &str,
    options: &CheckOptions,
    bases: &dyn BaseConfigs,
) -> Result<Checked, ParseError> {
    let parsed = parser::parse(source)?;
    let mut config = options.config.clone();
    if let Some(d) = &parsed.directives.check {
        // As in BuildKit, an invalid directive is ignored rather than failing the check.
        if let Ok(from_file) = parse_check_options(&d.value) {
            config.merge(&from_file);
        }
    }
    let comments = Comments::new(source, &parsed);
    let mut cx = Cx {
        lines: source.split('\n').collect(),
        config: &config,
        parsed: &parsed,
        ignore: options
            .facts
            .ignore
            .as_ref()
            .and_then(|(name, text)| resolved::Ignore::new(name, text)),
        options,
        findings: Vec::new(),
        limits: Vec::new(),
    };
    buildkit::run(&mut cx, bases);
    // Planned from the tree already parsed (a second parse would cost as much as the rules).
    let (raw, escape) = crate::instructions::from_ast::raw_instructions(&parsed);
    let plan = crate::plan::Planner::new(
        &crate::plan::ShellExpander,
        &crate::instructions::from_ast::ParserTriggers,
    )
    .with_bases(bases)
    .plan(&raw, escape, &options.plan)
    .ok();
    drop(raw);
    practice::run(
        &mut cx,
        &config,
        plan.as_ref().map(shipping_stages).as_deref(),
    );
    if let Some(plan) = &plan {
        buildkit::unused_stages(&mut cx, plan);
    }
    let Cx {
        findings, limits, ..
    } = cx;
    let mut out = Checked {
        findings: Vec::new(),
        limits,
        config: config.clone(),
        plan,
    };
    out.add(
        findings
            .into_iter()
            .filter(|f| !comments.skips(f.rule, f.span.start.line)),
    );
    Ok(out)
}

/// Which stages make up the built image: the target and the stages it is built on.
fn shipping_stages(plan: &Plan) -> Vec<bool> {
    let mut out = vec![false; plan.stages.len()];
    let mut at = Some(plan.target);
    while let Some(i) = at {
        if i >= out.len() || out[i] {
            break;
        }
        out[i] = true;
        at = match plan.stages[i].base {
            crate::plan::StageBase::Stage { index } => Some(index),
            _ => None,
        };
    }
    out
}

/// The state the rules share: the tree, the options, what was found.
struct Cx<'a> {
    lines: Vec<&'a str>,
    config: &'a CheckConfig,
    parsed: &'a Parsed,
    ignore: Option<resolved::Ignore>,
    options: &'a CheckOptions,
    findings: Vec<Finding>,
    limits: Vec<String>,
}

impl Cx<'_> {
    /// Whether `name` runs (rules that cost something check this first).
    fn runs(&self, name: &str) -> bool {
        self.config.runs(name)
    }

    /// Records a finding of `rule` with its default severity.
    fn report(&mut self, rule_name: &'static str, span: Span, message: String, fix: String) {
        let severity = rule(rule_name).map_or(Severity::Warning, |r| r.severity);
        self.findings.push(Finding {
            rule: rule_name,
            severity,
            span,
            message,
            fix,
        });
    }
}

/// `# check=` comments directly above an instruction: BuildKit merges them into the
/// configuration for that instruction (and, above a FROM, for the stage's own checks).
struct Comments {
    /// (instruction start line, instruction end line, the rules skipped there; `None`
    /// skips all).
    skips: Vec<(usize, usize, Option<BTreeSet<String>>)>,
}

impl Comments {
    fn new(source: &str, parsed: &Parsed) -> Comments {
        let lines: Vec<&str> = source.split('\n').collect();
        let mut skips = Vec::new();
        for node in &parsed.instructions {
            for comment in prev_comments(&lines, node) {
                let Some(value) = comment.strip_prefix("check=") else {
                    continue;
                };
                let value = value.split(' ').next().unwrap_or("");
                if let Ok(c) = parse_check_options(value) {
                    let set = if c.skip_all {
                        None
                    } else {
                        Some(c.skip.clone())
                    };
                    skips.push((node.span.start.line, node.span.end.line, set));
                }
            }
        }
        Comments { skips }
    }

    fn skips(&self, rule: &str, line: usize) -> bool {
        self.skips.iter().any(|(from, to, set)| {
            (*from..=*to).contains(&line) && set.as_ref().is_none_or(|s| s.contains(rule))
        })
    }
}

/// The comment lines directly above `node` (no blank line between), text after `#`
/// trimmed, nearest last: BuildKit's `PrevComment`.
fn prev_comments<'a>(lines: &[&'a str], node: &Node) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut i = node.span.start.line.saturating_sub(1);
    while i > 0 {
        let text = lines.get(i - 1).map_or("", |l| l.trim());
        match text.strip_prefix('#') {
            Some(c) => out.push(c.trim()),
            None => break,
        }
        i -= 1;
    }
    out.reverse();
    out
}

/// The span of the first occurrence of `needle` as a whole word in `node`'s arguments (a
/// command of a RUN line), else the instruction.
fn word_span(node: &Node, needle: &str) -> Span {
    let text = node.args_text();
    let base = node.args_offset();
    let mut from = 0;
    while let Some(i) = text[from..].find(needle) {
        let at = from + i;
        let end = at + needle.len();
        let before = text[..at].chars().next_back();
        let after = text[end..].chars().next();
        let bounded =
            |c: Option<char>| !c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if bounded(before) && bounded(after) {
            return node.span_in_original(base + at, base + end);
        }
        from = end;
    }
    node.span
}

/// The span of the first `$NAME` or `${NAME` in `node`'s arguments, else the instruction.
fn var_span(node: &Node, name: &str) -> Span {
    let text = node.args_text();
    let base = node.args_offset();
    for pat in [format!("${{{name}"), format!("${name}")] {
        let mut from = 0;
        while let Some(i) = text[from..].find(&pat) {
            let at = from + i;
            let end = at + pat.len();
            let next = text[end..].chars().next();
            let whole = pat.starts_with("${")
                || !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if whole {
                let end = if pat.starts_with("${") {
                    text[at..].find('}').map_or(end, |j| at + j + 1)
                } else {
                    end
                };
                return node.span_in_original(base + at, base + end);
            }
            from = end;
        }
    }
    node.span
}
