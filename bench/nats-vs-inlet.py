#!/usr/bin/env python3
"""inlet's JetStream store against what nats-server itself takes, in one run
(issue 17). For R1 (one nats-server) and R3 (three nodes), every node with
`sync_interval: always`, and for single events and batches of 100, it
alternates, round by round, a raw async-nats publisher (bench/nats-publisher:
64 publishes in flight, or 16 atomic batches of 100 in flight, acks awaited,
230-byte messages with a Nats-Msg-Id) and inlet-client bench (64 connections)
against inlet-server --store jetstream, each on a fresh NATS. Prints medians
and inlet's ratio to the raw publisher, and the time of a 1,000-event
`GET /events` page. Writes bench/results/nats-vs-inlet.json.

Usage: bench/nats-vs-inlet.sh [--rounds N] [--duration S]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from stores import CLIENT, NATS, ROOT, bench, ready, start_inlet, start_nats

PUBLISHER = os.path.join(ROOT, "target/nats-publisher/release/nats-publisher")
# Atomic batches in flight: inlet's --nats-batches-in-flight default (nats-server takes 50 per stream).
BATCHES_IN_FLIGHT = 16


def raw(urls, replicas, batch, duration):
    in_flight = 64 if batch == 1 else BATCHES_IN_FLIGHT
    out = subprocess.run([PUBLISHER, "--url", urls.split(",")[0], "--replicas", str(replicas), "--batch", str(batch),
                          "--in-flight", str(in_flight), "--duration", str(duration)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def page_ms(addr, n=20):
    """Median wall time of GET /events?limit=1000 (the stream holds more)."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with urllib.request.urlopen(f"http://{addr}/events?limit=1000") as r:
            body = json.load(r)
        times.append((time.perf_counter() - t) * 1000)
        assert len(body["events"]) == 1000, len(body["events"])
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    args = ap.parse_args()
    if not NATS:
        raise SystemExit("needs nats-server on PATH or in INLET_NATS_SERVER")
    runs = {(r, b, who): [] for r in (1, 3) for b in (1, 100) for who in ("raw", "inlet")}
    pages = []
    for rnd in range(args.rounds):
        for replicas in (1, 3):
            for batch in (1, 100):
                for who in ("raw", "inlet"):
                    tmp = tempfile.mkdtemp(prefix="inlet-nats-vs-")
                    procs, urls = start_nats(tmp, replicas)
                    inlet = None
                    try:
                        if who == "raw":
                            eps = raw(urls, replicas, batch, args.duration)["events_per_s"]
                        else:
                            inlet, addr = start_inlet(["--store", "jetstream", "--replicas", str(replicas),
                                                       "--nats-url", urls], tmp)
                            ready(addr)
                            eps = bench(addr, batch, args.duration)["events_per_s"]
                            if replicas == 1 and batch == 100:
                                pages.append(page_ms(addr))
                        runs[(replicas, batch, who)].append(eps)
                    finally:
                        if inlet:
                            inlet.terminate()
                            inlet.wait()
                        for p in procs:
                            p.terminate()
                            p.wait()
                        shutil.rmtree(tmp, ignore_errors=True)
                    print(f"round {rnd + 1}: R{replicas} batch {batch} {who}: {eps:,.0f} events/s", file=sys.stderr)

    print(f"\nevents/s, medians of {args.rounds} rounds, {args.duration} s per run (raw publisher and inlet alternating)\n")
    print("| stream | workload | raw NATS publisher | inlet | inlet / raw |")
    print("|---|---|---|---|---|")
    summary = {}
    for replicas in (1, 3):
        for batch in (1, 100):
            r = statistics.median(runs[(replicas, batch, "raw")])
            i = statistics.median(runs[(replicas, batch, "inlet")])
            label = "single events" if batch == 1 else "batches of 100"
            summary[f"R{replicas} batch {batch}"] = {"raw": r, "inlet": i, "ratio": i / r}
            print(f"| R{replicas} | {label} | {r:,.0f} | {i:,.0f} | {i / r:.2f}x |")
    for replicas in (1, 3):
        single = summary[f"R{replicas} batch 1"]["inlet"]
        batched = summary[f"R{replicas} batch 100"]["inlet"]
        print(f"\nR{replicas}: inlet batches of 100 at {batched / single:.1f}x its single-event rate", end="")
    if pages:
        print(f"\n\nGET /events?limit=1000 (R1): median {statistics.median(pages):.1f} ms over {len(pages) * 20} reads")
        summary["page_1000_ms"] = statistics.median(pages)
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/nats-vs-inlet.json"), "w") as f:
        json.dump({"summary": summary, "raw": {f"R{r} batch {b} {w}": v for (r, b, w), v in runs.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
