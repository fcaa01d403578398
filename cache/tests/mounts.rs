//! Cache mounts: persistence, sharing modes between threads and processes,
//! owner and mode of new directories, leftovers of killed processes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rbuild_cache::mounts::{CacheMounts, Sharing, id_hex};

fn store() -> (tempfile::TempDir, CacheMounts) {
    let t = tempfile::tempdir().unwrap();
    let m = CacheMounts::open(t.path()).unwrap();
    (t, m)
}

#[test]
fn contents_persist_across_acquires() {
    let (_t, m) = store();
    let g = m
        .acquire("/root/.cache/go-build", Sharing::Shared, None, 0o755)
        .unwrap();
    assert!(g.created);
    assert!(g.path.starts_with(m.dir()));
    std::fs::write(g.path.join("obj"), b"compiled").unwrap();
    let first = g.path.clone();
    drop(g);
    for sharing in [Sharing::Shared, Sharing::Locked, Sharing::Private] {
        let g = m
            .acquire("/root/.cache/go-build", sharing, None, 0o755)
            .unwrap();
        assert!(!g.created);
        assert_eq!(g.path, first, "{sharing:?}");
        assert_eq!(std::fs::read(g.path.join("obj")).unwrap(), b"compiled");
    }
    // Another id is another directory.
    let g = m.acquire("other", Sharing::Shared, None, 0o755).unwrap();
    assert!(g.created && g.path != first);
}

#[test]
fn ids_are_hashed_never_paths() {
    let (t, m) = store();
    let evil = "../../../../etc/passwd";
    let g = m.acquire(evil, Sharing::Locked, None, 0o755).unwrap();
    assert_eq!(g.path, m.dir().join(id_hex(evil)));
    assert_eq!(g.path.parent().unwrap(), t.path().join("mounts-v1"));
    assert_eq!(id_hex(evil).len(), 64);
    drop(g);
    m.acquire("/var/cache/apt", Sharing::Shared, None, 0o755)
        .unwrap();
    assert_eq!(m.list().unwrap(), [evil, "/var/cache/apt"]);
}

/// Output of the `tracing` events of the current thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logging<T>(f: impl FnOnce() -> T) -> (T, String) {
    let cap = Captured::default();
    let w = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    let r = tracing::subscriber::with_default(sub, f);
    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    (r, text)
}

#[test]
fn locked_waits_for_the_holder_and_says_so() {
    let (_t, m) = store();
    let first = m.acquire("apt", Sharing::Locked, None, 0o755).unwrap();
    let got = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let (m, got) = (m.clone(), got.clone());
        std::thread::spawn(move || {
            let (g, log) = logging(|| m.acquire("apt", Sharing::Locked, None, 0o755).unwrap());
            got.store(true, Ordering::SeqCst);
            tx.send(()).unwrap();
            (g.path.clone(), log)
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    assert!(!got.load(Ordering::SeqCst), "the second build did not wait");
    drop(first);
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the second build got the mount once it was free");
    let (path, log) = waiter.join().unwrap();
    assert_eq!(path, m.dir().join(id_hex("apt")));
    assert!(
        log.contains("waiting for cache mount \"apt\" (sharing=locked)"),
        "{log}"
    );
}

#[test]
fn shared_users_run_at_once() {
    let (_t, m) = store();
    let a = m.acquire("npm", Sharing::Shared, None, 0o755).unwrap();
    let (tx, rx) = mpsc::channel();
    let m2 = m.clone();
    let t = std::thread::spawn(move || {
        let b = m2.acquire("npm", Sharing::Shared, None, 0o755).unwrap();
        tx.send(b.path.clone()).unwrap();
        // Holds it while the main thread checks.
        std::thread::sleep(Duration::from_millis(200));
    });
    let p = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a shared user does not wait for another");
    assert_eq!(p, a.path);
    // A locked user waits for the shared ones.
    let t0 = Instant::now();
    t.join().unwrap();
    drop(a);
    let _c = m.acquire("npm", Sharing::Locked, None, 0o755).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn private_gets_another_directory_when_busy_and_keeps_it() {
    let (_t, m) = store();
    let a = m.acquire("pip", Sharing::Private, None, 0o755).unwrap();
    assert_eq!(a.path, m.dir().join(id_hex("pip")));
    std::fs::write(a.path.join("from-a"), b"").unwrap();
    let m2 = m.clone();
    let b = std::thread::spawn(move || m2.acquire("pip", Sharing::Private, None, 0o755).unwrap())
        .join()
        .unwrap();
    assert!(b.created);
    assert_eq!(b.path, m.dir().join(format!("{}-1", id_hex("pip"))));
    assert!(!b.path.join("from-a").exists(), "a fresh directory");
    std::fs::write(b.path.join("from-b"), b"").unwrap();
    // A third while both are held: a third directory.
    let c = m.acquire("pip", Sharing::Private, None, 0o755).unwrap();
    assert_eq!(c.path, m.dir().join(format!("{}-2", id_hex("pip"))));
    drop((a, b, c));
    // Free again: the main one first, then the kept private ones.
    let a = m.acquire("pip", Sharing::Private, None, 0o755).unwrap();
    assert!(a.path.join("from-a").exists() && !a.created);
    let b = m.acquire("pip", Sharing::Private, None, 0o755).unwrap();
    assert!(b.path.join("from-b").exists() && !b.created);
    // A shared user is not blocked by the private holders of other dirs, but
    // waits for the holder of the main one.
    drop(b);
    let got = Arc::new(AtomicBool::new(false));
    let (m2, got2) = (m.clone(), got.clone());
    let t = std::thread::spawn(move || {
        let g = m2.acquire("pip", Sharing::Shared, None, 0o755).unwrap();
        got2.store(true, Ordering::SeqCst);
        g.path.clone()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!got.load(Ordering::SeqCst));
    drop(a);
    assert_eq!(t.join().unwrap(), m.dir().join(id_hex("pip")));
}

#[test]
fn new_directories_get_owner_and_mode() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test chowns to other ids: run it as root"
    );
    let (_t, m) = store();
    let g = m
        .acquire("owned", Sharing::Locked, Some((1234, 5678)), 0o750)
        .unwrap();
    let md = std::fs::metadata(&g.path).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1234, 5678, 0o750)
    );
    drop(g);
    // Later acquires leave an existing directory as it is.
    let g = m.acquire("owned", Sharing::Locked, None, 0o755).unwrap();
    let md = std::fs::metadata(&g.path).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (1234, 5678, 0o750)
    );
    // The mode is not cut by the umask; the default owner is the caller.
    let g = m.acquire("wide", Sharing::Shared, None, 0o777).unwrap();
    let md = std::fs::metadata(&g.path).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o777));
}

#[test]
fn a_failing_init_publishes_nothing() {
    let (_t, m) = store();
    let e = m
        .acquire_with("broken", Sharing::Shared, &mut |_| {
            Err(std::io::Error::other("no chown helper"))
        })
        .unwrap_err();
    assert!(e.to_string().contains("\"broken\""), "{e}");
    assert!(!m.dir().join(id_hex("broken")).exists());
    let mut seen = None;
    let g = m
        .acquire_with("broken", Sharing::Shared, &mut |d| {
            seen = Some(d.to_path_buf());
            std::fs::write(d.join("seed"), b"x")
        })
        .unwrap();
    let seen = seen.unwrap();
    assert_ne!(seen, g.path, "init works on a temp name");
    assert!(!seen.exists());
    assert!(g.path.join("seed").exists());
}

/// A directory half made by a killed process is removed by the next creator.
#[test]
fn leftovers_of_killed_creators_are_removed() {
    let (_t, m) = store();
    let hex = id_hex("ccache");
    let left = m.dir().join(format!(".tmp-{hex}-999999-0"));
    std::fs::create_dir_all(left.join("half/made")).unwrap();
    let g = m.acquire("ccache", Sharing::Shared, None, 0o755).unwrap();
    assert!(g.created);
    assert!(!left.exists());
    assert_eq!(std::fs::read_dir(&g.path).unwrap().count(), 0);
}

const HOLDER_ENV: &str = "RBUILD_TEST_MOUNTS_HOLDER";

/// Run by `a_killed_holder_releases_the_lock` in a child process.
#[test]
#[ignore = "a helper process of another test"]
fn holder_process() {
    let root = std::env::var(HOLDER_ENV).expect("run by another test");
    let m = CacheMounts::open(Path::new(&root)).unwrap();
    let g = m.acquire("held", Sharing::Locked, None, 0o755).unwrap();
    std::fs::write(Path::new(&root).join("holding"), b"").unwrap();
    std::thread::sleep(Duration::from_secs(120));
    drop(g);
}

#[test]
fn a_killed_holder_releases_the_lock() {
    let t = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "holder_process", "--nocapture"])
        .env(HOLDER_ENV, t.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !t.path().join("holding").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the holder never held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let m = CacheMounts::open(t.path()).unwrap();
    let got = Arc::new(AtomicBool::new(false));
    let (m2, got2) = (m.clone(), got.clone());
    let waiter = std::thread::spawn(move || {
        let g = m2.acquire("held", Sharing::Locked, None, 0o755).unwrap();
        got2.store(true, Ordering::SeqCst);
        g.path.clone()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(!got.load(Ordering::SeqCst), "the lock is held by the child");
    child.kill().unwrap();
    child.wait().unwrap();
    let p = waiter.join().unwrap();
    assert_eq!(p, m.dir().join(id_hex("held")));
}
