#!/usr/bin/env python3
"""The durable path, `--sync full`: how large the SQLite writer's commit
groups are, how long each commit (one fsync of the WAL) takes, and the bound
this disk sets.

For each number of connections it runs `inlet-client bench` (single events)
against a fresh `--store sqlite --sync full` server and reads the writer's
own counters from `/stats` (`store.commits`, before and after), and the same
load against `--store memory`. Before that it measures the disk alone: a
file in the same directory, 4 KiB appended and `fdatasync`ed in a loop.

What the columns mean:
- req/commit: requests per commit (the group commit's group size);
- commit ms: mean time in COMMIT (with --sync full: one WAL fsync);
- writer busy: share of the run the writer spent in COMMIT;
- commit-bound: the events/s if the writer did nothing but commit groups
  of this size back to back (req/commit / commit ms): the bound the disk
  sets at this concurrency (a commit writes and syncs the WAL frames of
  every page the group touched, more than the 4 KiB of the probe).

Usage: bench/commits.sh [--duration S] [--connections 1,4,16,64] [--rounds N]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target/release/inlet-server")
CLIENT = os.path.join(ROOT, "target/release/inlet-client")


def disk_fsync_ms(directory, seconds=3.0):
    """Median and p99 of append 4 KiB + fdatasync in `directory`, in ms."""
    path = os.path.join(directory, "fsync-probe")
    block = b"x" * 4096
    times = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)], len(times)


def start(args, data_dir):
    proc = subprocess.Popen([SERVER, "--listen", "127.0.0.1:0", "--data-dir", data_dir] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, RUST_LOG="warn"))
    addr = proc.stdout.readline().strip().removeprefix("listening on ")
    if not addr:
        raise SystemExit(f"inlet-server {' '.join(args)} did not start")
    return proc, addr


def commits(addr):
    with urllib.request.urlopen(f"http://{addr}/stats", timeout=10) as res:
        return json.load(res)["store"].get("commits")


def bench(addr, connections, duration):
    out = subprocess.run([CLIENT, "bench", "--server", addr, "--connections", str(connections), "--batch", "1",
                          "--duration", f"{duration}s", "--json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def run(store_args, connections, duration, tmp):
    data = tempfile.mkdtemp(prefix="data-", dir=tmp)
    proc, addr = start(store_args, data)
    try:
        before = commits(addr)
        started = time.monotonic()
        result = bench(addr, connections, duration)
        elapsed = time.monotonic() - started
        after = commits(addr)
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)
    row = {"events_per_s": result["events_per_s"], "p99_ms": result["latency_ms"]["p99"]}
    if before and after:
        n = after["count"] - before["count"]
        row["commits"] = n
        row["requests_per_commit"] = (after["requests"] - before["requests"]) / max(n, 1)
        seconds = after["commit_seconds"] - before["commit_seconds"]
        row["commit_ms"] = seconds * 1000 / max(n, 1)
        row["writer_busy"] = seconds / elapsed
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--connections", default="1,4,16,64")
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    tmp = tempfile.mkdtemp(prefix="inlet-commits-", dir=os.environ.get("TMPDIR", "/tmp"))
    try:
        fsync_p50, fsync_p99, probes = disk_fsync_ms(tmp)
        rows = {}
        for rnd in range(args.rounds):
            for c in conns:
                for name, store in (("sqlite", ["--store", "sqlite", "--sync", "full"]), ("memory", ["--store", "memory"])):
                    rows.setdefault((name, c), []).append(run(store, c, args.duration, tmp))
                print(f"round {rnd + 1}: {c} connections done", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def med(name, c, key):
        values = [r[key] for r in rows[(name, c)] if key in r]
        return statistics.median(values) if values else float("nan")

    print(f"\ndisk alone ({tmp}): 4 KiB append + fdatasync p50 {fsync_p50:.2f} ms, p99 {fsync_p99:.2f} ms "
          f"({probes} probes): at most {1000 / fsync_p50:,.0f} fsyncs/s")
    print(f"single events, inlet-client bench, {args.duration} s per run, medians of {args.rounds}\n")
    print("| connections | sqlite --sync full events/s | memory events/s | ratio | req/commit | commit ms "
          "| writer busy in COMMIT | commit-bound events/s |")
    print("|---|---|---|---|---|---|---|---|")
    for c in conns:
        s, m = med("sqlite", c, "events_per_s"), med("memory", c, "events_per_s")
        group = med("sqlite", c, "requests_per_commit")
        print(f"| {c} | {s:,.0f} | {m:,.0f} | {s / m:.2f}x | {group:.1f} | {med('sqlite', c, 'commit_ms'):.2f} "
              f"| {med('sqlite', c, 'writer_busy') * 100:.0f}% | {group * 1000 / med('sqlite', c, 'commit_ms'):,.0f} |")
    os.makedirs(os.path.join(ROOT, "bench/results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench/results/commits.json"), "w") as f:
        json.dump({"fsync_ms": {"p50": fsync_p50, "p99": fsync_p99},
                   "runs": {f"{n} {c}": r for (n, c), r in rows.items()}}, f, indent=2)


if __name__ == "__main__":
    main()
