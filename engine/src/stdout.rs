//! stdout, where a build writes an output asked for with `dest=-`. When the reader goes away
//! the write fails with EPIPE (Rust ignores SIGPIPE); [`Stdout`] notes that ([`closed`]), so
//! the command line can end quietly with [`EXIT_CLOSED`] instead of reporting an error.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// The exit status when stdout was closed under a command: 128 + SIGPIPE.
pub const EXIT_CLOSED: u8 = 141;

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether a write to stdout failed because its reader went away.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Passes a write error on, noting first whether it says the reader went away (for
/// [`closed`]).
pub fn note(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
    e
}

/// The process's stdout, noting a closed pipe. Use it (or the binary's `outln!`) instead of
/// `println!`, which panics then.
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
