"""How long one step of the rolling re-optimizer takes with 10 offers: per-step wall time over a day of steps.

Offers: ``fleetwise.plan.search.plan(PlanRequest(["llama-3.1-8b"], chat with isl 914 / osl 155 / 200 req/s,
SLO(1000, 50), clouds=["aws", "gcp", "azure"]))`` then ``offers_from_plan(result, top=10, fine_fraction=0)``
(exactly 10; ``--fine-fraction 0.25`` adds the fine-grained offers the CLI would); should fewer than 10 come back, hand-made offers with catalog-like capacities and prices fill the
list (the table says so).

Reservations: ``plan_allocation(offers, day 1 of the ServeGen 10-minute series, 1/6 h, AllocationRules())``; the
fleet running at the start is that plan's last period. Then ``fleetwise.allocate.rolling.operate(offers, reserved,
forecasts, period_h, AllocationRules(), RollingConfig())`` runs over day 2 (``--days`` days): 144 steps of 10
minutes per day. The forecast path of step k is the *actual* series over the look-ahead window starting at step k
(``RollingConfig().lookahead_steps`` periods) times 1.15, a stand-in for a P95 forecast, so the timing is that
of the optimizer alone (forecasting is not included). Each step re-solves a small MILP (reservations fixed,
per-offer starts, damping, soft demand) with HiGHS' per-step time limit of
``RollingConfig().step_time_limit_s``. Step times are ``RollingOptimizer.solve_times_s`` (the whole
``step()``, model build included); the first step is not special-cased (HiGHS is already loaded by the
reservation plan). The 5-minute row repeats the run on the same series with each 10-minute bin split in two
(288 steps per day, cold start = one step).

Goal (from the issue): one step takes <= 100 ms for 10 offers - checked on the p95 step time of the 10-minute
run; the max is reported as well.

Usage: python benchmarks/rolling_step.py [--days 1] [--offers 10] [--no-5min] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SERIES = DATA / "traces" / "servegen_m-large_rate_10min.csv"
FORECAST_MARGIN = 1.15
GOAL_MS = 100.0


def hand_made():
    """Catalog-like offers for llama-3.1-8b (capacity at SLO 1000/50 ms, USD per instance-hour)."""
    from fleetwise.allocate.offers import CapacityOffer

    return [
        CapacityOffer("hand/aws-g6e.xlarge", 15.9, {"on_demand": 1.861, "spot": 0.78, "reserved_1y": 1.17,
                                                    "reserved_3y": 0.80}, 0.0004, label="hand-made: 1x L40S"),
        CapacityOffer("hand/aws-p5.4xlarge", 72.2, {"on_demand": 6.88, "reserved_3y": 2.97}, label="hand-made: 1x H100"),
        CapacityOffer("hand/gcp-a3-highgpu-1g", 72.2, {"on_demand": 11.06, "spot": 2.53}, 0.0003,
                      label="hand-made: 1x H100"),
        CapacityOffer("hand/aws-p5.48xlarge", 577.5, {"on_demand": 55.04, "spot": 18.04, "reserved_3y": 23.78},
                      0.0003, label="hand-made: 8x H100"),
        CapacityOffer("hand/azure-nd96-mi300x", 511.2, {"on_demand": 48.0, "spot": 8.87}, label="hand-made: 8x MI300X"),
        CapacityOffer("hand/aws-g6.xlarge", 5.1, {"on_demand": 0.805, "spot": 0.33, "reserved_1y": 0.51,
                                                  "reserved_3y": 0.35}, 0.0004, label="hand-made: 1x L4"),
        CapacityOffer("hand/gcp-a2-highgpu-1g", 24.0, {"on_demand": 3.67, "spot": 1.15}, 0.0003,
                      label="hand-made: 1x A100 40GB"),
        CapacityOffer("hand/aws-p6-b200.48xlarge", 1171.9, {"on_demand": 113.93, "spot": 37.87}, 0.00005,
                      label="hand-made: 8x B200"),
        CapacityOffer("hand/azure-nc40-h100", 72.2, {"on_demand": 6.98, "spot": 1.40}, label="hand-made: 1x H100 NVL"),
        CapacityOffer("hand/gcp-g2-standard-4", 5.1, {"on_demand": 0.71, "spot": 0.28}, 0.0003, label="hand-made: 1x L4"),
    ]


def build_offers(n: int, fine_fraction: float = 0.0):
    from fleetwise.allocate.fromplan import offers_from_plan
    from fleetwise.plan.search import SLO, PlanRequest, plan
    from fleetwise.plan.workload import BUILTIN

    wl = BUILTIN["chat"].with_overrides(isl=914, osl=155, rate_rps=200)
    t0 = time.perf_counter()
    result = plan(PlanRequest(["llama-3.1-8b"], wl, SLO(1000, 50), clouds=["aws", "gcp", "azure"]))
    plan_s = time.perf_counter() - t0
    offers = offers_from_plan(result, top=n, fine_fraction=fine_fraction)
    from_plan = len(offers)
    if from_plan < n:
        offers = offers + hand_made()[: n - from_plan]
    return offers, from_plan, plan_s


def run(offers, values, period_s: float, days: int):
    """Reservations planned on day 1, rolling operation over the next ``days`` days; step times in ms."""
    import numpy as np

    from fleetwise.allocate.evaluate import evaluate
    from fleetwise.allocate.model import AllocationRules, plan_allocation
    from fleetwise.allocate.rolling import RollingConfig, operate

    rules, cfg = AllocationRules(), RollingConfig()
    per_day = round(86_400 / period_s)
    period_h = period_s / 3600
    t0 = time.perf_counter()
    res_plan = plan_allocation(offers, values[:per_day], period_h, rules)
    res_plan_s = time.perf_counter() - t0
    reserved = {k: v for k, v in res_plan.reserved.items() if v > 0}
    H = cfg.lookahead_steps
    n = days * per_day
    start = per_day
    forecasts = np.array([values[start + k : start + k + H] * FORECAST_MARGIN for k in range(n)])
    t0 = time.perf_counter()
    schedule, actions, opt = operate(offers, reserved, forecasts, period_h, rules, cfg,
                                     initial=(res_plan.spot[:, -1], res_plan.on_demand[:, -1]))
    wall = time.perf_counter() - t0
    ms = np.array(opt.solve_times_s) * 1000
    ev = evaluate(schedule, values[start : start + n], period_h, cold_start_s=rules.cold_start_s)
    return {
        "period_s": period_s, "steps": n, "lookahead_steps": H, "lead_steps": opt.lead_steps,
        "step_time_limit_s": cfg.step_time_limit_s, "reservation_plan_s": res_plan_s,
        "reservations": sorted(f"{c} x {oid} {term}" for (oid, term), c in reserved.items()),
        "median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()), "slowest_step": int(ms.argmax()), "over_goal": int((ms > GOAL_MS).sum()),
        "wall_s": wall, "actions": len(actions), "cost_usd": ev.cost_usd, "unmet": ev.unmet_demand_fraction,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1, help="days of rolling operation (144 steps each at 10 min)")
    parser.add_argument("--offers", type=int, default=10, help="how many offers (goal: 10)")
    parser.add_argument("--fine-fraction", type=float, default=0.0,
                        help="offers_from_plan's fine_fraction (default 0: exactly --offers offers; 0.25 adds the "
                             "cheapest offer per tier no larger than a quarter of the plan rate, as the CLI does)")
    parser.add_argument("--no-5min", action="store_true", help="skip the 5-minute-step run")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    args = parser.parse_args()
    if not SERIES.exists():
        sys.exit(f"rolling_step: series not found at {SERIES} (expected ../shared/data next to the project); skipping")
    if args.days < 1 or args.offers < 1:
        sys.exit("rolling_step: --days and --offers must be >= 1")

    import numpy as np

    from fleetwise.allocate.rolling import RollingConfig
    from fleetwise.forecast.models import ffill
    from fleetwise.traffic import load_series

    series = load_series(SERIES)
    vals = np.asarray(series.values, dtype=float)
    vals = ffill(vals)  # a missing bin is filled by the last known one (none in the shipped file)
    H = RollingConfig().lookahead_steps
    need = (1 + args.days) * series.steps_per_day + H
    if need > len(vals):
        sys.exit(f"rolling_step: the series has {len(vals) / series.steps_per_day:.1f} days; --days {args.days} "
                 "needs one more for the reservations and the look-ahead")

    print("planning offers ", end="", file=sys.stderr, flush=True)
    offers, from_plan, plan_s = build_offers(args.offers, args.fine_fraction)
    print(f"({plan_s:.1f} s)", file=sys.stderr)
    runs = []
    print("10-min steps ", end="", file=sys.stderr, flush=True)
    runs.append(run(offers, vals, series.period_s, args.days))
    if not args.no_5min:
        print("/ 5-min steps ", end="", file=sys.stderr, flush=True)
        runs.append(run(offers, np.repeat(vals, 2), series.period_s / 2, args.days))
    print(file=sys.stderr)

    goal = runs[0]
    verdict = "PASS" if goal["p95_ms"] <= GOAL_MS else "FAIL"
    if args.json:
        print(json.dumps({"offers": [{"id": o.id, "capacity_rps": o.capacity_rps, "prices": o.prices,
                                      "label": o.label} for o in offers],
                          "offers_from_plan": from_plan, "plan_s": plan_s, "forecast_margin": FORECAST_MARGIN,
                          "runs": runs, "goal": {"ms": GOAL_MS, "p95_ms": goal["p95_ms"], "max_ms": goal["max_ms"],
                                                 "verdict": verdict}}, indent=2))
        return 0

    print(f"Rolling optimizer step time: {len(offers)} offers ({from_plan} from plan(), "
          f"{len(offers) - from_plan} hand-made), ServeGen m-large, forecast = actual x {FORECAST_MARGIN}, "
          f"{os.cpu_count()} CPU cores\n")
    print("| offer | req/s each | on-demand $/h | spot $/h | 3y $/h |")
    print("|---|---:|---:|---:|---:|")
    fmt = lambda v: f"{v:.2f}" if v is not None else "-"
    for o in offers:
        print(f"| {o.id} | {o.capacity_rps:.1f} | {fmt(o.price('on_demand'))} | {fmt(o.price('spot'))} "
              f"| {fmt(o.price('reserved_3y'))} |")
    print(f"\nReservations (plan_allocation on day 1, {goal['reservation_plan_s']:.2f} s): "
          f"{', '.join(goal['reservations']) or 'none'}\n")
    print("| step | steps | look-ahead | lead | median | p95 | max | mean | steps > 100 ms | wall | actions "
          "| cost | unmet demand |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        print(f"| {r['period_s'] / 60:g} min | {r['steps']} | {r['lookahead_steps']} | {r['lead_steps']} "
              f"| {r['median_ms']:.1f} ms | {r['p95_ms']:.1f} ms | {r['max_ms']:.1f} ms (step {r['slowest_step']}) "
              f"| {r['mean_ms']:.1f} ms | {r['over_goal']} | {r['wall_s']:.2f} s | {r['actions']} | ${r['cost_usd']:,.0f} "
              f"| {r['unmet']:.2%} |")
    print(f"\nStep time = the whole RollingOptimizer.step() (model build + HiGHS, limit "
          f"{goal['step_time_limit_s']:g} s per step). Cost and unmet demand are scored by evaluate() against "
          "the actual series (context only).")
    print(f"\nGoal: one step takes <= {GOAL_MS:g} ms for {len(offers)} offers (p95 of {goal['steps']} 10-minute steps): "
          f"{verdict} (p95 {goal['p95_ms']:.1f} ms, median {goal['median_ms']:.1f} ms, max {goal['max_ms']:.1f} ms"
          f"{'' if goal['max_ms'] <= GOAL_MS else ' - the max exceeds the goal'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
