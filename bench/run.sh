#!/usr/bin/env bash
# bench/run.sh: startup cost of `rbuild run --rm IMAGE true` against `runc run` on an
# equivalent bundle, median of 20 runs each (hyperfine).
#
# Usage: bench/run.sh [RBUILD_BINARY]   (default: target/release/rbuild, built if missing)
# Needs: hyperfine, runc, umoci, /bin/busybox (Debian: hyperfine runc umoci busybox-static).
# Run as root (runc's bundle is a rootful one; rbuild uses the same user namespaces either way).
#
# It imports a busybox image into a temp store, runs it once so its layer is unpacked,
# unpacks the same image with `umoci unpack` into a runc bundle, then times both. The
# result is appended, dated, to bench/RESULTS.md (created with a header if missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
rbuild="${1:-$repo/target/release/rbuild}"
if [[ ! -x "$rbuild" ]]; then
    (cd "$repo" && cargo build --release --bin rbuild)
fi
for tool in hyperfine runc umoci /bin/busybox; do
    command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs/bin"
cp /bin/busybox "$work/rootfs/bin/"
for a in $(/bin/busybox --list); do
    [[ "$a" == busybox ]] || ln -s busybox "$work/rootfs/bin/$a"
done
store="$work/store"
"$rbuild" --root "$store" import "$work/rootfs" bench-busybox >/dev/null
"$rbuild" --root "$store" run --rm bench-busybox true # unpack the snapshot once

umoci unpack --image "$store:docker.io/library/bench-busybox:latest" "$work/bundle" >/dev/null
# runc's default config wants a terminal; run `true` without one.
python3 - "$work/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["process"]["terminal"] = False
c["process"]["args"] = ["true"]
json.dump(c, open(p, "w"))
PY

json="$work/hyperfine.json"
hyperfine --runs 20 --warmup 3 --export-json "$json" \
    -n "rbuild run --rm IMAGE true" "$rbuild --root $store run --rm bench-busybox true" \
    -n "runc run (umoci bundle)" "runc --root $work/runc run -b $work/bundle rbuild-bench" \
    >&2

summary="$(python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
med = {x["command"]: x["median"] * 1000 for x in r}
names = list(med)
for n in names:
    print(f"| {n} | {med[n]:.1f} ms |")
print(f"| difference | {med[names[0]] - med[names[1]]:+.1f} ms |")
PY
)"
echo "$summary"

results="$here/RESULTS.md"
if [[ ! -f "$results" ]]; then
    printf '# Benchmark results\n\nDated entries appended by the scripts in bench/.\n' >"$results"
fi
{
    printf '\n## %s: bench/run.sh (median of 20, %s, kernel %s)\n\n' \
        "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc) cores" "$(uname -r)"
    printf '| command | median |\n|---|---|\n%s\n' "$summary"
} >>"$results"
