#!/usr/bin/env bash
# HTTPS: inlet against nginx with the same certificate (bench/tls.py). Builds
# inlet (release) first. Needs wrk, nginx and openssl (Debian packages:
# `apt-get install wrk nginx-light openssl`). Arguments go to tls.py, e.g.
# `bench/tls.sh --rounds 1 --duration 3 --idle 500` for a quick look.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk nginx openssl; do
    command -v "$tool" >/dev/null || { echo "bench/tls.sh needs $tool" >&2; exit 1; }
done
cargo build --release --locked -p inlet-server
exec python3 bench/tls.py "$@"
