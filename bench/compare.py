#!/usr/bin/env python3
"""Side-by-side benchmark of inlet against an axum baseline, nginx and a bare loop.

Runs each server alternately under the same load, several rounds, and prints
per server and workload: requests/s, p50, p99 and server CPU time per request
(user + system time of all the server's processes over the run, from /proc,
divided by the requests served), the medians over the rounds, and the ratios.
Also: memory per idle connection (10,000 held open), inlet's p99 with 1,000
idle and 200 byte-trickling connections open, and `inlet-client bench`
against wrk on the same server.

Usage: bench/run.sh [--rounds N] [--duration S] [--only pipelined]   (builds everything first)

With --tokens it measures only inlet with access control on against off
(`--tokens FILE` and a client token against no tokens), alternating the two
each round: req/s, p50, p99 and server CPU µs per request, single requests
and pipelined, with `inlet-client bench`; results in bench/results/tokens.json.

With --schemas, the same for inlet validating every event's `data` against
bench/schemas/com.example.order.json (`--schemas bench/schemas`) against
not validating, both sent that type's events with the data of
bench/schemas/com.example.order.data; results in bench/results/schemas.json.
"""

import argparse
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INLET = os.path.join(ROOT, "target/release/inlet-server")
CLIENT = os.path.join(ROOT, "target/release/inlet-client")
AXUM = os.path.join(ROOT, "bench/axum-baseline/target/release/axum-baseline")
BARE = os.path.join(ROOT, "bench/bare-loop/target/release/bare-loop")
WRK_SINGLE = os.path.join(ROOT, "bench/wrk/post_event.lua")
WRK_PIPE = os.path.join(ROOT, "bench/wrk/pipeline16.lua")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")




def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(entry))
            except OSError:
                pass
    return out


def cpu_split(pids):
    """User and system CPU seconds of `pids` (utime and stime)."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except OSError:
            pass
    return user / TICK, system / TICK


def cpu_seconds(pids):
    return sum(cpu_split(pids))


def rss_bytes(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


# For memory per idle connection: mimalloc puts its arena in transparent huge
# pages (2 MiB) where the kernel allows them (`madvise` mode here), so the
# RSS of a Rust server then grows in 2 MiB steps, 210 bytes per connection at
# 10,000: the measure would say more about where a step falls than about
# the connections. Off, RSS grows by 4 KiB pages. (bench/idle.py)
PAGE_GRANULAR = {"MIMALLOC_ALLOW_THP": "0"}


class Server:
    def __init__(self, name, extra=(), env=None):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix=f"bench-{name}-")
        if name == "nginx":
            port = free_port()
            with open(os.path.join(ROOT, "bench/nginx/nginx.conf.template")) as f:
                conf = f.read().replace("@DIR@", self.tmp).replace("@PORT@", str(port))
            # The HTTPS site is bench/tls.py's.
            conf = "\n".join(line for line in conf.splitlines() if not line.rstrip().endswith("#@TLS@"))
            path = os.path.join(self.tmp, "nginx.conf")
            with open(path, "w") as f:
                f.write(conf)
            self.proc = subprocess.Popen(["nginx", "-c", path, "-p", self.tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.addr = f"127.0.0.1:{port}"
            wait_port(port)
            time.sleep(0.3)
        else:
            cmd = {"inlet": [INLET, "--listen", "127.0.0.1:0", "--store", "memory", "--data-dir", self.tmp],
                   "axum": [AXUM, "127.0.0.1:0"],
                   "bare": [BARE, "127.0.0.1:0"]}[name] + list(extra)
            env = dict(os.environ, RUST_LOG="warn", **(env or {}))
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
            line = self.proc.stdout.readline().strip()
            self.addr = line.removeprefix("listening on ")

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM if self.name != "nginx" else signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()




def parse_ms(text):
    m = re.match(r"([\d.]+)([a-z]+)", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}[unit]


def wrk(addr, script, conns, duration, pipeline=1):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", "-s", script, f"http://{addr}"],
                         capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # wrk -t1 drives everything from one thread: near 100% of a core, the
    # generator (not the server) is the limit.
    wrk_cpu = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / duration
    if "Latency Distribution" not in out:
        raise SystemExit(f"wrk against {addr} failed:\n{out}")
    # wrk counts responses, pipelined or not.
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    seconds = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    try:
        p50 = parse_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
        p99 = parse_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    except (AttributeError, KeyError) as e:
        raise SystemExit(f"cannot read wrk's output ({e}):\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"requests": requests, "rps": requests / seconds, "p50_ms": p50, "p99_ms": p99, "wrk_cpu": wrk_cpu,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "socket_errors": errors.group(1) if errors else ""}


def client_bench(addr, conns, duration, pipeline=1, token=None, event=()):
    """`inlet-client bench`; `event`: more client flags (`--type`, `--data`)."""
    cmd = [CLIENT, "bench", "--server", addr, "--connections", str(conns), "--pipeline", str(pipeline),
           "--duration", f"{duration}s", "--json", *event]
    if token:
        cmd += ["--token", token]
    out = subprocess.run(cmd, capture_output=True, text=True)
    r = json.loads(out.stdout)
    return {"requests": r["requests"], "rps": r["requests_per_s"], "p50_ms": r["latency_ms"]["p50"],
            "p99_ms": r["latency_ms"]["p99"], "client_bound": r["client_bound"], "client_cpu": r["client_cpu"],
            "status": r.get("status", {})}


def measured(server, run):
    """`run`'s result with the server's CPU per request: in all, and its
    user and system (kernel) parts."""
    before = cpu_split(server.pids())
    result = run()
    after = cpu_split(server.pids())
    per_request = 1e6 / max(result["requests"], 1)
    result["cpu_us_per_req"] = (sum(after) - sum(before)) * per_request
    result["user_us_per_req"] = (after[0] - before[0]) * per_request
    result["sys_us_per_req"] = (after[1] - before[1]) * per_request
    return result


def median_of(rows, key):
    return statistics.median(r[key] for r in rows)


def idle_memory(name, count):
    server = Server(name, env=PAGE_GRANULAR)
    host, port = server.addr.rsplit(":", 1)
    time.sleep(0.5)
    before = rss_bytes(server.pids())
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)))
        socks.append(s)
    time.sleep(2)
    after = rss_bytes(server.pids())
    for s in socks:
        s.close()
    server.stop()
    return (after - before) / count


def slow_clients_p99(duration, conns, rounds):
    """inlet's p99 alone and with 1,000 idle + 200 trickling connections
    open, alternating `rounds` times on one server; medians of each."""
    server = Server("inlet", ["--header-timeout", "120s"])
    alone, loaded, open_conns = [], [], []
    for _ in range(rounds):
        alone.append(wrk(server.addr, WRK_SINGLE, conns, duration))
        hold_idle = subprocess.Popen([CLIENT, "hold", "--server", server.addr, "--connections", "1000"],
                                     stdout=subprocess.DEVNULL)
        hold_trickle = subprocess.Popen([CLIENT, "hold", "--server", server.addr, "--connections", "200", "--partial",
                                         "--interval", "1s"], stdout=subprocess.DEVNULL)
        time.sleep(2)
        loaded.append(wrk(server.addr, WRK_SINGLE, conns, duration))
        stats = subprocess.run([CLIENT, "stats", "--server", server.addr], capture_output=True, text=True).stdout
        open_conns.append(json.loads(stats)["connections"]["open"])
        for hold in (hold_idle, hold_trickle):
            hold.terminate()
            hold.wait()
        time.sleep(1)
    server.stop()
    return {"p99_alone_ms": median_of(alone, "p99_ms"), "p99_with_slow_ms": median_of(loaded, "p99_ms"),
            "open_connections": min(open_conns), "rps_alone": median_of(alone, "rps"),
            "rps_with_slow": median_of(loaded, "rps"), "rounds": {"alone": alone, "with_slow": loaded}}


def tokens_comparison(rounds, duration, out):
    """inlet with `--tokens` (and a client token) against inlet without,
    alternating each round; medians per mode and workload."""
    made = subprocess.run([INLET, "token", "new", "--name", "bench", "--scope", "write"], capture_output=True, text=True,
                          check=True).stdout
    secret = made.splitlines()[0]
    entry = "\n".join(l for l in made.splitlines()[1:] if not l.startswith("#")) + "\n"
    tmp = tempfile.mkdtemp(prefix="bench-tokens-")
    tokens = os.path.join(tmp, "tokens.toml")
    with open(tokens, "w") as f:
        f.write(entry)
    on_off_comparison("tokens", {"off": ([], None), "on": (["--tokens", tokens], secret)}, (), rounds, duration, out)


def schemas_comparison(rounds, duration, out):
    """inlet with `--schemas bench/schemas` against inlet without, both sent
    the events of type com.example.order with the data of
    bench/schemas/com.example.order.data (10 properties, 2 nested), which
    the schema then validates; alternating each round."""
    with open(os.path.join(ROOT, "bench/schemas/com.example.order.data")) as f:
        data = f.read().strip()
    event = ("--type", "com.example.order", "--data", data)
    modes = {"off": ([], None), "on": (["--schemas", os.path.join(ROOT, "bench/schemas")], None)}
    on_off_comparison("schemas", modes, event, rounds, duration, out)


def on_off_comparison(what, modes, event, rounds, duration, out):
    """inlet with a feature on (`modes["on"]`: server flags and a client
    token) against off, alternating the order each round; single requests
    (64 connections) and pipelined (16 deep on 16); medians per mode."""
    workloads = {"single": (64, 1), "pipelined": (16, 16)}
    rows = {m: {w: [] for w in workloads} for m in modes}
    for rnd in range(rounds):
        order = ["off", "on"] if rnd % 2 == 0 else ["on", "off"]
        for mode in order:
            extra, token = modes[mode]
            server = Server("inlet", extra)
            client_bench(server.addr, 8, 1, token=token, event=event)  # warm-up
            for workload, (conns, pipeline) in workloads.items():
                r = measured(server, lambda: client_bench(server.addr, conns, duration, pipeline, token, event))
                refused = {code: n for code, n in r["status"].items() if code != "202"}
                if refused:
                    raise SystemExit(f"{what} {mode}, {workload}: answers other than 202: {refused}")
                rows[mode][workload].append(r)
            server.stop()
            print(f"round {rnd + 1}: {what} {mode} done", file=sys.stderr)
    table = {m: {w: {k: median_of(rows[m][w], k) for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req")}
                 for w in workloads} for m in modes}
    ratios = {w: table["on"][w]["cpu_us_per_req"] / table["off"][w]["cpu_us_per_req"] for w in workloads}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"table": table, "cpu_on_vs_off": ratios, "raw": rows, "rounds": rounds, "duration_s": duration}, f,
                  indent=2)
    print(f"\n{rounds} rounds x {duration} s, inlet-client bench, medians\n")
    print(f"| workload | {what} | req/s | p50 ms | p99 ms | server CPU µs/req |")
    print("|---|---|---|---|---|---|")
    for w in workloads:
        for m in modes:
            r = table[m][w]
            print(f"| {w} | {m} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['cpu_us_per_req']:.1f} |")
    print()
    for w, v in ratios.items():
        print(f"{w}: CPU per request, {what} on / off = {v:.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", choices=["pipelined"], help="run one workload only, with wrk's own CPU share")
    ap.add_argument("--tokens", action="store_true", help="compare inlet with access control on and off only")
    ap.add_argument("--schemas", action="store_true",
                    help="compare inlet validating order events against bench/schemas with not validating them only")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.tokens:
        return tokens_comparison(args.rounds, args.duration,
                                 args.out or os.path.join(ROOT, "bench/results/tokens.json"))
    if args.schemas:
        return schemas_comparison(args.rounds, args.duration,
                                  args.out or os.path.join(ROOT, "bench/results/schemas.json"))
    args.out = args.out or os.path.join(ROOT, "bench/results/latest.json")
    if args.only == "pipelined":
        return pipelined_only(args)

    names = ["inlet", "axum", "nginx", "bare"]
    results = {"single": {n: [] for n in names}, "pipelined": {n: [] for n in names}, "client_vs_wrk": []}
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            server = Server(name)
            wrk(server.addr, WRK_SINGLE, 64, 1)  # warm-up
            r = measured(server, lambda: wrk(server.addr, WRK_SINGLE, 64, args.duration))
            results["single"][name].append(r)
            r = measured(server, lambda: wrk(server.addr, WRK_PIPE, 16, args.duration, pipeline=16))
            results["pipelined"][name].append(r)
            if name == "inlet":
                c = measured(server, lambda: client_bench(server.addr, 64, args.duration))
                w = results["single"]["inlet"][-1]
                results["client_vs_wrk"].append({"client_rps": c["rps"], "wrk_rps": w["rps"], "client_bound": c["client_bound"],
                                                 "client_cpu": c["client_cpu"], "client_p99_ms": c["p99_ms"]})
            server.stop()
            print(f"round {rnd + 1}: {name} done", file=sys.stderr)

    table = {}
    for workload in ("single", "pipelined"):
        table[workload] = {}
        for name in names:
            rows = results[workload][name]
            keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req")
            table[workload][name] = {k: median_of(rows, k) for k in keys}
    memory = {name: idle_memory(name, args.idle) for name in names}
    slow = slow_clients_p99(args.duration, 64, args.rounds)
    cvw = results["client_vs_wrk"]
    summary = {
        "table": table,
        "idle_bytes_per_connection": memory,
        "slow_clients": slow,
        "client_vs_wrk": {"client_rps": median_of(cvw, "client_rps"), "wrk_rps": median_of(cvw, "wrk_rps"),
                          "client_bound_any": any(r["client_bound"] for r in cvw)},
        "ratios": {
            "inlet_cpu_vs_axum": table["single"]["inlet"]["cpu_us_per_req"] / table["single"]["axum"]["cpu_us_per_req"],
            "inlet_cpu_vs_nginx": table["single"]["inlet"]["cpu_us_per_req"] / table["single"]["nginx"]["cpu_us_per_req"],
            "inlet_rps_vs_axum": table["single"]["inlet"]["rps"] / table["single"]["axum"]["rps"],
            "inlet_cpu_vs_bare": table["single"]["inlet"]["cpu_us_per_req"] / table["single"]["bare"]["cpu_us_per_req"],
            "bare_cpu_vs_axum": table["single"]["bare"]["cpu_us_per_req"] / table["single"]["axum"]["cpu_us_per_req"],
            "bare_cpu_vs_nginx": table["single"]["bare"]["cpu_us_per_req"] / table["single"]["nginx"]["cpu_us_per_req"],
            "bare_pipelined_rps_vs_nginx": table["pipelined"]["bare"]["rps"] / table["pipelined"]["nginx"]["rps"],
            "inlet_pipelined_rps_vs_nginx": table["pipelined"]["inlet"]["rps"] / table["pipelined"]["nginx"]["rps"],
            "slow_p99_ratio": slow["p99_with_slow_ms"] / slow["p99_alone_ms"],
            "client_vs_wrk_rps": median_of(cvw, "client_rps") / median_of(cvw, "wrk_rps"),
        },
        "raw": results,
        "rounds": args.rounds,
        "duration_s": args.duration,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=2)

    print(f"\n{args.rounds} rounds x {args.duration} s, wrk -t1, medians\n")
    for workload, title in (("single", "POST /events, 64 connections, one event per request, fresh ids"),
                            ("pipelined", "POST /events, 16 connections, pipelined 16 deep")):
        print(f"{title}\n")
        print("| server | req/s | p50 ms | p99 ms | server CPU µs/req | of it user / system |")
        print("|---|---|---|---|---|---|")
        for name in names:
            r = table[workload][name]
            print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['cpu_us_per_req']:.1f} "
                  f"| {r['user_us_per_req']:.1f} / {r['sys_us_per_req']:.1f} |")
        print()
    print("| server | memory per idle connection |")
    print("|---|---|")
    for name in names:
        print(f"| {name} | {memory[name] / 1024:.2f} KiB |")
    print()
    s = slow
    print(f"inlet p99 alone {s['p99_alone_ms']:.3f} ms; with 1,000 idle + 200 trickling connections open "
          f"({s['open_connections']} open) {s['p99_with_slow_ms']:.3f} ms")
    print(f"inlet-client bench {summary['client_vs_wrk']['client_rps']:.0f} req/s vs wrk (Lua) {summary['client_vs_wrk']['wrk_rps']:.0f} req/s"
          + (" (client-bound in some round)" if summary["client_vs_wrk"]["client_bound_any"] else ""))
    print()
    for k, v in summary["ratios"].items():
        print(f"{k}: {v:.2f}")


def pipelined_only(args):
    """16-deep pipelining on 16 connections, every server, alternating; prints
    requests/s, server CPU per request and wrk's CPU share (1.00 = one core:
    the generator is saturated and the figure says nothing of the server)."""
    names = ["inlet", "axum", "nginx", "bare"]
    rows = {n: [] for n in names}
    for rnd in range(args.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            server = Server(name)
            wrk(server.addr, WRK_PIPE, 16, 1, pipeline=16)  # warm-up
            rows[name].append(measured(server, lambda: wrk(server.addr, WRK_PIPE, 16, args.duration, pipeline=16)))
            server.stop()
            print(f"round {rnd + 1}: {name} done", file=sys.stderr)
    table = {n: {k: median_of(rows[n], k) for k in ("rps", "p99_ms", "cpu_us_per_req", "wrk_cpu")} for n in names}
    out = os.path.join(os.path.dirname(args.out), "pipelined.json")
    with open(out, "w") as f:
        json.dump({"table": table, "raw": rows, "rounds": args.rounds, "duration_s": args.duration}, f, indent=2)
    print(f"\n{args.rounds} rounds x {args.duration} s, wrk -t1 -c16, 16 deep, medians\n")
    print("| server | req/s | vs nginx | p99 ms | server CPU µs/req | wrk CPU (cores) |")
    print("|---|---|---|---|---|---|")
    for n in names:
        r = table[n]
        print(f"| {n} | {r['rps']:.0f} | {r['rps'] / table['nginx']['rps']:.2f}x | {r['p99_ms']:.3f} "
              f"| {r['cpu_us_per_req']:.1f} | {r['wrk_cpu']:.2f} |")


if __name__ == "__main__":
    main()
