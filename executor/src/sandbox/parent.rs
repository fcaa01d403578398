//! The parent side of a run: forks the helper, installs its id maps, receives init's pid
//! (and the pty's master), then relays the command's output (and, with a pty, the caller's
//! stdin) until the helper exits, enforcing the timeout and cancellation.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::process::{Pid, Signal};

use super::child::helper_main;
use super::error::host;
use super::fd::{FORK_LOCK, pipe, read_exact_fd, write_all_fd, write_all_fd_borrowed};
use super::pty::{RawMode, console_socket, recv_fd};
use super::spec::kill_init;
use super::userns::install_maps;
use super::{Outcome, Prepared, RunSpec, SandboxError, Stdio, Stream};
use crate::cgroup::SandboxCgroup;
use crate::sys;

pub(super) fn run_prepared(
    spec: &RunSpec,
    p: &Prepared,
    cgroup: Option<&SandboxCgroup>,
    on_line: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Outcome, SandboxError> {
    let dup = |fd: std::os::fd::BorrowedFd<'_>, what: &str| {
        rustix::io::fcntl_dupfd_cloexec(fd, 3).map_err(|e| SandboxError::Host {
            what: format!("duplicate {what}"),
            source: e.into(),
        })
    };
    // No other child of this process may be forked while the child ends of
    // this run's pipes are open here, or it would hold them (see FORK_LOCK).
    let fork_guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // The pty's master comes back from init over this socket.
    let (console_parent, console_child) = console_socket(spec.stdio == Stdio::Tty)?;
    let (out_r, out_w, err_r, err_w, devnull): (Option<OwnedFd>, _, Option<OwnedFd>, _, _) =
        match spec.stdio {
            Stdio::Lines => {
                let (out_r, out_w) = pipe()?;
                let (err_r, err_w) = pipe()?;
                let devnull =
                    OwnedFd::from(File::open("/dev/null").map_err(host("open /dev/null"))?);
                (Some(out_r), out_w, Some(err_r), err_w, devnull)
            }
            Stdio::Inherit | Stdio::Tty => {
                let out_w = dup(rustix::stdio::stdout(), "stdout")?;
                let err_w = dup(rustix::stdio::stderr(), "stderr")?;
                let stdin = dup(rustix::stdio::stdin(), "stdin")?;
                (None, out_w, None, err_w, stdin)
            }
        };
    let (up_r, up_w) = pipe()?; // helper -> caller
    let (down_r, down_w) = pipe()?; // caller -> helper
    let (fail_r, fail_w) = pipe()?; // setup errors from inside
    // Closed when the command has exec'd (or died): only for a spec that asks to be told.
    let (note_r, note_w) = match spec.on_start {
        Some(_) => {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        }
        None => (None, None),
    };

    let helper = match sys::fork().map_err(host("fork the sandbox helper"))? {
        sys::Fork::Child => {
            drop((out_r, err_r, up_r, down_w, fail_r, note_r));
            drop(console_parent);
            let keep: Vec<i32> = [&up_w, &down_r, &fail_w, &devnull, &out_w, &err_w]
                .into_iter()
                .chain(console_child.as_ref())
                .chain(note_w.as_ref())
                .map(|fd| fd.as_raw_fd())
                .chain(p.stack.iter().flat_map(|s| s.fds()))
                .collect();
            sys::close_fds_except(&keep);
            helper_main(
                p,
                up_w,
                down_r,
                fail_w,
                [devnull, out_w, err_w],
                console_child,
                note_w,
            )
        }
        sys::Fork::Parent(pid) => pid,
    };
    drop((
        out_w,
        err_w,
        up_w,
        down_r,
        fail_w,
        devnull,
        console_child,
        note_w,
    ));
    drop(fork_guard);
    let helper_pid = Pid::from_raw(helper).expect("fork returns a positive pid");
    let reap_helper = || {
        let _ = rustix::process::kill_process(helper_pid, Signal::KILL);
        let _ = rustix::process::waitpid(Some(helper_pid), rustix::process::WaitOptions::empty());
    };

    // 1. The helper has its user namespace: install the maps (a stack's has them).
    let mut b = [0u8; 4];
    if !read_exact_fd(&up_r, &mut b[..1]).map_err(host("wait for the sandbox helper"))? {
        reap_helper();
        return Err(setup_error(&fail_r));
    }
    if p.stack.is_none()
        && let Err(e) = install_maps(helper, &spec.id_map)
    {
        reap_helper();
        return Err(e);
    }
    // Into the sandbox's cgroup before it unshares the cgroup namespace, which is then rooted
    // there; init and the command are forked later and start inside.
    if let Some(cg) = cgroup
        && let Err(source) = cg.add(helper)
    {
        reap_helper();
        return Err(SandboxError::Cgroup { source });
    }
    write_all_fd(&down_w, b"g").map_err(host("signal the sandbox helper"))?;
    // 2. The helper reports init's pid.
    if !read_exact_fd(&up_r, &mut b).map_err(host("wait for the sandbox init"))? {
        reap_helper();
        return Err(setup_error(&fail_r));
    }
    let init_pid = i32::from_ne_bytes(b);
    // 3. Once the network stack has configured the network, the command may start.
    if let Some(stack) = &p.stack {
        if let Err(e) = stack.wait_ready() {
            reap_helper();
            // A set-up failure inside (init gone meanwhile) comes first.
            return Err(match setup_error(&fail_r) {
                SandboxError::Setup { message } if !message.starts_with(HELPER_GONE) => {
                    SandboxError::Setup { message }
                }
                _ => e,
            });
        }
        // Init may have failed its set-up already: that is reported when the run ends.
        let _ = write_all_fd(&down_w, b"n");
    }
    drop(down_w);
    spec.cancel.init_pid.store(init_pid, Ordering::SeqCst);
    if spec.cancel.is_cancelled() {
        kill_init(init_pid);
    }
    let mut out_r = out_r;
    let mut relay_stdin = None;
    let mut _raw = None;
    if let Some(sock) = &console_parent {
        let master = match recv_fd(sock) {
            Ok(Some(fd)) => fd,
            Ok(None) => {
                reap_helper();
                return Err(setup_error(&fail_r));
            }
            Err(e) => {
                reap_helper();
                return Err(SandboxError::Host {
                    what: "receive the pseudo-terminal".into(),
                    source: e,
                });
            }
        };
        if let Ok(size) = rustix::termios::tcgetwinsize(rustix::stdio::stdout()) {
            let _ = rustix::termios::tcsetwinsize(&master, size);
        }
        _raw = RawMode::enter(rustix::stdio::stdin());
        relay_stdin = Some(dup(rustix::stdio::stdin(), "stdin")?);
        out_r = Some(master);
    }
    let tty_master = out_r
        .as_ref()
        .filter(|_| console_parent.is_some())
        .map(|m| {
            rustix::io::fcntl_dupfd_cloexec(m, 3).map_err(|e| SandboxError::Host {
                what: "duplicate the pseudo-terminal".into(),
                source: e.into(),
            })
        });
    let tty_master = tty_master.transpose()?;

    // The command has started once its end of the note pipe is closed with nothing on the
    // error pipe (a failed exec writes there before it exits).
    if let (Some(note), Some(hook)) = (&note_r, &spec.on_start) {
        let mut b = [0u8; 1];
        let _ = read_exact_fd(note, &mut b);
        let mut fds = [PollFd::new(&fail_r, PollFlags::IN)];
        // Nothing to read: the error pipe is still open (poll gives 0), or its writers are
        // all gone because the command already ran and exited (HUP without data).
        let quiet = match rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())) {
            Ok(0) => true,
            Ok(_) => !fds[0].revents().contains(PollFlags::IN),
            Err(_) => false,
        };
        if quiet {
            (hook.0)(init_pid);
        }
    }
    drop(note_r);
    // 4. Stream output until the helper exits.
    let pidfd = rustix::process::pidfd_open(helper_pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| SandboxError::Host {
            what: "open a pidfd".into(),
            source: e.into(),
        })?;
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let mut timed_out = false;
    let mut bufs = [Vec::new(), Vec::new()];
    let mut open = [out_r, err_r];
    let mut exited = false;
    let mut chunk = vec![0u8; 64 * 1024];
    while !(exited && open.iter().all(Option::is_none)) {
        let mut fds = Vec::with_capacity(3);
        let mut which = Vec::with_capacity(3);
        for (i, o) in open.iter().enumerate() {
            if let Some(fd) = o {
                fds.push(PollFd::new(fd, PollFlags::IN));
                which.push(i);
            }
        }
        if !exited {
            fds.push(PollFd::new(&pidfd, PollFlags::IN));
            which.push(2);
        }
        if let Some(fd) = &relay_stdin {
            fds.push(PollFd::new(fd, PollFlags::IN));
            which.push(3);
        }
        let wait_ms = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(100) as i32,
            None => 100,
        };
        let ts = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait_ms) * 1_000_000,
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(SandboxError::Host {
                    what: "poll the sandbox".into(),
                    source: e.into(),
                });
            }
        }
        let ready: Vec<(usize, bool)> = fds
            .iter()
            .zip(&which)
            .map(|(f, w)| (*w, !f.revents().is_empty()))
            .collect();
        drop(fds);
        for (w, r) in ready {
            if !r {
                continue;
            }
            if w == 2 {
                exited = true;
                // Once the command is gone, stdin has nobody to go to.
                relay_stdin = None;
                continue;
            }
            if w == 3 {
                let fd = relay_stdin.as_ref().expect("polled stdin is open");
                let master = tty_master.as_ref().expect("stdin is relayed to a tty");
                match rustix::io::read(fd, &mut chunk) {
                    Ok(0) | Err(_) => relay_stdin = None,
                    Ok(n) => {
                        if write_all_fd(master, &chunk[..n]).is_err() {
                            relay_stdin = None;
                        }
                    }
                }
                continue;
            }
            let fd = open[w].as_ref().expect("polled fds are open");
            match rustix::io::read(fd, &mut chunk) {
                // A pty master reads EIO once every slave is closed.
                Ok(0) | Err(rustix::io::Errno::BADF | rustix::io::Errno::IO) => {
                    open[w] = None;
                }
                Ok(n) if tty_master.is_some() => {
                    let _ = write_all_fd_borrowed(rustix::stdio::stdout(), &chunk[..n]);
                }
                Ok(n) => emit_lines(
                    &mut bufs[w],
                    &chunk[..n],
                    if w == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    },
                    on_line,
                ),
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => {
                    return Err(SandboxError::Host {
                        what: "read the sandbox output".into(),
                        source: e.into(),
                    });
                }
            }
        }
        if let Some(d) = deadline {
            if !timed_out && Instant::now() >= d {
                timed_out = true;
                kill_init(init_pid);
            }
        }
        if spec.cancel.is_cancelled() {
            kill_init(init_pid);
        }
    }
    for (i, s) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
        if !bufs[i].is_empty() {
            on_line(s, &bufs[i]);
        }
    }
    let status = rustix::process::waitpid(Some(helper_pid), rustix::process::WaitOptions::empty())
        .map_err(|e| SandboxError::Host {
            what: "wait for the sandbox".into(),
            source: e.into(),
        })?
        .map(|(_, s)| s);
    spec.cancel.init_pid.store(0, Ordering::SeqCst);
    let cancelled = spec.cancel.is_cancelled();
    let exit_code = exit_or_failure(status, fail_r, !timed_out && !cancelled)?;
    Ok(Outcome {
        exit_code,
        timed_out,
        cancelled,
        oom_killed: exit_code != 0 && cgroup.is_some_and(SandboxCgroup::oom_killed),
        memory_limit: cgroup.and_then(SandboxCgroup::memory_limit),
    })
}

/// The exit code of a child's wait status (128+N when signal N killed it); with `report`, a
/// message on its error pipe is the error instead (the command could not start: 126, 127).
pub(super) fn exit_or_failure(
    status: Option<rustix::process::WaitStatus>,
    fail_r: OwnedFd,
    report: bool,
) -> Result<i32, SandboxError> {
    let exit_code = match status {
        Some(s) if s.exit_status().is_some() => s.exit_status().unwrap_or(1),
        Some(s) => 128 + s.terminating_signal().unwrap_or(0),
        None => 1,
    };
    let mut msg = Vec::new();
    let _ = File::from(fail_r).read_to_end(&mut msg);
    if msg.is_empty() || !report {
        return Ok(exit_code);
    }
    let message = String::from_utf8_lossy(&msg).into_owned();
    if matches!(exit_code, 126 | 127) {
        return Err(SandboxError::Exec {
            message,
            code: exit_code,
        });
    }
    Err(SandboxError::Setup { message })
}

/// What a set-up error says when nothing inside reported a cause.
const HELPER_GONE: &str = "the sandbox helper exited early";

fn setup_error(fail_r: &OwnedFd) -> SandboxError {
    let mut msg = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = rustix::io::read(fail_r, &mut buf) {
        if n == 0 {
            break;
        }
        msg.extend_from_slice(&buf[..n]);
    }
    let message = if msg.is_empty() {
        HELPER_GONE.into()
    } else {
        String::from_utf8_lossy(&msg).into_owned()
    };
    SandboxError::Setup { message }
}

fn emit_lines(buf: &mut Vec<u8>, data: &[u8], s: Stream, on_line: &mut dyn FnMut(Stream, &[u8])) {
    buf.extend_from_slice(data);
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|b| *b == b'\n') {
        on_line(s, &buf[start..start + i]);
        start += i + 1;
    }
    buf.drain(..start);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_kept_across_chunks() {
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut f = |s: Stream, l: &[u8]| got.push((s, l.to_vec()));
        emit_lines(&mut buf, b"a\nb", Stream::Stdout, &mut f);
        emit_lines(&mut buf, b"c\n\nd", Stream::Stdout, &mut f);
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, b"a".to_vec()),
                (Stream::Stdout, b"bc".to_vec()),
                (Stream::Stdout, b"".to_vec())
            ]
        );
        assert_eq!(buf, b"d");
    }
}
