//! Variable expansion, as an interface. The planner expands words with BuildKit's rules
//! (`$VAR`, `${VAR:-default}`, quotes, escapes) through a [`WordExpander`];
//! [`ShellExpander`] is the implementation on top of [`crate::shell`].

use crate::shell::{Lexer, Limits, ShellError, shown};

/// The result of expanding one word.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    /// The expanded text.
    pub value: String,
    /// Names that were looked up and found.
    pub matched: Vec<String>,
}

/// Why a word could not be expanded (`${X:?must be set}`, an unterminated quote, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot expand {}: {reason}", shown(word))]
pub struct ExpandError {
    /// The word.
    pub word: String,
    /// What went wrong.
    pub reason: String,
    /// The bound the expansion crossed, when that is what went wrong.
    pub limit: Option<ExpandLimit>,
}

/// The bounds of [`Budget`] and the nesting bound of the lexer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpandLimit {
    /// The word grew more than [`Budget::max_growth`].
    Growth,
    /// `${...}` nested too deep.
    Depth,
    /// The work left in the [`Budget`] ran out.
    Work,
}

/// What expansions may use. The planner keeps one for a whole Dockerfile: each expansion
/// spends from `work`, so many instructions cannot add up to unbounded time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// How many bytes expansion may add to one word beyond its length as written.
    pub max_growth: usize,
    /// Work left, in the units of [`crate::shell::Limits::max_work`] (bytes copied and
    /// pattern-matching steps).
    pub work: u64,
}

/// Looks a variable up by name.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<&'a str>;

/// Expands Dockerfile words with a pluggable environment, within a [`Budget`].
pub trait WordExpander: Sync {
    /// Expands one word into one string (quotes removed, whitespace kept).
    fn expand_word(
        &self,
        word: &str,
        escape: char,
        lookup: Lookup<'_>,
        budget: &mut Budget,
    ) -> Result<Expansion, ExpandError>;

    /// Expands one word and splits the result into words on unquoted whitespace.
    fn expand_words(
        &self,
        word: &str,
        escape: char,
        lookup: Lookup<'_>,
        budget: &mut Budget,
    ) -> Result<Vec<String>, ExpandError>;

    /// Expands a heredoc body: variables only, quotes and escapes kept as written.
    fn expand_heredoc(
        &self,
        body: &str,
        escape: char,
        lookup: Lookup<'_>,
        budget: &mut Budget,
    ) -> Result<String, ExpandError> {
        self.expand_word(body, escape, lookup, budget)
            .map(|e| e.value)
    }
}

/// The [`WordExpander`] of [`crate::shell`]'s BuildKit-compatible lexer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShellExpander;

fn expand_error(e: ShellError) -> ExpandError {
    let limit = match e {
        ShellError::TooLong { .. } => Some(ExpandLimit::Growth),
        ShellError::TooDeep { .. } => Some(ExpandLimit::Depth),
        ShellError::TooMuchWork { .. } => Some(ExpandLimit::Work),
        _ => None,
    };
    ExpandError {
        word: e.word().to_string(),
        reason: e.problem(),
        limit,
    }
}

/// A lexer for `escape` bounded by `budget`.
fn lexer(escape: char, budget: &Budget) -> Lexer {
    Lexer::new(escape).limits(Limits {
        max_growth: budget.max_growth,
        max_work: budget.work,
        ..Limits::DEFAULT
    })
}

/// Takes the work an expansion did from the budget (all of it when the expansion failed
/// for want of work).
fn spend<T>(budget: &mut Budget, r: &Result<T, ExpandError>, work: impl Fn(&T) -> u64) {
    let used = match r {
        Ok(v) => work(v),
        Err(e) if e.limit == Some(ExpandLimit::Work) => budget.work,
        Err(_) => 0,
    };
    budget.work = budget.work.saturating_sub(used);
}

impl WordExpander for ShellExpander {
    fn expand_word(
        &self,
        word: &str,
        escape: char,
        lookup: Lookup<'_>,
        budget: &mut Budget,
    ) -> Result<Expansion, ExpandError> {
        let r = lexer(escape, budget)
            .process_word(word, lookup)
            .map_err(expand_error);
        spend(budget, &r, |e| e.work);
        let e = r?;
        Ok(Expansion {
            value: e.value,
            matched: e.vars.matched.into_iter().collect(),
        })
    }

    fn expand_words(
        &self,
        word: &str,
        escape: char,
        lookup: Lookup<'_>,
        budget: &mut Budget,
    ) -> Result<Vec<String>, ExpandError> {
        let r = lexer(escape, budget)
            .process_words(word, lookup)
            .map_err(expand_error);
        spend(budget, &r, |w| w.work);
        r.map(|w| w.words)
    }

    fn expand_heredoc(
        &self,
        body: &str,
        _escape: char,
        lookup: Lookup<'_>,
        budget: &mut Budget,
    ) -> Result<String, ExpandError> {
        // As BuildKit expands the body of an unquoted COPY/ADD heredoc: quotes are
        // ordinary characters, and a backslash (whatever the escape directive says)
        // escapes the next character and is dropped: `\\` is `\`, `\$` is `$`, and a
        // backslash before a line end leaves the line end alone.
        let r = lexer('\\', budget)
            .skip_process_quotes(true)
            .process_word(body, lookup)
            .map_err(expand_error);
        spend(budget, &r, |e| e.work);
        r.map(|e| e.value)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A minimal expander for unit tests: `$NAME` and `${NAME}`, `${NAME:-default}`,
    //! `${NAME:?message}`, and removal of double quotes.
    use super::*;

    pub(crate) struct Simple;

    impl WordExpander for Simple {
        fn expand_word(
            &self,
            word: &str,
            escape: char,
            lookup: Lookup<'_>,
            _budget: &mut Budget,
        ) -> Result<Expansion, ExpandError> {
            let mut out = Expansion::default();
            let mut chars = word.chars().peekable();
            while let Some(c) = chars.next() {
                if c == escape {
                    if let Some(n) = chars.next() {
                        out.value.push(n);
                    }
                    continue;
                }
                if c == '"' {
                    continue;
                }
                if c != '$' {
                    out.value.push(c);
                    continue;
                }
                let braced = chars.peek() == Some(&'{');
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let mut modifier = String::new();
                if braced {
                    for n in chars.by_ref() {
                        if n == '}' {
                            break;
                        }
                        modifier.push(n);
                    }
                }
                let found = lookup(&name);
                if found.is_some() {
                    out.matched.push(name.clone());
                }
                if let Some(default) = modifier.strip_prefix(":-") {
                    out.value
                        .push_str(found.filter(|v| !v.is_empty()).unwrap_or(default));
                } else if let Some(msg) = modifier.strip_prefix(":?") {
                    match found.filter(|v| !v.is_empty()) {
                        Some(v) => out.value.push_str(v),
                        None => {
                            return Err(ExpandError {
                                word: word.into(),
                                reason: format!("{name}: {msg}"),
                                limit: None,
                            });
                        }
                    }
                } else {
                    out.value.push_str(found.unwrap_or_default());
                }
            }
            Ok(out)
        }

        fn expand_words(
            &self,
            word: &str,
            escape: char,
            lookup: Lookup<'_>,
            budget: &mut Budget,
        ) -> Result<Vec<String>, ExpandError> {
            let e = self.expand_word(word, escape, lookup, budget)?;
            Ok(e.value.split_whitespace().map(String::from).collect())
        }
    }
}
