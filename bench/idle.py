#!/usr/bin/env python3
"""Memory per idle connection of inlet alone: the server's RSS growth with N
connections open that have sent nothing, divided by N (the same measure as
bench/compare.py's, without the other servers). Needs a release build:

    cargo build --release -p inlet-server
    python3 bench/idle.py [--connections 10000] [--server target/release/inlet-server] [--thp]

The server runs with MIMALLOC_ALLOW_THP=0 unless --thp: mimalloc puts its
arena in transparent huge pages where the kernel allows them (`madvise` mode
on this machine), and the RSS then grows in steps of 2 MiB, 210 bytes per
connection at 10,000 (the same build measured 840-850 or 1,050-1,060 bytes
depending on where a step fell). Without them RSS grows by 4 KiB pages, and
the figure is the connections' own memory. What a connection costs does not
change with THP: only how RSS rounds it.
"""

import argparse
import os
import resource
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--server", default=os.path.join(ROOT, "target/release/inlet-server"))
    ap.add_argument("--thp", action="store_true", help="leave mimalloc's transparent huge pages on")
    args = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = args.connections
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [args.server, "--listen", "127.0.0.1:0", "--store", "memory", "--data-dir", tmp,
             "--max-connections", str(n + 100), "--header-timeout", "120s"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, RUST_LOG="warn", **({} if args.thp else {"MIMALLOC_ALLOW_THP": "0"})))
        try:
            host, port = server.stdout.readline().strip().removeprefix("listening on ").rsplit(":", 1)
            time.sleep(0.5)
            before = rss(server.pid)
            socks = [socket.create_connection((host, int(port))) for _ in range(n)]
            time.sleep(2)
            after = rss(server.pid)
            print(f"{(after - before) / n:.0f} bytes per idle connection ({n} open)")
            for s in socks:
                s.close()
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
