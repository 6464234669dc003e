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

Usage: bench/subscribers.sh [--rounds N] [--duration S] [--rate N] [--store memory|sqlite] [--readers socket|tail]
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
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target/release/inlet-server")
CLIENT = os.path.join(ROOT, "target/release/inlet-client")
SUBSCRIBERS = 50


def start_inlet(store, tmp):
    args = [SERVER, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "data"), "--store", store]
    if store == "sqlite":
        args += ["--sync", "normal"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, RUST_LOG="warn"))
    addr = proc.stdout.readline().strip().removeprefix("listening on ")
    return proc, addr


def stats(addr):
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), 5) as s:
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


class Readers:
    """Subscribers that read and drop every byte, on one thread."""

    def __init__(self, addr, n):
        host, port = addr.rsplit(":", 1)
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.bytes = 0
        for _ in range(n):
            s = socket.create_connection((host, int(port)), 5)
            s.sendall(b"GET /events/stream?after=latest HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
            self.socks.append(s)
        self.stop = False
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop:
            for key, _ in self.sel.select(0.2):
                try:
                    data = key.fileobj.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    self.sel.unregister(key.fileobj)
                self.bytes += len(data)

    def close(self):
        self.stop = True
        self.thread.join()
        for s in self.socks:
            s.close()


def subscribe(addr, readers):
    """49 readers and one stalled socket; returns what to stop afterwards."""
    if readers == "tail":
        tails = [subprocess.Popen([CLIENT, "tail", "--server", addr], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(SUBSCRIBERS - 1)]
    else:
        tails = [Readers(addr, SUBSCRIBERS - 1)]
    host, port = addr.rsplit(":", 1)
    stalled = socket.create_connection((host, int(port)), 5)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.time() + 30
    while stats(addr)["stream"]["subscribers"] < SUBSCRIBERS:
        if time.time() > deadline:
            raise SystemExit("the subscribers did not all connect")
        time.sleep(0.1)
    return tails, stalled


def bench(addr, duration, rate):
    out = subprocess.run([CLIENT, "bench", "--server", addr, "--connections", "16", "--rate", str(rate),
                          "--duration", f"{duration}s", "--json"], capture_output=True, text=True)
    return json.loads(out.stdout)


def run(store, with_subscribers, duration, rate, readers):
    tmp = tempfile.mkdtemp(prefix="inlet-subscribers-")
    proc, addr = start_inlet(store, tmp)
    tails, stalled = subscribe(addr, readers) if with_subscribers else ([], None)
    result = bench(addr, duration, rate)
    result["stream"] = stats(addr)["stream"]
    for t in tails:
        if isinstance(t, Readers):
            t.close()
        else:
            t.terminate()
            t.wait()
    if stalled:
        stalled.close()
    proc.terminate()
    proc.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--store", default="memory")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--readers", choices=["socket", "tail"], default="socket")
    args = ap.parse_args()
    runs = {False: [], True: []}
    for rnd in range(args.rounds):
        for with_subscribers in (False, True):
            runs[with_subscribers].append(run(args.store, with_subscribers, args.duration, args.rate, args.readers))
            print(f"round {rnd + 1}: {'50 subscribers' if with_subscribers else 'none'} done", file=sys.stderr)
    print(f"\n--store {args.store}, inlet-client bench --rate {args.rate} (16 connections), {args.duration} s, "
          f"readers: {args.readers}, medians of {args.rounds}\n")
    print("| subscribers | events/s | p50 ms | p99 ms | lagged |")
    print("|---|---|---|---|---|")
    p99 = {}
    for with_subscribers in (False, True):
        r = runs[with_subscribers]
        eps = statistics.median(x["events_per_s"] for x in r)
        p50 = statistics.median(x["latency_ms"]["p50"] for x in r)
        p99[with_subscribers] = statistics.median(x["latency_ms"]["p99"] for x in r)
        lagged = statistics.median(x["stream"]["lagged"] for x in r)
        label = "50 (one stalled)" if with_subscribers else "none"
        print(f"| {label} | {eps:,.0f} | {p50:.2f} | {p99[with_subscribers]:.2f} | {lagged:g} |")
    print(f"\np99 with subscribers / without: {p99[True] / p99[False]:.3f} (target: <= 1.10)")
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, f"bench/results/subscribers-{args.store}.json"), "w") as f:
        json.dump({"p99_ratio": p99[True] / p99[False], "raw": {str(k): v for k, v in runs.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
