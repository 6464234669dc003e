#!/usr/bin/env python3
"""Compressed request bodies (issue 14), measured against the release build.

1. 100-event batches, identity vs gzip vs zstd: events/s, server CPU per
   event (user + system time of inlet-server from /proc/<pid>/stat over the
   run, divided by the events stored), and the bytes on the wire and decoded
   per request (from the server's own /metrics counters).
2. The p99 of single events (inlet-client bench, open loop) on a server that
   does nothing else, while another client posts 8 MiB (decoded) zstd
   batches in a loop, and while it posts the same batches uncompressed (the
   server runs with --max-body 16 MiB for those): the last separates what
   parsing 8 MiB costs the worker thread from what decoding does. Alternated
   for --rounds rounds.
3. Decoding cost per MiB: zstd's own benchmark (`zstd -b3`, the library the
   `zstd` crate links) on the same NDJSON sample; inlet's decoder against the
   crates called directly is `cargo bench -p inlet-shared --bench coding`.

Usage: bench/compression.sh [--duration S] [--rounds N] [--out FILE]
(the .sh builds the release binaries first). Needs python3 with `zstandard`
(tests/requirements.txt) for the 8 MiB batches, and the `zstd` CLI for 3.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "target/release/inlet-server")
CLIENT = os.path.join(ROOT, "target/release/inlet-client")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


class Server:
    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="inlet-compress-bench-")
        self.proc = subprocess.Popen(
            [SERVER, "--listen", "127.0.0.1:0", "--store", "memory", "--data-dir", self.dir, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        self.addr = line.removeprefix("listening on ")
        self.host, self.port = self.addr.rsplit(":", 1)

    def metrics(self):
        c = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
        c.request("GET", "/metrics")
        return c.getresponse().read().decode()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def counter(text, name, coding):
    m = re.search(rf'^{name}_total{{coding="{coding}"}} (\d+)', text, re.M)
    return int(m.group(1)) if m else 0


def client_bench(addr, *args):
    out = subprocess.run(
        [CLIENT, "bench", "--server", addr, "--json", *args], capture_output=True, text=True, check=False
    )
    return json.loads(out.stdout)


def batches(duration):
    rows = []
    for coding in ["identity", "gzip", "zstd"]:
        s = Server()
        try:
            before = cpu_seconds(s.proc.pid)
            extra = [] if coding == "identity" else ["--compress", coding]
            r = client_bench(s.addr, "--batch", "100", "--connections", "8", "--duration", f"{duration}s", *extra)
            cpu = cpu_seconds(s.proc.pid) - before
            m = s.metrics()
            wire = counter(m, "inlet_request_body_wire_bytes", coding)
            decoded = counter(m, "inlet_request_body_decoded_bytes", coding)
            rows.append(
                {
                    "coding": coding,
                    "events_per_s": r["events_per_s"],
                    "server_cpu_us_per_event": cpu / max(r["events"], 1) * 1e6,
                    "wire_bytes_per_request": wire / max(r["requests"], 1),
                    "decoded_bytes_per_request": decoded / max(r["requests"], 1),
                    "p99_ms": r["latency_ms"]["p99"],
                    "client_bound": r.get("client_bound"),
                    "status": r["status"],
                }
            )
        finally:
            s.stop()
    return rows


def big_batch():
    """About 8 MiB of NDJSON (1000 events of ~8 KiB of words), zstd level 3."""
    import zstandard

    rng = random.Random(14)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(2000)]
    lines = []
    for i in range(1000):
        data = " ".join(rng.choice(words) for _ in range(1300))[:8300]
        event = {"specversion": "1.0", "id": f"big-{i}", "source": "/bench/big", "type": "bench.big", "data": data}
        lines.append(json.dumps(event))
    plain = ("\n".join(lines) + "\n").encode()
    return plain, zstandard.ZstdCompressor(level=3).compress(plain)


def post_loop(addr, body, coding, stop, sent):
    host, port = addr.rsplit(":", 1)
    n = 0
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    while not stop.is_set():
        # A fresh id set each time would need re-encoding; duplicates cost
        # the same decode and parse, and are acknowledged without storing.
        conn.request(
            "POST", "/events", body=body, headers={"Content-Type": "application/x-ndjson", "Content-Encoding": coding}
        )
        res = conn.getresponse()
        res.read()
        if res.status != 202:
            print(f"big batch answered {res.status}", file=sys.stderr)
        n += 1
    sent.append(n)


def stalls(duration, rounds):
    plain, packed = big_batch()
    s = Server("--max-body", str(16 << 20))
    rows = []
    try:
        for r in range(rounds):
            for loaded in (None, "zstd", "identity"):
                stop, sent = threading.Event(), []
                threads = []
                if loaded:
                    body = packed if loaded == "zstd" else plain
                    t = threading.Thread(target=post_loop, args=(s.addr, body, loaded, stop, sent))
                    t.start()
                    threads.append(t)
                    time.sleep(0.5)
                res = client_bench(s.addr, "--connections", "4", "--rate", "1000", "--duration", f"{duration}s")
                stop.set()
                for t in threads:
                    t.join()
                rows.append(
                    {
                        "round": r,
                        "big_batches": loaded,
                        "big_batches_posted": sum(sent),
                        "p50_ms": res["latency_ms"]["p50"],
                        "p99_ms": res["latency_ms"]["p99"],
                        "p99_9_ms": res["latency_ms"]["p99_9"],
                        "max_ms": res["latency_ms"]["max"],
                        "status": res["status"],
                    }
                )
    finally:
        s.stop()
    return {"decoded_bytes": len(plain), "wire_bytes": len(packed), "rows": rows}


def zstd_own(sample_dir):
    """zstd's own benchmark of the library on an NDJSON sample (4 MiB)."""
    if not shutil.which("zstd"):
        return None
    lines = []
    for i in range(15000):
        lines.append(
            json.dumps(
                {"specversion": "1.0", "id": f"e-{i}", "source": "/bench", "type": "bench.event", "data": {"seq": i, "v": "abcdefgh"}}
            )
        )
    path = os.path.join(sample_dir, "sample.ndjson")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    out = subprocess.run(["zstd", "-b3", "-i3", path], capture_output=True, text=True)
    # Progress lines end in CR; the result is the last line with a ratio.
    lines = [l.strip() for l in (out.stdout + out.stderr).replace("\r", "\n").splitlines() if "MB/s" in l]
    return lines[-1] if lines else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/compression.json"))
    args = ap.parse_args()
    result = {"cores": os.cpu_count(), "loadavg_at_start": os.getloadavg()}
    result["batches"] = batches(args.duration)
    for row in result["batches"]:
        print(
            f"{row['coding']:>8}: {row['events_per_s']:>9.0f} events/s  "
            f"server CPU {row['server_cpu_us_per_event']:.2f} us/event  "
            f"wire {row['wire_bytes_per_request']:.0f} B/request (decoded {row['decoded_bytes_per_request']:.0f})  "
            f"p99 {row['p99_ms']:.2f} ms"
        )
    result["stalls"] = stalls(args.duration, args.rounds)
    st = result["stalls"]
    print(f"big batch: {st['decoded_bytes']} B decoded, {st['wire_bytes']} B zstd on the wire")
    for row in st["rows"]:
        print(
            f"round {row['round']} big batches: {row['big_batches'] or 'none':>8} "
            f"({row['big_batches_posted']} posted): single events p50 {row['p50_ms']:.2f} "
            f"p99 {row['p99_ms']:.2f} p99.9 {row['p99_9_ms']:.2f} max {row['max_ms']:.2f} ms"
        )
    with tempfile.TemporaryDirectory() as d:
        result["zstd_cli_bench"] = zstd_own(d)
    print(f"zstd -b3 (the library's own benchmark): {result['zstd_cli_bench']}")
    result["loadavg_at_end"] = os.getloadavg()
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
