//! stdout, where commands write their data. When the reader goes away (`rbuild images |
//! head -1`), the write fails with EPIPE (Rust ignores SIGPIPE); [`Stdout`] notes that, the
//! command's error travels up as any other, and `main` ends the process quietly with 141,
//! the status a shell reports for a process a closed pipe stopped. No panic, no message:
//! the reader asked for no more.

use std::io::{self, Write};

pub use rbuild_engine::stdout::{EXIT_CLOSED, closed, note, stdout};

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
