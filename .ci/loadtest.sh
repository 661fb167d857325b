#!/usr/bin/env bash
# Load benchmark of `keyward serve` on loopback: 100,000 keys (SEED users, Basic email:key), wrk
# against the forward-auth endpoint and against /healthz of the same server in the same run. Bounded
# in time (DURATION seconds per endpoint). Not run by CI (CI builds the serve example it uses).
#
#   bash .ci/loadtest.sh [KEYS] [DURATION] [CONNECTIONS]
# Environment: LOG=1 keeps the decision log on (written to a file), WORKERS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-100000}; DURATION=${2:-10}; CONNS=${3:-32}; WORKERS=${WORKERS:-2}
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
cargo build -q --release --features server --example serve
SERVE=target/release/examples/serve
WORK=$(mktemp -d); PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

start=$(date +%s)
"$SERVE" load-fixtures --db "$WORK/db" --policy policies/seed-platform.policy --count "$KEYS" --sample 10000 >"$WORK/sample"
echo "setup: $KEYS keys in $(( $(date +%s) - start )) s"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
FLAGS=(--workers "$WORKERS" --no-watch)
[ "${LOG:-0}" = 1 ] || FLAGS+=(--no-decision-log)
RUST_LOG=info "$SERVE" --db "$WORK/db" --policy policies/seed-platform.policy --listen "127.0.0.1:$PORT" "${FLAGS[@]}" 2>"$WORK/serve.log" &
PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

# The same request shape for both endpoints (same headers, same wrk work): only the path differs.
python3 - "$WORK/sample" >"$WORK/requests.lua" <<'PY'
import base64, sys
lines = [l.strip().split(":") for l in open(sys.argv[1]) if l.strip()]
print("local hdrs = {")
for login, key, org in lines:
    auth = base64.b64encode(f"{login}:{key}".encode()).decode()
    print(f'  {{["Authorization"]="Basic {auth}", ["X-Original-Method"]="GET", ["X-Original-URI"]="/api/v3/organizations/{org}/"}},')
print("}")
print("""
local i = 0
local path = os.getenv("KW_PATH")
request = function()
  i = i % #hdrs + 1
  return wrk.format("GET", path, hdrs[i])
end
""")
PY
# Warm the key cache (every sampled key once), then measure each endpoint.
KW_PATH=/auth wrk -t1 -c4 -d2s -s "$WORK/requests.lua" "http://127.0.0.1:$PORT" >/dev/null
for path in /healthz /auth /healthz /auth; do
    out=$(KW_PATH=$path wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/requests.lua" "http://127.0.0.1:$PORT")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    printf '%-8s %10s req/s   p99 %8s   non-2xx %s\n' "$path" "$rps" "$p99" "${non2xx:-0}"
done
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^keyward_decisions_total\{outcome="allow"|_count ' || true
