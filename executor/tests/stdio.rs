//! `Stdio::Inherit`: the process writes to the caller's own stdout (as
//! `rbuild run` needs). Alone in its binary because it redirects fd 1.

mod common;

use common::suite::Ctx;
use rbuild_executor::sandbox::Stdio;
use rbuild_executor::snapshot::SnapshotterKind;

#[test]
fn inherited_stdio_reaches_the_callers_stdout() {
    let c = Ctx::new(SnapshotterKind::Overlay);
    let capture = c.tmp.path().join("captured");
    let file = std::fs::File::create(&capture).unwrap();
    let saved = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdout(), 3).unwrap();
    rustix::stdio::dup2_stdout(&file).unwrap();
    let mut s = c.spec("echo to-stdout; echo partial-line-without-newline | tr -d '\\n'; exit 4");
    s.stdio = Stdio::Inherit;
    let r = c.run(&s);
    rustix::stdio::dup2_stdout(&saved).unwrap();
    let r = r.unwrap();
    assert_eq!(r.outcome.exit_code, 4);
    assert!(r.stdout.is_empty(), "the callback is not used");
    assert_eq!(
        std::fs::read_to_string(&capture).unwrap(),
        "to-stdout\npartial-line-without-newline"
    );
}
