#!/usr/bin/env bash
# Builds inlet (release) and measures the durable path: the SQLite writer's
# commit groups and commit times under --sync full against the disk's own
# fsync time and the memory store (bench/commits.py).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p inlet-server -p inlet-client
exec python3 bench/commits.py "$@"
