//! Pipes and whole-buffer reads and writes on raw descriptors, shared by the parent and
//! the children of a sandbox and by the user-namespace helpers, and [`FORK_LOCK`], which
//! every fork of such a child holds while its pipes are open.

use std::io;
use std::os::fd::OwnedFd;

use super::SandboxError;

/// Held from the creation of a child's pipes until the parent has closed the
/// child's ends. A child forked by another thread inside that window would
/// inherit the write ends of pipes that are not its own (close-on-exec does
/// not help: the helpers do not exec), and the reader of such a pipe would see
/// no end of file until that unrelated child exits: a failed step would only
/// be noticed once a parallel `RUN sleep 30` had finished.
pub(super) static FORK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| SandboxError::Host {
        what: "create a pipe".into(),
        source: e.into(),
    })
}

pub(super) fn write_all_fd(fd: &OwnedFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = rustix::io::write(fd, data)?;
        data = &data[n..];
    }
    Ok(())
}

pub(super) fn write_all_fd_borrowed(
    fd: std::os::fd::BorrowedFd<'_>,
    mut data: &[u8],
) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(super) fn read_exact_fd(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(fd, &mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}
