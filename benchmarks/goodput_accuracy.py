"""How close ``plan``'s verified goodput is to the replica's steady-state goodput, and how much it varies by seed.

``verify_goodput`` (what ``plan`` reports, with ``PlanRequest``'s default number of measured requests) is run
with six seeds on six
replica / workload pairs and compared with a reference: bisection to 1% on the same simulator with 20 request
lifetimes of warm-up and at least 6,000 measured requests per rate (seed 99), without the utilization cap -
long enough that the queue of a rate near capacity has settled. Also shown: the closed-form screen, and the
old verification (400 requests from an empty replica, no warm-up; it was the plan's check until 2026-12-07).

Usage: python benchmarks/goodput_accuracy.py [--seeds 6]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

CASES = [  # model, GPU, TP, precision, batch cap, workload, p95 TTFT target ms (TPOT 50 ms)
    ("llama-3.1-8b", "h100-sxm", 1, "fp8", 256, "chat", 1000),
    ("llama-3.1-70b", "h100-sxm", 2, "fp8", 64, "chat", 1000),
    ("llama-3.1-70b", "b200", 1, "fp8", 512, "chat", 1000),
    ("llama-3.1-8b", "h100-sxm", 1, "fp8", 256, "code", 1000),
    ("llama-3.1-8b", "l4", 1, "fp8", 64, "chat", 1000),
    ("llama-3.1-70b", "h100-sxm", 4, "fp8", 128, "long-context", 5000),  # 12k-token prompts
]


def reference(replica, wl, slo, guess: float) -> float:
    from fleetwise.plan.search import simulated_latency, warmup_s

    warm = 10 * warmup_s(wl, slo)  # 20 lifetimes

    def ok(rate: float) -> bool:
        n = max(6000, math.ceil(rate * warm))
        ttft, tpot = simulated_latency(replica, wl, rate, slo, n, 99, warm)
        return ttft <= slo.ttft_ms and tpot <= slo.tpot_ms

    lo, hi = 0.25 * guess, 2.0 * guess
    while not ok(lo):
        lo, hi = lo / 2, lo
    while ok(hi):
        lo, hi = hi, hi * 2
    while hi / lo > 1.01:
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def old_verify(replica, wl, slo, guess: float, n: int = 400, seed: int = 0) -> float:
    """The verification before 2026-12-07: bisection on 400 requests from an empty replica."""
    from fleetwise.plan.search import simulated_latency

    def meets(rate):
        ttft, tpot = simulated_latency(replica, wl, rate, slo, n, seed)
        return ttft <= slo.ttft_ms and tpot <= slo.tpot_ms

    lo, hi = 0.0, max(guess, 1e-3) * 1.6
    if meets(hi):
        return hi
    probe, best = max(guess, 1e-3) * 0.8, 0.0
    for _ in range(7):
        if meets(probe):
            lo, best = probe, probe
        else:
            hi = probe
        probe = (lo + hi) / 2 if lo > 0 else probe / 2
        if lo > 0 and hi / lo < 1.05:
            break
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--requests", type=int, default=None, help="measured requests (default: plan's)")
    args = ap.parse_args()
    from fleetwise.catalog import load_catalog
    from fleetwise.perf.profile import get_profile
    from fleetwise.perf.replica import build_replica
    from fleetwise.plan.search import SLO, PlanRequest, screen_goodput, verify_goodput
    from fleetwise.plan.workload import get_workload

    cat, profile = load_catalog(None), get_profile("trtllm")
    n = args.requests or PlanRequest.__dataclass_fields__["sim_requests"].default
    print(f"verified on {n} measured requests, {args.seeds} seeds")
    print(f"{'replica / workload':44} {'screen':>7} {'old':>7} {'verified (seeds)':>22} {'mean s':>7} "
          f"{'reference':>9} {'mean err':>8} {'worst':>7}")
    worst_all = 0.0
    for model, gpu, tp, precision, cap, name, ttft_ms in CASES:
        wl, slo = get_workload(name), SLO(ttft_ms, 50)
        replica = build_replica(cat.model(model), cat.gpus[gpu], tp, tp, cat.precision(precision), profile,
                                max_batch=cap)
        screen = screen_goodput(replica, wl, slo).rps
        t = time.perf_counter()
        got = [verify_goodput(replica, wl, slo, screen, n, seed).rps for seed in range(args.seeds)]
        took = (time.perf_counter() - t) / args.seeds
        ref = reference(replica, wl, slo, statistics.median(got))
        errs = [g / ref - 1 for g in got]
        worst = max(errs, key=abs)
        worst_all = max(worst_all, abs(worst))
        label = f"{model} {gpu} TP{tp} {precision} b{cap} / {name}"
        print(f"{label:44} {screen:7.2f} {old_verify(replica, wl, slo, screen):7.2f} "
              f"{min(got):9.2f} - {max(got):<9.2f} {took:7.2f} {ref:9.2f} "
              f"{statistics.mean(errs):+8.1%} {worst:+7.1%}", flush=True)
    print(f"worst seed's error against the reference: {worst_all:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
