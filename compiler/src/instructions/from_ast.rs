//! The adapter from the parser's AST to [`RawInstruction`]s: the only place that touches
//! `crate::parser` types. It also provides the real [`TriggerParser`] (ONBUILD triggers
//! of base images are parsed with the same parser) and [`plan_source`], which runs
//! parse + plan on Dockerfile text.

use super::{Heredoc, RawFlag, RawInstruction, Span};
use crate::parser::{self, Node, ParseError};
use crate::plan::{
    BaseConfigs, Plan, PlanError, PlanOptions, Planner, ShellExpander, TriggerParser,
};

fn span(s: parser::Span) -> Span {
    s
}

/// Converts one parser node.
pub fn raw_instruction(node: &Node) -> RawInstruction {
    RawInstruction {
        keyword: node.keyword_lower.to_string(),
        flags: node
            .flags
            .iter()
            .map(|f| RawFlag {
                name: f.name().to_string(),
                value: f.value().map(str::to_string),
                span: span(f.span),
            })
            .collect(),
        args: node.args.clone(),
        json: node.json,
        heredocs: node
            .heredocs
            .iter()
            .map(|h| Heredoc {
                name: h.name.clone(),
                file_descriptor: h.file_descriptor,
                expand: h.expand,
                chomp: h.chomp,
                content: h.content.clone(),
            })
            .collect(),
        onbuild: node
            .onbuild
            .as_deref()
            .map(|n| Box::new(raw_instruction(n))),
        original: node.original.clone(),
        span: span(node.span),
    }
}

/// Converts a parsed Dockerfile: its instructions and its escape character.
pub fn raw_instructions(parsed: &parser::Parsed) -> (Vec<RawInstruction>, char) {
    (
        parsed.instructions.iter().map(raw_instruction).collect(),
        parsed.escape,
    )
}

/// Parses ONBUILD triggers with the Dockerfile parser.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParserTriggers;

impl TriggerParser for ParserTriggers {
    fn parse_trigger(&self, text: &str) -> Result<RawInstruction, String> {
        let parsed = parser::parse(text).map_err(|e| e.to_string())?;
        match parsed.instructions.as_slice() {
            [node] => Ok(raw_instruction(node)),
            _ => Err("a trigger must be exactly one instruction".into()),
        }
    }
}

/// Why a Dockerfile could not be planned: it does not parse, or it does not plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// A syntax error.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A semantic error.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl SourceError {
    /// Renders `file:line:col: message`, the source line and a caret.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        match self {
            SourceError::Parse(e) => e.render(file_name, source),
            SourceError::Plan(e) => e.render(file_name, source),
        }
    }
}

/// Parses and plans a Dockerfile with the crate's parser and shell lexer.
///
/// ```
/// use rbuild_compiler::instructions::from_ast::plan_source;
/// use rbuild_compiler::plan::{NoBaseConfigs, PlanOptions, render_text};
///
/// let plan = plan_source("FROM busybox\nRUN echo hi\n", &PlanOptions::default(), &NoBaseConfigs)
///     .unwrap();
/// assert_eq!(plan.ops.len(), 2);
/// assert!(render_text(&plan).contains("RUN /bin/sh -c echo hi"));
/// ```
pub fn plan_source(
    source: &str,
    options: &PlanOptions,
    bases: &dyn BaseConfigs,
) -> Result<Plan, SourceError> {
    let parsed = parser::parse(source)?;
    let (raw, escape) = raw_instructions(&parsed);
    // The tree is not needed any more: a file of many instructions plans in less memory.
    drop(parsed);
    Ok(Planner::new(&ShellExpander, &ParserTriggers)
        .with_bases(bases)
        .plan(&raw, escape, options)?)
}
