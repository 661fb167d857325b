#!/usr/bin/env bash
# Property-based fuzz of the admin API against docs/openapi.yaml (schemathesis): starts
# examples/admin_server on a loopback port, runs a bounded number of examples per operation, and
# fails on any 5xx answer or any response that does not match the document.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-40}"

if ! command -v st >/dev/null 2>&1 && ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
    python3 -m pip install --quiet schemathesis
fi
if command -v st >/dev/null 2>&1; then ST=(st); else ST=(python3 -m schemathesis.cli); fi

cargo build --quiet --example admin_server --all-features
work="$(mktemp -d)"
server_pid=""
cleanup() {
    touch "$work/stop"
    if [ -n "$server_pid" ]; then
        for _ in $(seq 1 25); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
        kill "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
target/debug/examples/admin_server "$work" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$work/addr" ] && break; sleep 0.1; done
[ -s "$work/addr" ] || { cat "$work/server.log"; echo "admin_server did not start"; exit 1; }
addr="$(cat "$work/addr")"
key="$(cat "$work/key")"
echo "fuzzing the admin API at http://$addr/keyward/v1 ($MAX_EXAMPLES examples per operation)"

timeout 600 "${ST[@]}" run docs/openapi.yaml \
    --url "http://$addr/keyward/v1" \
    --header "Authorization: apiToken $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$MAX_EXAMPLES" \
    --seed 1 \
    --no-color
