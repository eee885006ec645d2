#!/usr/bin/env bash
# Redis session validation (umanage-session) beside redis-benchmark GET, in one run,
# against a throwaway redis-server on 127.0.0.1:${PORT:-6390} (stopped by its pid at the end).
#
#   bash benches/session_compare.sh            # REPEAT=3 rounds, interleaved
#
# Prints redis-benchmark's `GET: N requests per second` and the load driver's
# `umanage_session_validate ops_per_sec=... p50_ms=... p99_ms=...` lines per round.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-6390}"
REPEAT="${REPEAT:-3}"
RDIR="$(mktemp -d)"
redis-server --port "$PORT" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
  --dir "$RDIR" --pidfile "$RDIR/redis.pid" >/dev/null
trap 'kill "$(cat "$RDIR/redis.pid")" 2>/dev/null || true; rm -rf "$RDIR"' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

cargo bench -p umanage --bench session_validate --no-default-features --features session,memory,redis --no-run >/dev/null 2>&1
export UMANAGE_BENCH_REDIS_URL="redis://127.0.0.1:$PORT"
for round in $(seq "$REPEAT"); do
  echo "round $round"
  redis-benchmark -h 127.0.0.1 -p "$PORT" -t get -c 50 -n 200000 -q
  SESSION_LOAD_ONLY=1 CONCURRENCY=50 cargo bench -p umanage --bench session_validate --no-default-features --features session,memory,redis 2>/dev/null \
    | grep '^umanage_session_validate'
  SESSION_LOAD_ONLY=1 CONCURRENCY=50 CONNS=4 cargo bench -p umanage --bench session_validate --no-default-features --features session,memory,redis 2>/dev/null \
    | grep '^umanage_session_validate'
done
