"""How fast the fleet simulator is: simulated requests per second of wall time for multi-replica fleets.

Fleet: llama-3.1-8b, FP8, one h100-sxm per engine (trtllm profile), AWS offers only - ``fleet_spec`` picks
p5.48xlarge, 8 engines per instance; SLO 1000 ms TTFT / 50 ms TPOT, the trace's mean lengths for the
capacity estimate; one "interactive" class. Trace: the Azure LLM conversation trace (2023, 19,366 requests
over an hour) from ``../shared/data/traces`` next to the project, loaded with ``load_trace``. Cases:

1. the trace as is, on a fixed on-demand fleet of ``instances_for(peak rate, spec, 1.25)`` instances
   (peak = busiest 60-second bin);
2. 1M requests: the trace tiled 52x (copies back to back) and time-compressed 52x, so it spans the same hour at
   52x the rate (1,007,032 requests); fixed on-demand fleet sized the same way on the new peak;
3. the 1M requests on spot: ``Reactive`` policy with every launch on spot, starting at case 2's size, spot
   interruptions sampled at ``--hazard`` per instance-hour (a harsh market, so notices happen within the
   hour), default drain strategy, 90% spot availability (the rest falls back to on-demand).

Each case runs once (they are long), after one untimed warm-up run of case 1. Wall time is the whole
``simulate_fleet`` call (set-up, event loop and summary); building the requests is not timed.

Goals: >= 50,000 simulated requests per second of wall time (every case); 1M requests in < 60 s (cases 2, 3).

Usage: python benchmarks/sim_fleet_speed.py [--copies 52] [--hazard 2.0]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRACE = DATA / "traces" / "azure_llm_conv_2023.csv"
MODEL, GPU, PRECISION, CLOUDS = "llama-3.1-8b", "h100-sxm", "fp8", ["aws"]
TTFT_MS, TPOT_MS = 1000.0, 50.0
HEADROOM = 1.25
PEAK_BIN_S = 60.0
GOAL_RPS = 50_000
GOAL_1M_S = 60.0


def peak_rate(arrival_s) -> float:
    """Requests per second in the busiest bin of PEAK_BIN_S seconds."""
    import numpy as np

    bins = ((arrival_s - arrival_s[0]) // PEAK_BIN_S).astype(np.int64)
    return float(np.bincount(bins).max() / PEAK_BIN_S)


def tiled(trace, copies: int):
    """``copies`` of the trace back to back (one mean gap apart), then replayed ``copies`` times faster."""
    import numpy as np

    from fleetwise.traffic.convert import time_compress
    from fleetwise.traffic.records import RequestTrace

    t = trace.arrival_s - trace.arrival_s[0]
    span = t[-1] * len(t) / max(len(t) - 1, 1)
    big = RequestTrace(np.concatenate([t + k * span for k in range(copies)]),
                       np.tile(trace.input_tokens, copies), np.tile(trace.output_tokens, copies))
    return time_compress(big, copies)


def progress(label: str):
    """A progress callback printing a dot every 10% of the arrivals on stderr."""
    print(f"{label}: ", end="", file=sys.stderr, flush=True)
    state = {"next": 0.1}

    def report(fraction: float) -> None:
        while fraction >= state["next"] - 1e-9:
            print(".", end="", file=sys.stderr, flush=True)
            state["next"] += 0.1

    return report


def run_case(label: str, requests, spec, policy, config):
    from fleetwise.sim.run import simulate_fleet

    t0 = time.perf_counter()
    result = simulate_fleet(requests, spec, policy, config, progress=progress(label))
    wall = time.perf_counter() - t0
    print(f" {wall:.1f} s", file=sys.stderr)
    return result, wall


def engines_used(result, spec, initial: int) -> str:
    """Engines at the start, and the most serving at any control tick when that differs."""
    per = spec.itype.engines
    peak = max((sum(k.serving.values()) for k in result.timeline), default=initial) * per
    return f"{initial * per}" if peak == initial * per else f"{initial * per} (peak {peak})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=52, help="tiling and time-compression factor (52: ~1M requests)")
    parser.add_argument("--hazard", type=float, default=2.0, help="spot interruptions per instance-hour (case 3)")
    args = parser.parse_args()
    if not TRACE.exists():
        sys.exit(f"sim_fleet_speed: trace not found at {TRACE} (expected ../shared/data next to the project); skipping")
    if args.copies < 1 or args.hazard < 0:
        sys.exit("sim_fleet_speed: --copies must be >= 1 and --hazard >= 0")

    from fleetwise.sim.core import SimConfig
    from fleetwise.sim.policies import Reactive, StaticSchedule
    from fleetwise.sim.requests import SimRequests, named_class
    from fleetwise.sim.setup import fleet_spec, instances_for
    from fleetwise.traffic.load import load_trace

    print("loading trace ", end="", file=sys.stderr, flush=True)
    trace = load_trace(TRACE)
    classes = (named_class("interactive", TTFT_MS, TPOT_MS),)
    small = SimRequests.from_trace(trace, classes)
    big = SimRequests.from_trace(tiled(trace, args.copies), classes)
    print(f"({len(small):,} and {len(big):,} requests)", file=sys.stderr)
    spec = fleet_spec(MODEL, GPU, 1, precision=PRECISION, clouds=CLOUDS, ttft_ms=TTFT_MS, tpot_ms=TPOT_MS,
                      mean_isl=float(small.isl.mean()), mean_osl=float(small.osl.mean()))
    n_small = instances_for(peak_rate(small.arrival_s), spec, HEADROOM)
    n_big = instances_for(peak_rate(big.arrival_s), spec, HEADROOM)

    run_case("warm-up (case 1)", small, spec, StaticSchedule.fixed({"on_demand": n_small}), SimConfig())
    big_label = f"{len(big) / 1e6:.1f}M" if len(big) >= 500_000 else f"{len(big):,}"
    cases = [
        (f"1. trace as is, {n_small} on-demand", small, n_small,
         StaticSchedule.fixed({"on_demand": n_small}), SimConfig()),
        (f"2. {big_label} ({args.copies}x tiled + compressed), {n_big} on-demand", big, n_big,
         StaticSchedule.fixed({"on_demand": n_big}), SimConfig()),
        (f"3. {big_label} on spot, reactive, {args.hazard:g} interruptions/instance-h", big, n_big,
         Reactive(initial_instances=n_big, min_instances=1, max_instances=4 * n_big, spot_fraction=1.0),
         SimConfig(hazard_per_hour=args.hazard)),
    ]
    rows = []
    for label, requests, initial, policy, config in cases:
        result, wall = run_case(label, requests, spec, policy, config)
        rows.append((label, result, wall, engines_used(result, spec, initial)))

    print(f"Fleet simulator speed: {spec.describe()}, Azure conversation trace, SLO {TTFT_MS:g}/{TPOT_MS:g} ms, "
          f"{os.cpu_count()} CPU cores, one run per case after a warm-up\n")
    print("| case | requests | engines | simulated time | wall time | simulated req/s of wall time | completed "
          "| SLO attainment |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, r, wall, engines in rows:
        print(f"| {label} | {r.requests:,} | {engines} | {r.duration_s / 60:,.1f} min | {wall:,.2f} s "
              f"| {r.requests / wall:,.0f} | {r.completed:,} | {r.slo_attainment:.2%} |")
    print("\n| case | TTFT p95 | TPOT p95 | GPU busy | preemptions | migrated | requeued | spot fallbacks | cost |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r, _, _ in rows:
        print(f"| {label.split(',')[0]} | {r.ttft_ms['p95']:,.0f} ms | {r.tpot_ms['p95']:,.1f} ms "
              f"| {r.gpu_busy_fraction:.0%} | {r.preemptions} | {r.migrated:,} | {r.requeued:,} | {r.spot_fallbacks} "
              f"| ${r.cost_usd:,.2f} |")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nPeak resident memory of the process: {rss_mb:,.0f} MB.")

    slowest = min(rows, key=lambda row: row[1].requests / row[2])
    rps = slowest[1].requests / slowest[2]
    big_walls = [(label.split(".")[0], wall) for label, r, wall, _ in rows if r.requests >= 1_000_000]
    print(f"\nGoal: >= {GOAL_RPS:,} simulated requests per second of wall time: "
          f"{'PASS' if rps >= GOAL_RPS else 'FAIL'} (slowest: case {slowest[0].split('.')[0]}, {rps:,.0f} req/s)")
    if big_walls:
        ok = all(wall < GOAL_1M_S for _, wall in big_walls)
        walls = ", ".join(f"case {c}: {w:.1f} s" for c, w in big_walls)
        print(f"Goal: 1M requests in < {GOAL_1M_S:g} s of wall time: {'PASS' if ok else 'FAIL'} ({walls})")
    else:
        print(f"Goal: 1M requests in < {GOAL_1M_S:g} s: not checked (--copies {args.copies} gives fewer than 1M)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
