#!/usr/bin/env bash
# p99 of single-event ingest while the retention job deletes a large
# backlog, against the same ingest without it (issue 16).
#
# 1. preloads PRELOAD events into a fresh SQLite store (batches of 100);
# 2. baseline: restarts on that store without --retention and runs
#    `inlet-client bench` (single events, open loop at RATE events/s) for
#    DURATION;
# 3. waits 2 s, restarts with `--retention 1s` (every event stored is now
#    expired: the job starts deleting at once, 1,000 rows a batch between
#    commit groups) and runs the same bench while it deletes.
# Prints events/s, p50, p99, p99.9 and max of both runs, and how many rows
# the job deleted during the second.
#
# usage: bench/retention.sh [PRELOAD] [DURATION]      e.g. bench/retention.sh 2000000 20s
# Environment: RATE (events/s, default 2000), CONNECTIONS (default 16),
#   SYNC (full|normal, default full), PROFILE (release|debug, default release).
set -euo pipefail
cd "$(dirname "$0")/.."
preload=${1:-1000000}
duration=${2:-10s}
rate=${RATE:-2000}
connections=${CONNECTIONS:-16}
sync=${SYNC:-full}
profile=${PROFILE:-release}
if [ "$profile" = release ]; then
    cargo build --release --locked -q -p inlet-server -p inlet-client
else
    cargo build --locked -q -p inlet-server -p inlet-client
fi
bin=target/$profile
work=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

start() {
    "$bin/inlet-server" --listen 127.0.0.1:0 --store sqlite --data-dir "$work/data" --sync "$sync" "$@" \
        >"$work/server.out" 2>>"$work/server.log" &
    pid=$!
    addr=""
    for _ in $(seq 600); do
        addr=$(sed -n 's/^listening on //p' "$work/server.out" 2>/dev/null)
        [ -n "$addr" ] && return
        sleep 0.1
    done
    echo "server did not start" >&2
    cat "$work/server.log" >&2
    exit 1
}

stop() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
}

rows() {
    python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM events").fetchone()[0])' \
        "$work/data/events.sqlite3"
}

bench() {
    "$bin/inlet-client" bench --server "$addr" --connections "$connections" --rate "$rate" --duration "$duration" --json
}

echo "preloading $preload events..." >&2
start
"$bin/inlet-client" bench --server "$addr" --connections 8 --batch 100 --requests $(((preload + 99) / 100)) --json \
    >"$work/preload.json"
stop

echo "baseline: $duration at $rate events/s, no retention..." >&2
start
bench >"$work/base.json"
stop
before=$(rows)

sleep 2
echo "during deletion: $duration at $rate events/s, --retention 1s over $before expired rows..." >&2
start --retention 1s
bench >"$work/during.json"
stop
after=$(rows)

python3 - "$work/base.json" "$work/during.json" "$before" "$after" <<'PY'
import json, sys
base, during = (json.load(open(p)) for p in sys.argv[1:3])
before, after = int(sys.argv[3]), int(sys.argv[4])
print("| run | events/s | p50 ms | p99 ms | p99.9 ms | max ms |")
print("|---|---|---|---|---|---|")
for name, r in (("no retention", base), ("retention deleting", during)):
    l = r["latency_ms"]
    print(f"| {name} | {r['events_per_s']:,.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['p99_9']:.2f} | {l['max']:.2f} |")
print(f"rows deleted during the second run: {before + during['events'] - after:,} "
      f"(stored before it: {before:,}, after it: {after:,})")
PY
