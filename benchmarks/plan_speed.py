"""How fast ``plan()`` searches: candidate configurations evaluated per second of wall time.

Runs the default request (llama-3.1-70b, the built-in 'chat' workload, SLO p95 TTFT 1000 ms /
TPOT 50 ms) and a bigger four-model search, each once to warm up and then 3 timed runs. Checks the
goal: >= 5,000 candidate configurations in <= 5 s, i.e. >= 1,000 configurations per second of median
wall time (screening plus the simulation re-check of the leaders) on a search of at least 5,000. The
table also says whether the whole search finished within 5 s, which a bigger search need not.

"Candidate configurations" is ``PlanResult.evaluated``: offer x (model, GPU, TP, precision) x batch cap,
infeasible ones included. "Screened" is the number of distinct performance configurations
(model, GPU, TP, precision, batch cap) the closed-form screen ran on; prices of all offers of a
GPU reuse one screen. "Verified" is how many of them were re-checked by event simulation.

Usage: python benchmarks/plan_speed.py
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RUNS = 3
GOAL_CONFIGS = 5000
GOAL_SECONDS = 5.0


def main() -> int:
    if not DATA.is_dir():
        sys.exit(f"plan_speed: shared data not found at {DATA} (expected ../shared/data next to the project); skipping")

    from fleetwise.plan.search import SLO, PlanRequest, plan
    from fleetwise.plan.workload import get_workload

    chat = get_workload("chat")
    slo = SLO(1000, 50)
    searches = [
        ("default: llama-3.1-70b, chat, SLO 1000/50 ms", PlanRequest(["llama-3.1-70b"], chat, slo)),
        (
            "4 models: llama-3.1-8b, llama-3.1-70b, mixtral-8x7b, qwen2.5-72b",
            PlanRequest(["llama-3.1-8b", "llama-3.1-70b", "mixtral-8x7b", "qwen2.5-72b"], chat, slo),
        ),
    ]

    rows = []
    for label, req in searches:
        print(f"{label}: warm-up", end="", file=sys.stderr, flush=True)
        plan(req)
        times, screen_times = [], []
        evaluated = screened = verified = 0
        for _ in range(RUNS):
            marks: list[tuple[float, str]] = []
            t0 = time.perf_counter()
            result = plan(req, progress=lambda msg, marks=marks: marks.append((time.perf_counter(), msg)))
            times.append(time.perf_counter() - t0)
            screen_msg = next(m for m in marks if m[1].startswith("screened "))
            screen_times.append(screen_msg[0] - t0)
            screened = int(re.match(r"screened (\d+) configurations", screen_msg[1]).group(1))
            verified = sum(1 for _, msg in marks if msg.startswith("verified "))
            evaluated = result.evaluated
            print(".", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        med = statistics.median(times)
        rate = evaluated / med
        ok = evaluated >= GOAL_CONFIGS and rate >= GOAL_CONFIGS / GOAL_SECONDS
        rows.append((label, evaluated, screened, verified, med, min(times), statistics.median(screen_times),
                     rate, "PASS" if ok else "FAIL", "yes" if med <= GOAL_SECONDS else "no"))

    print(f"plan() speed, {RUNS} runs after a warm-up, {os.cpu_count()} CPU cores "
          f"(goal: >= {GOAL_CONFIGS:,} candidate configurations in <= {GOAL_SECONDS:g} s)\n")
    print("| search | candidate configs | screened | sim-verified | wall median | wall min | of which screening "
          f"| configs/s | time per {GOAL_CONFIGS:,} | goal | whole search <= {GOAL_SECONDS:g} s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|")
    for label, ev, sc, ve, med, mn, scr, rate, verdict, whole in rows:
        print(f"| {label} | {ev:,} | {sc:,} | {ve} | {med:.2f} s | {mn:.2f} s | {scr:.2f} s | {rate:,.0f} "
              f"| {GOAL_CONFIGS / rate:.2f} s | {verdict} | {whole} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
