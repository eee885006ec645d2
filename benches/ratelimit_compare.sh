#!/usr/bin/env bash
# The Redis limiter (GCRA, 10,000 keys, 50 concurrent tasks) beside its peers, in one run,
# interleaved, against a throwaway redis-server on 127.0.0.1:${PORT:-6391} (stopped by its
# pid at the end):
#   * redis-benchmark EVALSHA of `return 1`, -c 50, not pipelined (shared/peers/redis/baseline.sh's op);
#   * rate-limiter-flexible 11.4 on node, one ioredis connection (shared/peers/redis/rlflex_node);
#   * umanage over 1 connection and over CONNS_MANY (4) connections.
#
#   REPEAT=3 bash benches/ratelimit_compare.sh
#
# Every line is `name ops_per_sec=<f> p50_ms=<f> p99_ms=<f>`; `uptime` before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-6391}"
REPEAT="${REPEAT:-3}"
CONNS_MANY="${CONNS_MANY:-4}"
PEERS="${PEERS:-../shared/peers/redis}"
[ -d "$PEERS" ] || PEERS=/work/shared/peers/redis
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/umanage-target}"
export PEERS_SCRATCH="${PEERS_SCRATCH:-/var/tmp/rl-peers}"
mkdir -p "$PEERS_SCRATCH"
RDIR="$(mktemp -d)"
redis-server --port "$PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
  --dir "$RDIR" --pidfile "$RDIR/redis.pid" >/dev/null
trap 'kill "$(cat "$RDIR/redis.pid")" 2>/dev/null || true; rm -rf "$RDIR"' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
export REDIS_URL="redis://127.0.0.1:$PORT" UMANAGE_BENCH_REDIS_URL="redis://127.0.0.1:$PORT"

BIN="$(cargo bench --bench ratelimit --no-run --message-format=json 2>/dev/null \
  | grep -o '"executable":"[^"]*ratelimit-[^"]*"' | head -1 | cut -d'"' -f4)"
[ -x "$BIN" ] || { echo "bench binary not found" >&2; exit 1; }
"$PEERS/rlflex_node/run.sh" --setup >/dev/null
SHA="$(redis-cli -p "$PORT" SCRIPT LOAD 'return 1')"

evalsha() {
  redis-benchmark -h 127.0.0.1 -p "$PORT" -c 50 -n 200000 -P 1 --csv EVALSHA "$SHA" 0 2>/dev/null \
    | awk -F',' '{ for (i = 1; i <= NF; i++) gsub(/"/, "", $i) }
      $1 == "test" { for (i = 1; i <= NF; i++) col[$i] = i; next }
      NF >= 2 { printf "redis_benchmark_evalsha ops_per_sec=%.1f p50_ms=%.3f p99_ms=%.3f\n",
        $(col["rps"]), $(col["p50_latency_ms"]), $(col["p99_latency_ms"]) }'
}

uptime
for round in $(seq "$REPEAT"); do
  echo "# round $round"
  evalsha
  "$PEERS/rlflex_node/run.sh" 2>/dev/null | grep '^rlflex_node_consume_distinct' || true
  RATELIMIT_LOAD_ONLY=1 CONNS=1 "$BIN"
  RATELIMIT_LOAD_ONLY=1 CONNS="$CONNS_MANY" "$BIN"
done
uptime
