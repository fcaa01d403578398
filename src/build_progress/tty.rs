//! `tty`: a view redrawn in place on a terminal: a header with the elapsed time and
//! finished/total steps, the steps with their times, the last lines of each running step's
//! output and the byte progress of transfers. Every line is cut to the terminal width
//! measured at each redraw; when the build ends the view collapses into the final list.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::HumanBytes;
use rbuild_compiler::text::escape_controls;

use super::Summary;
use super::state::{Shared, State, Status};
use super::text::{format_secs, live_line, one_line, short_digest, shown, truncate, two_sided};
use super::view::View;

/// The output lines of a running step the view shows.
const TTY_TAIL: usize = 6;
/// How often the view is redrawn.
const TICK: Duration = Duration::from_millis(100);

const BLUE: &str = "\x1b[34m";
const RED: &str = "\x1b[31m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// The view redrawn in place.
#[derive(Debug)]
pub(super) struct Tty {
    /// Cache-miss reasons shown under their steps.
    pub(super) explain: bool,
    /// ANSI colours (unless `NO_COLOR`).
    pub(super) color: bool,
}

/// The terminal's (columns, rows), measured on stderr now; 80x24 when unknown.
fn terminal_size() -> (usize, usize) {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(ws) if ws.ws_col > 0 => (
            usize::from(ws.ws_col),
            if ws.ws_row > 0 {
                usize::from(ws.ws_row)
            } else {
                24
            },
        ),
        _ => (80, 24),
    }
}

impl Tty {
    fn paint(&self, color: &str, text: String) -> String {
        if self.color && !color.is_empty() {
            format!("{color}{text}{RESET}")
        } else {
            text
        }
    }

    /// The lines of the tty view, each at most `width` columns (before colouring). `live` is the
    /// screen height while the build runs (the view keeps to it); `None` draws the final list.
    fn view(&self, sh: &Shared, st: &State, width: usize, live: Option<usize>) -> Vec<String> {
        let finished = st
            .steps
            .values()
            .filter(|s| s.status != Status::Running)
            .count();
        let mut header = format!(
            "[+] Building {:.1}s ({finished}/{})",
            sh.elapsed(),
            st.total.max(st.steps.len())
        );
        if live.is_none() {
            header.push_str(" FINISHED");
        }
        let mut lines = vec![truncate(&header, width)];
        for s in st.steps.values() {
            let took = s.took.unwrap_or_else(|| s.started.elapsed());
            let prefix = match s.status {
                Status::Cached => "=> CACHED ",
                Status::Error => "=> ERROR ",
                // Still running when the build ended: another step failed.
                Status::Running if live.is_none() => "=> CANCELED ",
                Status::Running | Status::Done => "=> ",
            };
            let left = format!(
                "{prefix}[{}] {}",
                escape_controls(&s.label),
                one_line(&s.description)
            );
            let line = two_sided(&left, &format_secs(took), width);
            let color = match s.status {
                Status::Running => BLUE,
                Status::Error => RED,
                Status::Cached | Status::Done => "",
            };
            lines.push(self.paint(color, line));
            if self.explain
                && let Some(reason) = &s.miss
            {
                let l = truncate(&format!("=> => cache miss: {}", shown(reason)), width);
                lines.push(self.paint(DIM, l));
            }
            if live.is_some() && s.status == Status::Running {
                for (digest, b) in s.blobs.iter().filter(|(_, b)| !b.finished) {
                    let l = format!(
                        "=> => {} {} / {}",
                        short_digest(digest),
                        HumanBytes(b.done),
                        HumanBytes(b.total)
                    );
                    lines.push(truncate(&l, width));
                }
                let skip = s.tail.len().saturating_sub(TTY_TAIL);
                for (_, t) in s.tail.iter().skip(skip) {
                    let l = truncate(&format!("=> => # {}", live_line(t)), width);
                    lines.push(self.paint(DIM, l));
                }
            }
        }
        if let Some(height) = live {
            // Keep the header and the newest lines within the screen (one row spare for the
            // cursor).
            let room = height.saturating_sub(1).max(2);
            if lines.len() > room {
                let cut = lines.len() - (room - 1);
                lines.drain(1..cut);
            }
        }
        lines
    }
}

/// Moves the cursor back to the first line of a view of `drawn` lines and clears from there.
fn redraw_prefix(drawn: usize) -> String {
    let mut s = String::new();
    if drawn > 0 {
        let _ = write!(s, "\x1b[{drawn}A");
    }
    s.push_str("\r\x1b[J");
    s
}

impl View for Tty {
    fn redraws(&self) -> bool {
        true
    }

    fn redraw(&self, sh: &Shared, st: &mut State) {
        let (width, height) = terminal_size();
        let lines = self.view(sh, st, width, Some(height));
        let mut frame = redraw_prefix(st.drawn);
        for l in &lines {
            frame.push_str(l);
            frame.push('\n');
        }
        st.drawn = lines.len();
        sh.emit(&frame);
    }

    fn notice(&self, sh: &Shared, notice: &str) {
        sh.emit(&format!("{}\n", escape_controls(notice)));
    }

    fn finish(&self, sh: &Shared, st: &mut State, summary: &Summary) {
        let mut frame = redraw_prefix(st.drawn);
        let width = terminal_size().0;
        for line in self.view(sh, st, width, None) {
            frame.push_str(&line);
            frame.push('\n');
        }
        st.drawn = 0;
        frame.push_str(&summary.render());
        sh.emit(&frame);
    }
}

/// Redraws the view until the build ends: every tick, and at once on a resize.
pub(super) fn redraw_loop(sh: &Shared) {
    // A resize redraws at once; every redraw measures the terminal anyway.
    let resized = Arc::new(AtomicBool::new(false));
    let _ = signal_hook::flag::register(signal_hook::consts::SIGWINCH, resized.clone());
    let mut last = Instant::now();
    while !sh.stop.load(Ordering::SeqCst) {
        if resized.swap(false, Ordering::SeqCst) || last.elapsed() >= TICK {
            last = Instant::now();
            let mut st = sh.lock();
            if st.finished {
                break;
            }
            if !sh.suspended.load(Ordering::SeqCst) {
                sh.view.redraw(sh, &mut st);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
