#!/usr/bin/env bash
# Load benchmark of `keyward serve` on loopback: 100,000 keys (SEED users, Basic email:key), wrk
# against the forward-auth endpoint and against /healthz of the same server, bounded in time. Not run
# by CI (CI builds the serve example it uses).
#
# This 2-core VM changes speed by up to 60% from one second to the next (everything, wrk and the
# kernel included, costs more per request; no steal time is reported), so the endpoints are measured
# in short runs that alternate, /healthz first and last, and each /auth run is compared with the mean
# of the /healthz runs just before and after it (a drift during the three runs cancels to first
# order). The figure is the median of those ratios, with their quartiles, beside the median req/s and
# p99 of each endpoint.
#
#   bash .ci/loadtest.sh [KEYS] [DURATION] [CONNECTIONS] [ROUNDS]
# Environment: LOG=0 turns the decision log off (on by default, written to a file), WORKERS
# (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-100000}; DURATION=${2:-2}; CONNS=${3:-32}; ROUNDS=${4:-20}; WORKERS=${WORKERS:-2}
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
[ "${LOG:-1}" = 1 ] || FLAGS+=(--no-decision-log)
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
# Warm the key cache (every sampled key once), then measure the endpoints in alternating runs.
KW_PATH=/auth wrk -t1 -c4 -d2s -s "$WORK/requests.lua" "http://127.0.0.1:$PORT" >/dev/null
# Server CPU (user + system, in clock ticks) so far, from /proc.
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
measure() { # PATH -> "req/s p99 cpu" (p99 in ms; cpu: the server's CPU time per request, in µs)
    local out t0 t1
    t0=$(ticks)
    out=$(KW_PATH=$1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/requests.lua" "http://127.0.0.1:$PORT")
    t1=$(ticks)
    if echo "$out" | grep -q "Non-2xx"; then echo "$1: non-2xx answers" >&2; echo "$out" >&2; exit 1; fi
    echo "$out" | awk -v cpu=$(( (t1 - t0) * TICK_US )) '/requests in/ {n=$1} /Requests\/sec/ {rps=$2} $1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else {sub(/s$/,"",v); v*=1000}; p99=v} END {print rps, p99, cpu / n}'
}
echo "round  /healthz req/s  p99 ms  cpu µs     /auth req/s  p99 ms  cpu µs   ratio (to the mean of the /healthz runs around it)"
read -r h hp hc <<<"$(measure /healthz)"
for round in $(seq "$ROUNDS"); do
    read -r a ap ac <<<"$(measure /auth)"
    read -r h2 hp2 hc2 <<<"$(measure /healthz)"
    echo "$round $h $hp $a $ap $h2 $hc $ac $hc2" >>"$WORK/rounds"
    awk -v r="$round" -v h="$h" -v hp="$hp" -v hc="$hc" -v a="$a" -v ap="$ap" -v ac="$ac" -v h2="$h2" \
        'BEGIN {printf "%5d %15.0f %7.2f %7.1f %15.0f %7.2f %7.1f %7.3f\n", r, h, hp, hc, a, ap, ac, 2 * a / (h + h2)}'
    h=$h2; hp=$hp2; hc=$hc2
done
python3 - "$WORK/rounds" <<'PY'
import statistics, sys
rows = [list(map(float, l.split()[1:])) for l in open(sys.argv[1])]
med = lambda i: statistics.median(r[i] for r in rows)
ratios = sorted(2 * r[2] / (r[0] + r[4]) for r in rows)
q = statistics.quantiles(ratios, n=4)
ratio = statistics.median(ratios)
print(f"median  /healthz {med(0):.0f} req/s p99 {med(1):.2f} ms   /auth {med(2):.0f} req/s "
      f"p99 {med(3):.2f} ms   ratio {ratio:.3f} ({(1 - ratio) * 100:.1f}% below /healthz; "
      f"quartiles {q[0]:.3f}-{q[2]:.3f})")
# The server's CPU time per request: what each endpoint costs the server, whatever the machine's
# speed did to throughput (each /auth run against the mean of the /healthz runs around it).
extra = sorted(r[6] - (r[5] + r[7]) / 2 for r in rows)
print(f"server CPU per request (user + system): /healthz {med(5):.1f} µs, /auth {med(6):.1f} µs; "
      f"/auth costs {statistics.median(extra):.1f} µs more (median; quartiles "
      f"{statistics.quantiles(extra, n=4)[0]:.1f}-{statistics.quantiles(extra, n=4)[2]:.1f})")
PY
curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^keyward_decisions_total\{outcome="allow"|_count ' || true
