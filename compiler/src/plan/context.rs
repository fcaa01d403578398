//! The context every stage of one Dockerfile is evaluated in: the stage names, the
//! predefined ARGs, and the Dockerfile's bounds ([`super::limits`]): expansion within the
//! work budget and each instruction's growth, the plan's size, and the size of an
//! environment.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use super::eval::SourceRef;
use super::expand::Lookup;
use super::limits::{
    MAX_ENVIRONMENT, MAX_EXPANSION_WORK, MAX_INSTRUCTION_GROWTH, MAX_PLAN_SIZE, MAX_WORD_GROWTH,
};
use super::scope::ArgList;
use super::{
    Budget, ExpandError, ExpandLimit, NamedContext, PlanError, PlanErrorKind, PlanOptions, Planner,
    named_context_key,
};
use crate::instructions::Span;

pub(super) struct Ctx<'p> {
    pub(super) planner: &'p Planner<'p>,
    pub(super) escape: char,
    pub(super) options: &'p PlanOptions,
    pub(super) predefined: BTreeMap<String, String>,
    pub(super) names: Vec<Option<String>>,
    /// Stage index by (lower-case) name.
    pub(super) by_name: HashMap<String, usize>,
    pub(super) from_spans: Vec<Span>,
    /// Expansion work left for the whole Dockerfile.
    pub(super) work: Cell<u64>,
    /// The plan's size so far, in [`super::limits::weight`] units.
    pub(super) size: Cell<usize>,
    /// The current instruction's words: bytes as written and as expanded.
    pub(super) instruction: Cell<(usize, usize)>,
}

impl<'p> Ctx<'p> {
    /// Runs one expansion within the Dockerfile's budget and the current instruction's
    /// bound on growth; `out_len` measures its result.
    pub(super) fn expanding<T>(
        &self,
        word: &str,
        span: Span,
        run: impl FnOnce(&mut Budget) -> Result<T, ExpandError>,
        out_len: impl Fn(&T) -> usize,
    ) -> Result<T, PlanError> {
        let mut budget = Budget {
            max_growth: MAX_WORD_GROWTH,
            work: self.work.get(),
        };
        let r = run(&mut budget);
        self.work.set(budget.work);
        let value = r.map_err(|e| {
            let kind = match e.limit {
                Some(ExpandLimit::Work) => PlanErrorKind::ExpansionWork {
                    limit: MAX_EXPANSION_WORK,
                },
                _ => PlanErrorKind::Expand(e),
            };
            PlanError::at(kind, span)
        })?;
        self.grow(word.len(), out_len(&value), span)?;
        Ok(value)
    }

    pub(super) fn expand(
        &self,
        word: &str,
        lookup: Lookup<'_>,
        span: Span,
    ) -> Result<String, PlanError> {
        let expander = self.planner.expander;
        self.expanding(
            word,
            span,
            |b| expander.expand_word(word, self.escape, lookup, b),
            |e| e.value.len(),
        )
        .map(|e| e.value)
    }

    pub(super) fn expand_words(
        &self,
        word: &str,
        lookup: Lookup<'_>,
        span: Span,
    ) -> Result<Vec<String>, PlanError> {
        let expander = self.planner.expander;
        self.expanding(
            word,
            span,
            |b| expander.expand_words(word, self.escape, lookup, b),
            |w| w.iter().map(String::len).sum(),
        )
    }

    pub(super) fn expand_heredoc(
        &self,
        body: &str,
        lookup: Lookup<'_>,
        span: Span,
    ) -> Result<String, PlanError> {
        let expander = self.planner.expander;
        self.expanding(
            body,
            span,
            |b| expander.expand_heredoc(body, self.escape, lookup, b),
            String::len,
        )
    }

    /// Starts counting the growth of a new instruction's words.
    pub(super) fn begin_instruction(&self) {
        self.instruction.set((0, 0));
    }

    /// Adds words of `written` bytes that became `expanded` bytes to the current
    /// instruction, within [`MAX_INSTRUCTION_GROWTH`].
    pub(super) fn grow(
        &self,
        written: usize,
        expanded: usize,
        span: Span,
    ) -> Result<(), PlanError> {
        let (w, e) = self.instruction.get();
        let (w, e) = (w + written, e.saturating_add(expanded));
        self.instruction.set((w, e));
        if e > w + MAX_INSTRUCTION_GROWTH {
            return Err(PlanError::at(
                PlanErrorKind::InstructionTooLarge {
                    limit: MAX_INSTRUCTION_GROWTH,
                },
                span,
            ));
        }
        Ok(())
    }

    /// Adds `units` to the plan's size, within [`MAX_PLAN_SIZE`].
    pub(super) fn charge(&self, units: usize, span: Span) -> Result<(), PlanError> {
        let size = self.size.get().saturating_add(units);
        self.size.set(size);
        if size > MAX_PLAN_SIZE {
            return Err(PlanError::at(
                PlanErrorKind::PlanTooLarge {
                    limit: MAX_PLAN_SIZE,
                },
                span,
            ));
        }
        Ok(())
    }

    pub(super) fn resolve_from(
        &self,
        value: &str,
        current: usize,
        span: Span,
        deps: &mut Vec<(usize, Span)>,
    ) -> Result<SourceRef, PlanError> {
        let lower = value.to_ascii_lowercase();
        let idx = if let Some(&i) = self.by_name.get(&lower) {
            Some(i)
        } else if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            let index: usize = value.parse().unwrap_or(usize::MAX);
            if index >= self.names.len() {
                return Err(PlanError::at(
                    PlanErrorKind::UndefinedStageIndex {
                        index,
                        count: self.names.len(),
                    },
                    span,
                ));
            }
            Some(index)
        } else {
            None
        };
        match idx {
            Some(i) if i == current => Err(PlanError::at(
                PlanErrorKind::SelfReference {
                    stage: stage_label(&self.names, i),
                },
                span,
            )
            .note(self.from_spans[i], "the stage starts here")),
            Some(i) => {
                deps.push((i, span));
                Ok(SourceRef::Stage(i))
            }
            None => Ok(match self.named_context(value) {
                Some((key, NamedContext::Local)) => SourceRef::Named(key),
                Some((_, NamedContext::Image { reference })) => SourceRef::Image(reference.clone()),
                None => SourceRef::Image(value.to_string()),
            }),
        }
    }

    /// The named context (`--build-context`) a `FROM`, `--from` or stage name stands for,
    /// with its key.
    pub(super) fn named_context(&self, name: &str) -> Option<(String, &'p NamedContext)> {
        if self.options.named_contexts.is_empty() {
            return None;
        }
        let key = named_context_key(name)?;
        let found = self.options.named_contexts.get(&key)?;
        Some((key, found))
    }
}

pub(super) fn stage_label(names: &[Option<String>], i: usize) -> String {
    match names.get(i).and_then(|n| n.as_deref()) {
        Some(n) => format!("{n:?} (stage {i})"),
        None => format!("stage {i}"),
    }
}

pub(super) fn stage_label_plain(names: &[Option<String>], i: usize) -> String {
    match names.get(i).and_then(|n| n.as_deref()) {
        Some(n) => n.to_string(),
        None => format!("stage-{i}"),
    }
}

pub(super) fn global_lookup<'a>(
    globals: &'a ArgList,
    predefined: &'a BTreeMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    match globals.get(name) {
        Some(v) => v,
        None => predefined.get(name).map(String::as_str),
    }
}

/// The environment [`check_environment`] names for a stage.
pub(super) const STAGE_ENV: &str = "the stage's environment (ENV and ARG)";

/// An error unless an environment of `size` bytes is within [`MAX_ENVIRONMENT`].
pub(super) fn check_environment(
    size: usize,
    name: &str,
    scope: &'static str,
    span: Span,
) -> Result<(), PlanError> {
    if size > MAX_ENVIRONMENT {
        return Err(PlanError::at(
            PlanErrorKind::EnvironmentTooLarge {
                name: name.to_owned(),
                scope,
                limit: MAX_ENVIRONMENT,
            },
            span,
        ));
    }
    Ok(())
}
