#!/usr/bin/env bash
# bench/pullpush.sh: rbuild push/pull against skopeo copy, side by side, on a ~500 MB image.
#
# What it does:
#   1. builds `rbuild` (release) unless RBUILD points at a binary;
#   2. generates a deterministic root file system of SIZE_MB MiB (default 500) of incompressible
#      bytes (AES-256-CTR keystream of a fixed passphrase, via openssl) in 5 files, plus busybox;
#   3. `rbuild import`s it into a scratch store (one gzip layer);
#   4. per round, starts a fresh docker-registry on a free loopback port (empty storage, so no
#      tool can mount blobs from an earlier round);
#   5. N rounds (default 5), the two tools interleaved (alternating which goes first):
#        push:    rbuild push NAME HOST/rb-push:1   vs  skopeo copy oci:ROOT:NAME docker://HOST/sk-push:1
#        pull:    rbuild pull into a fresh store               vs  skopeo copy docker://... oci:FRESH_DIR
#        re-push: rbuild push of the unchanged image to a repository that has it (whole process)
#   6. prints median and min-max per case and the rbuild/skopeo ratio of the medians, and
#      appends a dated entry to bench/RESULTS.md.
#
# Needs: docker-registry, skopeo, openssl, busybox-static (Debian packages), cargo.
# Usage: bench/pullpush.sh            (N=5 SIZE_MB=500 by default; override via environment)
set -euo pipefail

N=${N:-5}
SIZE_MB=${SIZE_MB:-500}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
for tool in docker-registry skopeo openssl; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool (apt-get install ${tool/openssl/openssl})" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "bench needs /bin/busybox (apt-get install busybox-static)" >&2; exit 1; }
if [ -z "${RBUILD:-}" ]; then
  (cd "$REPO" && cargo build --release --quiet --bin rbuild)
  RBUILD=$REPO/target/release/rbuild
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rbuild-bench-XXXXXX")
REG_PID=
cleanup() { [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# 2. Deterministic content.
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/data"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
per=$((SIZE_MB / 5))
for i in 1 2 3 4 5; do
  # openssl dies of SIGPIPE when head has enough: not an error.
  { openssl enc -aes-256-ctr -pass "pass:rbuild-bench-$i" -nosalt -pbkdf2 </dev/zero 2>/dev/null || true; } \
    | head -c $((per * 1024 * 1024)) >"$WORK/rootfs/data/file$i.bin"
done

# 3. Import.
ROOT=$WORK/store
NAME=bench/big:1
SOURCE_DATE_EPOCH=1700000000 "$RBUILD" --root "$ROOT" -q import "$WORK/rootfs" "$NAME" >/dev/null
FULL=docker.io/bench/big:1

# 4. Registries: a fresh one (new port, empty storage) per round, so that neither tool can
# mount blobs from an earlier round's repository (skopeo remembers blob locations per registry).
REG_N=0
start_registry() {
  [ -n "$REG_PID" ] && { kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true; }
  REG_N=$((REG_N + 1))
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  HOST=127.0.0.1:$PORT
  local dir=$WORK/registry-$REG_N
  mkdir -p "$dir"
  cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: $HOST
YML
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  REG_PID=$!
  for _ in $(seq 100); do curl -fs "http://$HOST/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
}

now() { date +%s.%N; }
elapsed() { local s; s=$(now); "$@" >/dev/null 2>"$WORK/last.err" || { cat "$WORK/last.err" >&2; exit 1; }; echo "$(now) - $s" | bc; }

declare -a rb_push sk_push rb_pull sk_pull repush
for i in $(seq "$N"); do
  [ -n "$REG_PID" ] && rm -rf "$WORK/registry-$REG_N"
  start_registry
  # Alternate which tool goes first.
  if [ $((i % 2)) -eq 1 ]; then
    rb_push+=("$(elapsed "$RBUILD" --root "$ROOT" -q push "$FULL" "$HOST/rb-push:1")")
    sk_push+=("$(elapsed skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$ROOT:$FULL" "docker://$HOST/sk-push:1")")
  else
    sk_push+=("$(elapsed skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$ROOT:$FULL" "docker://$HOST/sk-push:1")")
    rb_push+=("$(elapsed "$RBUILD" --root "$ROOT" -q push "$FULL" "$HOST/rb-push:1")")
  fi
  rm -rf "$WORK/pull-rb" "$WORK/pull-sk"
  sync
  if [ $((i % 2)) -eq 1 ]; then
    rb_pull+=("$(elapsed "$RBUILD" --root "$WORK/pull-rb" -q pull "$HOST/rb-push:1")")
    sk_pull+=("$(elapsed skopeo --insecure-policy copy --quiet --src-tls-verify=false "docker://$HOST/rb-push:1" "oci:$WORK/pull-sk:x")")
  else
    sk_pull+=("$(elapsed skopeo --insecure-policy copy --quiet --src-tls-verify=false "docker://$HOST/rb-push:1" "oci:$WORK/pull-sk:x")")
    rb_pull+=("$(elapsed "$RBUILD" --root "$WORK/pull-rb" -q pull "$HOST/rb-push:1")")
  fi
  repush+=("$(elapsed "$RBUILD" --root "$ROOT" -q push "$FULL" "$HOST/rb-push:1")")
  echo "round $i/$N: push ${rb_push[-1]} vs ${sk_push[-1]}, pull ${rb_pull[-1]} vs ${sk_pull[-1]}, re-push ${repush[-1]}" >&2
done

stats() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f %.3f %.3f\n", m, a[1], a[NR]}'; }
read -r rpm rpl rph <<<"$(stats "${rb_push[@]}")"
read -r spm spl sph <<<"$(stats "${sk_push[@]}")"
read -r rlm rll rlh <<<"$(stats "${rb_pull[@]}")"
read -r slm sll slh <<<"$(stats "${sk_pull[@]}")"
read -r rem rel reh <<<"$(stats "${repush[@]}")"
ratio() { echo "scale=3; $1 / $2" | bc; }
SIZE=$(du -sm "$WORK/pull-sk" | cut -f1)
REPORT=$(cat <<TXT
| case | rbuild median (min-max) s | skopeo median (min-max) s | ratio |
|---|---|---|---|
| push ${SIZE} MB | $rpm ($rpl-$rph) | $spm ($spl-$sph) | $(ratio "$rpm" "$spm") |
| pull ${SIZE} MB | $rlm ($rll-$rlh) | $slm ($sll-$slh) | $(ratio "$rlm" "$slm") |
| re-push unchanged | $rem ($rel-$reh) | | |
TXT
)
echo "$REPORT"
RESULTS=$HERE/RESULTS.md
if [ ! -f "$RESULTS" ]; then
  printf '# Benchmark results\n\nEntries appended by the scripts in this folder (newest last).\n' >"$RESULTS"
fi
{
  printf '\n## %s pullpush.sh (N=%s, %s MiB of data, %s, %s cores)\n\n' \
    "$(date -u +%Y-%m-%dT%H:%MZ)" "$N" "$SIZE_MB" "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$(nproc)"
  echo "$REPORT"
} >>"$RESULTS"
