#!/usr/bin/env python3
"""GET /events readers of large events against /health on the same worker
(issue 11 §2): how long does a reader paging through 256 KiB events delay a
/health probe, and how much memory do the readers cost the server?

One server (`--workers 1` by default, so the readers and the probe share
one worker thread) is loaded with --events events of --event-kib KiB each.
Then /health is probed on one keep-alive connection every --interval ms for
--duration seconds, first alone ("idle"), then while --readers reader
processes page through every event with `limit=--limit` over and over
("readers"). Prints /health p50/p99/max for both, the pages and bytes the
readers read, and the server's RSS (now and peak).

Usage: bench/pages.sh [--server PATH] [--store memory|sqlite] [--readers 4]
       [--events 1000] [--event-kib 256] [--limit 10000] [--duration 10]
       [--max-page-bytes N] [--json]
`--server` may be an older build to compare with (it is given
`--max-page-bytes` only when this script is).
"""

import argparse
import http.client
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEXT_AFTER = re.compile(rb'"next_after":(null|\d+)\}$')


def start_server(args, tmp):
    cmd = [args.server, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "data"), "--store", args.store,
           "--workers", str(args.workers), "--max-event-bytes", str(args.event_kib * 1024 + 4096),
           "--max-body", str(64 * 1024 * 1024), "--sync", "normal"]
    if args.max_page_bytes is not None:
        cmd += ["--max-page-bytes", str(args.max_page_bytes)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, RUST_LOG="warn"))
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    host, port = line.removeprefix("listening on ").rsplit(":", 1)
    return proc, (host, int(port))


def load(addr, events, event_kib):
    """Posts the events in batches of about 16 MiB."""
    data = "x" * (event_kib * 1024 - 120)
    per_batch = max(1, (16 * 1024) // event_kib)
    conn = http.client.HTTPConnection(*addr, timeout=300)
    for start in range(0, events, per_batch):
        batch = [{"specversion": "1.0", "id": f"e{i}", "source": "/bench/pages", "type": "bench.page", "data": data}
                 for i in range(start, min(events, start + per_batch))]
        conn.request("POST", "/events", body=json.dumps(batch).encode(),
                     headers={"Content-Type": "application/cloudevents-batch+json"})
        res = conn.getresponse()
        body = res.read()
        if res.status != 202:
            raise SystemExit(f"loading failed: {res.status} {body[:200]!r}")
    conn.close()


def reader(addr, limit, stop, totals):
    """Pages through every event, from the start again at the end, until
    `stop` is set. Adds its pages and bytes to `totals`."""
    conn = http.client.HTTPConnection(*addr, timeout=300)
    after, pages, size = 0, 0, 0
    while not stop.is_set():
        conn.request("GET", f"/events?limit={limit}&after={after}")
        res = conn.getresponse()
        body = res.read()
        if res.status != 200:
            raise SystemExit(f"GET /events: {res.status} {body[:200]!r}")
        pages += 1
        size += len(body)
        m = NEXT_AFTER.search(body[-64:])
        after = 0 if m is None or m.group(1) == b"null" else int(m.group(1))
    conn.close()
    with totals.get_lock():
        totals[0] += pages
        totals[1] += size


def probe(addr, duration, interval):
    """/health latencies (ms) on one keep-alive connection."""
    conn = http.client.HTTPConnection(*addr, timeout=60)
    latencies = []
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        conn.request("GET", "/health")
        res = conn.getresponse()
        res.read()
        latencies.append((time.perf_counter() - t0) * 1000)
        time.sleep(interval / 1000)
    conn.close()
    return latencies


def summary(latencies):
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"probes": len(ordered), "p50_ms": round(statistics.median(ordered), 2), "p99_ms": round(p99, 2),
            "max_ms": round(ordered[-1], 2)}


def rss_kib(pid):
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default=os.path.join(ROOT, "target/release/inlet-server"))
    p.add_argument("--store", default="memory", choices=["memory", "sqlite"])
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--event-kib", type=int, default=256)
    p.add_argument("--limit", type=int, default=10000)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--interval", type=float, default=10, help="ms between /health probes")
    p.add_argument("--max-page-bytes", type=int)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start_server(args, tmp)
        try:
            load(addr, args.events, args.event_kib)
            rss_loaded, _ = rss_kib(proc.pid)
            idle = summary(probe(addr, args.duration, args.interval))
            stop = multiprocessing.Event()
            totals = multiprocessing.Array("q", 2)
            readers = [multiprocessing.Process(target=reader, args=(addr, args.limit, stop, totals))
                       for _ in range(args.readers)]
            for r in readers:
                r.start()
            busy = summary(probe(addr, args.duration, args.interval))
            rss_busy, _ = rss_kib(proc.pid)
            stop.set()
            for r in readers:
                r.join()
            _, peak = rss_kib(proc.pid)
        finally:
            proc.kill()
            proc.wait()

    result = {
        "server": args.server, "store": args.store, "workers": args.workers, "readers": args.readers,
        "events": args.events, "event_kib": args.event_kib, "limit": args.limit,
        "max_page_bytes": args.max_page_bytes, "health_idle": idle, "health_readers": busy,
        "pages_read": totals[0], "mib_read": round(totals[1] / 2**20, 1),
        "rss_mib_after_load": round(rss_loaded / 1024, 1), "rss_mib_with_readers": round(rss_busy / 1024, 1),
        "rss_mib_peak": round(peak / 1024, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.events} events of {args.event_kib} KiB, {args.store} store, --workers {args.workers}, "
          f"{args.readers} readers with limit={args.limit}, /health every {args.interval:g} ms for {args.duration:g} s")
    print("| /health | probes | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, s in (("alone", idle), (f"with {args.readers} readers", busy)):
        print(f"| {name} | {s['probes']} | {s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} |")
    print(f"readers: {totals[0]} pages, {result['mib_read']} MiB in {args.duration:g} s")
    print(f"server RSS: {result['rss_mib_after_load']} MiB loaded, {result['rss_mib_with_readers']} MiB with readers, "
          f"{result['rss_mib_peak']} MiB peak")


if __name__ == "__main__":
    sys.exit(main())
