//! COPY and ADD: destination rules, ownership and modes, flags, heredocs, .dockerignore,
//! archives and URLs; and how context changes hit or miss the cache.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use crate::support::{BASE, BuildEnv, Http, ok, tool};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn copy_destination_rules() {
    let env = BuildEnv::new();
    env.write("a.txt", "A\n");
    env.write("b.txt", "B\n");
    env.write("dir/x", "X\n");
    env.write("dir/sub/y", "Y\n");
    env.dockerfile(&format!(
        r#"FROM {BASE}
COPY a.txt /dest-file
COPY a.txt /dest-dir/
COPY a.txt /bin
COPY dir /d1
COPY dir/ /d2/
COPY *.txt /globbed/
COPY a.txt b.txt /multi/
WORKDIR /app
COPY a.txt .
COPY dir sub/
"#
    ));
    env.build(&["-t", "img"]);
    let out = env.sh(
        "img",
        "cat /dest-file /dest-dir/a.txt /bin/a.txt; [ -f /dest-file ] && echo file; find /d1 /d2 /globbed /multi /app | sort",
    );
    assert_eq!(
        out,
        "A\nA\nA\nfile\n/app\n/app/a.txt\n/app/sub\n/app/sub/sub\n/app/sub/sub/y\n/app/sub/x\n\
         /d1\n/d1/sub\n/d1/sub/y\n/d1/x\n/d2\n/d2/sub\n/d2/sub/y\n/d2/x\n\
         /globbed\n/globbed/a.txt\n/globbed/b.txt\n/multi\n/multi/a.txt\n/multi/b.txt\n"
    );
    // Several sources need a directory destination (ending in /).
    env.dockerfile(&format!("FROM {BASE}\nCOPY a.txt b.txt /notadir\n"));
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains("Dockerfile:2"), "{}", out.stderr);
    assert!(out.stderr.contains("/notadir"), "{}", out.stderr);
    // A glob that matches nothing copies nothing, as in BuildKit: no layer, no /x; another
    // source of the same COPY is copied.
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY *.nomatch /x/\nCOPY *.nomatch a.txt /y/\nRUN ls -d /x || echo no-x\n"
    ));
    let built = env.build(&["-t", "empty-glob"]);
    let history = env.config("empty-glob")["history"].clone();
    let copy = history
        .as_array()
        .unwrap()
        .iter()
        .find(|h| {
            h["created_by"]
                .as_str()
                .is_some_and(|c| c.contains("COPY *.nomatch /x/"))
        })
        .unwrap_or_else(|| panic!("{history}"));
    assert_eq!(copy["empty_layer"], true, "{history}");
    assert_eq!(
        env.sh("empty-glob", "ls /y; ls -d /x 2>&1 || true"),
        "a.txt\nls: /x: No such file or directory\n",
        "{}",
        built.stderr
    );
    // A missing file is an error naming it.
    env.dockerfile(&format!("FROM {BASE}\nCOPY missing.txt /x\n"));
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains("missing.txt"), "{}", out.stderr);
}

#[test]
fn copy_owners_and_modes() {
    let env = BuildEnv::new();
    let f = env.write("plain.txt", "p\n");
    chmod(&f, 0o640);
    let s = env.write("setuid-tool", "#!/bin/sh\n");
    chmod(&s, 0o4755);
    let x = env.write("exec.sh", "#!/bin/sh\n");
    chmod(&x, 0o750);
    env.write("d/inner", "i\n");
    chmod(&env.ctx.join("d"), 0o700);
    env.dockerfile(&format!(
        r#"FROM {BASE}
COPY plain.txt setuid-tool exec.sh /default/
COPY d /default/d
COPY --chown=app:staff plain.txt /named
COPY --chown=app plain.txt /user-only
COPY --chown=1234:5678 plain.txt /numeric
COPY --chown=svc d /owned-dir
COPY --chmod=600 exec.sh /chmod-octal
COPY --chmod=4711 plain.txt /chmod-setuid
COPY --chmod=u+x,g-r,o+w plain.txt /chmod-symbolic
COPY --chown=app:app --chmod=755 d /both
"#
    ));
    env.build(&["-t", "img"]);
    let out = env.sh(
        "img",
        "cd /; stat -c '%n %a %u %g' default/plain.txt default/setuid-tool default/exec.sh default/d default/d/inner named user-only numeric owned-dir owned-dir/inner chmod-octal chmod-setuid chmod-symbolic both both/inner",
    );
    assert_eq!(
        out,
        "default/plain.txt 640 0 0\n\
         default/setuid-tool 4755 0 0\n\
         default/exec.sh 750 0 0\n\
         default/d 755 0 0\n\
         default/d/inner 644 0 0\n\
         named 640 1000 50\n\
         user-only 640 1000 1000\n\
         numeric 640 1234 5678\n\
         owned-dir 755 1001 50\n\
         owned-dir/inner 644 1001 50\n\
         chmod-octal 600 0 0\n\
         chmod-setuid 4711 0 0\n\
         chmod-symbolic 702 0 0\n\
         both 755 1000 1000\n\
         both/inner 755 1000 1000\n"
    );
    // A user the image does not know is an error naming it.
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY --chown=nobody-here plain.txt /x\n"
    ));
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains("nobody-here"), "{}", out.stderr);
}

#[test]
fn copy_link_parents_exclude_and_symlinked_destinations() {
    let env = BuildEnv::new();
    env.write("src/a/one.go", "1\n");
    env.write("src/b/two.go", "2\n");
    env.write("src/b/skip.log", "L\n");
    env.write("top.txt", "T\n");
    let dockerfile = |marker: &str| {
        format!(
            r#"FROM {BASE}
RUN mkdir /real && ln -s /real /link && echo {marker} > /marker
COPY top.txt /link/
COPY --link top.txt /linked/
COPY --parents src/*/one.go src/b/two.go /p/
COPY --exclude=**/*.log src /ex/
COPY --exclude=b --exclude=*.go src /ex2/
"#
        )
    };
    env.dockerfile(&dockerfile("one"));
    env.build(&["-t", "img"]);
    let out = env.sh(
        "img",
        "cat /real/top.txt /linked/top.txt; [ -L /link ] && echo still-a-link; find /p /ex /ex2 | sort",
    );
    assert_eq!(
        out,
        "T\nT\nstill-a-link\n/ex\n/ex/a\n/ex/a/one.go\n/ex/b\n/ex/b/two.go\n/ex2\n/ex2/a\n/ex2/a/one.go\n/p\n/p/src\n/p/src/a\n/p/src/a/one.go\n/p/src/b\n/p/src/b/two.go\n"
    );
    // COPY --link does not depend on the steps before it: it stays cached when they change.
    env.dockerfile(&dockerfile("two"));
    let built = env.build(&["-t", "img2"]);
    assert!(
        built
            .cached()
            .contains(&"COPY top.txt /linked/".to_string()),
        "{}",
        built.stderr
    );
    assert!(
        built.ran().contains(&"COPY top.txt /link/".to_string()),
        "{}",
        built.stderr
    );
    assert_eq!(env.sh("img2", "cat /marker /linked/top.txt"), "two\nT\n");
}

#[test]
fn copy_heredocs() {
    let env = BuildEnv::new();
    env.dockerfile(&format!(
        r#"FROM {BASE}
ARG WHO=world
COPY <<EOF /hello.txt
hello $WHO
EOF
COPY --chmod=755 <<a.sh <<'b.sh' /scripts/
echo a
a.sh
echo $b
b.sh
"#
    ));
    env.build(&["-t", "img", "--build-arg", "WHO=e2e"]);
    assert_eq!(
        env.sh(
            "img",
            "cat /hello.txt /scripts/a.sh /scripts/b.sh; stat -c '%a' /scripts/a.sh /hello.txt"
        ),
        "hello e2e\necho a\necho $b\n755\n644\n"
    );
}

#[test]
fn dockerignore_and_the_dockerfile_specific_ignore_file() {
    let env = BuildEnv::new();
    env.write("keep.txt", "k\n");
    env.write("x.log", "x\n");
    env.write("keep.log", "kl\n");
    env.write("secret/key", "s\n");
    env.write(".dockerignore", "*.log\n!keep.log\nsecret\n");
    env.dockerfile(&format!("FROM {BASE}\nCOPY . /ctx/\n"));
    env.build(&["-t", "img"]);
    assert_eq!(
        env.sh("img", "cd /ctx && find . | sort"),
        ".\n./.dockerignore\n./Dockerfile\n./keep.log\n./keep.txt\n"
    );
    // A Dockerfile given with -f uses <name>.dockerignore next to it, not the context's.
    let other = env.dir.mkdir("elsewhere");
    std::fs::write(
        other.join("Build.Dockerfile"),
        format!("FROM {BASE}\nCOPY . /ctx/\n"),
    )
    .unwrap();
    std::fs::write(other.join("Build.Dockerfile.dockerignore"), "*.txt\n").unwrap();
    let file = other.join("Build.Dockerfile");
    env.build(&["-t", "img2", "-f", file.to_str().unwrap()]);
    assert_eq!(
        env.sh("img2", "cd /ctx && find . | sort"),
        ".\n./.dockerignore\n./Dockerfile\n./keep.log\n./secret\n./secret/key\n./x.log\n"
    );
    // Next to the default Dockerfile, Dockerfile.dockerignore wins over .dockerignore,
    // also for a context read from stdin as a tar.
    env.write("Dockerfile.dockerignore", "*.txt\nsecret\n");
    env.build(&["-t", "img3"]);
    let listing =
        ".\n./.dockerignore\n./Dockerfile\n./Dockerfile.dockerignore\n./keep.log\n./x.log\n";
    assert_eq!(env.sh("img3", "cd /ctx && find . | sort"), listing);
    let tar = env.context_tar();
    let mut cmd = crate::support::rbuild(&env.root);
    cmd.args(["build", "--progress", "quiet", "-t", "img4", "-"]);
    crate::support::filter(&mut cmd, &tar);
    assert_eq!(env.sh("img4", "cd /ctx && find . | sort"), listing);
}

#[test]
fn context_changes_hit_or_miss_exactly_as_the_selection_changes() {
    let env = BuildEnv::new();
    env.write("app/a.txt", "a1\n");
    env.write("app/b.txt", "b1\n");
    env.write("app/notes.md", "n\n");
    env.write("other.txt", "o\n");
    env.write(".dockerignore", "**/*.md\n");
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN echo first > /first\nCOPY app /app\nRUN cat /app/a.txt > /derived\n"
    ));
    let first = env.build(&[]);
    let nothing = |what: &str| {
        let built = env.build(&[]);
        assert_eq!(
            built.ran(),
            Vec::<String>::new(),
            "{what}: {}",
            built.stderr
        );
        assert_eq!(built.id, first.id, "{what}");
    };
    // A file no COPY selects.
    env.write("other.txt", "changed\n");
    nothing("changing an unselected file");
    // An ignored file inside the copied directory.
    env.write("app/notes.md", "changed\n");
    nothing("changing an ignored file");
    // mtime only.
    let a = env.ctx.join("app/a.txt");
    let f = std::fs::File::options().write(true).open(&a).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(f);
    nothing("touching a selected file");
    // .dockerignore edits that select the same files.
    env.write(
        ".dockerignore",
        "# comment\n**/*.md\nnothing-matches-this\n",
    );
    nothing("editing .dockerignore without changing the selection");
    // A selected file changes: the COPY and what follows run again.
    env.write("app/a.txt", "a2\n");
    let built = env.build(&["-t", "changed"]);
    assert_eq!(
        built.cached(),
        ["RUN /bin/sh -c echo first > /first"],
        "{}",
        built.stderr
    );
    assert_eq!(
        built.ran(),
        ["COPY app /app", "RUN /bin/sh -c cat /app/a.txt > /derived"],
        "{}",
        built.stderr
    );
    assert_eq!(
        built.step("COPY app /app").miss.as_deref(),
        Some("file app/a.txt changed")
    );
    assert_eq!(
        built
            .step("RUN /bin/sh -c cat /app/a.txt > /derived")
            .miss
            .as_deref(),
        Some("the previous step changed: COPY app /app")
    );
    assert_eq!(env.sh("changed", "cat /derived"), "a2\n");
    // Two files.
    env.write("app/a.txt", "a3\n");
    env.write("app/b.txt", "b3\n");
    let built = env.build(&[]);
    assert_eq!(
        built.step("COPY app /app").miss.as_deref(),
        Some("files app/a.txt, app/b.txt changed")
    );
    // A file mode change is a change.
    chmod(&env.ctx.join("app/b.txt"), 0o600);
    let built = env.build(&["-t", "mode"]);
    assert_eq!(built.ran().len(), 2, "{}", built.stderr);
    assert_eq!(env.sh("mode", "stat -c %a /app/b.txt"), "600\n");
}

fn archive_context(env: &BuildEnv) {
    let src = env.dir.mkdir("archive-src");
    std::fs::create_dir_all(src.join("pkg/bin")).unwrap();
    std::fs::write(src.join("pkg/bin/tool"), "tool\n").unwrap();
    chmod(&src.join("pkg/bin/tool"), 0o755);
    std::fs::write(src.join("pkg/readme"), "readme\n").unwrap();
    let tar = tool("tar", "tar");
    for (name, flag) in [
        ("a.tar.gz", "-z"),
        ("a.tar.xz", "-J"),
        ("a.tar.bz2", "-j"),
        ("a.tar.zst", "--zstd"),
        ("a.tar", "--format=gnu"),
    ] {
        let out = Command::new(tar.get_program())
            .args(["-c", flag, "-f"])
            .arg(env.ctx.join(name))
            .arg("-C")
            .arg(&src)
            .args(["--owner=0", "--group=0", "pkg"])
            .output()
            .unwrap();
        assert!(out.status.success(), "tar {name}: {out:?}");
    }
    // Plain gzip of a non-tar file: ADD copies it as is.
    let gz = crate::support::gzip(b"not a tar\n");
    env.write("data.gz", gz);
    env.write("plain.txt", "plain\n");
}

#[test]
fn add_extracts_local_archives_and_copies_other_files() {
    // The tar tool needs xz, bzip2 and zstd for those formats.
    tool("xz", "xz-utils");
    tool("bzip2", "bzip2");
    tool("zstd", "zstd");
    let env = BuildEnv::new();
    archive_context(&env);
    env.dockerfile(&format!(
        r#"FROM {BASE}
ADD a.tar.gz /gz/
ADD a.tar.xz /xz
ADD a.tar.bz2 /bz2/
ADD a.tar.zst /zst/
ADD a.tar /tar/
ADD data.gz plain.txt /files/
"#
    ));
    env.build(&["-t", "img"]);
    let out = env.sh(
        "img",
        "for d in gz xz bz2 zst tar; do cat /$d/pkg/bin/tool /$d/pkg/readme; stat -c '%a' /$d/pkg/bin/tool; done; ls /files; cat /files/plain.txt",
    );
    assert_eq!(
        out,
        "tool\nreadme\n755\n".repeat(5) + "data.gz\nplain.txt\nplain\n"
    );
    assert_eq!(env.sh("img", "zcat /files/data.gz"), "not a tar\n");
}

#[test]
fn add_url_checksums_and_last_modified() {
    const BODY: &[u8] = b"downloaded content\n";
    let server = Http::start(BODY, "Wed, 21 Oct 2015 07:28:00 GMT");
    let env = BuildEnv::new();
    let sum = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(BODY))
    );
    let url = server.url("files/tool.txt");
    env.dockerfile(&format!(
        "FROM {BASE}\nADD --checksum={sum} {url} /dl/\nADD {url} /renamed\n"
    ));
    env.build(&["-t", "img"]);
    assert_eq!(
        env.sh(
            "img",
            "cat /dl/tool.txt /renamed; stat -c '%a %u %Y' /dl/tool.txt /renamed"
        ),
        "downloaded content\ndownloaded content\n600 0 1445412480\n600 0 1445412480\n"
    );
    assert!(
        server
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("/files/tool.txt")),
        "the server was asked for the file"
    );
    // Rebuild: the URL is fetched again; same content, so the steps are cached.
    let built = env.build(&["-t", "img"]);
    assert_eq!(built.ran(), Vec::<String>::new(), "{}", built.stderr);
    // The content changes: the step without a checksum runs again and says why; the one
    // with a checksum now fails.
    *server.body.lock().unwrap() = b"new content\n".to_vec();
    env.dockerfile(&format!("FROM {BASE}\nADD {url} /renamed\n"));
    env.build(&[]);
    env.dockerfile(&format!("FROM {BASE}\nADD {url} /renamed\n"));
    *server.body.lock().unwrap() = b"newer content\n".to_vec();
    let built = env.build(&["-t", "img2"]);
    assert_eq!(
        built.step(&format!("ADD {url} /renamed")).miss.as_deref(),
        Some(format!("its source changed: {url}").as_str()),
        "{}",
        built.stderr
    );
    assert_eq!(env.sh("img2", "cat /renamed"), "newer content\n");
    // A wrong checksum fails, naming the URL and both digests.
    *server.body.lock().unwrap() = BODY.to_vec();
    let wrong = format!("sha256:{}", "0".repeat(64));
    env.dockerfile(&format!("FROM {BASE}\nADD --checksum={wrong} {url} /dl/\n"));
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains(&url), "{}", out.stderr);
    assert!(out.stderr.contains(&wrong[7..19]), "{}", out.stderr);
    assert!(out.stderr.contains(&sum[7..19]), "{}", out.stderr);
    // A git URL is refused clearly.
    env.dockerfile(&format!(
        "FROM {BASE}\nADD https://127.0.0.1:1/repo.git#main /src\n"
    ));
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains("git"), "{}", out.stderr);
    assert!(out.stderr.contains("Dockerfile:2"), "{}", out.stderr);
}

#[test]
fn built_images_unpack_with_umoci_and_inspect_with_skopeo() {
    let env = BuildEnv::new();
    let f = env.write("tool", "#!/bin/sh\necho tool\n");
    chmod(&f, 0o755);
    env.dockerfile(&format!(
        "FROM {BASE}\nCOPY tool /usr/local/bin/tool\nRUN echo made > /made\nCMD [\"tool\"]\n"
    ));
    let built = env.build(&["-t", "interop:v1"]);
    let oci = format!("oci:{}:docker.io/library/interop:v1", env.root.display());
    let out = ok(crate::support::skopeo()
        .args(["inspect", "--raw"])
        .arg(&oci));
    let manifest: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            out.stdout.as_bytes()
        ))
    );
    assert_eq!(digest, built.id);
    let bundle = env.dir.join("bundle");
    ok(crate::support::umoci()
        .args(["unpack", "--rootless", "--image"])
        .arg(format!(
            "{}:docker.io/library/interop:v1",
            env.root.display()
        ))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("made")).unwrap(),
        "made\n"
    );
    let md = std::fs::metadata(rootfs.join("usr/local/bin/tool")).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o755);
    let out = ok(&mut rbuild_cmd_run(&env, "interop:v1"));
    assert_eq!(out.stdout, "tool\n");
}

fn rbuild_cmd_run(env: &BuildEnv, image: &str) -> Command {
    let mut cmd = crate::support::rbuild(&env.root);
    cmd.args(["run", "--rm", image]);
    cmd
}

#[test]
fn copy_keeps_the_mtimes_of_context_files() {
    let env = BuildEnv::new();
    let a = env.write("a.txt", "a\n");
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_577_934_245);
    std::fs::File::options()
        .write(true)
        .open(&a)
        .unwrap()
        .set_modified(when)
        .unwrap();
    env.dockerfile(&format!("FROM {BASE}\nCOPY a.txt /a.txt\n"));
    env.build(&["-t", "mt"]);
    assert_eq!(env.sh("mt", "stat -c %Y /a.txt"), "1577934245\n");
}

#[test]
fn copy_of_a_directory_keeps_hard_links_inside_it() {
    let env = BuildEnv::new();
    let a = env.write("d/a.txt", "shared content\n");
    std::fs::hard_link(&a, env.ctx.join("d/b.txt")).unwrap();
    env.dockerfile(&format!("FROM {BASE}\nCOPY d /h/\n"));
    env.build(&["-t", "hl"]);
    assert_eq!(
        env.sh(
            "hl",
            "stat -c '%h' /h/a.txt /h/b.txt; [ /h/a.txt -ef /h/b.txt ] && echo same"
        ),
        "2\n2\nsame\n"
    );
}

/// A download that came with an ETag is asked for again with `If-None-Match`: a 304 reuses
/// the kept copy (the server sends no body), a changed tag downloads the new content, and a
/// download past the limit stops naming the URL.
fn add_url_revalidates_with_the_etag_and_keeps_to_the_limit(rootless: bool) {
    let server = Http::start(b"version one\n", "Wed, 21 Oct 2015 07:28:00 GMT");
    *server.etag.lock().unwrap() = Some("\"v1\"".into());
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    let url = server.url("dist/");
    env.dockerfile(&format!("FROM {BASE}\nADD {url} /got/\n"));
    env.build(&["-t", "img"]);
    // The file is named from the URL path's last component, as Go's path.Base takes it.
    assert_eq!(env.sh("img", "cat /got/dist"), "version one\n");
    let first = *server.sent.lock().unwrap();
    assert_eq!(first, 12);
    // Unchanged: asked with the tag, answered 304, nothing sent, the step cached.
    let built = env.build(&["-t", "img"]);
    assert_eq!(built.ran(), Vec::<String>::new(), "{}", built.stderr);
    assert_eq!(
        *server.sent.lock().unwrap(),
        first,
        "the body was sent again"
    );
    // Also after the step's cache is gone: the copy kept is what the step copies.
    let built = env.build(&["-t", "img", "--no-cache"]);
    assert_eq!(*server.sent.lock().unwrap(), first, "{}", built.stderr);
    assert_eq!(env.sh("img", "cat /got/dist"), "version one\n");
    // Changed: a new tag, the new content downloaded and the step run again.
    *server.body.lock().unwrap() = b"version two\n".to_vec();
    *server.etag.lock().unwrap() = Some("\"v2\"".into());
    env.build(&["-t", "img"]);
    assert_eq!(env.sh("img", "cat /got/dist"), "version two\n");
    assert_eq!(*server.sent.lock().unwrap(), first + 12);
    // After a prune took the kept copy, the full download comes again.
    ok(env.rbuild().args(["prune", "-a", "-f"]));
    env.build(&["-t", "img"]);
    assert_eq!(*server.sent.lock().unwrap(), first + 24);
    // Past the download limit: stopped, naming the URL.
    *server.body.lock().unwrap() = vec![b'x'; 8192];
    let big = server.url("big");
    env.dockerfile(&format!("FROM {BASE}\nADD {big} /big\n"));
    let out = crate::support::finish_cmd(env.build_cmd(&[]).env("RBUILD_MAX_LAYER_SIZE", "4k"));
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(&big), "{}", out.stderr);
    assert!(out.stderr.contains("limit"), "{}", out.stderr);
    assert!(
        out.stderr.contains("RBUILD_MAX_LAYER_SIZE"),
        "{}",
        out.stderr
    );
}

crate::support::as_root_and_rootless!(add_url_revalidates_with_the_etag_and_keeps_to_the_limit);

/// A redirect is followed (the file named from the URL the Dockerfile gives); a redirect
/// loop stops with an error naming the URL.
#[test]
fn add_url_follows_redirects_within_limits() {
    let server = Http::start(b"moved content\n", "Wed, 21 Oct 2015 07:28:00 GMT");
    let env = BuildEnv::new();
    let url = server.url("redirect/files/real.txt");
    env.dockerfile(&format!("FROM {BASE}\nADD {url} /got/\n"));
    env.build(&["-t", "img"]);
    assert_eq!(env.sh("img", "cat /got/real.txt"), "moved content\n");
    let requests = server.requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /files/real.txt ")),
        "{requests:?}"
    );
    let looping = server.url("loop");
    env.dockerfile(&format!("FROM {BASE}\nADD {looping} /got\n"));
    let out = env.build_fails(&[]);
    assert!(out.stderr.contains(&looping), "{}", out.stderr);
    assert!(out.stderr.contains("Dockerfile:2"), "{}", out.stderr);
    let asked = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.starts_with("GET /loop "))
        .count();
    assert!((2..=50).contains(&asked), "{asked} requests for the loop");
}
