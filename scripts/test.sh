#!/usr/bin/env bash
# Runs every test of the project, from a fresh clone, on a machine with only
# the Rust toolchain, gcc and Python 3:
#   1. a Python virtualenv with the official CloudEvents SDK (interop test),
#   2. every target of the workspace built (binaries, tests, benchmarks),
#   3. every test, the interop one included.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${INLET_VENV:-.venv}"
if ! "$venv/bin/python" -c 'import cloudevents.core' 2>/dev/null; then
    echo "==> creating $venv with the CloudEvents Python SDK" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi

echo "==> building the workspace" >&2
cargo build --workspace --all-targets --locked

echo "==> running the tests" >&2
INLET_PYTHON="$(cd "$venv" && pwd)/bin/python" cargo test --workspace --locked -- --include-ignored
