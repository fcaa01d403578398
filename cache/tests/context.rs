//! The build context: walk, `.dockerignore`, index reuse, racy-git rule, selection digests.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rbuild_cache::Store;
use rbuild_cache::context::{
    Context, EntryKind, IndexOptions, SelectError, SpecialKind, index_context,
};

struct Dir {
    _tmp: tempfile::TempDir,
    ctx: PathBuf,
    store: Store,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = tmp.path().join("ctx");
        fs::create_dir(&ctx).unwrap();
        let store = Store::open(tmp.path().join("store")).unwrap();
        Dir {
            _tmp: tmp,
            ctx,
            store,
        }
    }

    /// Writes a file with an mtime one minute in the past (outside the racy window).
    fn write(&self, rel: impl AsRef<OsStr>, content: &str) -> &Dir {
        let path = self.ctx.join(rel.as_ref());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        age(&path);
        self
    }

    fn index(&self) -> Context {
        index_context(&self.store, &self.ctx, &IndexOptions::default()).unwrap()
    }

    fn paths(&self) -> Vec<String> {
        self.index()
            .entries()
            .iter()
            .map(|e| e.path.to_string_lossy().into_owned())
            .collect()
    }
}

fn age(path: &Path) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

fn sel(ctx: &Context, sources: &[&str]) -> blake3::Hash {
    let sources: Vec<String> = sources.iter().map(|s| s.to_string()).collect();
    ctx.select(&sources, &[]).unwrap().digest
}

#[test]
fn dockerignore_applies_through_the_walk() {
    let d = Dir::new();
    d.write("Dockerfile", "FROM scratch\n")
        .write(
            ".dockerignore",
            "Dockerfile\n.dockerignore\nbuild\n*.log\n!keep.log\nvendor/**\n!vendor/keep/x\n",
        )
        .write("src/main.rs", "fn main() {}")
        .write("build/out.o", "obj")
        .write("err.log", "e")
        .write("keep.log", "k")
        .write("vendor/a/b", "b")
        .write("vendor/keep/x", "x")
        .write("vendor/keep/y", "y");
    let paths = d.paths();
    assert_eq!(
        paths,
        [
            "keep.log",
            "src",
            "src/main.rs",
            "vendor",
            "vendor/keep",
            "vendor/keep/x"
        ]
    );
    let ctx = d.index();
    assert_eq!(
        ctx.ignore_file(),
        Some(d.ctx.join(".dockerignore").as_path())
    );
    // The ignored Dockerfile stays readable but is not in `COPY .`.
    let all = ctx.select(&[".".into()], &[]).unwrap();
    assert!(
        all.entries
            .iter()
            .all(|e| e.path != Path::new("Dockerfile"))
    );
    assert!(fs::read(d.ctx.join("Dockerfile")).is_ok());
    assert!(matches!(
        ctx.select(&["Dockerfile".into()], &[]),
        Err(SelectError::NotFound { .. })
    ));
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let d = Dir::new();
    d.write("df/app.Dockerfile", "FROM scratch\n")
        .write("df/app.Dockerfile.dockerignore", "a\n")
        .write(".dockerignore", "b\n")
        .write("a", "a")
        .write("b", "b");
    let ctx = index_context(
        &d.store,
        &d.ctx,
        &IndexOptions {
            dockerfile: Some("df/app.Dockerfile".into()),
            ..IndexOptions::default()
        },
    )
    .unwrap();
    assert!(ctx.get(b"a").is_none());
    assert!(ctx.get(b"b").is_some());
    assert!(
        ctx.ignore_file()
            .unwrap()
            .ends_with("app.Dockerfile.dockerignore")
    );
    assert!(d.index().get(b"a").is_some());
    assert!(d.index().get(b"b").is_none());
}

#[test]
fn symlinks_are_kept_as_links_and_special_files_reported() {
    let d = Dir::new();
    d.write("f", "x");
    std::os::unix::fs::symlink("/etc/passwd", d.ctx.join("out")).unwrap();
    std::os::unix::fs::symlink("/", d.ctx.join("rootlink")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        d.ctx.join("pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let ctx = d.index();
    let out = ctx.get(b"out").unwrap();
    assert_eq!(out.kind, EntryKind::Symlink);
    assert_eq!(out.link_target.as_deref(), Some(Path::new("/etc/passwd")));
    assert_eq!(out.hash, None);
    assert_eq!(ctx.get(b"rootlink").unwrap().kind, EntryKind::Symlink);
    assert!(ctx.get(b"rootlink/etc").is_none(), "symlink followed");
    assert!(ctx.get(b"pipe").is_none());
    assert_eq!(ctx.special_files().len(), 1);
    assert_eq!(ctx.special_files()[0].path, Path::new("pipe"));
    assert_eq!(ctx.special_files()[0].kind, SpecialKind::Fifo);
    // A named source that is a link is followed inside the context, as docker does:
    // `/etc/passwd` is the context's own etc/passwd, which is not there.
    let err = ctx.select(&["out".to_string()], &[]).unwrap_err();
    assert!(
        err.to_string().contains("out is not in the build context"),
        "{err}"
    );
    // The link, its target and the target's content are all in the digest.
    d.write("a", "1").write("b", "2");
    std::os::unix::fs::symlink("a", d.ctx.join("l")).unwrap();
    let ctx = d.index();
    let before = sel(&ctx, &["l"]);
    let picked = ctx.select(&["l".to_string()], &[]).unwrap();
    let names: Vec<_> = picked.entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(names, [Path::new("a"), Path::new("l")]);
    fs::remove_file(d.ctx.join("l")).unwrap();
    std::os::unix::fs::symlink("b", d.ctx.join("l")).unwrap();
    assert_ne!(sel(&d.index(), &["l"]), before);
    fs::remove_file(d.ctx.join("l")).unwrap();
    std::os::unix::fs::symlink("a", d.ctx.join("l")).unwrap();
    d.write("a", "changed");
    assert_ne!(sel(&d.index(), &["l"]), before);
}

#[test]
fn names_with_newlines_and_invalid_utf8() {
    let d = Dir::new();
    let name = OsStr::from_bytes(b"bad\xffname\nline");
    d.write(name, "content");
    let ctx = d.index();
    let e = ctx.get(b"bad\xffname\nline").unwrap();
    assert_eq!(e.path.as_os_str(), name);
    assert_eq!(e.hash, Some(blake3::hash(b"content")));
    assert_eq!(d.index().stats().hashed, 0);
    let s = ctx.select(&["bad*".into()], &[]).unwrap();
    assert_eq!(s.entries.len(), 1);
}

#[test]
fn noop_reindex_hashes_nothing() {
    let d = Dir::new();
    for i in 0..50 {
        d.write(format!("d{}/f{i}", i % 5), &format!("file {i}"));
    }
    let first = d.index();
    assert_eq!(first.stats().hashed, 50);
    assert!(first.stats().index_written);
    let second = d.index();
    assert_eq!(second.stats().stated, 55);
    assert_eq!(second.stats().hashed, 0);
    assert!(!second.stats().index_written);
    assert_eq!(sel(&first, &["."]), sel(&second, &["."]));
    // The index lives in the store's contexts-v1 folder.
    assert_eq!(
        fs::read_dir(d.store.root().join("contexts-v1"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn touch_rehashes_but_keeps_the_digest_and_content_change_changes_it() {
    let d = Dir::new();
    d.write("a.txt", "one").write("b.txt", "two");
    let ctx = d.index();
    let digest = sel(&ctx, &["a.txt"]);
    // Touch: new mtime, same content.
    let f = fs::File::options()
        .write(true)
        .open(d.ctx.join("a.txt"))
        .unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(30))
        .unwrap();
    let ctx = d.index();
    assert_eq!(ctx.stats().hashed, 1);
    assert_eq!(sel(&ctx, &["a.txt"]), digest);
    // Content change.
    d.write("a.txt", "ONE");
    let ctx = d.index();
    assert_eq!(ctx.stats().hashed, 1);
    assert_ne!(sel(&ctx, &["a.txt"]), digest);
    // Mode change.
    d.write("a.txt", "one");
    let ctx = d.index();
    assert_eq!(sel(&ctx, &["a.txt"]), digest);
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(d.ctx.join("a.txt"), fs::Permissions::from_mode(0o4755)).unwrap();
    let ctx = d.index();
    assert_eq!(ctx.get(b"a.txt").unwrap().mode, 0o4755);
    assert_ne!(sel(&ctx, &["a.txt"]), digest);
}

#[test]
fn racy_entries_are_rehashed() {
    let d = Dir::new();
    // Written now: its mtime is within the second the index is written in.
    fs::write(d.ctx.join("fresh"), "x").unwrap();
    assert_eq!(d.index().stats().hashed, 1);
    // Same stat data, but not strictly older than the index write: hashed again.
    let again = d.index();
    assert_eq!(again.stats().hashed, 1);
    assert!(again.stats().index_written);
    // Once older than the index, it is trusted.
    age(&d.ctx.join("fresh"));
    assert_eq!(d.index().stats().hashed, 1);
    assert_eq!(d.index().stats().hashed, 0);
}

#[test]
fn unselected_changes_and_neutral_ignore_edits_keep_the_digest() {
    let d = Dir::new();
    d.write("app/a.txt", "a")
        .write("app/b.txt", "b")
        .write("other/c", "c")
        .write(".dockerignore", "*.tmp\n");
    let ctx = d.index();
    let app = sel(&ctx, &["app"]);
    d.write("other/c", "changed").write("other/new", "n");
    assert_eq!(sel(&d.index(), &["app"]), app);
    // An ignore edit that does not change what `app` selects.
    d.write(".dockerignore", "# comment\n*.tmp\nother/new\n");
    assert_eq!(sel(&d.index(), &["app"]), app);
    // One that does.
    d.write(".dockerignore", "app/b.txt\n");
    assert_ne!(sel(&d.index(), &["app"]), app);
    // Moving the whole context elsewhere (another machine) keeps the digest.
    let d2 = Dir::new();
    d2.write("app/a.txt", "a").write("app/b.txt", "b");
    assert_eq!(sel(&d2.index(), &["app"]), app);
}

#[test]
fn globs_excludes_and_errors() {
    let d = Dir::new();
    d.write("a.txt", "1")
        .write("b.txt", "2")
        .write("c.md", "3")
        .write("dir/p/x", "4")
        .write("dir/q/x", "5")
        .write("dir/q/y", "6")
        .write("ab.c", "7")
        .write("bz.c", "8")
        .write("cz.c", "9")
        .write("abc.c", "10");
    let ctx = d.index();
    let names = |srcs: &[&str], ex: &[&str]| -> Vec<String> {
        let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
        let ex: Vec<String> = ex.iter().map(|s| s.to_string()).collect();
        ctx.select(&srcs, &ex)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.path.to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&["*.txt"], &[]), ["a.txt", "b.txt"]);
    assert_eq!(names(&["dir/*/x"], &[]), ["dir/p/x", "dir/q/x"]);
    assert_eq!(names(&["[ab]?.c"], &[]), ["ab.c", "bz.c"]);
    assert_eq!(
        names(&["dir"], &["q/y"]),
        ["dir", "dir/p", "dir/p/x", "dir/q", "dir/q/x"]
    );
    assert_eq!(names(&["/dir/q/../p"], &[]), ["dir/p", "dir/p/x"]);
    assert_eq!(names(&["*.txt", "a.txt"], &["b.txt"]), ["a.txt"]);
    // A glob that matches nothing selects nothing (BuildKit's AllowEmptyWildcard).
    assert!(names(&["*.nothing"], &[]).is_empty());
    assert_eq!(names(&["*.nothing", "a.txt"], &[]), ["a.txt"]);
    assert_eq!(
        ctx.select(&["*.nothing".into()], &[]).unwrap().digest,
        ctx.select(&["nodir/*.x".into()], &[]).unwrap().digest
    );
    match ctx.select(&["../x".into()], &[]) {
        Err(e @ SelectError::OutsideContext { .. }) => assert!(e.to_string().contains("../x")),
        other => panic!("expected outside context, got {other:?}"),
    }
    assert!(matches!(
        ctx.select(&["missing".into()], &[]),
        Err(SelectError::NotFound { .. })
    ));
    assert!(matches!(
        ctx.select(&["[a-".into()], &[]),
        Err(SelectError::BadPattern { .. })
    ));
}

#[test]
fn corrupt_index_is_rebuilt() {
    let d = Dir::new();
    d.write("a", "a");
    d.index();
    let dir = d.store.root().join("contexts-v1");
    let idx = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let mut bytes = fs::read(&idx).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    fs::write(&idx, bytes).unwrap();
    let ctx = d.index();
    assert_eq!(ctx.stats().hashed, 1);
    assert_eq!(ctx.get(b"a").unwrap().hash, Some(blake3::hash(b"a")));
}
