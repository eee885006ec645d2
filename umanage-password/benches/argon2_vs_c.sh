#!/usr/bin/env bash
# umanage's Argon2id hasher beside the C reference (argon2-cffi = libargon2, via the peer
# bench /work/shared/peers/compute/argon2/bench_c.py), in the same run, interleaved:
# per round the C reference first, then our criterion bench. Prints, one per line,
# `name value unit`: the median and minimum over all samples of all rounds of each side
# (C: one hash per sample; umanage: criterion's samples, time per iteration), and the
# umanage/C ratios of both.
#   ROUNDS   rounds (default 3)     RUNS  C timed runs per round, t3 set (default 5)
#   VENV     python venv with argon2-cffi==25.1.0 (created if missing; default
#            /var/tmp/umanage-pw-venv)
# Run from the workspace root. Needs CARGO_TARGET_DIR (default target/).
set -euo pipefail
ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-5}"
VENV="${VENV:-/var/tmp/umanage-pw-venv}"
PEER="${PEER:-/work/shared/peers/compute/argon2/bench_c.py}"
TARGET="${CARGO_TARGET_DIR:-target}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install --quiet 'argon2-cffi==25.1.0' >&2
fi
cargo bench -p umanage-password --bench argon2_hash --no-run >&2 2>&1 | tail -1 >&2

echo "load_start $(cut -d' ' -f1 /proc/loadavg) loadavg1"
echo "cpus $(nproc) n"
for ((r = 1; r <= ROUNDS; r++)); do
    "$VENV/bin/python" "$PEER" --runs "$RUNS" --runs-owasp 15 2>>"$WORK/c.err" >/dev/null
    cargo bench -p umanage-password --bench argon2_hash -- --warm-up-time 1 \
        --measurement-time 5 'argon2id/' >"$WORK/rs.$r.out" 2>&1
    for set in t3_m65536_p4 owasp_t2_m19456_p1; do
        # every criterion sample of this round: total time / iterations, in ms
        "$VENV/bin/python" -c '
import json, sys
d = json.load(open(sys.argv[1]))
for t, n in zip(d["times"], d["iters"]):
    print("sample umanage_%s %.3f" % (sys.argv[2], t / n / 1e6))' \
            "$TARGET/criterion/argon2id/$set/new/sample.json" "$set" >>"$WORK/rs.samples"
    done
done
echo "load_end $(cut -d' ' -f1 /proc/loadavg) loadavg1"

"$VENV/bin/python" - "$WORK/c.err" "$WORK/rs.samples" <<'PY'
import statistics, sys
c, rs = {}, {}
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 3 and f[0] == "sample" and not f[1].endswith("_cpu"):
        c.setdefault(f[1].removeprefix("argon2_c_ref_"), []).append(float(f[2]))
for line in open(sys.argv[2]):
    _, name, ms = line.split()
    rs.setdefault(name.removeprefix("umanage_"), []).append(float(ms))
for s in ("t3_m65536_p4", "owasp_t2_m19456_p1"):
    cm, rm = statistics.median(c[s]), statistics.median(rs[s])
    print(f"argon2_c_ref_{s} {cm:.1f} ms")
    print(f"argon2_c_ref_{s}_min {min(c[s]):.1f} ms")
    print(f"argon2_umanage_{s} {rm:.1f} ms")
    print(f"argon2_umanage_{s}_min {min(rs[s]):.1f} ms")
    print(f"argon2_ratio_umanage_over_c_ref_{s} {rm / cm:.2f} x")
    print(f"argon2_ratio_min_umanage_over_c_ref_{s} {min(rs[s]) / min(c[s]):.2f} x")
PY
