#!/usr/bin/env python3
"""HTTPS: inlet (rustls) against nginx (OpenSSL) with the same certificate.

Both serve TLS 1.2/1.3 with one ECDSA P-256 certificate made here by
openssl (a throwaway CA), each with its default cipher-suite preference
(both follow the client's order: wrk's OpenSSL picks TLS 1.3 with
AES-256-GCM). Alternating rounds, medians, per server:

- keep-alive: `POST /events`, 64 connections, wrk -t1; requests/s, p99 and
  server CPU time per request (user + system of all the server's
  processes, from /proc);
- new connections: the same request with `Connection: close`, 16
  connections, so every request is a full handshake (wrk does not resume
  sessions); connections/s and server CPU per connection;
- memory per idle TLS connection: N connections, each with its handshake
  done (Python's ssl), held open; the servers' RSS growth divided by N.

nginx answers a fixed 202 without parsing the body; inlet parses,
validates and stores in its memory store, so the keep-alive figure is an
upper bound of TLS's share, not a like-for-like HTTP comparison. The goal
the issue sets: inlet within 1.2x of nginx's CPU per request on keep-alive.

Usage: bench/tls.sh [--rounds N] [--duration S] [--idle N]   (builds first)
"""

import argparse
import json
import os
import re
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, wait_port
from compare import ROOT, INLET, WRK_SINGLE, children, cpu_seconds, parse_ms, rss_bytes

WRK_CLOSE = os.path.join(ROOT, "bench/wrk/post_event_close.lua")
NAMES = ["inlet", "nginx"]


def make_certificates(d):
    """A CA and a server certificate for 127.0.0.1 signed by it (P-256)."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.pem", "-subj", "/CN=inlet bench CA", "-days", "2")
    run("req", *ec, "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr", "-subj", "/CN=localhost")
    with open(f"{d}/ext.cnf", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.pem", "-CAkey", f"{d}/ca.key", "-CAcreateserial",
        "-out", f"{d}/server.pem", "-days", "2", "-extfile", f"{d}/ext.cnf")
    return f"{d}/server.pem", f"{d}/server.key", f"{d}/ca.pem"


class Server:
    def __init__(self, name, cert, key):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix=f"bench-tls-{name}-")
        if name == "nginx":
            port = free_port()
            with open(os.path.join(ROOT, "bench/nginx/nginx.conf.template")) as f:
                conf = f.read()
            for k, v in {"@DIR@": self.tmp, "@PORT@": str(free_port()), "@TLS_PORT@": str(port),
                         "@CERT@": cert, "@KEY@": key}.items():
                conf = conf.replace(k, v)
            conf = conf.replace("#@TLS@", "")
            path = os.path.join(self.tmp, "nginx.conf")
            with open(path, "w") as f:
                f.write(conf)
            self.proc = subprocess.Popen(["nginx", "-c", path, "-p", self.tmp], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            self.addr = f"127.0.0.1:{port}"
            wait_port(port)
            time.sleep(0.3)
        else:
            cmd = [INLET, "--listen", "127.0.0.1:0", "--store", "memory", "--data-dir", self.tmp,
                   "--tls-cert", cert, "--tls-key", key]
            env = dict(os.environ, RUST_LOG="warn")
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
            self.addr = self.proc.stdout.readline().strip().removeprefix("listening on ")

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM if self.name != "nginx" else signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wrk(addr, script, conns, duration):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", script, f"https://{addr}"],
                         capture_output=True, text=True).stdout
    if "Latency Distribution" not in out:
        raise SystemExit(f"wrk against https://{addr} failed:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    seconds = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    p99 = parse_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"requests": requests, "rps": requests / seconds, "p99_ms": p99,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else ""}


def measured(server, run):
    before = cpu_seconds(server.pids())
    result = run()
    result["cpu_us_per_req"] = (cpu_seconds(server.pids()) - before) / max(result["requests"], 1) * 1e6
    return result


def idle_memory(server, ca, count):
    """RSS growth per TLS connection held open after its handshake."""
    host, port = server.addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.set_alpn_protocols(["http/1.1"])
    time.sleep(0.5)
    before = rss_bytes(server.pids())
    socks = [ctx.wrap_socket(socket.create_connection((host, int(port))), server_hostname="127.0.0.1")
             for _ in range(count)]
    time.sleep(2)
    after = rss_bytes(server.pids())
    version = socks[0].version(), socks[0].cipher()[0]
    for s in socks:
        s.close()
    return (after - before) / count, version


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results/tls-latest.json"))
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    certs = tempfile.mkdtemp(prefix="bench-tls-certs-")
    cert, key, ca = make_certificates(certs)

    raw = {w: {n: [] for n in NAMES} for w in ("keepalive", "new_connections", "idle_bytes")}
    negotiated = {}
    for rnd in range(args.rounds):
        for name in NAMES[rnd % 2:] + NAMES[:rnd % 2]:
            server = Server(name, cert, key)
            wrk(server.addr, WRK_SINGLE, 64, 1)  # warm-up
            raw["keepalive"][name].append(measured(server, lambda: wrk(server.addr, WRK_SINGLE, 64, args.duration)))
            raw["new_connections"][name].append(
                measured(server, lambda: wrk(server.addr, WRK_CLOSE, 16, args.duration)))
            per_conn, negotiated[name] = idle_memory(server, ca, args.idle)
            raw["idle_bytes"][name].append(per_conn)
            server.stop()
            print(f"round {rnd + 1}: {name} done", file=sys.stderr)

    med = statistics.median
    table = {n: {"keepalive_rps": med(r["rps"] for r in raw["keepalive"][n]),
                 "keepalive_p99_ms": med(r["p99_ms"] for r in raw["keepalive"][n]),
                 "keepalive_cpu_us_per_req": med(r["cpu_us_per_req"] for r in raw["keepalive"][n]),
                 "new_conns_per_s": med(r["rps"] for r in raw["new_connections"][n]),
                 "new_conn_cpu_us": med(r["cpu_us_per_req"] for r in raw["new_connections"][n]),
                 "idle_bytes_per_conn": med(raw["idle_bytes"][n])} for n in NAMES}
    ratios = {k: table["inlet"][k] / table["nginx"][k] for k in
              ("keepalive_cpu_us_per_req", "new_conn_cpu_us", "new_conns_per_s", "idle_bytes_per_conn")}
    summary = {"table": table, "ratios_inlet_vs_nginx": ratios, "negotiated": negotiated, "raw": raw,
               "rounds": args.rounds, "duration_s": args.duration, "idle_connections": args.idle}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)

    print(f"\nHTTPS, {args.rounds} rounds x {args.duration} s, wrk -t1, medians; negotiated: {negotiated}\n")
    print("| server | keep-alive req/s | p99 ms | CPU µs/req | new conns/s | CPU µs/new conn | idle KiB/conn |")
    print("|---|---|---|---|---|---|---|")
    for n in NAMES:
        r = table[n]
        print(f"| {n} | {r['keepalive_rps']:.0f} | {r['keepalive_p99_ms']:.3f} | {r['keepalive_cpu_us_per_req']:.1f} "
              f"| {r['new_conns_per_s']:.0f} | {r['new_conn_cpu_us']:.0f} | {r['idle_bytes_per_conn'] / 1024:.1f} |")
    print()
    for k, v in ratios.items():
        print(f"inlet/nginx {k}: {v:.2f}")


if __name__ == "__main__":
    main()
