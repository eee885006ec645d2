#!/usr/bin/env bash
# Redis session validation (umanage-session) beside redis-benchmark GET and the
# tower-sessions Redis store peer (../shared/peers/redis/tower_sessions), in one run,
# interleaved, against one throwaway redis-server on 127.0.0.1:${PORT:-6390} (stopped by
# its pid at the end).
#
#   bash benches/session_compare.sh        # REPEAT=3 rounds
#
# Env: PORT (6390), REPEAT (3), DURATION (5 s per timed line), CONCURRENCY (50),
#      PEERS_DIR (../shared/peers/redis), PEERS_SCRATCH (where the peer's build is kept;
#      default /var/tmp/umanage-peers), CARGO_TARGET_DIR as usual.
# Per round it prints the load average, `redis_benchmark_get`, the three
# `tower_sessions_*` lines and `umanage_session_validate` (JSON and MessagePack
# records), then the ratios of both to redis-benchmark GET and to
# tower_sessions_load_save (the per-request work that matches a validation: load the
# session and write the touched expiry back). At the end: the median of each ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-6390}"
REPEAT="${REPEAT:-3}"
export DURATION="${DURATION:-5}" CONCURRENCY="${CONCURRENCY:-50}"
PEERS_DIR="${PEERS_DIR:-$(cd .. && pwd)/shared/peers/redis}"
[ -d "$PEERS_DIR" ] || PEERS_DIR=/work/shared/peers/redis
export PEERS_SCRATCH="${PEERS_SCRATCH:-/var/tmp/umanage-peers}"
FEATURES=session,memory,redis,msgpack
RDIR="$(mktemp -d)"
redis-server --port "$PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
  --dir "$RDIR" --pidfile "$RDIR/redis.pid" >/dev/null
trap 'kill "$(cat "$RDIR/redis.pid")" 2>/dev/null || true; rm -rf "$RDIR"' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
export REDIS_URL="redis://127.0.0.1:$PORT" UMANAGE_BENCH_REDIS_URL="redis://127.0.0.1:$PORT"

echo "# building (umanage bench, tower-sessions peer)" >&2
cargo bench -p umanage --bench session_validate --no-default-features --features "$FEATURES" --no-run >/dev/null 2>&1
"$PEERS_DIR/tower_sessions/run.sh" --setup >/dev/null 2>&1
redis-server --version
ours() {
  SESSION_LOAD_ONLY=1 cargo bench -p umanage --bench session_validate --no-default-features \
    --features "$FEATURES" 2>/dev/null | grep '^umanage_session_validate'
}
field() { sed -n "s/.*$1 ops_per_sec=\([0-9.]*\).*/\1/p" | head -1; }
ratios_rb=(); ratios_ts=(); ratios_rb_mp=(); ratios_ts_mp=()
for round in $(seq "$REPEAT"); do
  echo "== round $round: $(uptime | sed 's/.*load/load/')"
  rb="$(redis-benchmark -h 127.0.0.1 -p "$PORT" -t get -c "$CONCURRENCY" -n 200000 -r 10000 -P 1 --csv 2>/dev/null \
    | awk -F'"' '$2 == "GET" { print $4 }')"
  echo "redis_benchmark_get ops_per_sec=$rb"
  ts="$("$PEERS_DIR/tower_sessions/run.sh" 2>/dev/null | grep '^tower_sessions_')"
  echo "$ts"
  um="$(ours)"
  echo "$um"
  mp="$(SERIALIZER=msgpack ours | sed 's/^umanage_session_validate/umanage_session_validate_msgpack/')"
  echo "$mp"
  u="$(echo "$um" | field umanage_session_validate)"
  m="$(echo "$mp" | field umanage_session_validate_msgpack)"
  t="$(echo "$ts" | field tower_sessions_load_save)"
  r1="$(echo "scale=3; $u / $rb" | bc)"; r2="$(echo "scale=3; $u / $t" | bc)"
  r3="$(echo "scale=3; $m / $rb" | bc)"; r4="$(echo "scale=3; $m / $t" | bc)"
  echo "ratio umanage/redis_benchmark_get=$r1 umanage/tower_sessions_load_save=$r2 umanage_msgpack/redis_benchmark_get=$r3 umanage_msgpack/tower_sessions_load_save=$r4"
  ratios_rb+=("$r1"); ratios_ts+=("$r2"); ratios_rb_mp+=("$r3"); ratios_ts_mp+=("$r4")
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "== median over $REPEAT rounds: umanage/redis_benchmark_get=$(median "${ratios_rb[@]}")" \
  "umanage/tower_sessions_load_save=$(median "${ratios_ts[@]}")" \
  "umanage_msgpack/redis_benchmark_get=$(median "${ratios_rb_mp[@]}")" \
  "umanage_msgpack/tower_sessions_load_save=$(median "${ratios_ts_mp[@]}")"
echo "== load after: $(uptime | sed 's/.*load/load/')"
