//! Differential tests against BuildKit: each case is built by rbuild and by the BuildKit
//! embedded in Debian's dockerd (a private daemon shared by the test process,
//! `rbuild_test_support::Dockerd`), from the same context and bases pulled from the test's
//! registry (busybox with the top-level directories of Docker Hub's image, and the Debian base
//! made on this machine). Both results are exported (`rbuild save --format docker`, `docker
//! save`) and compared: the config fields a Dockerfile sets, every file of the flattened file
//! system (type, mode, owner, size, content, link target; not mtimes) and the history's
//! instructions and empty-layer flags. Paths left out of a comparison are named next to the
//! case, with why.
//!
//! That BuildKit is old (Docker 20.10's, BuildKit 0.8 with the 1.2 Dockerfile frontend): it has
//! no heredocs, `--chmod` or `--link`, and some results changed since. Where it differs from
//! current BuildKit (moby/buildkit frontend/dockerfile/dockerfile2llb), the case gives it a
//! Dockerfile spelled to produce current BuildKit's result, and says so.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use rbuild_test_support::{
    BusyboxLayout, DebianBase, Dockerd, FileEntry, Format, ImageArchive, Registry,
};

use crate::support::{Dir, finish_cmd, ok, rbuild, tool};

/// The mount points BuildKit's executor creates in the root file system for every RUN step
/// when they are missing. Current BuildKit removes them after the step when they are still
/// empty, with the parents it created for them (executor/stubs.go, MountStubsCleaner; the
/// Dockerfile frontend asks for the recursive removal), and so do the old one's leftovers
/// count as nothing here: an entry only BuildKit has, empty, at one of these paths or one of a
/// case's [`Case::mount_stubs`] or a parent of one, is not a difference. rbuild creates
/// nothing for mounts in the image.
const RUN_STUBS: [&str; 3] = ["etc/hosts", "etc/resolv.conf", "etc/hostname"];

/// One differential case.
#[derive(Default)]
struct Case<'a> {
    /// The Dockerfile; `{BUSYBOX}`, `{BUSYBOX_ARM64}` (Debian's arm64 busybox) and `{DEBIAN}`
    /// stand for the bases in the test's registry.
    dockerfile: &'a str,
    /// The Dockerfile for the old BuildKit when it must be spelled differently to give
    /// current BuildKit's result (the case says why).
    buildkit_dockerfile: Option<&'a str>,
    /// Flags given to both builders (`--build-arg`, `--target`).
    flags: &'a [&'a str],
    /// Secrets (`id`, value) given to both builders.
    secrets: &'a [(&'a str, &'a str)],
    /// The targets of the case's RUN mounts (see [`RUN_STUBS`]).
    mount_stubs: &'a [&'a str],
    /// Paths left out of the file comparison, with everything below them (the case says why).
    ignore: &'a [&'a str],
}

/// The outcome of one build: its stderr when it failed.
fn build_outcome(what: &str, cmd: &mut std::process::Command) -> Option<String> {
    let run = finish_cmd(cmd);
    (run.code != 0).then(|| {
        let tail: Vec<&str> = run.stderr.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{what} failed ({}): {}", run.code, tail.join(" | "))
    })
}

/// Builds `case` with both builders from the context `ctx` fills, and returns the
/// differences (empty when they agree): a build that failed on one side, config fields, files.
fn differences(name: &str, case: Case<'_>, ctx: impl FnOnce(&Path)) -> Vec<String> {
    let dir = Dir::new();
    let context = dir.mkdir("ctx");
    ctx(&context);
    let registry = Registry::start();
    BusyboxLayout::build_with_root_dirs().push_with_skopeo(
        &registry,
        "busybox:latest",
        Format::DockerV2s2,
    );
    if case.dockerfile.contains("{DEBIAN}") {
        DebianBase::bookworm().push(&registry, "debian:bookworm");
    }
    if case.dockerfile.contains("{BUSYBOX_ARM64}") {
        BusyboxLayout::build_arm64_with_root_dirs().push_with_skopeo(
            &registry,
            "busybox-arm64:latest",
            Format::DockerV2s2,
        );
    }
    let fill = |text: &str| {
        text.replace("{BUSYBOX}", &format!("{}/busybox:latest", registry.host()))
            .replace(
                "{BUSYBOX_ARM64}",
                &format!("{}/busybox-arm64:latest", registry.host()),
            )
            .replace("{DEBIAN}", &format!("{}/debian:bookworm", registry.host()))
    };
    let ours = dir.write("Dockerfile.rbuild", fill(case.dockerfile));
    let theirs = dir.write(
        "Dockerfile.buildkit",
        fill(case.buildkit_dockerfile.unwrap_or(case.dockerfile)),
    );
    let mut secret_flags = Vec::new();
    for (id, value) in case.secrets {
        let file = dir.write(format!("secret-{id}"), value);
        secret_flags.push("--secret".to_string());
        secret_flags.push(format!("id={id},src={}", file.display()));
    }

    let store = dir.join("store");
    let our_failure = build_outcome(
        "rbuild",
        rbuild(&store)
            .args(["build", "--progress", "plain", "-t", "diff:latest", "-f"])
            .arg(&ours)
            .args(case.flags)
            .args(&secret_flags)
            .arg(&context),
    );
    let docker = Dockerd::shared();
    let tag = format!("rbuild-diff/{name}:latest");
    let their_failure = build_outcome(
        "buildkit",
        docker
            .docker()
            .args([
                "build",
                "--network",
                "host",
                "--progress",
                "plain",
                "-t",
                &tag,
                "-f",
            ])
            .arg(&theirs)
            .args(case.flags)
            .args(&secret_flags)
            .arg(&context),
    );
    if our_failure.is_some() || their_failure.is_some() {
        return our_failure.into_iter().chain(their_failure).collect();
    }
    let our_tar = dir.join("rbuild.tar");
    ok(rbuild(&store)
        .args(["save", "--format", "docker", "-o"])
        .arg(&our_tar)
        .arg("diff:latest"));
    let their_tar = dir.join("buildkit.tar");
    ok(docker
        .docker()
        .args(["save", "-o"])
        .arg(&their_tar)
        .arg(&tag));
    ok(docker.docker().args(["rmi", "--force", &tag]));

    let ours = ImageArchive::read(&our_tar);
    let theirs = ImageArchive::read(&their_tar);
    let stubs: Vec<&str> = RUN_STUBS.iter().chain(case.mount_stubs).copied().collect();
    let under = |path: &str, top: &str| {
        path == top || path.strip_prefix(top).is_some_and(|r| r.starts_with('/'))
    };
    let skip = |path: &str, ours: Option<&FileEntry>, their: Option<&FileEntry>| {
        case.ignore.iter().any(|i| under(path, i))
            || (ours.is_none()
                && their.is_some()
                && stubs.iter().any(|s| under(s, path))
                && theirs.is_empty_tree(path))
    };
    let mut diffs = ours.diff(&theirs, ("rbuild", "buildkit"), &skip);
    // A Dockerfile spelled for the old BuildKit has other steps: only the same file has the
    // same history.
    if case.buildkit_dockerfile.is_none() {
        diffs.extend(ours.history_diff(&theirs, ("rbuild", "buildkit")));
    }
    diffs
}

/// Asserts that rbuild and BuildKit agree on `case`.
fn agree(name: &str, case: Case<'_>, ctx: impl FnOnce(&Path)) {
    let diffs = differences(name, case, ctx);
    assert!(
        diffs.is_empty(),
        "rbuild and BuildKit differ on {name}:\n{}",
        diffs.join("\n")
    );
}

fn write(ctx: &Path, rel: &str, content: &str, mode: u32) {
    let path = ctx.join(rel);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(&path, content).expect("write a context file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn symlink(ctx: &Path, rel: &str, target: &str) {
    let path = ctx.join(rel);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::os::unix::fs::symlink(target, path).expect("symlink in the context");
}

/// A context with files of several modes, nested and empty directories.
fn files(ctx: &Path) {
    write(ctx, "a.txt", "a\n", 0o644);
    write(ctx, "b.txt", "bee\n", 0o600);
    write(ctx, "run.sh", "#!/bin/sh\necho run\n", 0o755);
    write(ctx, "dir/x.md", "# x\n", 0o644);
    write(ctx, "dir/sub/c.txt", "sea\n", 0o640);
    write(ctx, "data/1.json", "{}\n", 0o644);
    write(ctx, "data/2.json", "[]\n", 0o644);
    write(ctx, "data/30.json", "0\n", 0o644);
    std::fs::create_dir_all(ctx.join("dir/empty")).expect("mkdir");
    std::fs::set_permissions(ctx.join("dir/sub"), std::fs::Permissions::from_mode(0o750))
        .expect("chmod");
}

#[test]
fn copy_files_dirs_and_globs() {
    agree(
        "copy-files",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         COPY a.txt /dst/\n\
                         COPY a.txt /renamed.txt\n\
                         COPY a.txt b.txt run.sh /multi/\n\
                         COPY dir /dir-copy\n\
                         COPY dir/ /dir-slash/\n\
                         COPY *.txt /txt/\n\
                         COPY dir/*/c.txt /glob-deep/\n\
                         COPY d?ta/[12].json /json/\n\
                         COPY dir/sub /nested/deeper/\n\
                         COPY . /all/\n\
                         COPY a.txt /existing/a.txt\n\
                         COPY b.txt /existing/a.txt\n",
            ..Case::default()
        },
        files,
    );
}

#[test]
fn copy_chown_numeric() {
    agree(
        "copy-chown",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         COPY --chown=1000:1000 a.txt /o/\n\
                         COPY --chown=42 dir /od\n\
                         COPY --chown=7:8 . /octx/\n",
            ..Case::default()
        },
        files,
    );
}

#[test]
fn copy_chown_names_on_debian() {
    agree(
        "copy-chown-names",
        Case {
            dockerfile: "FROM {DEBIAN}\n\
                         RUN useradd --create-home --uid 1500 app\n\
                         COPY --chown=app:app a.txt /home/app/\n\
                         COPY --chown=daemon dir /d/\n\
                         COPY --chown=nobody:staff b.txt /n/\n\
                         USER app\n\
                         RUN echo x > /home/app/x && mkdir /home/app/made\n",
            ..Case::default()
        },
        files,
    );
}

#[test]
fn copy_chmod() {
    // --chmod is newer than the old BuildKit's frontend: it gets a RUN chmod that gives
    // current BuildKit's result. The mode goes to every copied file and directory and to the
    // directories the copy creates for its destination (fsutil copy.Copy and
    // prepareTargetDir pass it to MkdirAll).
    agree(
        "copy-chmod",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         COPY --chmod=0751 a.txt /m/\n\
                         COPY --chmod=600 dir /md\n",
            buildkit_dockerfile: Some(
                "FROM {BUSYBOX}\n\
                 COPY a.txt /m/\n\
                 COPY dir /md\n\
                 RUN chmod 0751 /m /m/a.txt && chmod -R 600 /md\n",
            ),
            ..Case::default()
        },
        files,
    );
}

#[test]
fn copy_link() {
    // --link is newer than the old BuildKit's frontend. Current BuildKit copies onto an empty
    // layer (dockerfile2llb: a FileOp on llb.Scratch() merged onto the stage) and the
    // directories made there for the destination, owned by the --chown user (fsutil
    // MkdirAll chowns what it creates), replace the stage's directories of the same path in
    // the merge: /linked ends up 5:6. The old BuildKit gets the COPY without --link and a RUN
    // chown that gives that result.
    agree(
        "copy-link",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         COPY --link a.txt dir /linked/\n\
                         COPY --link --chown=5:6 b.txt /linked/deeper/b\n",
            buildkit_dockerfile: Some(
                "FROM {BUSYBOX}\n\
                 COPY a.txt dir /linked/\n\
                 COPY --chown=5:6 b.txt /linked/deeper/b\n\
                 RUN chown 5:6 /linked\n",
            ),
            ..Case::default()
        },
        files,
    );
}

#[test]
fn copy_symlinks_of_the_context() {
    agree(
        "copy-symlinks",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         COPY link-to-a /followed\n\
                         COPY dir /d\n\
                         COPY linkdir/ /via-link/\n\
                         COPY . /all/\n",
            ..Case::default()
        },
        |ctx| {
            files(ctx);
            symlink(ctx, "link-to-a", "a.txt");
            symlink(ctx, "dir/rel", "../a.txt");
            symlink(ctx, "dir/abs", "/etc/passwd");
            symlink(ctx, "linkdir", "dir");
        },
    );
}

/// Makes archives in the context with the system tar: a file tree with modes, owners,
/// an empty directory; with `links`, a symlink and a hard link too.
fn archives(ctx: &Path, links: bool) {
    let tree = ctx.join("../tree");
    write(&tree, "top.txt", "top\n", 0o644);
    write(&tree, "bin/tool", "#!/bin/sh\n", 0o755);
    write(&tree, "secret/key", "k\n", 0o600);
    std::fs::set_permissions(tree.join("secret"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    std::fs::create_dir_all(tree.join("empty")).expect("mkdir");
    if links {
        symlink(&tree, "link", "top.txt");
        symlink(&tree, "bin/abs", "/bin/sh");
        std::fs::hard_link(tree.join("top.txt"), tree.join("hard.txt")).expect("hard link");
    }
    for (name, flag) in [("t.tar", ""), ("t.tar.gz", "-z"), ("t.tar.bz2", "-j")] {
        let mut cmd = tool("tar", "tar");
        cmd.args(["--owner=1000", "--group=1000", "--numeric-owner", "-C"])
            .arg(&tree)
            .arg("-cf")
            .arg(ctx.join(name));
        if !flag.is_empty() {
            cmd.arg(flag);
        }
        ok(cmd.arg("."));
    }
    write(ctx, "plain.txt", "plain\n", 0o640);
}

#[test]
fn add_local_archives_and_files() {
    agree(
        "add-archives",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         ADD t.tar /plain/\n\
                         ADD t.tar.gz /gz\n\
                         ADD t.tar.bz2 /bz2/\n\
                         ADD plain.txt /added.txt\n\
                         ADD --chown=3:4 plain.txt t.tar /owned/\n",
            // Current BuildKit gives an unpacked archive's files the --chown owner too
            // (solver/llbsolver/file/unpack.go passes ChownOpts to Untar); the old one kept
            // the archive's owners, so it gets a RUN chown that gives current's result.
            buildkit_dockerfile: Some(
                "FROM {BUSYBOX}\n\
                 ADD t.tar /plain/\n\
                 ADD t.tar.gz /gz\n\
                 ADD t.tar.bz2 /bz2/\n\
                 ADD plain.txt /added.txt\n\
                 ADD --chown=3:4 plain.txt t.tar /owned/\n\
                 RUN chown -R 3:4 /owned\n",
            ),
            ..Case::default()
        },
        |ctx| archives(ctx, false),
    );
}

#[test]
fn add_local_archive_with_links() {
    agree(
        "add-archive-links",
        Case {
            dockerfile: "FROM {BUSYBOX}\nADD t.tar.gz /x/\n",
            ..Case::default()
        },
        |ctx| archives(ctx, true),
    );
}

#[test]
fn global_and_stage_args() {
    agree(
        "args",
        Case {
            dockerfile: "ARG G1=global-default\n\
                         ARG G2\n\
                         ARG IMG={BUSYBOX}\n\
                         FROM ${IMG} AS one\n\
                         ARG G1\n\
                         ARG S1=stage-default\n\
                         ENV E1=${G1}-${S1}\n\
                         RUN echo \"$G1 $G2 $S1 $E1\" > /one.txt\n\
                         FROM {BUSYBOX}\n\
                         ARG G2\n\
                         ARG G1=overridden\n\
                         COPY --from=one /one.txt /\n\
                         RUN echo \"$G1 $G2 ${S1:-no-s1} ${IMG:-no-img}\" > /two.txt\n\
                         ENV FROM_ARG=$G2 LITERAL='$G1'\n\
                         LABEL g1=$G1\n",
            flags: &["--build-arg", "G2=from-cli", "--build-arg", "UNUSED=1"],
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn run_mounts_bind_tmpfs_cache_secret() {
    let id = format!("diff-cache-{}-{}", std::process::id(), unique());
    let dockerfile = format!(
        "FROM {{BUSYBOX}}\n\
         RUN --mount=type=bind,source=dir,target=/ctx cp -r /ctx /copied && ls -a /ctx > /bind.txt\n\
         RUN --mount=type=bind,target=/whole ls /whole > /whole.txt\n\
         RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs.txt\n\
         RUN --mount=type=cache,target=/cache,id={id} echo hi > /cache/x && ls /cache > /cache.txt\n\
         RUN --mount=type=secret,id=tok,target=/tok wc -c < /tok > /secret-len.txt\n\
         RUN --mount=type=secret,id=tok,target=/run/secrets/tok wc -c < /run/secrets/tok > /secret-default.txt\n"
    );
    agree(
        "run-mounts",
        Case {
            dockerfile: &dockerfile,
            secrets: &[("tok", "s3cret")],
            mount_stubs: &["ctx", "whole", "scratch", "cache", "tok", "run/secrets/tok"],
            ..Case::default()
        },
        files,
    );
}

#[test]
fn run_mount_secret_without_target() {
    agree(
        "run-mount-no-target",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /secret-default.txt\n",
            secrets: &[("tok", "s3cret")],
            mount_stubs: &["run/secrets/tok"],
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn user_and_workdir() {
    agree(
        "user-workdir",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         WORKDIR /a/b\n\
                         WORKDIR c\n\
                         RUN pwd > /pwd1.txt\n\
                         ENV D=/env-dir\n\
                         WORKDIR $D/sub\n\
                         COPY a.txt rel.txt\n\
                         USER 1000:1000\n\
                         WORKDIR /as-user\n\
                         USER 0\n\
                         WORKDIR /\n\
                         USER 1000\n",
            ..Case::default()
        },
        files,
    );
}

#[test]
fn config_instructions() {
    agree(
        "config",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         ENV A=1 B=\"two words\" C=${A}-x\n\
                         ENV D 4 and more\n\
                         LABEL l1=v1 \"l 2\"=\"v 2\" multi=\"a\\\n  b\"\n\
                         EXPOSE 80 443/tcp 53/udp\n\
                         VOLUME /data\n\
                         VOLUME [\"/logs\", \"/cache\"]\n\
                         SHELL [\"/bin/sh\", \"-ec\"]\n\
                         RUN echo shell form > /shell.txt\n\
                         STOPSIGNAL SIGUSR1\n\
                         HEALTHCHECK --interval=5s --timeout=2s --start-period=1s --retries=4 CMD wget -q localhost || exit 1\n\
                         ENTRYPOINT [\"/bin/sh\", \"-c\"]\n\
                         CMD echo hi $A\n\
                         USER 65534:65534\n\
                         WORKDIR /w\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn copy_from_stages_and_images() {
    agree(
        "copy-from",
        Case {
            dockerfile: "FROM {BUSYBOX} AS first\n\
                         RUN mkdir -p /out/sub && echo one > /out/sub/one && chmod 700 /out/sub && chown 12:34 /out/sub/one\n\
                         FROM {BUSYBOX}\n\
                         COPY --from=first /out /from-name\n\
                         COPY --from=0 /out/sub/one /from-index\n\
                         COPY --from={BUSYBOX} /bin/busybox /bb\n\
                         COPY --from=first --chown=1:2 /out/ /chowned/\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn dockerignore() {
    agree(
        "dockerignore",
        Case {
            dockerfile: "FROM {BUSYBOX}\nCOPY . /ctx/\n",
            ..Case::default()
        },
        |ctx| {
            files(ctx);
            write(
                ctx,
                ".dockerignore",
                "*.md\n**/*.md\n!dir/x.md\ndata/3*\nb.txt\n",
                0o644,
            );
            write(ctx, "top.md", "t\n", 0o644);
        },
    );
}

#[test]
fn apt_get_install_on_debian() {
    agree(
        "apt",
        Case {
            dockerfile: "FROM {DEBIAN}\n\
                         RUN apt-get update && apt-get install -y --no-install-recommends hello uuid-runtime \
                             && rm -rf /var/lib/apt/lists/*\n",
            // apt's and dpkg's logs: the same lines and sizes, with the time of the install.
            ignore: &[
                "var/log/apt/history.log",
                "var/log/apt/term.log",
                "var/log/dpkg.log",
            ],
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn heredocs_in_run_and_copy() {
    // The old BuildKit has no heredocs; it gets the files current BuildKit makes. Current
    // BuildKit (dockerfile2llb dispatchRun) hands a RUN heredoc's body to the shell as the
    // script (quoted or not: the shell does the expansion, escapes and line continuations);
    // `<<-` strips leading tabs. COPY makes each
    // heredoc a 0644 file: a quoted one as written, an unquoted one with its variables
    // expanded (dispatch's ExpandRaw).
    agree(
        "heredocs",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         ARG P=val\n\
                         COPY <<EOF /unquoted.txt\n\
                         path=$P ${P}-braced\n\
                         EOF\n\
                         COPY <<\"EOF\" /quoted.txt\n\
                         path=$P\n\
                         dollar=\\$P backslash=\\\\ cont=a\\\n\
                         EOF\n\
                         COPY --chown=3:4 <<ONE <<'TWO' /docs/\n\
                         one $P\n\
                         ONE\n\
                         two $P\n\
                         TWO\n\
                         RUN <<EOF\n\
                         echo \"run $P \\$P \\\\\" > /run.txt\n\
                         x=1; \\\n\
                         echo \"cont $x\" >> /run.txt\n\
                         EOF\n\
                         RUN <<'EOF'\n\
                         echo \"quoted $P\" > /run-quoted.txt\n\
                         EOF\n\
                         RUN <<-EOF\n\
                         \techo tabs > /tabs.txt\n\
                         \tEOF\n\
                         RUN cat <<A > /a.txt && cat <<B > /b.txt\n\
                         first $P\n\
                         A\n\
                         second\n\
                         B\n",
            buildkit_dockerfile: Some(
                "FROM {BUSYBOX}\n\
                 ARG P=val\n\
                 COPY expected/unquoted.txt expected/quoted.txt /\n\
                 COPY --chown=3:4 expected/ONE expected/TWO /docs/\n\
                 RUN echo \"run $P \\$P \\\\\" > /run.txt && x=1 && echo \"cont $x\" >> /run.txt\n\
                 RUN echo \"quoted $P\" > /run-quoted.txt\n\
                 RUN echo tabs > /tabs.txt\n\
                 RUN echo first $P > /a.txt && echo second > /b.txt\n",
            ),
            ..Case::default()
        },
        |ctx| {
            write(ctx, "expected/unquoted.txt", "path=val val-braced\n", 0o644);
            write(
                ctx,
                "expected/quoted.txt",
                "path=$P\ndollar=\\$P backslash=\\\\ cont=a\\\n",
                0o644,
            );
            write(ctx, "expected/ONE", "one val\n", 0o644);
            write(ctx, "expected/TWO", "two $P\n", 0o644);
        },
    );
}

#[test]
fn run_deletes_and_replaces_files() {
    agree(
        "whiteouts",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         RUN mkdir -p /d/sub && touch /d/a /d/sub/b /keep && ln -s /d /dl\n\
                         RUN rm -rf /d && mkdir /d && touch /d/new && rm /bin/vi && rm /dl\n\
                         RUN rm /keep && mkdir /keep && echo file > /home/f && rm -r /home && echo x > /home\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn copy_keeps_special_modes_and_hard_links() {
    agree(
        "modes",
        Case {
            dockerfile: "FROM {BUSYBOX}\nCOPY . /c/\nCOPY suid /suid\n",
            ..Case::default()
        },
        |ctx| {
            write(ctx, "suid", "#!/bin/sh\n", 0o4755);
            write(ctx, "sgid", "#!/bin/sh\n", 0o2750);
            write(ctx, "none", "x", 0o000);
            std::fs::create_dir_all(ctx.join("sticky")).expect("mkdir");
            std::fs::set_permissions(ctx.join("sticky"), std::fs::Permissions::from_mode(0o1777))
                .expect("chmod");
            std::fs::create_dir_all(ctx.join("private/inner")).expect("mkdir");
            write(ctx, "private/inner/f", "f", 0o600);
            std::fs::set_permissions(ctx.join("private"), std::fs::Permissions::from_mode(0o700))
                .expect("chmod");
            std::fs::hard_link(ctx.join("suid"), ctx.join("suid-hard")).expect("hard link");
        },
    );
}

#[test]
fn entrypoint_resets_an_inherited_cmd() {
    agree(
        "entrypoint",
        Case {
            dockerfile: "FROM {BUSYBOX} AS a\nENTRYPOINT [\"echo\"]\n\
                         FROM {BUSYBOX} AS b\nCMD [\"x\"]\nENTRYPOINT [\"echo\"]\n\
                         FROM a\nHEALTHCHECK NONE\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn copy_through_symlinked_destination_dirs() {
    agree(
        "dest-symlink",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         RUN mkdir -p /real/dir && ln -s /real/dir /linkdir && ln -s real /rel\n\
                         COPY a.txt /linkdir/\n\
                         COPY b.txt /rel/dir/b.txt\n\
                         COPY dir /linkdir/sub/\n\
                         WORKDIR /linkdir/wd\n\
                         COPY run.sh .\n",
            ..Case::default()
        },
        files,
    );
}

#[test]
fn copy_from_a_stage_with_symlinks() {
    agree(
        "from-symlinks",
        Case {
            dockerfile: "FROM {BUSYBOX} AS Builder\n\
                         WORKDIR /out\n\
                         RUN echo t > target && ln -s target link && ln -s /out abslink && mkdir d && ln -s ../target d/up\n\
                         FROM {BUSYBOX}\n\
                         WORKDIR /app\n\
                         COPY --from=builder out/link ./followed\n\
                         COPY --from=builder /out/d ./d\n\
                         COPY --from=builder /out/abslink/target ./via-abs\n\
                         COPY --from=builder /out/ ./all/\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn named_users_in_chown_user_and_workdir() {
    agree(
        "named-users",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         COPY --chown=nobody a.txt /n1\n\
                         COPY --chown=nobody:root a.txt /n2\n\
                         COPY --chown=65534:nobody a.txt /n3\n\
                         USER nobody\n\
                         WORKDIR /made-by-nobody\n\
                         RUN id > /tmp/id && cp /tmp/id ./id\n\
                         USER root:nobody\n\
                         RUN id > /id-root-nobody\n",
            ..Case::default()
        },
        files,
    );
}

#[test]
fn run_mount_options() {
    let id = format!("mount-options-cache-{}-{}", std::process::id(), unique());
    let dockerfile = format!(
        "FROM {{BUSYBOX}} AS src\n\
         RUN mkdir /out && echo from-stage > /out/f\n\
         FROM {{BUSYBOX}}\n\
         RUN --mount=type=bind,from=src,source=/out,target=/m cat /m/f > /bound.txt\n\
         RUN --mount=type=bind,source=.,target=/ctx,rw touch /ctx/new && ls /ctx > /rw.txt\n\
         RUN --mount=type=cache,id={id},target=/c,uid=1000,gid=1000,mode=0700 stat -c '%u:%g %a' /c > /cache-owner.txt\n\
         RUN --mount=type=secret,id=tok,target=/s,mode=0400,uid=5 stat -c '%u:%g %a' /s > /secret-owner.txt\n\
         RUN --mount=type=tmpfs,target=/tmp/t touch /tmp/t/x && ls /tmp/t > /tmpfs.txt\n"
    );
    agree(
        "mount-options",
        Case {
            dockerfile: &dockerfile,
            secrets: &[("tok", "s3cret")],
            mount_stubs: &["m", "ctx", "c", "s", "tmp/t"],
            ..Case::default()
        },
        files,
    );
}

#[test]
fn variable_expansion_forms() {
    agree(
        "expansion",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         ARG SET=value\n\
                         ARG EMPTY=\n\
                         ENV A=${SET:-d1} B=${UNSET:-d2} C=${SET:+alt} D=${UNSET:+alt} E=${EMPTY:-d3}\n\
                         ENV G=\"$SET\" H='$SET' I=\\$SET J=${SET}x K=\"a b\"c\n\
                         LABEL a=${SET:-x} b=\"${UNSET:-y z}\"\n\
                         EXPOSE ${PORT:-8080}\n\
                         WORKDIR /w/${SET}\n\
                         RUN echo \"$A $B $C $D $E $G $H $I $J $K\" > /env.txt\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn target_and_args_in_from() {
    agree(
        "target",
        Case {
            dockerfile: "ARG BASE={BUSYBOX}\n\
                         FROM $BASE AS one\nRUN echo one > /one\n\
                         FROM one AS two\nRUN echo two > /two\n\
                         FROM {BUSYBOX} AS three\nRUN echo three > /three\n",
            flags: &["--target", "two"],
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn exec_form_and_custom_shell() {
    agree(
        "exec-form",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         ENV V=val\n\
                         RUN [\"sh\", \"-c\", \"echo $V > /exec.txt\"]\n\
                         RUN [\"sh\", \"-c\", \"echo \\\"$0\\\" > /exec-args.txt\", \"$V\"]\n\
                         SHELL [\"/bin/sh\", \"-c\", \"echo \\\"$1\\\" >> /shell.log; eval \\\"$1\\\"\", \"arg0\"]\n\
                         RUN echo via shell\n\
                         CMD [\"echo\", \"$V\"]\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn unusual_names_and_sizes() {
    let long = "n".repeat(150);
    let deep = format!("{}/{}/{}", "d".repeat(90), "e".repeat(90), "f".repeat(90));
    agree(
        "names",
        Case {
            dockerfile: "FROM {BUSYBOX}\nCOPY . /c/\nCOPY [\"with space.txt\", \"/spaced dir/\"]\nCOPY caf*.txt /glob/\n",
            ..Case::default()
        },
        |ctx| {
            write(ctx, "with space.txt", "s\n", 0o644);
            write(ctx, "café.txt", "unicode\n", 0o644);
            write(ctx, "empty", "", 0o644);
            write(ctx, &long, "long name\n", 0o644);
            write(ctx, &format!("{deep}/leaf"), "deep\n", 0o644);
            write(ctx, "big.bin", &"0123456789abcdef".repeat(400_000), 0o644);
            symlink(ctx, "long-link", &long);
        },
    );
}

#[test]
fn args_inherited_by_child_stages() {
    // dockerfile2llb's dispatchState.init: a stage built FROM another stage starts with its
    // state (the environment its ARGs set) and its build args.
    agree(
        "arg-inheritance",
        Case {
            dockerfile: "FROM {BUSYBOX} AS base\n\
                         ARG VIA_BASE=base-default\n\
                         ENV IN_ENV=env\n\
                         FROM base AS child\n\
                         RUN echo \"${VIA_BASE:-unset} $IN_ENV\" > /child.txt\n\
                         FROM child\n\
                         ARG VIA_BASE\n\
                         RUN echo \"${VIA_BASE:-unset}\" > /grandchild.txt\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn arg_after_env_of_the_same_name() {
    // dispatchArg sets the state environment: the later ARG (its default or a build arg) is
    // what steps see and expand; the config keeps the ENV value.
    for flags in [&[][..], &["--build-arg", "NAME=from-cli"][..]] {
        agree(
            "arg-after-env",
            Case {
                dockerfile: "FROM {BUSYBOX}\n\
                             ENV NAME=from-env\n\
                             ARG NAME=from-arg\n\
                             RUN echo \"$NAME\" > /name.txt\n\
                             ENV OTHER=$NAME\n",
                flags,
                ..Case::default()
            },
            |_| {},
        );
    }
}

#[test]
fn user_and_workdir_that_expand_to_nothing() {
    // NormalizeWorkdir keeps the current directory for an empty WORKDIR; an empty USER is
    // the default user.
    agree(
        "empty-user-workdir",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         WORKDIR /srv\n\
                         USER 1000\n\
                         ARG NOTHING\n\
                         WORKDIR $NOTHING\n\
                         USER $NOTHING\n\
                         RUN pwd > /pwd.txt && id -u > /uid.txt\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn unquoted_copy_heredoc_escapes_and_run_heredoc_scripts() {
    // The old BuildKit has no heredocs; it gets the files current BuildKit makes. An
    // unquoted COPY heredoc goes through ExpandRaw: a lexer with quotes as plain text and a
    // backslash escaping the next character (a line end too). A RUN heredoc starting with
    // `#!` is run as that script (dispatchRun: /dev/pipes/NAME).
    agree(
        "heredoc-escapes",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         ARG P=val\n\
                         COPY <<EOF /unquoted.txt\n\
                         dollar=\\$P backslash=\\\\ cont=a\\\n\
                         b quote='$P' \"$P\"\n\
                         EOF\n\
                         RUN <<EOF\n\
                         #!/bin/sh\n\
                         echo \"script $0\" > /script.txt\n\
                         EOF\n",
            buildkit_dockerfile: Some(
                "FROM {BUSYBOX}\n\
                 ARG P=val\n\
                 COPY expected/unquoted.txt /\n\
                 RUN echo \"script /dev/pipes/EOF\" > /script.txt\n",
            ),
            ..Case::default()
        },
        |ctx| {
            write(
                ctx,
                "expected/unquoted.txt",
                "dollar=$P backslash=\\ cont=a\nb quote='val' \"val\"\n",
                0o644,
            );
        },
    );
}

#[test]
fn onbuild_triggers_add_no_history() {
    // dispatchOnbuild appends to the config's OnBuild and commits no history.
    agree(
        "onbuild",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         ONBUILD RUN echo child\n\
                         ONBUILD ENV FROM_TRIGGER=yes\n\
                         LABEL after=onbuild\n",
            ..Case::default()
        },
        |_| {},
    );
}

#[test]
fn wildcard_sources_matching_nothing() {
    // dockerfile2llb copies with AllowEmptyWildcard: a pattern that matches nothing adds
    // nothing. A COPY whose every source matches nothing gets an empty layer from BuildKit
    // and none from rbuild (see ImageArchive::history).
    agree(
        "wildcard-nothing",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         COPY nomatch*.txt run.sh /dst/\n\
                         COPY a.txt nothing-* /dst2/\n\
                         COPY nothing-at-all* /dst3/\n",
            ..Case::default()
        },
        files,
    );
}

#[test]
fn run_mounts_without_target_use_the_workdir() {
    // dockerfile2llb (convert_runmount.go) joins a missing or relative target with the working
    // directory; only / is refused.
    agree(
        "mount-no-target",
        Case {
            dockerfile: "FROM {BUSYBOX}\n\
                         WORKDIR /work\n\
                         RUN --mount=type=cache,id=mount-no-target touch in-cache && ls /work > /cache-ls.txt\n\
                         WORKDIR /src\n\
                         RUN --mount=type=bind ls /src > /bind-ls.txt\n\
                         WORKDIR /t\n\
                         RUN --mount=type=tmpfs touch x && ls /t > /tmpfs-ls.txt\n",
            mount_stubs: &["work", "src", "t"],
            ..Case::default()
        },
        files,
    );
}

#[test]
fn add_local_tar_with_symlinks_of_any_header_mode() {
    // Symlinks whose tar header says 0644 are 0777 once unpacked on Linux and in BuildKit's
    // layers.
    agree(
        "tar-symlink-mode",
        Case {
            dockerfile: "FROM {BUSYBOX}\nADD links.tar /x/\n",
            ..Case::default()
        },
        |ctx| {
            let mut builder = tar::Builder::new(Vec::new());
            let mut file = tar::Header::new_gnu();
            file.set_entry_type(tar::EntryType::Regular);
            file.set_mode(0o640);
            file.set_size(3);
            builder
                .append_data(&mut file, "target.txt", &b"hi\n"[..])
                .expect("append");
            for (name, target) in [
                ("rel", "target.txt"),
                ("abs", "/etc/passwd"),
                ("dangling", "missing"),
            ] {
                let mut link = tar::Header::new_gnu();
                link.set_entry_type(tar::EntryType::Symlink);
                link.set_mode(0o644);
                link.set_size(0);
                builder
                    .append_link(&mut link, name, target)
                    .expect("append link");
            }
            std::fs::write(ctx.join("links.tar"), builder.into_inner().expect("tar"))
                .expect("write tar");
        },
    );
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos()
}

#[test]
fn an_emulated_arm64_build() {
    // Both builders run the arm64 steps through the kernel's qemu handler (for dockerd's runc
    // too: binfmt_misc is the machine's).
    let dir = Dir::new();
    ok(rbuild(&dir.join("store")).args(["system", "binfmt", "--install", "arm64"]));
    agree(
        "emulated-arm64",
        Case {
            dockerfile: "FROM {BUSYBOX_ARM64}\n\
                         ARG TARGETPLATFORM TARGETARCH TARGETVARIANT\n\
                         RUN uname -m > /machine && echo \"$TARGETPLATFORM $TARGETARCH [$TARGETVARIANT]\" > /args\n\
                         RUN mkdir -p /data && echo x > /data/f && chmod 0640 /data/f && ln -s f /data/l\n",
            flags: &["--platform", "linux/arm64"],
            ..Case::default()
        },
        |_| {},
    );
}
