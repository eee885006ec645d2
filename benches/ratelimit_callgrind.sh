#!/usr/bin/env bash
# Instructions per keyed GCRA check, umanage's memory limiter beside governor, counted by
# callgrind (load-independent). Each loop runs N checks (default 200000) of one hot key or
# of 10,000 keys round robin, in the `ratelimit` bench binary (`RATELIMIT_PROFILE=N`).
#
#   bash benches/ratelimit_callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-200000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/umanage-target}"
BIN="$(cargo bench --bench ratelimit --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*ratelimit-[^"]*"' | head -1 | cut -d'"' -f4)"
[ -x "$BIN" ] || { echo "bench binary not found" >&2; exit 1; }
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
for f in prof_governor_hot prof_umanage_hot prof_governor_string_10k prof_umanage_10k; do
  RATELIMIT_PROFILE="$N" valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect="*${f}*" --callgrind-out-file="$OUT/$f.out" "$BIN" >/dev/null 2>&1
  ir="$(callgrind_annotate "$OUT/$f.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')"
  awk -v f="$f" -v ir="$ir" -v n="$N" 'BEGIN { printf "%-26s %8.1f instructions/check\n", f, ir / n }'
done
