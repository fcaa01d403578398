//! COPY/ADD/WORKDIR as file operations: real source trees and real snapshot
//! directories as the parent, the produced layer read back entry by entry.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rbuild_compiler::instructions::Chmod;
use rbuild_compress::Compression;
use rbuild_executor::diff::{DiffOptions, LayerInfo};
use rbuild_executor::fileop::{
    CopyRequest, CopySourceSpec, FileOpError, HostDir, ImageFs, copy, mkdir,
};
use rbuild_executor::idmap::IdMap;
use rbuild_executor::snapshot::LowerView;

#[derive(Debug, Clone, PartialEq, Eq)]
struct E {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: String,
    data: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn entries(layer: &[u8]) -> Vec<E> {
    let mut a = tar::Archive::new(flate2::read::MultiGzDecoder::new(layer));
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = Vec::new();
        if let Some(pax) = e.pax_extensions().unwrap() {
            for x in pax {
                let x = x.unwrap();
                if let Some(k) = x.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((k.to_owned(), x.value_bytes().to_vec()));
                }
            }
        }
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular => 'f',
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Fifo => 'p',
            tar::EntryType::Char => 'c',
            t => panic!("unexpected entry type {t:?}"),
        };
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap())
            .unwrap_or_default();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push(E {
            path,
            kind,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            data,
            xattrs,
        });
    }
    out
}

fn paths(es: &[E]) -> Vec<&str> {
    es.iter().map(|e| e.path.as_str()).collect()
}

fn get<'a>(es: &'a [E], p: &str) -> &'a E {
    es.iter()
        .find(|e| e.path == p)
        .unwrap_or_else(|| panic!("no entry {p} in {:?}", paths(es)))
}

fn opts() -> DiffOptions {
    DiffOptions {
        threads: 1,
        ..DiffOptions::default()
    }
}

fn run(req: &CopyRequest<'_>, parent: &LowerView) -> (Option<LayerInfo>, Vec<E>) {
    run_with(req, parent, &opts())
}

fn run_with(
    req: &CopyRequest<'_>,
    parent: &LowerView,
    o: &DiffOptions,
) -> (Option<LayerInfo>, Vec<E>) {
    let mut out = Vec::new();
    let r = copy(req, parent, o, &mut out).unwrap();
    match r.layer {
        Some(l) => (Some(l), entries(&out)),
        None => (None, Vec::new()),
    }
}

fn copy_err(req: &CopyRequest<'_>, parent: &LowerView) -> FileOpError {
    copy(req, parent, &opts(), &mut Vec::new()).unwrap_err()
}

fn write(root: &Path, rel: &str, data: &str, mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdirm(root: &Path, rel: &str, mode: u32) {
    let p = root.join(rel);
    std::fs::create_dir_all(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(p: &Path, t: i64) {
    let ts = rustix::fs::Timespec {
        tv_sec: t,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Tries to give `p` the owner `uid:gid` and returns the owner it has
/// (unchanged when not permitted: the tests compare with what is there).
fn owner(p: &Path, uid: u32, gid: u32) -> (u64, u64) {
    let _ = std::os::unix::fs::lchown(p, Some(uid), Some(gid));
    let md = std::fs::symlink_metadata(p).unwrap();
    (u64::from(md.uid()), u64::from(md.gid()))
}

fn tree<'a>(src: &'a HostDir, pattern: &str) -> Vec<CopySourceSpec<'a>> {
    vec![CopySourceSpec::Tree {
        fs: src,
        pattern: pattern.into(),
    }]
}

struct Fx {
    _t: tempfile::TempDir,
    ctx: PathBuf,
    lower: PathBuf,
}

fn fx() -> Fx {
    let t = tempfile::tempdir().unwrap();
    let ctx = t.path().join("ctx");
    let lower = t.path().join("lower");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::create_dir_all(&lower).unwrap();
    Fx { _t: t, ctx, lower }
}

impl Fx {
    fn host(&self) -> HostDir {
        HostDir::new(self.ctx.clone(), None)
    }
    fn parent(&self) -> LowerView {
        LowerView::new(vec![self.lower.clone()])
    }
}

#[test]
fn directory_contents_go_into_a_new_destination() {
    let f = fx();
    write(&f.ctx, "src/a/b.txt", "bee", 0o640);
    write(&f.ctx, "src/run.sh", "#!/bin/sh\n", 0o4755);
    mkdirm(&f.ctx, "src/a", 0o750);
    symlink("a/b.txt", f.ctx.join("src/link")).unwrap();
    set_mtime(&f.ctx.join("src/a/b.txt"), 1_000_000);
    set_mtime(&f.ctx.join("src"), 1_234_567);
    let h = f.host();
    // `COPY src /app` and `COPY src/ /app` are the same.
    for pat in ["src", "src/", "/src"] {
        let (l, es) = run(&CopyRequest::new(tree(&h, pat), "/app"), &f.parent());
        assert!(l.is_some());
        assert_eq!(
            paths(&es),
            ["app/", "app/a/", "app/a/b.txt", "app/link", "app/run.sh"]
        );
        let app = get(&es, "app/");
        assert_eq!((app.mode, app.uid, app.gid), (0o755, 0, 0));
        assert_eq!(
            app.mtime, 1_234_567,
            "the destination takes the source dir's mtime"
        );
        let a = get(&es, "app/a/");
        assert_eq!((a.kind, a.mode, a.uid, a.gid), ('d', 0o750, 0, 0));
        let b = get(&es, "app/a/b.txt");
        assert_eq!((b.kind, b.mode, b.uid, b.gid), ('f', 0o640, 0, 0));
        assert_eq!((b.data.as_slice(), b.mtime), (&b"bee"[..], 1_000_000));
        let s = get(&es, "app/run.sh");
        assert_eq!(s.mode, 0o4755, "setuid is kept without --chmod");
        let l = get(&es, "app/link");
        assert_eq!((l.kind, l.link.as_str()), ('l', "a/b.txt"));
    }
}

#[test]
fn file_destinations_directory_or_name() {
    let f = fx();
    write(&f.ctx, "f.txt", "data", 0o644);
    mkdirm(&f.lower, "existing", 0o711);
    let h = f.host();
    let (_, es) = run(&CopyRequest::new(tree(&h, "f.txt"), "/d/"), &f.parent());
    assert_eq!(paths(&es), ["d/", "d/f.txt"]);
    let (_, es) = run(
        &CopyRequest::new(tree(&h, "f.txt"), "/newname"),
        &f.parent(),
    );
    assert_eq!(paths(&es), ["newname"]);
    assert_eq!(get(&es, "newname").data, b"data");
    // An existing directory receives the file by name, without a trailing slash.
    let (_, es) = run(
        &CopyRequest::new(tree(&h, "f.txt"), "/existing"),
        &f.parent(),
    );
    assert_eq!(paths(&es), ["existing/", "existing/f.txt"]);
    assert_eq!(get(&es, "existing/").mode, 0o711);
    // Missing parents of a file destination are made.
    let (_, es) = run(&CopyRequest::new(tree(&h, "f.txt"), "/x/y/z"), &f.parent());
    assert_eq!(paths(&es), ["x/", "x/y/", "x/y/z"]);
    assert_eq!(get(&es, "x/y/").mode, 0o755);
}

#[test]
fn several_sources_need_a_directory() {
    let f = fx();
    write(&f.ctx, "a", "a", 0o644);
    write(&f.ctx, "b", "b", 0o644);
    mkdirm(&f.lower, "dir", 0o755);
    let h = f.host();
    let two = || {
        vec![
            CopySourceSpec::Tree {
                fs: &h,
                pattern: "a".into(),
            },
            CopySourceSpec::Tree {
                fs: &h,
                pattern: "b".into(),
            },
        ]
    };
    let e = copy_err(&CopyRequest::new(two(), "/out"), &f.parent());
    assert!(matches!(e, FileOpError::DestNotDir { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "when using COPY with more than one source file, the destination must be a directory and end with a /: /out"
    );
    let e = copy_err(&CopyRequest::new(tree(&h, "[ab]"), "/out"), &f.parent());
    assert!(matches!(e, FileOpError::DestNotDir { .. }), "{e}");
    let (_, es) = run(&CopyRequest::new(two(), "/out/"), &f.parent());
    assert_eq!(paths(&es), ["out/", "out/a", "out/b"]);
    let (_, es) = run(&CopyRequest::new(two(), "/dir"), &f.parent());
    assert_eq!(paths(&es), ["dir/", "dir/a", "dir/b"]);
}

#[test]
fn globs_match_files_and_directories() {
    let f = fx();
    write(&f.ctx, "one.txt", "1", 0o644);
    write(&f.ctx, "two.txt", "2", 0o644);
    write(&f.ctx, "dir.txt/inner", "i", 0o644);
    write(&f.ctx, "other.md", "m", 0o644);
    write(&f.ctx, "sub/x.txt", "x", 0o644);
    let h = f.host();
    let (_, es) = run(&CopyRequest::new(tree(&h, "*.txt"), "/g/"), &f.parent());
    // A matched directory brings its content, not itself.
    assert_eq!(paths(&es), ["g/", "g/inner", "g/one.txt", "g/two.txt"]);
    let (_, es) = run(&CopyRequest::new(tree(&h, "s?b/*.txt"), "/g/"), &f.parent());
    assert_eq!(paths(&es), ["g/", "g/x.txt"]);
    // A glob that matches nothing copies nothing and leaves the destination alone, as
    // BuildKit's AllowEmptyWildcard does.
    let (layer, es) = run(&CopyRequest::new(tree(&h, "*.nope"), "/g/"), &f.parent());
    assert!(layer.is_none() && es.is_empty(), "{:?}", paths(&es));
    let e = copy_err(&CopyRequest::new(tree(&h, "missing"), "/g/"), &f.parent());
    assert!(matches!(e, FileOpError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    let e = copy_err(&CopyRequest::new(tree(&h, "[a-"), "/g/"), &f.parent());
    assert!(matches!(e, FileOpError::BadPattern { .. }), "{e}");
}

#[test]
fn globs_with_a_bare_bracket_or_dash_in_a_class_are_refused_as_go_does() {
    // `filepath.Match` wants `]` and `-` escaped where a class expects a character; the
    // build-context selection already refused these, and copies from a stage or image
    // refuse them the same way.
    let f = fx();
    write(&f.ctx, "]", "b", 0o644);
    write(&f.ctx, "-.txt", "d", 0o644);
    let h = f.host();
    for pattern in ["[]a]", "[-a].txt", "[a-]"] {
        let e = copy_err(&CopyRequest::new(tree(&h, pattern), "/g/"), &f.parent());
        assert!(
            matches!(e, FileOpError::BadPattern { .. }),
            "{pattern}: {e}"
        );
        assert!(e.to_string().contains(pattern), "{e}");
    }
    let (_, es) = run(&CopyRequest::new(tree(&h, "[\\]a]"), "/g/"), &f.parent());
    assert_eq!(paths(&es), ["g/", "g/]"]);
}

#[test]
fn named_symlinks_are_followed_inside_the_tree() {
    let f = fx();
    write(&f.ctx, "real/f.txt", "real", 0o644);
    symlink("/real", f.ctx.join("abs")).unwrap();
    symlink("../../../../real", f.ctx.join("up")).unwrap();
    symlink("real/f.txt", f.ctx.join("filelink")).unwrap();
    let h = f.host();
    for p in ["abs", "up"] {
        let (_, es) = run(&CopyRequest::new(tree(&h, p), "/x/"), &f.parent());
        assert_eq!(paths(&es), ["x/", "x/f.txt"], "{p}");
    }
    // The name is the link's, the content the target's.
    let (_, es) = run(&CopyRequest::new(tree(&h, "filelink"), "/x/"), &f.parent());
    assert_eq!(paths(&es), ["x/", "x/filelink"]);
    assert_eq!(
        (
            get(&es, "x/filelink").kind,
            get(&es, "x/filelink").data.as_slice()
        ),
        ('f', &b"real"[..])
    );
}

#[test]
fn destination_through_parent_symlinks_stays_inside() {
    let f = fx();
    write(&f.ctx, "f", "F", 0o644);
    mkdirm(&f.lower, "srv/app", 0o750);
    let (uid, gid) = owner(&f.lower.join("srv/app"), 1234, 2345);
    symlink("/srv/app", f.lower.join("app")).unwrap();
    symlink("../../../..", f.lower.join("escape")).unwrap();
    let h = f.host();
    let (_, es) = run(&CopyRequest::new(tree(&h, "f"), "/app/x"), &f.parent());
    assert_eq!(paths(&es), ["srv/", "srv/app/", "srv/app/x"]);
    let d = get(&es, "srv/app/");
    assert_eq!((d.mode, d.uid, d.gid), (0o750, uid, gid));
    // `..` through a symlink never leaves the root.
    let (_, es) = run(
        &CopyRequest::new(tree(&h, "f"), "/escape/etc/y"),
        &f.parent(),
    );
    assert_eq!(paths(&es), ["etc/", "etc/y"]);
    // --link: the destination is resolved on an empty tree.
    let mut req = CopyRequest::new(tree(&h, "f"), "/app/x");
    req.link = true;
    let (_, es) = run(&req, &f.parent());
    assert_eq!(paths(&es), ["app/", "app/x"]);
    assert_eq!(get(&es, "app/").mode, 0o755);
}

#[test]
fn existing_parent_dirs_keep_their_metadata_and_made_ones_get_the_owner() {
    let f = fx();
    write(&f.ctx, "f", "F", 0o644);
    mkdirm(&f.lower, "etc", 0o700);
    set_mtime(&f.lower.join("etc"), 777);
    let (uid, gid) = owner(&f.lower.join("etc"), 3, 4);
    let h = f.host();
    let mut req = CopyRequest::new(tree(&h, "f"), "/etc/new/deeper/f");
    req.chown = Some("1000:1001".into());
    let (_, es) = run(&req, &f.parent());
    assert_eq!(
        paths(&es),
        ["etc/", "etc/new/", "etc/new/deeper/", "etc/new/deeper/f"]
    );
    let e = get(&es, "etc/");
    assert_eq!((e.mode, e.uid, e.gid, e.mtime), (0o700, uid, gid, 777));
    for d in ["etc/new/", "etc/new/deeper/"] {
        let e = get(&es, d);
        assert_eq!((e.mode, e.uid, e.gid), (0o755, 1000, 1001), "{d}");
    }
    assert_eq!(
        (
            get(&es, "etc/new/deeper/f").uid,
            get(&es, "etc/new/deeper/f").gid
        ),
        (1000, 1001)
    );
}

#[test]
fn replacing_files_and_directories() {
    let f = fx();
    write(&f.ctx, "f", "new", 0o644);
    write(&f.ctx, "tree/sub/x", "x", 0o644);
    write(&f.ctx, "tree/plain", "p", 0o644);
    write(&f.lower, "old", "old", 0o600);
    mkdirm(&f.lower, "adir/f", 0o755);
    write(&f.lower, "dst/sub", "a file", 0o644);
    mkdirm(&f.lower, "dst2/plain", 0o755);
    write(&f.lower, "target", "t", 0o644);
    symlink("/target", f.lower.join("lnk")).unwrap();
    let h = f.host();
    // A file replaces a file.
    let (_, es) = run(&CopyRequest::new(tree(&h, "f"), "/old"), &f.parent());
    assert_eq!(paths(&es), ["old"]);
    assert_eq!(get(&es, "old").data, b"new");
    // A destination symlink is followed (as BuildKit resolves it).
    let (_, es) = run(&CopyRequest::new(tree(&h, "f"), "/lnk"), &f.parent());
    assert_eq!(paths(&es), ["target"]);
    // A file never replaces a directory...
    let e = copy_err(&CopyRequest::new(tree(&h, "f"), "/adir/"), &f.parent());
    assert!(matches!(e, FileOpError::ReplaceDir { .. }), "{e}");
    assert!(e.to_string().contains("/adir/f"), "{e}");
    let e = copy_err(&CopyRequest::new(tree(&h, "tree"), "/dst2"), &f.parent());
    assert!(matches!(e, FileOpError::ReplaceDir { .. }), "{e}");
    // ... nor a directory a file.
    let e = copy_err(&CopyRequest::new(tree(&h, "tree"), "/dst"), &f.parent());
    assert!(matches!(e, FileOpError::NotADirectory { .. }), "{e}");
    assert_eq!(e.to_string(), "cannot copy to non-directory: /dst/sub");
}

#[test]
fn owners_from_stages_are_kept_and_chown_resolves_names_in_the_parent() {
    let f = fx();
    // A stage tree with its own owners.
    let stage = f.lower.parent().unwrap().join("stage");
    write(&stage, "out/bin", "bin", 0o755);
    let (uid, gid) = owner(&stage.join("out/bin"), 1234, 2345);
    let sv = LowerView::new(vec![stage.clone()]);
    let sfs = ImageFs::new(sv, IdMap::identity());
    let req = CopyRequest::new(
        vec![CopySourceSpec::Tree {
            fs: &sfs,
            pattern: "/out/bin".into(),
        }],
        "/usr/local/bin/",
    );
    let (_, es) = run(&req, &f.parent());
    let b = get(&es, "usr/local/bin/bin");
    assert_eq!((b.uid, b.gid), (uid, gid));

    // Names come from the parent's /etc/passwd (a symlink inside the root) and /etc/group.
    write(
        &f.lower,
        "usr/share/passwd",
        "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1001:1002::/home/app:/bin/sh\n",
        0o644,
    );
    mkdirm(&f.lower, "etc", 0o755);
    symlink("/usr/share/passwd", f.lower.join("etc/passwd")).unwrap();
    write(&f.lower, "etc/group", "root:x:0:\nstaff:x:50:app\n", 0o644);
    write(&f.ctx, "f", "F", 0o644);
    let h = f.host();
    for (spec, want) in [
        ("app", (1001, 1002)),
        ("app:staff", (1001, 50)),
        ("1000", (1000, 1000)),
        ("1000:7", (1000, 7)),
        ("4242:staff", (4242, 50)),
    ] {
        let mut req = CopyRequest::new(tree(&h, "f"), "/f");
        req.chown = Some(spec.into());
        let (_, es) = run(&req, &f.parent());
        let e = get(&es, "f");
        assert_eq!((e.uid, e.gid), want, "{spec}");
    }
    let mut req = CopyRequest::new(tree(&h, "f"), "/f");
    req.chown = Some("nobody".into());
    let e = copy_err(&req, &f.parent());
    assert_eq!(
        e.to_string(),
        "unable to find user nobody: no matching entries in passwd file"
    );
    req.chown = Some("app:wheel".into());
    let e = copy_err(&req, &f.parent());
    assert_eq!(
        e.to_string(),
        "unable to find group wheel: no matching entries in group file"
    );
}

#[test]
fn chmod_applies_to_files_and_directories_not_symlinks() {
    let f = fx();
    write(&f.ctx, "d/f", "F", 0o664);
    write(&f.ctx, "d/x", "X", 0o744);
    mkdirm(&f.ctx, "d/sub", 0o700);
    symlink("f", f.ctx.join("d/l")).unwrap();
    let h = f.host();
    let mut req = CopyRequest::new(tree(&h, "d"), "/o/p/");
    req.chmod = Some(Chmod::Octal(0o4750));
    let (_, es) = run(&req, &f.parent());
    assert_eq!(get(&es, "o/p/f").mode, 0o4750);
    assert_eq!(get(&es, "o/p/sub/").mode, 0o4750);
    assert_eq!(get(&es, "o/p/l").kind, 'l');
    assert_eq!(get(&es, "o/p/l").mode, 0o777);
    // Directories it makes get the permission bits.
    assert_eq!(get(&es, "o/").mode, 0o750);
    assert_eq!(get(&es, "o/p/").mode, 0o750);

    req.chmod = Some(Chmod::Symbolic("u+x,g-w".into()));
    let (_, es) = run(&req, &f.parent());
    assert_eq!(get(&es, "o/p/f").mode, 0o744);
    assert_eq!(get(&es, "o/p/x").mode, 0o744);
    assert_eq!(get(&es, "o/p/sub/").mode, 0o700);
    assert_eq!(get(&es, "o/p/").mode, 0o755);
    req.chmod = Some(Chmod::Symbolic("a=rX".into()));
    let (_, es) = run(&req, &f.parent());
    assert_eq!(get(&es, "o/p/f").mode, 0o444);
    assert_eq!(get(&es, "o/p/x").mode, 0o555);
    assert_eq!(get(&es, "o/p/sub/").mode, 0o555);
}

#[test]
fn mtimes_are_kept_and_clamped_inline_files_get_the_epoch() {
    let f = fx();
    write(&f.ctx, "f", "F", 0o644);
    set_mtime(&f.ctx.join("f"), 2_000_000_000);
    let h = f.host();
    let mut sources = tree(&h, "f");
    sources.push(CopySourceSpec::Inline {
        name: "script.sh".into(),
        content: b"echo hi\n".to_vec(),
    });
    let req = CopyRequest::new(sources, "/d/");
    let o = DiffOptions {
        source_date_epoch: Some(1_700_000_000),
        ..opts()
    };
    let (_, es) = run_with(&req, &f.parent(), &o);
    assert_eq!(get(&es, "d/f").mtime, 1_700_000_000);
    let s = get(&es, "d/script.sh");
    assert_eq!(
        (s.mode, s.uid, s.gid, s.mtime, s.data.as_slice()),
        (0o644, 0, 0, 1_700_000_000, &b"echo hi\n"[..])
    );
    assert_eq!(get(&es, "d/").mtime, 1_700_000_000);
    let (_, es) = run(&req, &f.parent());
    assert_eq!(get(&es, "d/f").mtime, 2_000_000_000);
}

#[test]
fn hard_links_become_link_entries() {
    let f = fx();
    write(&f.ctx, "d/a", "same", 0o644);
    std::fs::hard_link(f.ctx.join("d/a"), f.ctx.join("d/b")).unwrap();
    let h = f.host();
    let (_, es) = run(&CopyRequest::new(tree(&h, "d"), "/o/"), &f.parent());
    assert_eq!(paths(&es), ["o/", "o/a", "o/b"]);
    assert_eq!(get(&es, "o/a").kind, 'f');
    let b = get(&es, "o/b");
    assert_eq!((b.kind, b.link.as_str()), ('h', "o/a"));
}

#[test]
fn parents_keep_the_source_path() {
    let f = fx();
    write(&f.ctx, "a/b/x.txt", "x", 0o644);
    write(&f.ctx, "a/b/y.md", "y", 0o644);
    mkdirm(&f.ctx, "a", 0o701);
    let h = f.host();
    let mut req = CopyRequest::new(tree(&h, "a/b/*.txt"), "/out/");
    req.parents = true;
    let (_, es) = run(&req, &f.parent());
    assert_eq!(paths(&es), ["out/", "out/a/", "out/a/b/", "out/a/b/x.txt"]);
    assert_eq!(get(&es, "out/a/").mode, 0o701);
    let mut req = CopyRequest::new(tree(&h, "a/./b/x.txt"), "/out/");
    req.parents = true;
    let (_, es) = run(&req, &f.parent());
    assert_eq!(paths(&es), ["out/", "out/b/", "out/b/x.txt"]);
    // `--exclude` matches the kept path.
    let mut req = CopyRequest::new(tree(&h, "a"), "/out/");
    req.parents = true;
    req.excludes = vec!["a/b/*.md".into()];
    let (_, es) = run(&req, &f.parent());
    assert_eq!(paths(&es), ["out/", "out/a/", "out/a/b/", "out/a/b/x.txt"]);
}

#[test]
fn excludes_apply_relative_to_each_source() {
    let f = fx();
    write(&f.ctx, "d/keep.txt", "k", 0o644);
    write(&f.ctx, "d/drop.md", "d", 0o644);
    write(&f.ctx, "d/docs/readme.md", "r", 0o644);
    write(&f.ctx, "d/docs/important.md", "i", 0o644);
    write(&f.ctx, "top.md", "t", 0o644);
    let h = f.host();
    let mut req = CopyRequest::new(tree(&h, "d"), "/o/");
    req.excludes = vec!["*.md".into(), "docs".into()];
    let (_, es) = run(&req, &f.parent());
    assert_eq!(paths(&es), ["o/", "o/keep.txt"]);
    req.excludes = vec!["**/*.md".into(), "!docs/important.md".into()];
    let (_, es) = run(&req, &f.parent());
    assert_eq!(
        paths(&es),
        ["o/", "o/docs/", "o/docs/important.md", "o/keep.txt"]
    );
    let mut req = CopyRequest::new(tree(&h, "top.md"), "/");
    req.excludes = vec!["*.md".into()];
    let (l, _) = run(&req, &f.parent());
    assert!(l.is_none(), "nothing copied, no layer");
}

#[test]
fn special_files_from_a_stage_are_copied() {
    let f = fx();
    let stage = f.lower.parent().unwrap().join("stage");
    std::fs::create_dir_all(&stage).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        stage.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    let sv = LowerView::new(vec![stage]);
    let req = CopyRequest::new(
        vec![CopySourceSpec::Tree {
            fs: &sv,
            pattern: "/".into(),
        }],
        "/dev/",
    );
    let (_, es) = run(&req, &f.parent());
    let p = get(&es, "dev/fifo");
    assert_eq!((p.kind, p.mode), ('p', 0o640));
}

#[test]
fn the_build_context_shows_only_allowed_paths() {
    let f = fx();
    write(&f.ctx, "app/main.rs", "fn main() {}", 0o644);
    write(&f.ctx, "app/secret.key", "k", 0o600);
    write(&f.ctx, "other", "o", 0o644);
    let allow: BTreeSet<PathBuf> = ["app/main.rs"].iter().map(PathBuf::from).collect();
    let h = HostDir::new(f.ctx.clone(), Some(allow));
    let (_, es) = run(&CopyRequest::new(tree(&h, "."), "/w/"), &f.parent());
    assert_eq!(paths(&es), ["w/", "w/app/", "w/app/main.rs"]);
    let e = copy_err(&CopyRequest::new(tree(&h, "other"), "/w/"), &f.parent());
    assert!(matches!(e, FileOpError::NotFound { .. }), "{e}");
}

#[test]
fn whiteout_names_are_refused() {
    let f = fx();
    write(&f.ctx, "d/.wh.evil", "", 0o644);
    let h = f.host();
    let e = copy_err(&CopyRequest::new(tree(&h, "d"), "/o/"), &f.parent());
    assert!(matches!(e, FileOpError::BadName { .. }), "{e}");
    assert!(e.to_string().contains("/o/.wh.evil"), "{e}");
}

#[test]
fn layers_are_deterministic() {
    let f = fx();
    write(&f.ctx, "d/a", "a", 0o644);
    write(&f.ctx, "d/b/c", "c", 0o644);
    let h = f.host();
    let req = CopyRequest::new(tree(&h, "d"), "/o/");
    let (a, _) = run(&req, &f.parent());
    let (b, _) = run(&req, &f.parent());
    assert_eq!(a.unwrap().digests, b.unwrap().digests);
    let o = DiffOptions {
        compression: Compression::None,
        ..opts()
    };
    let mut out = Vec::new();
    let r = copy(&req, &f.parent(), &o, &mut out).unwrap();
    let d = r.layer.unwrap().digests.unwrap();
    assert_eq!(d.diff_id, d.digest);
    assert_eq!((r.files, r.bytes), (2, 2));
}

// ---- ADD and archives ----

struct TarB(tar::Builder<Vec<u8>>);

impl TarB {
    fn new() -> Self {
        TarB(tar::Builder::new(Vec::new()))
    }
    fn hdr(kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1500);
        h.set_gid(1600);
        h.set_mtime(1_111_111);
        h
    }
    /// Writes the name raw into the header (no sanitising), as a hostile
    /// archive would.
    fn raw(mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Self {
        let mut h = Self::hdr(
            kind,
            if kind == tar::EntryType::Directory {
                0o755
            } else {
                0o644
            },
        );
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }
    fn file(self, name: &str, data: &str) -> Self {
        self.raw(name, tar::EntryType::Regular, "", data.as_bytes())
    }
    fn dir(self, name: &str) -> Self {
        self.raw(name, tar::EntryType::Directory, "", b"")
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.raw(name, tar::EntryType::Symlink, target, b"")
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.raw(name, tar::EntryType::Link, target, b"")
    }
    fn done(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn add_req<'a>(h: &'a HostDir, pattern: &str, dest: &str) -> CopyRequest<'a> {
    let mut r = CopyRequest::new(tree(h, pattern), dest);
    r.add = true;
    r
}

fn compressions(plain: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(plain).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(plain).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(plain).unwrap();
    vec![
        ("plain", plain.to_vec()),
        ("gzip", gz.finish().unwrap()),
        ("bzip2", bz.finish().unwrap()),
        ("xz", xz.finish().unwrap()),
        ("zstd", zstd::encode_all(plain, 3).unwrap()),
    ]
}

#[test]
fn add_extracts_archives_recognised_by_content() {
    let plain = TarB::new()
        .dir("pkg/")
        .file("pkg/a.txt", "A")
        .symlink("pkg/l", "a.txt")
        .hardlink("pkg/h", "pkg/a.txt")
        .done();
    for (name, data) in compressions(&plain) {
        let f = fx();
        std::fs::write(f.ctx.join("blob.bin"), &data).unwrap();
        let h = f.host();
        // The destination is a directory even without a trailing slash.
        let (_, es) = run(&add_req(&h, "blob.bin", "/opt"), &f.parent());
        // Directories and symlinks in sorted order, then the archive's
        // files (and links among them) in archive order.
        assert_eq!(
            paths(&es),
            [
                "opt/",
                "opt/pkg/",
                "opt/pkg/l",
                "opt/pkg/a.txt",
                "opt/pkg/h"
            ],
            "{name}"
        );
        let a = get(&es, "opt/pkg/a.txt");
        assert_eq!(
            (a.data.as_slice(), a.uid, a.gid, a.mtime),
            (&b"A"[..], 1500, 1600, 1_111_111),
            "{name}: archive owners are kept"
        );
        assert_eq!(get(&es, "opt/pkg/h").kind, 'h');
        assert_eq!(get(&es, "opt/pkg/h").link, "opt/pkg/a.txt");
        assert_eq!(get(&es, "opt/pkg/l").link, "a.txt");
        // The archive says 0644 for its symlink; a symlink is 0777 on Linux and in
        // BuildKit's layers.
        assert_eq!(get(&es, "opt/pkg/l").mode, 0o777, "{name}");
        // --chown replaces the archive's owners.
        let mut req = add_req(&h, "blob.bin", "/opt");
        req.chown = Some("7:8".into());
        let (_, es) = run(&req, &f.parent());
        assert_eq!(
            (get(&es, "opt/pkg/a.txt").uid, get(&es, "opt/pkg/a.txt").gid),
            (7, 8)
        );
        // --unpack=false and COPY copy the archive as it is.
        let mut req = add_req(&h, "blob.bin", "/opt/");
        req.unpack = Some(false);
        let (_, es) = run(&req, &f.parent());
        assert_eq!(paths(&es), ["opt/", "opt/blob.bin"]);
        assert_eq!(get(&es, "opt/blob.bin").data, data);
    }
}

#[test]
fn add_copies_non_archives_and_downloads_as_they_are() {
    let f = fx();
    write(&f.ctx, "notes.tar.gz", "not really an archive", 0o644);
    let h = f.host();
    let (_, es) = run(&add_req(&h, "notes.tar.gz", "/d/"), &f.parent());
    assert_eq!(paths(&es), ["d/", "d/notes.tar.gz"]);
    let dl = f.lower.parent().unwrap().join("download");
    std::fs::write(&dl, TarB::new().file("x", "x").done()).unwrap();
    let mut req = CopyRequest::new(
        vec![CopySourceSpec::Download {
            name: "x.tar".into(),
            path: dl.clone(),
            mtime: Some(1_500_000_000),
        }],
        "/d/",
    );
    req.add = true;
    let (_, es) = run(&req, &f.parent());
    let e = get(&es, "d/x.tar");
    assert_eq!(
        (e.kind, e.mode, e.uid, e.mtime),
        ('f', 0o600, 0, 1_500_000_000)
    );
    req.unpack = Some(true);
    let (_, es) = run(&req, &f.parent());
    assert_eq!(paths(&es), ["d/", "d/x"]);
}

#[test]
fn hostile_archives_stay_inside_the_destination() {
    let f = fx();
    mkdirm(&f.lower, "dst", 0o755);
    mkdirm(&f.lower, "etc", 0o755);
    write(&f.lower, "etc/passwd", "root:x:0:0::/:/bin/sh\n", 0o644);
    symlink("/etc", f.lower.join("dst/p")).unwrap();
    let evil = TarB::new()
        .file("../../etc/passwd", "owned")
        .file("/abs", "abs")
        .symlink("l", "/")
        .file("l/etc/x", "through link")
        .symlink("up", "../../../..")
        .file("up/y", "up")
        .file("p/z", "through parent link")
        .done();
    std::fs::write(f.ctx.join("evil.tar"), &evil).unwrap();
    let h = f.host();
    let (_, es) = run(&add_req(&h, "evil.tar", "/dst/"), &f.parent());
    for e in &es {
        assert!(e.path.starts_with("dst/"), "{} escaped", e.path);
    }
    assert_eq!(get(&es, "dst/etc/passwd").data, b"owned");
    assert_eq!(get(&es, "dst/abs").data, b"abs");
    assert_eq!(get(&es, "dst/etc/x").data, b"through link");
    assert_eq!(get(&es, "dst/y").data, b"up");
    assert_eq!(get(&es, "dst/etc/z").data, b"through parent link");
    assert_eq!(get(&es, "dst/l").link, "/");

    // A symlink loop is an error naming the path.
    let looped = TarB::new()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/x", "x")
        .done();
    std::fs::write(f.ctx.join("loop.tar"), &looped).unwrap();
    let e = copy_err(&add_req(&h, "loop.tar", "/dst/"), &f.parent());
    assert!(matches!(e, FileOpError::SymlinkLoop { .. }), "{e}");
    assert!(e.to_string().contains("/dst/"), "{e}");

    // A hard link to something that is nowhere is an error naming the archive and the entry.
    let dangling = TarB::new().hardlink("h", "../../etc/shadow").done();
    std::fs::write(f.ctx.join("dangling.tar"), &dangling).unwrap();
    let e = copy_err(&add_req(&h, "dangling.tar", "/dst/"), &f.parent());
    let msg = e.to_string();
    assert!(matches!(e, FileOpError::ArchiveEntry { .. }), "{msg}");
    assert!(
        msg.contains("dangling.tar") && msg.contains("entry h "),
        "{msg}"
    );

    // A hard link to a file of the image (inside the destination) is materialised.
    write(&f.lower, "dst/have", "from image", 0o640);
    let lk = TarB::new().hardlink("copy", "have").done();
    std::fs::write(f.ctx.join("lk.tar"), &lk).unwrap();
    let (_, es) = run(&add_req(&h, "lk.tar", "/dst/"), &f.parent());
    let c = get(&es, "dst/copy");
    assert_eq!(
        (c.kind, c.mode, c.data.as_slice()),
        ('f', 0o640, &b"from image"[..])
    );

    // Whiteout names cannot be carried.
    let wh = TarB::new().file(".wh.passwd", "").done();
    std::fs::write(f.ctx.join("wh.tar"), &wh).unwrap();
    let e = copy_err(&add_req(&h, "wh.tar", "/dst/"), &f.parent());
    assert!(matches!(e, FileOpError::ArchiveEntry { .. }), "{e}");
}

#[test]
fn archives_replace_what_they_overwrite() {
    let f = fx();
    mkdirm(&f.lower, "dst/was_dir/inner", 0o755);
    write(&f.lower, "dst/was_file", "f", 0o644);
    let t = TarB::new()
        .file("was_dir", "now a file")
        .dir("was_file/")
        .file("b", "2")
        .file("a", "1")
        .file("b", "3")
        .done();
    std::fs::write(f.ctx.join("t.tar"), &t).unwrap();
    let h = f.host();
    let (_, es) = run(&add_req(&h, "t.tar", "/dst"), &f.parent());
    // Archive files come last, in the order of their data in the archive.
    assert_eq!(
        paths(&es),
        ["dst/", "dst/was_file/", "dst/was_dir", "dst/a", "dst/b"]
    );
    assert_eq!(get(&es, "dst/was_dir").data, b"now a file");
    // The last entry for a name wins; out-of-order data is read right.
    assert_eq!(get(&es, "dst/b").data, b"3");
    assert_eq!(get(&es, "dst/a").data, b"1");
}

#[test]
fn workdir_makes_missing_directories_only() {
    let f = fx();
    mkdirm(&f.lower, "etc", 0o755);
    write(
        &f.lower,
        "etc/passwd",
        "app:x:1001:1002::/:/bin/sh\n",
        0o644,
    );
    mkdirm(&f.lower, "srv", 0o750);
    let mut out = Vec::new();
    let r = mkdir("/srv/app/data", "app", &f.parent(), &opts(), &mut out).unwrap();
    let es = entries(&out);
    assert!(r.layer.is_some());
    assert_eq!(paths(&es), ["srv/", "srv/app/", "srv/app/data/"]);
    assert_eq!(get(&es, "srv/").mode, 0o750);
    for d in ["srv/app/", "srv/app/data/"] {
        let e = get(&es, d);
        assert_eq!((e.mode, e.uid, e.gid), (0o755, 1001, 1002), "{d}");
    }
    let r = mkdir("/srv", "", &f.parent(), &opts(), &mut Vec::new()).unwrap();
    assert!(r.layer.is_none());
    let mut out = Vec::new();
    mkdir("/w", "4242", &f.parent(), &opts(), &mut out).unwrap();
    let w = get(&entries(&out), "w/").clone();
    assert_eq!((w.uid, w.gid), (4242, 4242));
    let e = mkdir("/w", "ghost", &f.parent(), &opts(), &mut Vec::new()).unwrap_err();
    assert!(matches!(e, FileOpError::UnknownUser { .. }), "{e}");
}

#[test]
fn stage_trees_honour_whiteouts_and_opaque_dirs() {
    let f = fx();
    let base = f.lower.parent().unwrap().join("base");
    let top = f.lower.parent().unwrap().join("top");
    write(&base, "out/keep", "k", 0o644);
    write(&base, "out/gone", "g", 0o644);
    write(&base, "out/hidden/old", "o", 0o644);
    write(&top, "out/gone", "", 0o644);
    rustix::fs::setxattr(
        top.join("out/gone"),
        "user.overlay.whiteout",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    write(&top, "out/hidden/new", "n", 0o644);
    rustix::fs::setxattr(
        top.join("out/hidden"),
        "user.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let stage = ImageFs::new(LowerView::new(vec![top, base]), IdMap::identity());
    let req = CopyRequest::new(
        vec![CopySourceSpec::Tree {
            fs: &stage,
            pattern: "/out".into(),
        }],
        "/o/",
    );
    let (_, es) = run(&req, &f.parent());
    assert_eq!(paths(&es), ["o/", "o/hidden/", "o/hidden/new", "o/keep"]);
}

#[test]
fn extended_attributes_from_stages_and_archives_are_kept() {
    let f = fx();
    let stage = f.lower.parent().unwrap().join("stage");
    write(&stage, "bin/tool", "t", 0o755);
    rustix::fs::setxattr(
        stage.join("bin/tool"),
        "user.cap",
        b"v1",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let sv = LowerView::new(vec![stage]);
    let req = CopyRequest::new(
        vec![CopySourceSpec::Tree {
            fs: &sv,
            pattern: "/bin/tool".into(),
        }],
        "/usr/bin/",
    );
    let (_, es) = run(&req, &f.parent());
    assert_eq!(
        get(&es, "usr/bin/tool").xattrs,
        vec![("user.cap".to_owned(), b"v1".to_vec())]
    );

    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.user.a", &b"1"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("x").unwrap();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    std::fs::write(f.ctx.join("x.tar"), b.into_inner().unwrap()).unwrap();
    let hd = f.host();
    let (_, es) = run(&add_req(&hd, "x.tar", "/d/"), &f.parent());
    assert_eq!(
        get(&es, "d/x").xattrs,
        vec![("user.a".to_owned(), b"1".to_vec())]
    );
}
