//! Logging set-up and error rendering (`error:` / `Caused by:` / `hint:`).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use rbuild_compiler::text::escape_controls;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

use crate::env;

/// Sends `tracing` output to stderr. `RBUILD_LOG` overrides the level the flags give.
pub fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter =
        EnvFilter::try_from_env(env::RBUILD_LOG).unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os(env::NO_COLOR).is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .fmt_fields(EscapedFields)
        .with_target(false)
        .without_time()
        .init();
}

/// Formats a log event's fields as the default formatter does (`message key=value ...`),
/// with control characters shown as escapes: log messages quote untrusted text too.
struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = FieldText::default();
        fields.record(&mut visitor);
        writer.write_str(&escape_controls(&visitor.0))
    }
}

#[derive(Default)]
struct FieldText(String);

impl Visit for FieldText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = if field.name() == "message" {
            write!(self.0, "{value:?}")
        } else {
            write!(self.0, "{}={value:?}", field.name())
        };
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }
}

/// A hint attached to an error with `anyhow::Context`-like chaining: rendered as `hint:`
/// after the cause chain.
#[derive(Debug)]
pub struct Hint(pub String);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hint {}

/// A failure whose exit code is not the default 1 (usage errors exit 2).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Renders an error chain on stderr and returns the exit code.
///
/// The first message is `error: ...`; each cause follows as `Caused by: ...`; hints attached
/// to the chain (a [`Hint`] context, or the hint an engine error carries,
/// [`rbuild_engine::error::hint`]) and the one for a limit it crossed
/// ([`crate::limits::hint_for`]) end it. A message
/// that spans several lines (a Dockerfile diagnostic with its source line and caret) is
/// printed as it is. Messages quote names from layers, registries' answers and step output:
/// their control characters are shown as escapes ([`escape_controls`]).
pub fn render_error(err: &anyhow::Error) -> ExitCode {
    let mut out = std::io::stderr().lock();
    let mut code = 1;
    let mut first = true;
    let mut hints = Vec::new();
    // A hint added with `.context(Hint(..))` shows in the chain as a context layer, which
    // only the error itself can downcast: recognise that layer by its text.
    let context_hint = err.downcast_ref::<Hint>().map(|h| h.0.clone());
    for cause in err.chain() {
        if let Some(hint) = cause.downcast_ref::<Hint>() {
            hints.push(hint.0.clone());
            continue;
        }
        if let Some(h) = &context_hint
            && cause.to_string() == *h
            && !hints.contains(h)
        {
            hints.push(h.clone());
            continue;
        }
        if let Some(exit) = cause.downcast_ref::<Exit>() {
            code = exit.0;
            continue;
        }
        if let Some(hint) = rbuild_engine::error::hint(cause)
            && !hints.iter().any(|h| h == hint)
        {
            hints.push(hint.to_string());
        }
        let text = cause.to_string();
        let text = escape_controls(&text);
        if first {
            let _ = writeln!(out, "error: {text}");
            first = false;
        } else {
            let _ = writeln!(out, "Caused by: {text}");
        }
    }
    if let Some(hint) = crate::limits::hint_for(err)
        && !hints.contains(&hint.0)
    {
        hints.push(hint.0);
    }
    for hint in hints {
        let _ = writeln!(out, "hint: {}", escape_controls(&hint));
    }
    ExitCode::from(code)
}
