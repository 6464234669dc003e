#!/usr/bin/env bash
# User-space instructions per request of the whole server, from callgrind:
# runs `inlet-server --store memory --workers 1` under callgrind twice, once
# serving N1 and once N2 `POST /events` requests from `inlet-client bench`,
# and divides the difference in instructions by N2 - N1 (so start-up
# cancels out; counting stops before shutdown). Instruction counts do not depend on what else the
# machine is doing, so this measures a change to the hot path on a noisy
# machine where req/s and CPU time cannot.
#
# usage: bench/instructions.sh [N1] [N2] [client args...]
#   e.g. bench/instructions.sh 5000 25000 --pipeline 16 --connections 4
#
# Environment:
#   STORE         the store (default memory; sqlite gets a fresh --data-dir per run)
#   SERVER_ARGS   more inlet-server flags (split on spaces)
#   CLIENT_TOKEN  a token for inlet-client (--token)
#   TOKENS=1      access control on: makes a token with `inlet-server token
#                 new` (scope write), starts the server with --tokens and the
#                 client with that token. Compare with TOKENS unset:
#                   bench/instructions.sh 5000 25000
#                   TOKENS=1 bench/instructions.sh 5000 25000
#   SCHEMAS=0|1   every event is of type com.example.order with the data of
#                 bench/schemas/com.example.order.data (10 properties, 2
#                 nested); SCHEMAS=1 also starts the server with
#                 --schemas bench/schemas, so that data is validated against
#                 bench/schemas/com.example.order.json. Compare:
#                   SCHEMAS=0 bench/instructions.sh 5000 25000
#                   SCHEMAS=1 bench/instructions.sh 5000 25000
set -euo pipefail
cd "$(dirname "$0")/.."
n1=${1:-5000}
n2=${2:-25000}
shift $(($# < 2 ? $# : 2))
command -v valgrind >/dev/null || { echo "bench/instructions.sh needs valgrind" >&2; exit 1; }
cargo build --release --locked -q -p inlet-server -p inlet-client
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

read -r -a server_args <<<"${SERVER_ARGS:-}"
token="${CLIENT_TOKEN:-}"
if [ "${TOKENS:-}" = 1 ]; then
    target/release/inlet-server token new --name bench --scope write >"$work/token.out"
    token=$(head -1 "$work/token.out")
    grep -v '^#' "$work/token.out" | tail -n +2 >"$work/tokens.toml"
    server_args+=(--tokens "$work/tokens.toml")
fi
client_token=()
[ -n "$token" ] && client_token=(--token "$token")
client_data=()
if [ -n "${SCHEMAS:-}" ]; then
    client_data=(--type com.example.order --data "$(cat bench/schemas/com.example.order.data)")
    [ "$SCHEMAS" = 1 ] && server_args+=(--schemas bench/schemas)
fi

instructions() {
    local n=$1
    shift
    local log="$work/server-$n.log"
    valgrind --tool=callgrind --callgrind-out-file="$work/cg-$n.out" \
        target/release/inlet-server --listen 127.0.0.1:0 --store "${STORE:-memory}" --data-dir "$work/data-$n" --workers 1 ${server_args[@]+"${server_args[@]}"} \
        >"$log" 2>"$work/valgrind-$n.log" &
    local pid=$!
    local addr=""
    for _ in $(seq 600); do
        addr=$(sed -n 's/^listening on //p' "$log" 2>/dev/null)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "server did not start" >&2; cat "$work/valgrind-$n.log" >&2; exit 1; }
    target/release/inlet-client bench --server "$addr" --requests "$n" --connections 8 \
        ${client_token[@]+"${client_token[@]}"} ${client_data[@]+"${client_data[@]}"} "$@" --json >"$work/bench-$n.json"
    # Counted up to here (start-up plus requests), not the shutdown, whose
    # cost grows with what the memory store holds.
    callgrind_control --dump "$pid" >/dev/null 2>&1
    kill -TERM "$pid"
    wait "$pid" || true
    awk '/^summary:|^totals:/ {print $2; exit}' "$work/cg-$n.out.1"
}

i1=$(instructions "$n1" "$@")
i2=$(instructions "$n2" "$@")
python3 - "$n1" "$n2" "$i1" "$i2" <<'PY'
import sys
n1, n2, i1, i2 = map(int, sys.argv[1:])
print(f"{n1} requests: {i1:,} instructions; {n2} requests: {i2:,}")
print(f"instructions per request: {(i2 - i1) / (n2 - n1):,.0f}")
PY
