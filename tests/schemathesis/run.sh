#!/usr/bin/env bash
# Runs schemathesis (tests/schemathesis/schemathesis.toml) against the real
# inlet-server with docs/openapi.yaml: starts the server on a free port with
# the memory store, fuzzes every operation, stops the server.
#
# usage: tests/schemathesis/run.sh SERVER_BINARY VENV_BIN_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
server_bin=$1
venv_bin=$2

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

"$server_bin" --listen 127.0.0.1:0 --store memory >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
addr=""
for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$work/stdout")
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "inlet-server did not start:" >&2
    cat "$work/stderr" >&2
    exit 1
fi

# The document under test is the one the server serves.
"$venv_bin/python" - "$addr" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}/openapi.yaml") as r:
    served = r.read()
with open("docs/openapi.yaml", "rb") as f:
    assert served == f.read(), "GET /openapi.yaml differs from docs/openapi.yaml"
PY

status=0
# /events/stream is excluded: its 200 never ends (tests/tests/stream.rs
# covers it, and tests/tests/openapi.rs checks that it is routed).
"$venv_bin/schemathesis" --config-file tests/schemathesis/schemathesis.toml --no-color run docs/openapi.yaml \
    --url "http://$addr" --report-dir "$work/report" --exclude-path /events/stream || status=$?
if [ "$status" -ne 0 ]; then
    echo "schemathesis failed; the server's log:" >&2
    tail -n 50 "$work/stderr" >&2
fi
exit "$status"
