//! Transfer progress on stderr: one bar per blob (bytes, rate) on a terminal, plain lines
//! otherwise, nothing with `--quiet`. Digests and repository names are validated before they
//! get here; the retry text (a method and URL) has its control characters escaped.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_compiler::text::escape_controls;
use rbuild_registry::{ProgressEvent, ProgressFn};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars redrawn in place (stderr is a terminal).
    Bars,
    /// One line per blob event.
    Plain,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// Bars on a terminal, plain lines otherwise, nothing when quiet.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Plain
        }
    }
}

/// The short form of a digest shown in progress (`sha256:` and 12 hex digits).
fn short(digest: &rbuild_registry::Digest) -> String {
    let d = digest.as_ref();
    d.get(..19).unwrap_or(d).to_string()
}

struct Bars {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    style: ProgressStyle,
}

/// A progress callback for the registry client; `verb` is what happens to a blob
/// (`pulling`, `pushing`).
pub fn reporter(mode: Mode, verb: &'static str) -> Option<ProgressFn> {
    match mode {
        Mode::Quiet => None,
        Mode::Plain => Some(Arc::new(move |event: &ProgressEvent| match event {
            ProgressEvent::BlobStart { digest, size } => {
                eprintln!("{verb} {} ({size} bytes)", short(digest));
            }
            ProgressEvent::BlobDone { digest } => eprintln!("done {}", short(digest)),
            ProgressEvent::BlobExists { digest } => {
                eprintln!("exists {}", short(digest));
            }
            ProgressEvent::BlobMounted { digest, from } => {
                eprintln!("mounted {} from {from}", short(digest));
            }
            ProgressEvent::Retry {
                what,
                attempt,
                delay,
            } => eprintln!(
                "retrying {} (attempt {attempt} failed) in {delay:.1?}",
                escape_controls(what)
            ),
            ProgressEvent::BlobBytes { .. } => {}
        })),
        Mode::Bars => {
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let state = Mutex::new(Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: HashMap::new(),
                style,
            });
            Some(Arc::new(move |event: &ProgressEvent| {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    ProgressEvent::BlobStart { digest, size } => {
                        let bar = st.multi.add(ProgressBar::new(*size));
                        bar.set_style(st.style.clone());
                        bar.set_prefix(format!("{verb} {}", short(digest)));
                        st.bars.insert(digest.to_string(), bar);
                    }
                    ProgressEvent::BlobBytes { digest, done, .. } => {
                        if let Some(bar) = st.bars.get(digest.as_ref()) {
                            bar.set_position(*done);
                        }
                    }
                    ProgressEvent::BlobDone { digest } => {
                        if let Some(bar) = st.bars.get(digest.as_ref()) {
                            bar.finish_with_message("done");
                        }
                    }
                    ProgressEvent::BlobExists { digest } => {
                        let _ = st.multi.println(format!("exists {}", short(digest)));
                    }
                    ProgressEvent::BlobMounted { digest, from } => {
                        let _ = st
                            .multi
                            .println(format!("mounted {} from {from}", short(digest)));
                    }
                    ProgressEvent::Retry {
                        what,
                        attempt,
                        delay,
                    } => {
                        let _ = st.multi.println(format!(
                            "retrying {} (attempt {attempt} failed) in {delay:.1?}",
                            escape_controls(what)
                        ));
                    }
                }
            }))
        }
    }
}
