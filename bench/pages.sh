#!/usr/bin/env bash
# Builds inlet-server (release) and runs bench/pages.py: /health latency on
# the worker of GET /events readers of 256 KiB events, and the server's RSS.
# Arguments go to bench/pages.py (e.g. --store sqlite, --readers 4).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p inlet-server
exec python3 bench/pages.py "$@"
