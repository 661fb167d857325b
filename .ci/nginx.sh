#!/usr/bin/env bash
# nginx `auth_request` in front of a tiny upstream, with `keyward serve` (examples/serve.rs)
# deciding, one server block per seed product. Checks that each product's credential style is passed
# or refused as its policy says, then stops everything (trap). Loopback only.
#
#   bash .ci/nginx.sh            # from the repository root; builds the serve example if needed
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
bash .ci/python-clients.sh >/dev/null

cargo build -q --features server --example serve
SERVE=target/debug/examples/serve

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
      sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}

# The upstream: answers 200 to any method, logging the identity nginx passed on.
UP=$(free_port)
cat >"$WORK/upstream.py" <<'PY'
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def answer(self):
        who = self.headers.get("X-Keyward-Principal", "-") + "/" + self.headers.get("X-Keyward-Role", "-")
        body = ("upstream " + self.command + " " + self.path + " as " + who + "\n").encode()
        self.log_message("upstream %s %s as %s", self.command, self.path, who)
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$WORK/upstream.py" "$UP" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)

PRODUCTS=(seed-platform seatsio api-token cognitive3d)
declare -A KW FRONT
SERVERS=""
for p in "${PRODUCTS[@]}"; do
  "$SERVE" fixtures --db "$WORK/db-$p" --policy "policies/$p.policy" --product "$p" >"$WORK/$p.env"
  KW[$p]=$(free_port)
  FRONT[$p]=$(free_port)
  "$SERVE" --db "$WORK/db-$p" --policy "policies/$p.policy" --listen "127.0.0.1:${KW[$p]}" \
      >"$WORK/keyward-$p.log" 2>&1 &
  PIDS+=($!)
  SERVERS+="
  upstream keyward_$p { server 127.0.0.1:${KW[$p]}; keepalive 16; }
  server {
      listen 127.0.0.1:${FRONT[$p]};
      location / {
          auth_request /_keyward;
          auth_request_set \$kw_principal \$upstream_http_x_keyward_principal;
          auth_request_set \$kw_key \$upstream_http_x_keyward_key;
          auth_request_set \$kw_role \$upstream_http_x_keyward_role;
          error_page 401 403 = @keyward_denied;
          proxy_set_header X-Keyward-Principal \$kw_principal;
          proxy_set_header X-Keyward-Key \$kw_key;
          proxy_set_header X-Keyward-Role \$kw_role;
          proxy_pass http://127.0.0.1:$UP;
      }
      location = /_keyward {
          internal;
          proxy_pass http://keyward_$p/auth/nginx;
          proxy_http_version 1.1;
          proxy_set_header Connection \"\";
          proxy_pass_request_body off;
          proxy_set_header Content-Length \"\";
          proxy_set_header X-Original-Method \$request_method;
          proxy_set_header X-Original-URI \$request_uri;
      }
      location @keyward_denied {
          # A named location takes no URI in proxy_pass: rewrite the path (\$request_uri, which
          # carries the original URI, is not changed by a rewrite).
          rewrite ^ /auth/nginx/deny break;
          proxy_pass http://keyward_$p;
          proxy_http_version 1.1;
          proxy_set_header Connection \"\";
          proxy_pass_request_body off;
          proxy_set_header Content-Length \"\";
          proxy_set_header X-Original-Method \$request_method;
          proxy_set_header X-Original-URI \$request_uri;
      }
  }"
done

cat >"$WORK/nginx.conf" <<CONF
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
worker_processes 1;
events { worker_connections 256; }
http {
  access_log $WORK/nginx-access.log;
  client_body_temp_path $WORK/tmp; proxy_temp_path $WORK/tmp; fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp; scgi_temp_path $WORK/tmp;
  $SERVERS
}
CONF
mkdir -p "$WORK/tmp"
"$NGINX" -t -q -c "$WORK/nginx.conf" -p "$WORK"
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK"
for p in "${PRODUCTS[@]}"; do wait_port "${KW[$p]}"; wait_port "${FRONT[$p]}"; done
wait_port "$UP"

PASS=0 FAIL=0
# expect PRODUCT STATUS DESCRIPTION -- curl args...
expect() {
  local p=$1 want=$2 what=$3; shift 4
  local got
  got=$(curl -s -o "$WORK/body" -w '%{http_code}' --max-time 10 "$@") || got="curl-error"
  if [ "$got" = "$want" ]; then
      PASS=$((PASS + 1)); echo "ok   $p: $what -> $got"
  else
      FAIL=$((FAIL + 1)); echo "FAIL $p: $what -> $got, wanted $want: $(head -c 300 "$WORK/body")"
  fi
}
# pyexpect PRODUCT STATUS DESCRIPTION PYTHON-EXPRESSION (with `requests`, `url`, `env`)
pyexpect() {
  local p=$1 want=$2 what=$3 expr=$4 got
  got=$(URL="http://127.0.0.1:${FRONT[$p]}" ENVFILE="$WORK/$p.env" python3 - "$expr" <<'PY'
import os, sys, shlex, requests
from requests.auth import HTTPBasicAuth
env = dict(l.split("=", 1) for l in open(os.environ["ENVFILE"]).read().split("\n") if "=" in l)
env = {k: shlex.split(v)[0] for k, v in env.items()}
url = os.environ["URL"]
r = eval(sys.argv[1])
print(r.status_code)
PY
) || got="python-error"
  if [ "$got" = "$want" ]; then
      PASS=$((PASS + 1)); echo "ok   $p: $what -> $got"
  else
      FAIL=$((FAIL + 1)); echo "FAIL $p: $what -> $got, wanted $want"
  fi
}

# SEED: Basic base64(email:key), redirect to /app/login when authentication fails.
. "$WORK/seed-platform.env"
U="http://127.0.0.1:${FRONT[seed-platform]}"
expect seed-platform 200 "curl -u email:key, member views org 6" -- -u "$SEED_EMAIL:$SEED_KEY" "$U/api/v3/organizations/6/"
expect seed-platform 200 "seed document's urlsafe header" -- -H "Authorization: $SEED_DOC_HEADER" "$U/api/v3/cycles/?organization_id=6"
expect seed-platform 403 "member on org 7" -- -u "$SEED_EMAIL:$SEED_KEY" "$U/api/v3/organizations/7/"
if grep -q '"code":"no_role"' "$WORK/body"; then PASS=$((PASS + 1)); echo "ok   seed-platform: the policy's JSON body reaches the client"
else FAIL=$((FAIL + 1)); echo "FAIL seed-platform: deny body $(cat "$WORK/body")"; fi
expect seed-platform 403 "viewer creates a cycle" -- -X POST -u "$SEED_VIEWER_EMAIL:$SEED_VIEWER_KEY" "$U/api/v3/cycles/?organization_id=6"
expect seed-platform 302 "wrong key redirects to /app/login" -- -u "$SEED_EMAIL:0000000000000000000000000000000000000000" "$U/api/v3/organizations/6/"
expect seed-platform 400 "dot segments refused" -- --path-as-is -u "$SEED_EMAIL:$SEED_KEY" "$U/api/v3/organizations/6/../7/"
loc=$(curl -s -o /dev/null -w '%{redirect_url}' "$U/api/v3/organizations/6/")
case "$loc" in */app/login) PASS=$((PASS + 1)); echo "ok   seed-platform: Location is /app/login";; *) FAIL=$((FAIL + 1)); echo "FAIL seed-platform: Location $loc";; esac
pyexpect seed-platform 200 "requests HTTPBasicAuth(email, key)" 'requests.post(url + "/api/v3/cycles/?organization_id=6", auth=HTTPBasicAuth(env["SEED_EMAIL"], env["SEED_KEY"]), allow_redirects=False)'
pyexpect seed-platform 200 "requests with the plain header" 'requests.get(url + "/api/v3/organizations/6/", headers={"Authorization": env["SEED_DOC_HEADER"]}, allow_redirects=False)'
pyexpect seed-platform 302 "requests with a wrong email" 'requests.get(url + "/api/v3/organizations/6/", auth=HTTPBasicAuth("else@seed-platform.org", env["SEED_KEY"]), allow_redirects=False)'

# seats.io: the secret key as the Basic username, empty password; X-Workspace-Key with the admin key.
. "$WORK/seatsio.env"
U="http://127.0.0.1:${FRONT[seatsio]}"
expect seatsio 200 "curl -u KEY: books" -- -X POST -u "$WS_SECRET:" "$U/events/concert/actions/book"
expect seatsio 200 "admin key + X-Workspace-Key" -- -X DELETE -u "$ADMIN_SECRET:" -H "X-Workspace-Key: $WS2_PUBLIC" "$U/events/concert"
expect seatsio 401 "workspace key + X-Workspace-Key" -- -u "$WS_SECRET:" -H "X-Workspace-Key: $WS2_PUBLIC" "$U/events/concert"
expect seatsio 401 "no credential" -- "$U/events/concert"
expect seatsio 403 "no route (deny by default)" -- -u "$WS_SECRET:" "$U/workspaces"
pyexpect seatsio 200 "requests auth=(secret, '')" 'requests.post(url + "/events/concert/actions/release", auth=(env["WS_SECRET"], ""))'

# Fine-grained API tokens: `Authorization: apiToken T`, or the apiToken query parameter.
. "$WORK/api-token.env"
U="http://127.0.0.1:${FRONT[api-token]}"
expect api-token 200 "apiToken header, reports" -- -H "Authorization: apiToken $TOKEN_REPORTS" "$U/api/environments/prod/projects/web/reports"
expect api-token 403 "reports-only token reads data" -- -H "Authorization: apiToken $TOKEN_REPORTS" "$U/api/environments/prod/projects/web/data"
expect api-token 200 "query parameter" -- "$U/api/environments/prod/projects/web/reports?apiToken=$TOKEN_REPORTS"
# Change the last character of a real token (to a different one: a token may already end in `x`).
case "${TOKEN_FULL: -1}" in x) SWAP=y ;; *) SWAP=x ;; esac
expect api-token 401 "forged token (checksum)" -- -H "Authorization: apiToken ${TOKEN_FULL%?}$SWAP" "$U/api/environments/prod/projects/web/reports"
pyexpect api-token 200 "requests with a plain header" 'requests.post(url + "/api/environments/prod/projects/web/jobs", headers={"Authorization": "apiToken " + env["TOKEN_FULL"]})'

# Cognitive3D: `APIKEY:ORGANIZATION key`, or the orgkey- key as the whole header.
. "$WORK/cognitive3d.env"
U="http://127.0.0.1:${FRONT[cognitive3d]}"
expect cognitive3d 200 "APIKEY:ORGANIZATION" -- -H "Authorization: APIKEY:ORGANIZATION $C3D_ADMIN_KEY" "$U/v0/organizations/6"
expect cognitive3d 403 "key outside its organization" -- -H "Authorization: APIKEY:ORGANIZATION $C3D_ADMIN_KEY" "$U/v0/organizations/7"
expect cognitive3d 403 "read-only key writes" -- -X PUT -H "Authorization: $C3D_OBSERVER_KEY" "$U/v0/organizations/6/projects/3/scenes/1"
expect cognitive3d 403 "sessions are immutable" -- -X DELETE -H "Authorization: $C3D_MEMBER_KEY" "$U/v0/organizations/6/projects/3/scenes/1/sessions/5"
pyexpect cognitive3d 200 "requests, raw key as the header" 'requests.put(url + "/v0/organizations/6/projects/3/scenes/1", headers={"Authorization": env["C3D_MEMBER_KEY"]})'

# The upstream saw the identity headers nginx set from keyward's answer.
if grep -q 'upstream POST /api/v3/cycles/?organization_id=6 as 1/member' "$WORK/upstream.log"; then
    PASS=$((PASS + 1)); echo "ok   upstream got X-Keyward-Principal and X-Keyward-Role"
else
    FAIL=$((FAIL + 1)); echo "FAIL upstream log:"; cat "$WORK/upstream.log"
fi
if grep -qi 'authorization\|b58f12c3' "$WORK"/keyward-*.log; then echo "FAIL a secret in keyward's log"; FAIL=$((FAIL + 1)); fi

echo "nginx: $PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
