"""How fast ``fleetwise replay`` can send: achieved send rate and client lag against the instant endpoint.

The instant endpoint (``python -m fleetwise.replay.instant``, uvloop) runs in a subprocess on a free loopback
port and answers every request at once; the replay runs in this process (uvloop) and sends ``--rate`` req/s
for ``--duration`` s with Poisson arrivals (seed 0), ``--isl`` prompt token ids and ``--osl`` streamed output
tokens each. Client lag is how late a request was handed to the HTTP client relative to its scheduled time;
the goal is >= 2,000 req/s with a lag p99 under 5 ms. Server and client share the machine's cores.

Usage: python benchmarks/replay_speed.py [--rate 2000] [--duration 10] [--isl 128] [--osl 16]
       [--http-client aiohttp|httpx] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import socket
import subprocess
import sys
import time

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "fleetwise.replay.instant", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"replay_speed: the instant endpoint exited: {proc.stdout.read()}")
            time.sleep(0.05)
    proc.kill()
    sys.exit("replay_speed: the instant endpoint did not start within 20 s")


def _trace(rate: float, duration_s: float, isl: int, osl: int):
    from fleetwise.traffic.records import RequestTrace

    rng = np.random.default_rng(0)
    n = int(rate * duration_s)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    t -= t[0]
    return RequestTrace(t, np.full(n, isl, dtype=np.int64), np.full(n, osl, dtype=np.int64), source="poisson")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=2000.0, help="Target send rate, req/s.")
    p.add_argument("--duration", type=float, default=10.0, help="Seconds of arrivals.")
    p.add_argument("--isl", type=int, default=128, help="Prompt tokens per request.")
    p.add_argument("--osl", type=int, default=16, help="Output tokens per request.")
    p.add_argument("--max-in-flight", type=int, default=1024)
    p.add_argument("--http-client", default="aiohttp", choices=("aiohttp", "httpx"))
    p.add_argument("--json", action="store_true", help="Print JSON.")
    args = p.parse_args()

    from fleetwise.replay import replay_trace

    trace = _trace(args.rate, args.duration, args.isl, args.osl)
    port = _free_port()
    server = _start_server(port)
    try:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = time.perf_counter()
        result = replay_trace(trace, [f"http://127.0.0.1:{port}"], model="instant", timeout_s=30.0,
                              max_in_flight=args.max_in_flight, http_client=args.http_client)
        wall = time.perf_counter() - wall0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        server.terminate()
        server.wait(10)
    s = result.summary()
    sent = result.sent_s[np.isfinite(result.sent_s)]
    send_span = float(sent.max() - sent.min()) if len(sent) > 1 else float("nan")
    lag = result.client_lag_s[np.isfinite(result.client_lag_s)] * 1e3
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    figures = {
        "command": "python benchmarks/replay_speed.py " + shlex.join(sys.argv[1:]),
        "cores": os.cpu_count(), "target_rps": args.rate, "requests": len(trace),
        "trace_rps": s["trace_rps"],
        "achieved_send_rps": (len(sent) - 1) / send_span if send_span > 0 else None,
        "completed": s["completed"], "failed": s["failed"], "failed_by_reason": s["failed_by_reason"],
        "client_lag_ms": {"p50": float(np.percentile(lag, 50)), "p99": float(np.percentile(lag, 99)),
                          "max": float(lag.max())},
        "late_sends": s["late_sends"], "in_flight_waits": s["in_flight_waits"],
        "ttft_ms": s["ttft_ms"], "e2e_ms": s["e2e_ms"], "wall_s": wall,
        "client_cpu_s": cpu_s, "client_cpu_us_per_request": 1e6 * cpu_s / max(len(trace), 1),
        "isl": args.isl, "osl": args.osl, "http_client": args.http_client, "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    lag_ms = figures["client_lag_ms"]
    print(f"Replay speed: {len(trace):,} requests, Poisson at {args.rate:,.0f} req/s for "
          f"{args.duration:g} s, {args.isl}/{args.osl} tokens, {args.http_client} client, "
          f"instant endpoint in a subprocess, {os.cpu_count()} cores\n")
    print("| trace rate | achieved send rate | client lag p50 | p99 | max | late (>10 ms) | completed | "
          "failed | TTFT p50 | client CPU per request |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cells = [f"{s['trace_rps']:,.0f} req/s", f"{figures['achieved_send_rps']:,.0f} req/s",
             f"{lag_ms['p50']:.2f} ms", f"{lag_ms['p99']:.2f} ms", f"{lag_ms['max']:.1f} ms",
             f"{s['late_sends']:,}", f"{s['completed']:,}", f"{s['failed']:,}",
             f"{s['ttft_ms']['p50']:.2f} ms", f"{figures['client_cpu_us_per_request']:,.0f} us"]
    print("| " + " | ".join(cells) + " |")
    print(f"\ncommand: {figures['command']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
