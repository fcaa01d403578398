"""Deterministic build contexts for the benchmark scenarios.

Every context is generated from a fixed seed, so two machines (or two runs) build the same bytes.
`generate(name, dir, registry)` writes the context and its Dockerfile into `dir`;
`mutate(name, kind, dir, counter)` applies the change a scenario makes before each timed build.
"""

import os
import random

SEED = 20261123
FILES_COUNT = 100_000
FILES_BYTES = 1 << 30  # 1 GiB over FILES_COUNT files
FILES_DIRS = 100


def _dockerfile(ctx_dir, text):
    with open(os.path.join(ctx_dir, "Dockerfile"), "w") as f:
        f.write(text)


def _tiny(d, reg):
    with open(os.path.join(d, "hello.txt"), "w") as f:
        f.write("hello from the tiny context\n")
    _dockerfile(d, f"FROM {reg}/busybox:latest\n"
                   "COPY hello.txt /hello.txt\n"
                   "RUN cp /hello.txt /copy.txt\n")


def _files_path(d, i):
    return os.path.join(d, "data", f"{i % FILES_DIRS:03d}", f"f{i:06d}")


def _files(d, reg):
    rng = random.Random(SEED)
    avg = FILES_BYTES // FILES_COUNT
    for k in range(FILES_DIRS):
        os.makedirs(os.path.join(d, "data", f"{k:03d}"), exist_ok=True)
    for i in range(FILES_COUNT):
        # sizes uniform in [1, 2 * avg): about 1 GiB in total
        with open(_files_path(d, i), "wb") as f:
            f.write(rng.randbytes(rng.randint(1, 2 * avg - 1)))
    _dockerfile(d, f"FROM {reg}/busybox:latest\nCOPY data /data\n")


def _app(d, reg):
    rng = random.Random(SEED + 1)
    with open(os.path.join(d, "lock.txt"), "w") as f:
        for i in range(500):
            f.write(f"dep-{i} = \"{rng.randint(0, 99)}.{rng.randint(0, 99)}.{rng.randint(0, 99)}\"\n")
    os.makedirs(os.path.join(d, "src"), exist_ok=True)
    for i in range(200):
        with open(os.path.join(d, "src", f"mod{i:03d}.txt"), "w") as f:
            f.write("".join(f"line {j} {rng.getrandbits(64):016x}\n" for j in range(100)))
    with open(os.path.join(d, "src", "main.txt"), "w") as f:
        f.write("main 0\n")
    # The dependency step writes 20,000 files from one shell, as a package manager does from
    # one process. (It used to start `mkdir` once per file: 20,000 processes, whose start-up
    # cost every builder the same and measured the kernel, not the builder.)
    _dockerfile(d, f"FROM {reg}/debian:latest\n"
                   "WORKDIR /app\n"
                   "COPY lock.txt ./\n"
                   "RUN mkdir -p deps && cd deps && mkdir $(seq -f d%g 0 99) && i=1 && "
                   "while [ $i -le 20000 ]; do echo \"$i\" > d$((i % 100))/f$i; i=$((i + 1)); done && "
                   "sha256sum ../lock.txt > lock.sum\n"
                   "COPY src ./src\n"
                   "RUN cat src/*.txt | sha256sum > build.out && ls deps | wc -l >> build.out\n")


def _stages4(d, reg):
    # Each stage counts to 3.2 million in one busybox shell: about 5 s of ONE core on the
    # 2-core benchmark machine (a `head | sha256sum` pipeline, used before, kept two cores
    # busy per stage, so four stages could not take less than 20 s there).
    stages = []
    for s in "abcd":
        stages.append(f"FROM {reg}/busybox:latest AS {s}\n"
                      f"RUN i=0; while [ $i -lt 3200000 ]; do i=$((i+1)); done; echo stage-{s} $i > /{s}\n")
    final = f"FROM {reg}/busybox:latest\n" + "".join(f"COPY --from={s} /{s} /{s}\n" for s in "abcd")
    _dockerfile(d, "".join(stages) + final)


def _steps200(d, reg):
    # 100 RUN steps alternating with 100 ENV steps: 200 steps, 101 layers. Docker's image store
    # refuses images of more than about 125 layers ("max depth exceeded"), so 200 RUN layers
    # would measure an error, not a build.
    lines = [f"FROM {reg}/busybox:latest\n"]
    for i in range(100):
        lines.append(f"ENV STEP_{i}={i}\n")
        lines.append(f"RUN echo step-{i} $STEP_{i} >> /steps\n")
    _dockerfile(d, "".join(lines))


def _steps50(d, reg):
    # 50 RUN steps, 50 small layers: the size of build the remote-cache import target names.
    lines = [f"FROM {reg}/busybox:latest\n"]
    for i in range(50):
        lines.append(f"RUN echo step-{i} > /step-{i}\n")
    _dockerfile(d, "".join(lines))


GENERATORS = {
    "tiny": _tiny,
    "files": _files,
    "app": _app,
    "stages4": _stages4,
    "steps200": _steps200,
    "steps50": _steps50,
}


def generate(name, ctx_dir, registry):
    """Writes context `name` into the empty directory `ctx_dir`."""
    GENERATORS[name](ctx_dir, registry)


def mutate(name, kind, ctx_dir, counter):
    """Applies the pre-build change `kind` ("touch" or "change") to context `name`."""
    if kind == "touch":
        t = 1_700_000_000 + counter * 60
        for root, _dirs, files in os.walk(ctx_dir):
            for f in files:
                os.utime(os.path.join(root, f), (t, t))
    elif kind == "change":
        if name == "files":
            path = _files_path(ctx_dir, 42_042)
        elif name == "app":
            path = os.path.join(ctx_dir, "src", "main.txt")
        else:
            path = os.path.join(ctx_dir, "hello.txt")
        with open(path, "wb") as f:
            f.write(f"changed {counter}\n".encode())
    else:
        raise ValueError(f"unknown mutation {kind}")
