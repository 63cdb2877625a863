"""The testbed under chaos: the Azure conversation trace replayed through emulated workers run by the real
controller, with spot notices and the controller SIGKILLed every few minutes; measured vs simulated.

    python benchmarks/testbed_chaos.py [--compress 10] [--minutes 60] [--json]

Fleet: llama-3.1-70b FP8 on 2xH100 (TP2) per worker, priced as a quarter of AWS p5.48xlarge (on-demand and
spot; the vllm engine profile), p95 TTFT <= 1 s / TPOT <= 50 ms, policy hybrid (slow loop 300 s, step 10 s).
Chaos: spot notices at 2 per spot worker-hour (AWS format, 120 s), the controller SIGKILLed about every
5 minutes of trace time and restarted at once. Goals (issue 13): zero requests lost other than those the
drain strategy documents (requests still running on a worker when its notice ends), zero duplicate launches,
zero orphaned workers; measured cost and p95 TTFT within 15% of the simulator's prediction of the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fleetwise.cli.traffic import load_input
from fleetwise.control.testbed import TestbedConfig, run_testbed

TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces" / "azure_llm_conv_2023.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compress", type=float, default=10.0)
    ap.add_argument("--minutes", type=float, default=60.0, help="trace minutes to replay from the start")
    ap.add_argument("--kill-every", type=float, default=300.0, help="trace seconds between controller kills")
    ap.add_argument("--preemptions", type=float, default=2.0, help="per spot worker-hour")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    trace = load_input(TRACE)
    trace = trace.window(trace.start_s, trace.start_s + args.minutes * 60)
    config = TestbedConfig(model="llama-3.1-70b", gpu="h100", gpus=2, precision="fp8", engine="vllm",
                           offer="aws/us-east-1/p5.48xlarge", time_compress=args.compress,
                           preemption_rate_per_hour=args.preemptions, kill_controller_every_s=args.kill_every)
    began = time.time()
    out = run_testbed(trace, config, lambda msg: print(msg, file=sys.stderr, flush=True))
    out["wall_s"] = round(time.time() - began, 1)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return
    m, s, g, c = out["measured"], out["simulated"], out["gap"], out["chaos"]
    print(f"{len(trace):,} requests, {args.minutes:g} trace minutes at {args.compress:g}x ({out['wall_s']:.0f} s wall)")
    print(f"{'':22}{'measured':>12}{'simulated':>12}{'gap':>9}")
    print(f"{'cost $':22}{m['cost_usd']:>12.2f}{s['cost_usd']:>12.2f}{g['cost_usd']:>+9.1%}")
    for metric in ("ttft_ms", "tpot_ms"):
        for p in ("p50", "p95", "p99"):
            gap = g[metric][p]
            print(f"{metric[:4].upper() + ' ' + p + ' ms':22}{m[metric][p]:>12.1f}{s[metric][p]:>12.1f}"
                  f"{'' if gap is None else format(gap, '+9.1%')}")
    print(f"{'SLO attainment':22}{m['slo_attainment']:>12.2%}{s['slo_attainment']:>12.2%}")
    print(f"{'completed':22}{m['completed']:>12,}{s['completed']:>12,}")
    print(f"{'workers launched':22}{m['instances_launched']:>12,}{s['instances_launched']:>12,}")
    print(f"chaos: {c['spot_notices']} spot notices, {c['controller_restarts']} controller restarts, "
          f"{c['duplicate_launches']} duplicate launches, {c['orphaned_workers']} orphaned workers, "
          f"{c['lost_requests']} requests lost {c['lost_by_reason']}")
    ok = (c["duplicate_launches"] == 0 and c["orphaned_workers"] == 0 and abs(g["cost_usd"]) <= 0.15
          and g["ttft_ms"]["p95"] is not None and abs(g["ttft_ms"]["p95"]) <= 0.15)
    print("goal (0 duplicates, 0 orphans, cost and p95 TTFT within 15%):", "PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
