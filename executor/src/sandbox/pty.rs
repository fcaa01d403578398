//! The pseudo-terminal of `rbuild run -t`: init opens it on the sandbox's own devpts and
//! sends the master to the caller over a socket; the caller's terminal is in raw mode while
//! the command runs.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The socket pair the pty's master comes back over (`(caller's end, child's end)`), when
/// `tty`.
pub(super) fn console_socket(
    tty: bool,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>), super::SandboxError> {
    if !tty {
        return Ok((None, None));
    }
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| super::SandboxError::Host {
        what: "create the console socket".into(),
        source: e.into(),
    })?;
    Ok((Some(a), Some(b)))
}

/// In init, after pivot_root: opens a pty pair on the sandbox's own devpts,
/// sends the master over `sock` to the caller, and returns the slave.
pub(super) fn open_pty(sock: &OwnedFd) -> io::Result<OwnedFd> {
    use rustix::pty::OpenptFlags;
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    send_fd(sock, master.as_fd())?;
    Ok(slave)
}

/// Sends `fd` over the unix socket `sock` (read with [`recv_fd`]).
pub(super) fn send_fd(sock: &OwnedFd, fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = rustix::net::SendAncillaryBuffer::new(&mut space);
    anc.push(rustix::net::SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        sock,
        &[io::IoSlice::new(b"t")],
        &mut anc,
        rustix::net::SendFlags::empty(),
    )?;
    Ok(())
}

/// Receives a descriptor sent by [`send_fd`] (the pty master from init, the seccomp listener
/// from the command); `None` when the sender closed the socket without sending one (it
/// failed, and says why on its error pipe).
pub(super) fn recv_fd(sock: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut anc = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let mut buf = [0u8; 1];
    loop {
        match rustix::net::recvmsg(
            sock,
            &mut [io::IoSliceMut::new(&mut buf)],
            &mut anc,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for msg in anc.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(mut fds) = msg {
            if let Some(fd) = fds.next() {
                return Ok(Some(fd));
            }
        }
    }
    Ok(None)
}

/// The caller's terminal in raw mode until dropped (keys such as Ctrl-C go to
/// the sandbox's pty, whose line discipline acts on them).
pub(super) struct RawMode {
    fd: std::os::fd::BorrowedFd<'static>,
    saved: rustix::termios::Termios,
}

impl RawMode {
    pub(super) fn enter(fd: std::os::fd::BorrowedFd<'static>) -> Option<RawMode> {
        if !rustix::termios::isatty(fd) {
            return None;
        }
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ =
            rustix::termios::tcsetattr(self.fd, rustix::termios::OptionalActions::Now, &self.saved);
    }
}
