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

CPU per event: every run also records the CPU time (utime + stime) each
process spent during the measured interval: the nats-servers and
inlet-server from /proc/PID/stat before and after, the load generator (raw
publisher or inlet-client bench) from its own rusage. Divided by the events
acknowledged, that is µs of CPU per event for NATS (all nodes), the load
generator and inlet. On a machine where all of them share the cores, the
throughput is CPU-bound, so these figures say where the time goes even when
other work makes events/s noisy: at the same CPU budget events/s go as
1 / (CPU per event), and the script prints the ratio that gives with all
processes on this host, and with the load generator on another host (NATS +
inlet only). NATS's CPU per event is not a constant: it falls as more
publishes are in flight (more messages per read, per raft append, per
fsync), so compare runs at the same --in-flight.

Usage: bench/nats-vs-inlet.sh [--rounds N] [--duration S] [--replicas 1,3]
           [--batches 1,100] [--in-flight N] [--only raw|inlet] [--pin]
           [--inlet-args "--nats-batches-in-flight 32"] [--raw-args "--id-len 64"]
           [--server PATH] [--out FILE]
  --in-flight   single events: the raw publisher's publishes in flight and
                inlet-client's connections (64)
  --raw-args    more nats-publisher flags: --id-len 64 (inlet's message ids,
                64 hex digits), --subject raw.events.inlet.bench.reading
                (a subject of inlet's length)
  --server      the inlet-server binary to measure (to compare two builds)
  --pin         NATS on a core of its own: every nats-server on CPU 0, the
                load generator and inlet-server on CPU 1 (the raw publisher
                alone on CPU 1). The deployment's shape, NATS on hosts of its
                own, on one machine: both sides then get the same NATS, and
                the ratio says how much of it each can use, where without
                --pin inlet's CPU is taken from NATS's.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import stores
from stores import CLIENT, NATS, ROOT, bench, ready, start_inlet, start_nats

PUBLISHER = os.path.join(ROOT, "target/nats-publisher/release/nats-publisher")
# Atomic batches in flight: inlet's --nats-batches-in-flight default (nats-server takes 50 per stream).
BATCHES_IN_FLIGHT = 16


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """utime + stime of a running process, in seconds (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children_cpu_s():
    """utime + stime of all children waited for so far, in seconds."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measured(run, nats, inlet):
    """Runs the load generator (`run()`, a subprocess waited for), and returns
    its result with the CPU seconds each process spent meanwhile: the
    nats-servers and inlet sampled from /proc before and after, the generator
    from its own rusage (it is the only child reaped in between)."""
    watched = {"nats": nats, "inlet": [inlet] if inlet else []}
    before = {k: [cpu_s(p.pid) for p in ps] for k, ps in watched.items()}
    gen = children_cpu_s()
    out = run()
    gen = children_cpu_s() - gen
    after = {k: [cpu_s(p.pid) for p in ps] for k, ps in watched.items()}
    cpu = {k: sum(after[k]) - sum(before[k]) for k in watched}
    cpu["generator"] = gen
    out["cpu_s"] = cpu
    return out


def raw(urls, replicas, batch, duration, in_flight_single, more=()):
    in_flight = in_flight_single if batch == 1 else BATCHES_IN_FLIGHT
    out = subprocess.run([PUBLISHER, "--url", urls.split(",")[0], "--replicas", str(replicas), "--batch", str(batch),
                          "--in-flight", str(in_flight), "--duration", str(duration), *more],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["events"] = result["acked"]
    return result


def placement(nats, gone_client_on=None):
    """Which node leads the stream and which one the publishing client (the
    connection that sent the most messages) is connected to, from each
    node's monitoring endpoint: a client on a follower has every message
    forwarded to the leader, one more hop, on NATS's CPU. A client that has
    gone (the raw publisher, after its run) was on `gone_client_on`."""
    leader, client, most = None, None, -1
    for i, proc in enumerate(nats):
        base = f"http://127.0.0.1:{proc.monitor_port}"
        with urllib.request.urlopen(f"{base}/jsz?streams=true") as r:
            jsz = json.load(r)
        for account in jsz.get("account_details") or []:
            for stream in account.get("stream_detail") or []:
                leader = (stream.get("cluster") or {}).get("leader") or f"n{i}"
        with urllib.request.urlopen(f"{base}/connz") as r:
            for conn in json.load(r).get("connections") or []:
                if conn.get("in_msgs", 0) > most:
                    client, most = f"n{i}", conn["in_msgs"]
    return {"leader": leader, "client_on": client or gone_client_on}


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


def per_event_us(run):
    """µs of CPU per event stored, per process group, from one run."""
    n = max(run["events"], 1)
    return {k: v * 1e6 / n for k, v in run["cpu_s"].items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--replicas", default="1,3", help="which streams, e.g. 3")
    ap.add_argument("--batches", default="1,100", help="which workloads, e.g. 1")
    ap.add_argument("--inlet-args", default="", help="more inlet-server flags (split on spaces)")
    ap.add_argument("--raw-args", default="",
                    help="more nats-publisher flags, e.g. \"--id-len 64 --subject raw.events.inlet.bench.reading\"")
    ap.add_argument("--only", choices=("raw", "inlet"), help="run one side only")
    ap.add_argument("--in-flight", type=int, default=64,
                    help="single events: the raw publisher's publishes in flight and inlet-client's connections")
    ap.add_argument("--server", help="the inlet-server binary to measure (to compare two builds)")
    ap.add_argument("--pin", action="store_true",
                    help="nats-servers on CPU 0; the generator, inlet-server and the raw publisher on CPU 1")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/nats-vs-inlet.json"))
    args = ap.parse_args()
    if args.server:
        stores.SERVER = os.path.abspath(args.server)
    if not NATS:
        raise SystemExit("needs nats-server on PATH or in INLET_NATS_SERVER")
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2:
            raise SystemExit("--pin needs 2 CPUs")
        # Everything this script starts inherits CPU 1, but the nats-servers
        # (started on CPU 0, below).
        os.sched_setaffinity(0, {1})
    replica_set = [int(r) for r in args.replicas.split(",")]
    batch_set = [int(b) for b in args.batches.split(",")]
    sides = [args.only] if args.only else ["raw", "inlet"]
    runs = {(r, b, who): [] for r in replica_set for b in batch_set for who in sides}
    pages = []
    for rnd in range(args.rounds):
        for replicas in replica_set:
            for batch in batch_set:
                for who in sides:
                    tmp = tempfile.mkdtemp(prefix="inlet-nats-vs-")
                    if args.pin:
                        # Set before the start, so that every thread of the
                        # nats-servers inherits it (Go starts threads early).
                        os.sched_setaffinity(0, {0})
                    procs, urls = start_nats(tmp, replicas)
                    if args.pin:
                        os.sched_setaffinity(0, {1})
                    inlet = None
                    try:
                        if who == "raw":
                            run = measured(lambda: raw(urls, replicas, batch, args.duration, args.in_flight,
                                                                   args.raw_args.split()), procs, None)
                        else:
                            inlet, addr = start_inlet(["--store", "jetstream", "--replicas", str(replicas),
                                                       "--nats-url", urls] + args.inlet_args.split(), tmp)
                            ready(addr)
                            connections = args.in_flight if batch == 1 else 64
                            run = measured(lambda: bench(addr, batch, args.duration, connections), procs, inlet)
                            if replicas == 1 and batch == 100:
                                pages.append(page_ms(addr))
                        # The raw publisher connects to the first node.
                        run["placement"] = placement(procs, "n0")
                        runs[(replicas, batch, who)].append(run)
                    finally:
                        if inlet:
                            inlet.terminate()
                            inlet.wait()
                        for p in procs:
                            p.terminate()
                            p.wait()
                        shutil.rmtree(tmp, ignore_errors=True)
                    us = per_event_us(run)
                    print(f"round {rnd + 1}: R{replicas} batch {batch} {who}: {run['events_per_s']:,.0f} events/s, "
                          f"CPU µs/event: NATS {us['nats']:.1f}, generator {us['generator']:.1f}, inlet {us['inlet']:.1f}; "
                          f"leader {run['placement']['leader']}, client on {run['placement']['client_on']}",
                          file=sys.stderr)

    summary = {}
    for replicas in replica_set:
        for batch in batch_set:
            for who in sides:
                rs = runs[(replicas, batch, who)]
                us = {k: statistics.median(per_event_us(r)[k] for r in rs) for k in ("nats", "generator", "inlet")}
                summary[f"R{replicas} batch {batch} {who}"] = {
                    "events_per_s": statistics.median(r["events_per_s"] for r in rs),
                    "cpu_us_per_event": us,
                }

    def label(batch):
        return "single events" if batch == 1 else f"batches of {batch}"

    print(f"\nevents/s, medians of {args.rounds} rounds, {args.duration} s per run (raw publisher and inlet alternating)\n")
    if len(sides) == 2:
        print("| stream | workload | raw NATS publisher | inlet | inlet / raw |")
        print("|---|---|---|---|---|")
        for replicas in replica_set:
            for batch in batch_set:
                r = summary[f"R{replicas} batch {batch} raw"]["events_per_s"]
                i = summary[f"R{replicas} batch {batch} inlet"]["events_per_s"]
                summary[f"R{replicas} batch {batch} ratio"] = i / r
                print(f"| R{replicas} | {label(batch)} | {r:,.0f} | {i:,.0f} | {i / r:.2f}x |")

    print("\nCPU µs per event stored (utime+stime over the measured interval / events; medians)\n")
    print("| stream | workload | run | NATS (all nodes) | load generator | inlet | total | total without generator |")
    print("|---|---|---|---|---|---|---|---|")
    for replicas in replica_set:
        for batch in batch_set:
            for who in sides:
                us = summary[f"R{replicas} batch {batch} {who}"]["cpu_us_per_event"]
                total = us["nats"] + us["generator"] + us["inlet"]
                print(f"| R{replicas} | {label(batch)} | {who} | {us['nats']:.1f} | {us['generator']:.1f} | "
                      f"{us['inlet']:.1f} | {total:.1f} | {us['nats'] + us['inlet']:.1f} |")
    if len(sides) == 2:
        print("\nAt the same CPU budget, events/s go as 1 / CPU per event: inlet / raw, expected from CPU")
        print("\n| stream | workload | all processes on this host | load generator on another host | inlet's own share of inlet's total without generator |")
        print("|---|---|---|---|---|")
        for replicas in replica_set:
            for batch in batch_set:
                r = summary[f"R{replicas} batch {batch} raw"]["cpu_us_per_event"]
                i = summary[f"R{replicas} batch {batch} inlet"]["cpu_us_per_event"]
                here = sum(r.values()) / sum(i.values())
                away = r["nats"] / (i["nats"] + i["inlet"])
                share = i["inlet"] / (i["nats"] + i["inlet"])
                summary[f"R{replicas} batch {batch} cpu_ratio"] = {"here": here, "generator_elsewhere": away}
                print(f"| R{replicas} | {label(batch)} | {here:.2f}x | {away:.2f}x | {share:.0%} |")
    for replicas in replica_set:
        if {1, 100} <= set(batch_set) and "inlet" in sides:
            single = summary[f"R{replicas} batch 1 inlet"]["events_per_s"]
            batched = summary[f"R{replicas} batch 100 inlet"]["events_per_s"]
            print(f"\nR{replicas}: inlet batches of 100 at {batched / single:.1f}x its single-event rate", end="")
    if pages:
        print(f"\n\nGET /events?limit=1000 (R1): median {statistics.median(pages):.1f} ms over {len(pages) * 20} reads")
        summary["page_1000_ms"] = statistics.median(pages)
    print()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"pinned": args.pin, "summary": summary, "runs": {f"R{r} batch {b} {w}": v for (r, b, w), v in runs.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
