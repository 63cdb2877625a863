"""Measured vs simulated: replay the Azure conversation trace against emulated workers and simulate the same
requests on the same fleet; report the relative gap of TTFT and TPOT p50/p95/p99 at each time compression.

Goal (issue "Emulated GPU-free inference workers"): |gap| <= 10% on TTFT and TPOT p50 and p95 for the first
3,000 requests of azure_llm_conv_2023.csv on 4 engines of llama-3.1-8b fp8 on 1xH100 each, at the highest
--time-compress that keeps it. The emulator runs in its own process (`fleetwise emulate --workers 4`), the
replay in this one, so the two cores are split as in production.

    python benchmarks/replay_fidelity.py                       # 3,000 requests at 1x, 2x and 4x (~18 min)
    python benchmarks/replay_fidelity.py --compress 4 --requests 600 --json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fleetwise.replay import replay_trace
from fleetwise.replay.compare import SimulatedFleet, compare_with_simulation
from fleetwise.traffic.load import load_trace

TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces" / "azure_llm_conv_2023.csv"
GOAL = 0.10
FLEET = SimulatedFleet("llama-3.1-8b", "h100", 1, "fp8", "vllm")


def start_emulator(workers: int, scale: float) -> tuple[subprocess.Popen, list[str]]:
    cmd = [sys.executable, "-m", "fleetwise", "emulate", "--model", FLEET.model, "--gpu", FLEET.gpu,
           "--gpus", str(FLEET.gpus), "--precision", FLEET.precision, "--engine", FLEET.engine,
           "--workers", str(workers), "--port-base", "0", "--time-scale", f"{scale:g}"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    urls = re.findall(r"http://127\.0\.0\.1:\d+", line)
    if len(urls) != workers:
        proc.kill()
        raise SystemExit(f"emulator did not start: {line.strip()}")
    return proc, urls


def run_one(trace, workers: int, scale: float) -> dict:
    proc, urls = start_emulator(workers, scale)
    try:
        t0 = time.perf_counter()
        result = replay_trace(trace, urls, time_compress=scale)
        wall = time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(15)
    out = compare_with_simulation(result, FLEET)
    gap = out["gap"]
    worst = max(abs(gap[m][p]) for m in ("ttft_ms", "tpot_ms") for p in ("p50", "p95"))
    return {"time_compress": scale, "wall_s": wall, "requests": out["requests"], "completed": out["completed"],
            "failed": out["failed"], "late_sends": out["late_sends"], "measured": {k: out[k] for k in
            ("ttft_ms", "tpot_ms")}, "simulated": {k: out["simulated"][k] for k in ("ttft_ms", "tpot_ms")},
            "gap": gap, "worst_p50_p95_gap": worst, "pass": worst <= GOAL and out["failed"] == 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--compress", default="1,2,4", help="time compressions to measure, comma-separated")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not TRACE.exists():
        raise SystemExit(f"trace not found: {TRACE}")
    trace = load_trace(TRACE).take(np.arange(args.requests))
    runs = []
    for scale in (float(x) for x in args.compress.split(",")):
        runs.append(run_one(trace, args.workers, scale))
        if not args.json:
            r = runs[-1]
            print(f"--time-compress {scale:g}: {r['completed']}/{r['requests']} completed, {r['failed']} failed, "
                  f"{r['late_sends']} late sends, {r['wall_s']:.0f} s", flush=True)
            for m in ("ttft_ms", "tpot_ms"):
                cells = "  ".join(f"{p} {r['measured'][m][p]:7.2f} vs {r['simulated'][m][p]:7.2f} "
                                  f"({100 * r['gap'][m][p]:+.1f}%)" for p in ("p50", "p95", "p99"))
                print(f"  {m:8s} measured vs simulated: {cells}")
            print(f"  worst |gap| on p50/p95: {100 * r['worst_p50_p95_gap']:.1f}% -> "
                  f"{'PASS' if r['pass'] else 'FAIL'} (goal <= {100 * GOAL:.0f}%)", flush=True)
    best = max((r["time_compress"] for r in runs if r["pass"]), default=None)
    summary = {"trace": TRACE.name, "requests": args.requests, "engines": args.workers,
               "fleet": vars(FLEET), "runs": runs, "highest_passing_time_compress": best,
               "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"highest --time-compress within the goal: {best if best is not None else 'none'}")


if __name__ == "__main__":
    main()
