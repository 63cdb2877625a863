"""How fast the per-replica event simulator is: simulated requests per second of wall time.

Replica: llama-3.1-70b, FP8, 4x h100-sxm in TP4, shipped trtllm profile. Cases:
offline (all requests queued at t=0) at 1000/1000 and 128/4096 input/output tokens with predict()'s
default request count, and rate mode at 10 req/s with 2,000 requests of 1000/1000 tokens
(Poisson arrivals). Each case runs once to warm up, then 3 timed calls; the table gives the median.

Usage: python benchmarks/sim_speed.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RUNS = 3


def main() -> int:
    if not DATA.is_dir():
        sys.exit(f"sim_speed: shared data not found at {DATA} (expected ../shared/data next to the project); skipping")

    from fleetwise.perf.predict import predict
    from fleetwise.perf.replica import replica_from_names

    replica = replica_from_names("llama-3.1-70b", "h100-sxm", 4, 4, "fp8", "trtllm")
    cases = [
        ("offline 1000/1000", {"isl": 1000, "osl": 1000, "mode": "offline"}),
        ("offline 128/4096", {"isl": 128, "osl": 4096, "mode": "offline"}),
        ("rate 10 req/s, 2000 req, 1000/1000", {"isl": 1000, "osl": 1000, "mode": "rate", "rate_qps": 10.0, "num_requests": 2000}),
    ]
    rows = []
    for label, kw in cases:
        print(f"{label}: ", end="", file=sys.stderr, flush=True)
        predict(replica, **kw)  # warm-up
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            m = predict(replica, **kw)
            times.append(time.perf_counter() - t0)
            print(".", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        med = statistics.median(times)
        out_tokens = m.output_throughput * m.duration_s
        rows.append((label, m.num_requests, out_tokens, m.duration_s, m.mean_batch, med, min(times),
                     m.num_requests / med, m.duration_s / med))

    print(f"Simulator speed: {replica.label}, trtllm profile, {RUNS} calls after a warm-up\n")
    print("| case | requests | output tokens | simulated time | mean batch | time per call (median) | min | simulated req/s of wall time | sim s / wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, n, tok, dur, batch, med, mn, rps, speedup in rows:
        print(f"| {label} | {n:,} | {tok:,.0f} | {dur:,.1f} s | {batch:,.0f} | {1e3 * med:,.1f} ms | {1e3 * mn:,.1f} ms "
              f"| {rps:,.0f} | {speedup:,.0f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
