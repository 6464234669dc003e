#!/usr/bin/env bash
# Compressed request bodies, one command: builds the release server and
# client, then runs bench/compression.py (batches identity/gzip/zstd, the
# p99 of single events beside 8 MiB zstd batches, zstd's own benchmark).
# Python with `zstandard`: $INLET_PYTHON, else the .venv that scripts/test.sh
# makes. Arguments go to compression.py. The decoder against the crates
# called directly: `cargo bench -p inlet-shared --bench coding`.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${INLET_PYTHON:-.venv/bin/python}
"$python" -c 'import zstandard' 2>/dev/null || {
    echo "bench/compression.sh needs a python with zstandard: set INLET_PYTHON (scripts/test.sh makes .venv)" >&2
    exit 1
}
cargo build --release --locked -p inlet-server -p inlet-client
exec "$python" bench/compression.py "$@"
