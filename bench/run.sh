#!/usr/bin/env bash
# Builds inlet (release), the axum baseline and the bare loop, and runs the side-by-side
# comparison (bench/compare.py). Needs wrk and nginx (Debian packages:
# `apt-get install wrk nginx-light`). Arguments go to compare.py.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk nginx; do
    command -v "$tool" >/dev/null || { echo "bench/run.sh needs $tool (apt-get install wrk nginx-light)" >&2; exit 1; }
done
cargo build --release --locked -p inlet-server -p inlet-client
cargo build --release --manifest-path bench/axum-baseline/Cargo.toml
cargo build --release --manifest-path bench/bare-loop/Cargo.toml
exec python3 bench/compare.py "$@"
