#!/usr/bin/env bash
# Installs the real clients the loopback tests drive (tests/server.rs, tests/layer.rs): curl and
# Python `requests`. Under CI those tests fail rather than skip when a client is missing.
set -euo pipefail
if ! command -v curl >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl
fi
if ! python3 -c 'import requests' 2>/dev/null; then
    python3 -m pip install --quiet requests
fi
python3 -c 'import requests; print("python requests", requests.__version__)'
