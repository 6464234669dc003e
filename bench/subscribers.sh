#!/usr/bin/env bash
# Builds inlet (release) and measures ingest latency with 50 live
# subscribers (one stalled) against none (bench/subscribers.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p inlet-server -p inlet-client
exec python3 bench/subscribers.py "$@"
