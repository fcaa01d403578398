//! Builds on a real distribution: a Debian bookworm minbase made on this machine from Debian's
//! packages (`rbuild_test_support::DebianBase`, cached under target/rbuild-test-cache) and
//! pushed to the test's registry. apt-get with maintainer scripts and the `_apt` sandbox user,
//! apt cache mounts, useradd and USER, a static C binary compiled with gcc and copied into a
//! busybox stage, a Python app from apt, and ARG/ENV-heavy multi-stage files. Every case runs
//! as root and as an unprivileged user with subordinate id ranges (`BuildEnv::rootless`), and
//! each image is run with `rbuild run` and its output checked. RUN steps reach Debian's mirror
//! through the host network.

use rbuild_test_support::{DebianBase, FileKind, ImageArchive, Registry};

use crate::support::{BASE, BuildEnv, as_root_and_rootless, ok};

/// A build environment (busybox imported as [`BASE`]) and a registry holding the Debian base.
struct Distro {
    env: BuildEnv,
    _registry: Registry,
    /// `127.0.0.1:PORT/debian:bookworm`.
    debian: String,
}

impl Distro {
    fn new(rootless: bool) -> Distro {
        Self::with_env(if rootless {
            BuildEnv::rootless()
        } else {
            BuildEnv::new()
        })
    }

    fn with_env(env: BuildEnv) -> Distro {
        let base = DebianBase::bookworm();
        let registry = Registry::start();
        base.push(&registry, "debian:bookworm");
        let debian = format!("{}/debian:bookworm", registry.host());
        Distro {
            env,
            _registry: registry,
            debian,
        }
    }

    /// Builds `dockerfile` (`{DEBIAN}` stands for the base, `{BUSYBOX}` for busybox) as
    /// `tag` and returns the tag.
    fn build(&self, tag: &'static str, dockerfile: &str, args: &[&str]) -> &'static str {
        self.env.dockerfile(
            &dockerfile
                .replace("{DEBIAN}", &self.debian)
                .replace("{BUSYBOX}", BASE),
        );
        self.env.build(&[&["-t", tag], args].concat());
        tag
    }

    /// `rbuild run --rm IMAGE ARGS...`'s stdout.
    fn run(&self, image: &str, args: &[&str]) -> String {
        self.run_with(&[], image, args)
    }

    /// `rbuild run --rm OPTIONS IMAGE ARGS...`'s stdout.
    fn run_with(&self, options: &[&str], image: &str, args: &[&str]) -> String {
        let mut cmd = self.env.rbuild();
        cmd.args(["run", "--rm"])
            .args(options)
            .arg(image)
            .args(args);
        ok(&mut cmd).stdout
    }
}

as_root_and_rootless!(
    apt_get_install_runs_maintainer_scripts,
    apt_cache_mounts_keep_downloads_out_of_the_image,
    useradd_and_user_own_their_files,
    gcc_builds_a_static_binary_for_a_busybox_stage,
    python_app_from_apt,
    args_and_envs_across_stages,
    imported_rootfs_runs_dpkg,
);

fn apt_get_install_runs_maintainer_scripts(rootless: bool) {
    let d = Distro::new(rootless);
    // uuid-runtime's postinst makes the system user uuidd and hands it /var/lib/libuuid;
    // downloads run as apt's `_apt` user.
    let id = d.build(
        "apt",
        "FROM {DEBIAN}\n\
         RUN apt-get update && apt-get install -y --no-install-recommends hello jq uuid-runtime\n\
         CMD [\"hello\"]\n",
        &[],
    );
    assert_eq!(d.run(id, &[]), "Hello, world!\n");
    assert_eq!(
        d.run(
            id,
            &[
                "sh",
                "-c",
                "echo '{\"a\":[1,2]}' | jq -c .a; getent passwd uuidd | cut -d: -f1; \
                 stat -c '%U %a' /var/lib/libuuid; dpkg-query -W -f='${Status}\\n' uuid-runtime"
            ]
        ),
        "[1,2]\nuuidd\nuuidd 2775\ninstall ok installed\n"
    );
}

fn apt_cache_mounts_keep_downloads_out_of_the_image(rootless: bool) {
    let d = Distro::new(rootless);
    let mounts = "--mount=type=cache,target=/var/cache/apt,sharing=locked \
                  --mount=type=cache,target=/var/lib/apt/lists,sharing=locked";
    let id = d.build(
        "cached-1",
        &format!(
            "FROM {{DEBIAN}}\n\
             RUN rm -f /etc/apt/apt.conf.d/docker-clean; \
                 echo 'Binary::apt::APT::Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/keep-cache\n\
             RUN {mounts} apt-get update && apt-get install -y --no-install-recommends hello\n"
        ),
        &[],
    );
    assert_eq!(d.run(id, &["hello"]), "Hello, world!\n");
    // The downloaded package and the lists stayed in the cache, not in the image.
    assert_eq!(
        d.run(
            id,
            &[
                "sh",
                "-c",
                "find /var/cache/apt /var/lib/apt/lists -name '*.deb' -o -name '*Packages*' | wc -l"
            ]
        ),
        "0\n"
    );
    // A later build finds both in the cache: it installs without downloading anything.
    let id = d.build(
        "cached-2",
        &format!(
            "FROM {{DEBIAN}}\n\
             RUN rm -f /etc/apt/apt.conf.d/docker-clean\n\
             RUN {mounts} ls /var/cache/apt/archives > /cached.txt && \
                 apt-get install -y --no-install-recommends --no-download hello\n"
        ),
        &[],
    );
    let cached = d.run(id, &["cat", "/cached.txt"]);
    assert!(
        cached
            .lines()
            .any(|l| l.starts_with("hello_") && l.ends_with(".deb")),
        "the cache mount holds hello's package: {cached}"
    );
    assert_eq!(d.run(id, &["hello"]), "Hello, world!\n");
}

fn useradd_and_user_own_their_files(rootless: bool) {
    let d = Distro::new(rootless);
    d.env.write("app.txt", "app\n");
    let id = d.build(
        "users",
        "FROM {DEBIAN}\n\
         RUN groupadd --gid 2345 crew && useradd --create-home --uid 1234 --gid crew appuser \
             && install -d -o appuser -g crew -m 0750 /data\n\
         USER appuser\n\
         WORKDIR /home/appuser\n\
         RUN echo made by $(id -un) > owned.txt && mkdir cache\n\
         COPY --chown=appuser:crew app.txt /data/app.txt\n\
         CMD [\"sh\", \"-c\", \"id; stat -c '%n %U:%G %a' owned.txt cache /data /data/app.txt /home/appuser; cat owned.txt\"]\n",
        &[],
    );
    assert_eq!(
        d.run(id, &[]),
        "uid=1234(appuser) gid=2345(crew) groups=2345(crew)\n\
         owned.txt appuser:crew 644\n\
         cache appuser:crew 755\n\
         /data appuser:crew 750\n\
         /data/app.txt appuser:crew 644\n\
         /home/appuser appuser:crew 755\n\
         made by appuser\n"
    );
}

fn gcc_builds_a_static_binary_for_a_busybox_stage(rootless: bool) {
    let d = Distro::new(rootless);
    d.env.write(
        "hello.c",
        "#include <stdio.h>\nint main(int argc, char **argv) { printf(\"static hello, %d args\\n\", argc - 1); return 0; }\n",
    );
    let id = d.build(
        "static-hello",
        "FROM {DEBIAN} AS build\n\
         RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev\n\
         COPY hello.c /src/\n\
         RUN mkdir /out && gcc -static -O2 -o /out/hello /src/hello.c\n\
         FROM {BUSYBOX}\n\
         COPY --from=build /out/hello /usr/local/bin/hello\n\
         ENTRYPOINT [\"/usr/local/bin/hello\"]\n",
        &[],
    );
    assert_eq!(d.run(id, &["a", "b"]), "static hello, 2 args\n");
    // The final image is busybox plus the binary: no compiler came along.
    assert_eq!(
        d.run_with(
            &["--entrypoint", "sh"],
            id,
            &["-c", "test -e /usr/bin/gcc; echo $?; ls /usr/local/bin"]
        ),
        "1\nhello\n"
    );
}

fn python_app_from_apt(rootless: bool) {
    let d = Distro::new(rootless);
    d.env.write(
        "app/main.py",
        "import os, sys\nprint('%s, %s (cwd %s, python %d)' % (os.environ['GREETING'], ' and '.join(sys.argv[1:]), os.getcwd(), sys.version_info[0]))\n",
    );
    let id = d.build(
        "pyapp",
        "FROM {DEBIAN}\n\
         RUN apt-get update && apt-get install -y --no-install-recommends python3-minimal \
             && rm -rf /var/lib/apt/lists/*\n\
         WORKDIR /srv\n\
         COPY app/ ./app/\n\
         ENV GREETING=hello\n\
         ENTRYPOINT [\"python3\", \"app/main.py\"]\n\
         CMD [\"world\"]\n",
        &[],
    );
    assert_eq!(d.run(id, &[]), "hello, world (cwd /srv, python 3)\n");
    assert_eq!(
        d.run_with(&["--env", "GREETING=hi"], id, &["there", "again"]),
        "hi, there and again (cwd /srv, python 3)\n"
    );
}

fn args_and_envs_across_stages(rootless: bool) {
    let d = Distro::new(rootless);
    let registry = d
        .debian
        .split('/')
        .next()
        .expect("registry host")
        .to_string();
    let id = d.build(
        "args",
        "ARG REG\n\
         ARG SUITE=bookworm\n\
         FROM ${REG}/debian:${SUITE} AS base\n\
         ARG APP_HOME=/opt/app\n\
         ENV APP_HOME=${APP_HOME} LANG=C.UTF-8\n\
         RUN mkdir -p \"$APP_HOME\" && echo \"base at $APP_HOME\" > \"$APP_HOME/base.txt\"\n\
         FROM base AS build\n\
         ARG VERSION=0.0.0\n\
         ARG SUITE\n\
         ENV VERSION=$VERSION BUILT_ON=debian-${SUITE}\n\
         RUN echo \"version $VERSION on $BUILT_ON in $APP_HOME\" > \"$APP_HOME/version.txt\"\n\
         FROM base\n\
         ARG VERSION\n\
         COPY --from=build ${APP_HOME}/version.txt ${APP_HOME}/\n\
         ENV PATH=${APP_HOME}/bin:$PATH\n\
         RUN mkdir -p $APP_HOME/bin && printf '#!/bin/sh\\ncat %s/*.txt\\necho \"$LANG $VERSION\"\\n' \"$APP_HOME\" > $APP_HOME/bin/show \
             && chmod +x $APP_HOME/bin/show\n\
         LABEL version=$VERSION suite=\"${SUITE:-unset}\"\n\
         CMD [\"show\"]\n",
        &[
            "--build-arg",
            &format!("REG={registry}"),
            "--build-arg",
            "VERSION=1.2.3",
        ],
    );
    // VERSION is an ARG of the last stage, not an ENV: its RUN saw it, the image does not.
    assert_eq!(
        d.run(id, &[]),
        "base at /opt/app\nversion 1.2.3 on debian-bookworm in /opt/app\nC.UTF-8 \n"
    );
    let config = d.env.config(id);
    assert_eq!(
        config["config"]["Labels"],
        serde_json::json!({"version": "1.2.3", "suite": "unset"})
    );
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .map(|v| v.as_str().expect("Env entry"))
        .collect();
    assert_eq!(
        env,
        [
            "PATH=/opt/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_HOME=/opt/app",
            "LANG=C.UTF-8"
        ]
    );
}

fn imported_rootfs_runs_dpkg(rootless: bool) {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    let tar = std::fs::File::open(DebianBase::bookworm().rootfs_tar()).expect("the base tarball");
    ok(env
        .rbuild()
        .args(["import", "-", "localhost/debian:imported"])
        .stdin(tar));
    env.dockerfile(
        "FROM localhost/debian:imported\n\
         RUN dpkg-query -W -f='${Package}\\n' bash dpkg > /pkgs \
             && stat -c '%n %U:%G %a' /usr/bin/passwd /usr/bin/chage /var/mail >> /pkgs\n",
    );
    env.build(&["-t", "dpkg"]);
    assert_eq!(
        ok(env.rbuild().args(["run", "--rm", "dpkg", "cat", "/pkgs"])).stdout,
        "bash\ndpkg\n/usr/bin/passwd root:root 4755\n/usr/bin/chage root:shadow 2755\n/var/mail root:mail 2775\n"
    );
}

/// A Debian build by a user without subordinate ids (single-id mode): apt-get installs a
/// package whose maintainer script makes a system user and hands it a directory (downloads
/// run as `_apt`), useradd, chown of files to several users (coreutils' `chown :GROUP` keeps
/// the user; perl's chown on a handle is `fchown`), a later step that only changes files of
/// the base (`/etc/shadow`, root:shadow) and of the step before. Its image has the owners and
/// modes of the same build by a user with subordinate ids, file by file.
#[test]
fn single_id_build_gives_the_owners_of_a_subid_build() {
    let dockerfile = "FROM {DEBIAN}\n\
         RUN apt-get update && apt-get install -y --no-install-recommends uuid-runtime \
             && groupadd --gid 2345 crew && useradd --create-home --uid 1234 --gid crew appuser \
             && mkdir -p /srv/a /srv/b && touch /srv/a/f /srv/b/g \
             && chown -R appuser:crew /srv/a && chown :crew /srv/b/g && chown 77 /srv/b \
             && perl -e 'open(my $f, \"<\", \"/srv/b/g\") or die; chown(88, -1, $f) or die \"fchown: $!\"'\n\
         RUN chmod 640 /etc/shadow && echo more >> /srv/a/f\n";
    let image = |d: &Distro| {
        let out = d.env.dir.mkdir("out");
        let user = d.env.user.expect("an unprivileged user");
        ok(crate::support::tool("chown", "coreutils")
            .arg(user)
            .arg(&out));
        let tar = out.join("image.tar");
        d.build(
            "owners",
            dockerfile,
            &["-o", &format!("type=docker,dest={}", tar.display())],
        );
        ImageArchive::read(&tar)
    };
    let single = image(&Distro::with_env(BuildEnv::nosubid()));
    let subid = image(&Distro::new(true));
    let owner = |i: &ImageArchive, p: &str| {
        let e = &i.files[p];
        (e.uid, e.gid, e.mode)
    };
    assert_eq!(owner(&single, "srv/a/f"), (1234, 2345, 0o644));
    assert_eq!(owner(&single, "srv/a"), (1234, 2345, 0o755));
    assert_eq!(owner(&single, "srv/b"), (77, 0, 0o755));
    assert_eq!(owner(&single, "srv/b/g"), (88, 2345, 0o644));
    assert_eq!(owner(&single, "home/appuser"), (1234, 2345, 0o755));
    assert_eq!(owner(&single, "etc/shadow"), (0, 42, 0o640));
    // Every file, symlinks aside (they cannot carry a recorded owner), as the subid build.
    let table = |i: &ImageArchive| -> Vec<String> {
        i.files
            .iter()
            .filter(|(_, e)| e.kind != FileKind::Symlink)
            .map(|(p, e)| format!("{p} {:?} {:o} {}:{}", e.kind, e.mode, e.uid, e.gid))
            .collect()
    };
    let (ours, theirs) = (table(&single), table(&subid));
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|l| !b.contains(l)).cloned().collect()
    };
    assert_eq!(
        (only(&ours, &theirs), only(&theirs, &ours)),
        (Vec::new(), Vec::new()),
        "single-id entries differing from the subid build's, and the other way round"
    );
}
