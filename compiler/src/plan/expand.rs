//! Variable expansion, as an interface. The planner expands words with BuildKit's rules
//! (`$VAR`, `${VAR:-default}`, quotes, escapes) through a [`WordExpander`];
//! [`ShellExpander`] is the implementation on top of [`crate::shell`].

use crate::shell::{Lexer, ShellError};

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
#[error("cannot expand {word:?}: {reason}")]
pub struct ExpandError {
    /// The word.
    pub word: String,
    /// What went wrong.
    pub reason: String,
}

/// Looks a variable up by name.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands Dockerfile words with a pluggable environment.
pub trait WordExpander: Sync {
    /// Expands one word into one string (quotes removed, whitespace kept).
    fn expand_word(
        &self,
        word: &str,
        escape: char,
        lookup: Lookup<'_>,
    ) -> Result<Expansion, ExpandError>;

    /// Expands one word and splits the result into words on unquoted whitespace.
    fn expand_words(
        &self,
        word: &str,
        escape: char,
        lookup: Lookup<'_>,
    ) -> Result<Vec<String>, ExpandError>;

    /// Expands a heredoc body: variables only, quotes and escapes kept as written.
    fn expand_heredoc(
        &self,
        body: &str,
        escape: char,
        lookup: Lookup<'_>,
    ) -> Result<String, ExpandError> {
        self.expand_word(body, escape, lookup).map(|e| e.value)
    }
}

/// The [`WordExpander`] of [`crate::shell`]'s BuildKit-compatible lexer.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShellExpander;

fn expand_error(e: ShellError) -> ExpandError {
    ExpandError {
        word: e.word().to_string(),
        reason: e.problem(),
    }
}

impl WordExpander for ShellExpander {
    fn expand_word(
        &self,
        word: &str,
        escape: char,
        lookup: Lookup<'_>,
    ) -> Result<Expansion, ExpandError> {
        let e = Lexer::new(escape)
            .process_word(word, lookup)
            .map_err(expand_error)?;
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
    ) -> Result<Vec<String>, ExpandError> {
        Lexer::new(escape)
            .process_words(word, lookup)
            .map(|w| w.words)
            .map_err(expand_error)
    }

    fn expand_heredoc(
        &self,
        body: &str,
        escape: char,
        lookup: Lookup<'_>,
    ) -> Result<String, ExpandError> {
        // BuildKit expands heredoc bodies with quotes and escapes left as written.
        Lexer::new(escape)
            .raw_quotes(true)
            .raw_escapes(true)
            .process_word(body, lookup)
            .map(|e| e.value)
            .map_err(expand_error)
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
                        .push_str(&found.filter(|v| !v.is_empty()).unwrap_or(default.into()));
                } else if let Some(msg) = modifier.strip_prefix(":?") {
                    match found.filter(|v| !v.is_empty()) {
                        Some(v) => out.value.push_str(&v),
                        None => {
                            return Err(ExpandError {
                                word: word.into(),
                                reason: format!("{name}: {msg}"),
                            });
                        }
                    }
                } else {
                    out.value.push_str(&found.unwrap_or_default());
                }
            }
            Ok(out)
        }

        fn expand_words(
            &self,
            word: &str,
            escape: char,
            lookup: Lookup<'_>,
        ) -> Result<Vec<String>, ExpandError> {
            let e = self.expand_word(word, escape, lookup)?;
            Ok(e.value.split_whitespace().map(String::from).collect())
        }
    }
}
