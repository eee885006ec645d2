#!/usr/bin/env bash
# Load benchmark of examples/server on Redis + Postgres, driven by wrk.
#
#   bash examples/server/load.sh            # defaults below; prints the figures and `uptime`
#   DURATION=30s CONNS=128 bash examples/server/load.sh
#   ACCOUNT_CACHE_TTL=0s bash examples/server/load.sh   # /v1/me reads Postgres every time
#
# What it does:
#   1. builds the server in release (`cargo build --release --example server --all-features`);
#   2. creates a scratch Postgres database and a private Redis key prefix, writes a config
#      (rate limits raised so the limiter admits the load; the hashing pool at 2 slots with a
#      250 ms queue timeout), starts the server on $PORT;
#   3. registers a user and logs in (curl);
#   4. GET /v1/me with the bearer token: wrk -t$THREADS -c$CONNS -d$DURATION --latency
#      (every request: rate-limit check on Redis, session validation on Redis, account read
#      on Postgres, audit-free);
#   5. POST /v1/sessions (Argon2id at the SDK defaults m=64 MiB t=3 p=4) at 2 connections
#      (= the pool size: throughput without queueing), then at 64 connections (overload:
#      what the pool answers when full), counting status codes;
#   6. stops the server, drops the database and deletes the Redis keys.
# Needs: wrk (installed from Debian with apt-get if missing), curl, psql, a Redis and a
# Postgres on 127.0.0.1 (the test services).
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/umanage-target}"
PORT="${PORT:-18080}"
DURATION="${DURATION:-20s}"
LOGIN_DURATION="${LOGIN_DURATION:-15s}"
THREADS="${THREADS:-2}"
CONNS="${CONNS:-64}"
# GET /v1/me's account cache ("0s" reads the account from Postgres on every request)
ACCOUNT_CACHE_TTL="${ACCOUNT_CACHE_TTL:-1s}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
PG_BASE="${PG_BASE:-postgres://postgres@127.0.0.1:5432}"
DB="umanage_load_$$"
PREFIX="umanage-load-$$"
WORK="$(mktemp -d)"
BASE="http://127.0.0.1:$PORT"

if ! command -v wrk >/dev/null; then
    echo "load: installing wrk from Debian"
    apt-get update -qq && apt-get install -y -qq wrk
fi

server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    psql -q "$PG_BASE/postgres" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
    if command -v redis-cli >/dev/null; then
        redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "load: building the server (release)"
cargo build --release --example server --all-features -q
BIN="$CARGO_TARGET_DIR/release/examples/server"

psql -q "$PG_BASE/postgres" -c "CREATE DATABASE $DB" >/dev/null

cat >"$WORK/umanage.toml" <<EOF
listen = "127.0.0.1:$PORT"
redis_url = "$REDIS_URL"
redis_key_prefix = "$PREFIX"
database_url = "$PG_BASE/$DB"
[rate_limits]
requests_per_minute = 100000000
logins_per_minute = 10000
logins_per_account = 10000
[hashing.pool]
max_concurrent = 2
queue_timeout = "250ms"
[http]
secure_cookie = false
account_cache_ttl = "$ACCOUNT_CACHE_TTL"
EOF

# spray detection on Redis needs the shared digest key (a fresh one per run)
UMANAGE_SPRAY_KEY="${UMANAGE_SPRAY_KEY:-$(head -c 32 /dev/urandom | base64)}" \
    "$BIN" --config "$WORK/umanage.toml" >"$WORK/server.log" 2>&1 &
server_pid=$!
up=""
for _ in $(seq 1 300); do
    if curl -fsS "$BASE/healthz" >/dev/null 2>&1; then up=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$up" ]]; then
    echo "load: the server did not come up:" >&2
    cat "$WORK/server.log" >&2
    exit 1
fi
curl -fsS "$BASE/readyz" >/dev/null

PASSWORD="violet meadow quartz 9 ripple"
curl -fsS -X POST "$BASE/v1/users" -H 'Content-Type: application/json' \
    -d "{\"username\":\"benchuser\",\"email\":\"bench@example.com\",\"password\":\"$PASSWORD\"}" >/dev/null
TOKEN="$(curl -fsS -X POST "$BASE/v1/sessions" -H 'Content-Type: application/json' \
    -d "{\"login\":\"benchuser\",\"password\":\"$PASSWORD\"}" | sed -E 's/.*"token":"([^"]+)".*/\1/')"
curl -fsS "$BASE/v1/me" -H "Authorization: Bearer $TOKEN" >/dev/null

cat >"$WORK/login.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"login":"benchuser","password":"$PASSWORD"}'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) s201 = 0; s503 = 0; s429 = 0; other = 0 end
function response(status, headers, body)
  if status == 201 then s201 = s201 + 1
  elseif status == 503 then s503 = s503 + 1
  elseif status == 429 then s429 = s429 + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, b, c, d = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("s201"); b = b + t:get("s503"); c = c + t:get("s429"); d = d + t:get("other")
  end
  io.write(string.format("status: 201=%d 503(busy)=%d 429=%d other=%d\n", a, b, c, d))
end
EOF

echo
echo "== uptime before: $(uptime)"
echo "== GET /v1/me: wrk -t$THREADS -c$CONNS -d$DURATION --latency"
wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "$BASE/v1/me"
echo "== uptime after: $(uptime)"
echo
echo "== POST /v1/sessions at the pool size: wrk -t1 -c2 -d$LOGIN_DURATION"
wrk -t1 -c2 -d"$LOGIN_DURATION" --latency -s "$WORK/login.lua" "$BASE/v1/sessions"
echo
echo "== POST /v1/sessions overloaded: wrk -t2 -c64 -d$LOGIN_DURATION (pool 2, queue timeout 250 ms)"
wrk -t2 -c64 -d"$LOGIN_DURATION" --latency -s "$WORK/login.lua" "$BASE/v1/sessions"
echo "== a busy answer:"
pids=()
for _ in $(seq 1 12); do
    curl -s -o /dev/null -X POST "$BASE/v1/sessions" -H 'Content-Type: application/json' \
        -d "{\"login\":\"benchuser\",\"password\":\"$PASSWORD\"}" &
    pids+=($!)
done
curl -s -i -X POST "$BASE/v1/sessions" -H 'Content-Type: application/json' \
    -d "{\"login\":\"benchuser\",\"password\":\"$PASSWORD\"}" | grep -iE '^(HTTP|retry-after|content-type)|"code"' || true
wait "${pids[@]}"
echo "== uptime at the end: $(uptime)"
