#!/usr/bin/env python3
"""Ingest latency with live subscribers against none (issue 19, item 2).

For each store: starts inlet-server, runs `inlet-client bench` (single
events, open loop at --rate events/s over 16 connections, so that the
latency measured is the server's at a steady load and not the queue of a
saturated closed loop) with no subscriber, then again with 50 subscribers
on GET /events/stream: 49 readers that take every byte (raw sockets read by
one thread of this script, so the subscribers cost the machine little
beyond the server's own work for them; `--readers tail` uses 49
`inlet-client tail` processes instead, which parse and print every event)
and one stalled subscriber that sends its request and never reads. Rounds
alternate the two, each on a fresh server. Prints the medians of events/s,
p50 and p99 and the p99 ratio, and the lagged counter of the subscriber
runs (the stalled one should be cut off once its buffers fill).

It also prints the CPU time per ingested event (µs) of inlet-server (utime +
stime from /proc/PID/stat) and of the readers, over the measured interval:
the server's share of the cost of subscribers apart from the readers'. The
readers stand in for remote clients: with --readers-nice (the default) they
run in a separate process under `nice -n 19`, so that they take the CPU the
server leaves over rather than compete with it; --no-readers-nice runs them
at the same priority as the server. Their CPU is reported either way.

--callgrind N: instead of wall-clock rounds, runs inlet-server under
callgrind once with no subscriber and once with the 50, sends N events at
--rate (keep it small: callgrind is ~50x slower, e.g. --rate 200) after the
subscribers are connected and the counters zeroed, and prints the server's
instructions per ingested event for both (deterministic up to how events
are batched per subscriber read).

Usage: bench/subscribers.sh [--rounds N] [--duration S] [--rate N] [--store memory|sqlite]
                            [--readers socket|tail] [--[no-]readers-nice] [--callgrind N]
                            [--callgrind-out DIR]
The issue's target: p99 with subscribers within 10% of p99 without. Take
the figures on a quiet machine (wall-clock latency).
"""

import argparse
import json
import os
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.environ.get("INLET_SERVER", os.path.join(ROOT, "target/release/inlet-server"))
CLIENT = os.path.join(ROOT, "target/release/inlet-client")
SUBSCRIBERS = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def start_inlet(store, tmp, wrap=()):
    args = [*wrap, SERVER, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "data"), "--store", store]
    if store == "sqlite":
        args += ["--sync", "normal"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, RUST_LOG="warn"))
    addr = proc.stdout.readline().strip().removeprefix("listening on ")
    return proc, addr


def stats(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), 30) as s:
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def reader_process(addr, n):
    """`subscribers.py --reader-process ADDR N`: n subscribers that read and
    drop every byte, on one thread, until stdin closes; then prints the
    bytes read."""
    host, port = addr.rsplit(":", 1)
    sel = selectors.DefaultSelector()
    for _ in range(n):
        s = socket.create_connection((host, int(port)), 30)
        s.sendall(b"GET /events/stream?after=latest HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    total = 0
    while True:
        for key, _ in sel.select():
            if key.fileobj is sys.stdin:
                print(total, flush=True)
                return
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(key.fileobj)
            total += len(data)


def subscribe(addr, readers, nice):
    """49 readers (processes) and one stalled socket."""
    prefix = ["nice", "-n", "19"] if nice else []
    if readers == "tail":
        procs = [subprocess.Popen([*prefix, CLIENT, "tail", "--server", addr], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(SUBSCRIBERS - 1)]
    else:
        procs = [subprocess.Popen([*prefix, sys.executable, os.path.abspath(__file__), "--reader-process", addr,
                                   str(SUBSCRIBERS - 1)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)]
    host, port = addr.rsplit(":", 1)
    stalled = socket.create_connection((host, int(port)), 30)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.time() + 120
    while stats(addr)["stream"]["subscribers"] < SUBSCRIBERS:
        if time.time() > deadline:
            raise SystemExit("the subscribers did not all connect")
        time.sleep(0.1)
    return procs, stalled


def unsubscribe(procs, stalled):
    for p in procs:
        if p.stdin:
            p.stdin.close()
            p.stdout.read()
        else:
            p.terminate()
        p.wait()
    if stalled:
        stalled.close()


def bench(addr, args):
    out = subprocess.run([CLIENT, "bench", "--server", addr, "--connections", "16", *args, "--json"],
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def run(store, with_subscribers, duration, rate, readers, nice):
    tmp = tempfile.mkdtemp(prefix="inlet-subscribers-")
    proc, addr = start_inlet(store, tmp)
    procs, stalled = subscribe(addr, readers, nice) if with_subscribers else ([], None)
    server0 = cpu_seconds(proc.pid)
    readers0 = sum(cpu_seconds(p.pid) for p in procs)
    result = bench(addr, ["--rate", str(rate), "--duration", f"{duration}s"])
    server1 = cpu_seconds(proc.pid)
    readers1 = sum(cpu_seconds(p.pid) for p in procs)
    result["stream"] = stats(addr)["stream"]
    events = max(result["events"], 1)
    result["server_cpu_s"] = server1 - server0
    result["readers_cpu_s"] = readers1 - readers0
    result["server_us_per_event"] = (server1 - server0) * 1e6 / events
    result["readers_us_per_event"] = (readers1 - readers0) * 1e6 / events
    unsubscribe(procs, stalled)
    proc.terminate()
    proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def callgrind(store, with_subscribers, events, rate, readers, nice, keep=None):
    """Instructions of the server per ingested event, under callgrind; the
    profile is copied into the directory `keep` if given."""
    tmp = tempfile.mkdtemp(prefix="inlet-subscribers-cg-")
    out = os.path.join(tmp, "cg.out")
    proc, addr = start_inlet(store, tmp, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"])
    procs, stalled = subscribe(addr, readers, nice) if with_subscribers else ([], None)
    subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
    readers0 = sum(cpu_seconds(p.pid) for p in procs)
    result = bench(addr, ["--rate", str(rate), "--requests", str(events)])
    result["stream"] = stats(addr)["stream"]
    subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    readers1 = sum(cpu_seconds(p.pid) for p in procs)
    result["readers_us_per_event"] = (readers1 - readers0) * 1e6 / max(result["events"], 1)
    unsubscribe(procs, stalled)
    proc.terminate()
    proc.wait()
    total = None
    with open(out + ".1") as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
                break
    if keep:
        os.makedirs(keep, exist_ok=True)
        name = f"callgrind.out.{store}-{'subscribers' if with_subscribers else 'none'}"
        shutil.copy(out + ".1", os.path.join(keep, name))
    shutil.rmtree(tmp, ignore_errors=True)
    result["instructions"] = total
    result["instructions_per_event"] = total / max(result["events"], 1)
    return result


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--reader-process":
        reader_process(sys.argv[2], int(sys.argv[3]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--store", default="memory")
    ap.add_argument("--rate", type=int, default=None, help="events/s (default 2000; 200 with --callgrind)")
    ap.add_argument("--readers", choices=["socket", "tail"], default="socket")
    ap.add_argument("--readers-nice", action=argparse.BooleanOptionalAction, default=True,
                    help="run the readers under nice -n 19 (default: on)")
    ap.add_argument("--callgrind", type=int, metavar="EVENTS", default=None,
                    help="count the server's instructions per event under callgrind, sending EVENTS events")
    ap.add_argument("--callgrind-out", metavar="DIR", default=None,
                    help="with --callgrind: keep the two profiles in DIR (for callgrind_annotate)")
    args = ap.parse_args()
    readers = f"{args.readers}, {'nice 19' if args.readers_nice else 'same priority'}"
    if args.callgrind:
        rate = args.rate or 200
        print(f"\n--store {args.store}, callgrind, {args.callgrind} events at {rate}/s (16 connections), "
              f"readers: {readers}\n")
        print("| subscribers | events | server instructions | per event | readers µs CPU/event | lagged |")
        print("|---|---|---|---|---|---|")
        per = {}
        for with_subscribers in (False, True):
            r = callgrind(args.store, with_subscribers, args.callgrind, rate, args.readers, args.readers_nice,
                          args.callgrind_out)
            per[with_subscribers] = r["instructions_per_event"]
            label = "50 (one stalled)" if with_subscribers else "none"
            print(f"| {label} | {r['events']:,} | {r['instructions']:,} | {per[with_subscribers]:,.0f} | "
                  f"{r['readers_us_per_event']:.1f} | {r['stream']['lagged']} |", flush=True)
        print(f"\nserver instructions per event with subscribers / without: {per[True] / per[False]:.2f}")
        return
    rate = args.rate or 2000
    runs = {False: [], True: []}
    for rnd in range(args.rounds):
        for with_subscribers in (False, True):
            runs[with_subscribers].append(run(args.store, with_subscribers, args.duration, rate, args.readers,
                                              args.readers_nice))
            print(f"round {rnd + 1}: {'50 subscribers' if with_subscribers else 'none'} done", file=sys.stderr)
    print(f"\n--store {args.store}, inlet-client bench --rate {rate} (16 connections), {args.duration} s, "
          f"readers: {readers}, medians of {args.rounds}\n")
    print("| subscribers | events/s | p50 ms | p99 ms | server µs CPU/event | readers µs CPU/event | lagged |")
    print("|---|---|---|---|---|---|---|")
    p99 = {}
    for with_subscribers in (False, True):
        r = runs[with_subscribers]
        eps = statistics.median(x["events_per_s"] for x in r)
        p50 = statistics.median(x["latency_ms"]["p50"] for x in r)
        p99[with_subscribers] = statistics.median(x["latency_ms"]["p99"] for x in r)
        server = statistics.median(x["server_us_per_event"] for x in r)
        reader = statistics.median(x["readers_us_per_event"] for x in r)
        lagged = statistics.median(x["stream"]["lagged"] for x in r)
        label = "50 (one stalled)" if with_subscribers else "none"
        print(f"| {label} | {eps:,.0f} | {p50:.2f} | {p99[with_subscribers]:.2f} | {server:.1f} | {reader:.1f} "
              f"| {lagged:g} |")
    print(f"\np99 with subscribers / without: {p99[True] / p99[False]:.3f} (target: <= 1.10)")
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, f"bench/results/subscribers-{args.store}.json"), "w") as f:
        json.dump({"p99_ratio": p99[True] / p99[False], "raw": {str(k): v for k, v in runs.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
