#!/usr/bin/env bash
# Builds inlet (release) and benchmarks every store with inlet-client bench
# (bench/stores.py). Needs nats-server for the JetStream rows.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p inlet-server -p inlet-client
exec python3 bench/stores.py "$@"
