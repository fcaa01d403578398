//! stdout, where commands write their data. When the reader goes away (`rbuild images |
//! head -1`), the write fails with EPIPE (Rust ignores SIGPIPE); [`Stdout`] notes that, the
//! command's error travels up as any other, and `main` ends the process quietly with 141,
//! the status a shell reports for a process a closed pipe stopped. No panic, no message:
//! the reader asked for no more.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit status when stdout was closed under a command: 128 + SIGPIPE.
pub const EXIT_CLOSED: u8 = 141;

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to stdout failed because its reader went away.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

fn note(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
    e
}

/// The process's stdout, noting a closed pipe. Use it (or [`outln!`]) instead of `println!`,
/// which panics then.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

/// [`Stdout`].
pub fn stdout() -> Stdout {
    Stdout
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().write(buf).map_err(note)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(buf).map_err(note)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush().map_err(note)
    }
}

/// `println!` to [`Stdout`], returning from the enclosing function (with `?`) when the
/// write fails.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))?
    };
}

/// `print!` to [`Stdout`], as [`outln!`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::text(format_args!($($arg)*))?
    };
}

/// Writes one line to stdout.
pub fn line(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(note)
}

/// Writes text to stdout.
pub fn text(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    io::stdout().lock().write_fmt(args).map_err(note)
}
