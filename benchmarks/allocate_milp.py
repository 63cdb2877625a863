"""How fast and how close to optimal the allocation MILP plans a month: 720 hourly periods, 6 offers.

Offers: ``fleetwise.plan.search.plan(PlanRequest(["llama-3.1-8b"], chat with isl 914 / osl 155 / 200 req/s,
SLO(1000, 50), clouds=["aws"]))`` then ``offers_from_plan(result, top=6, fine_fraction=0)``: exactly the six AWS
instance offers with the lowest best-tier price per req/s (the plan is timed separately; it is not part of the
MILP time).

Demand, 720 hourly periods (30 days):

* ServeGen (default case): ``load_series(../shared/data/traces/servegen_m-large_rate_10min.csv).resample(3600)``
  (336 h = 14 days, mean ~196 req/s) tiled to 720 h (two full weeks repeated, then 2 more days).
* synthetic (always a second row; the goal case with ``--synthetic``):
  ``synthetic_series(SyntheticSpec(days=30, period_s=3600, base_rps=200), seed=0)``.

For each demand, ``fleetwise.allocate.model.plan_allocation(offers, demand, 1.0, AllocationRules())`` - the
two-stage method (integer reservations with continuous counts, then integer counts with reservations fixed at that
answer and +/- 1) - is timed as the median of ``--repeats`` calls. The table gives the periods, offers, the
integer variables of the full problem (2 x offers x periods spot / on-demand counts + one per priced
reservation term), solve time, total cost (``total_usd``, cold starts included), the lower bound
(``lower_bound_usd``, the stage-1 relaxation's proven bound) and the gap (``alloc.gap`` = (cost - bound) /
cost; measured against a relaxation bound, so an upper bound on the true gap), and the reservations bought.

For context, the single full MILP (``solve()``, every count integer) runs once per demand with a time limit of
``--full-time-limit`` s (default 30), so the reader sees what the two-stage method trades. "Gap vs best bound"
measures every plan against the larger of the two proven lower bounds (both are valid bounds on the optimum
of the same problem), i.e. the tightest gap this benchmark can certify.

Goal (from the issue): a 30-day hourly planning MILP with 6 offers solves to <= 1 % gap in <= 10 s - checked on
``plan_allocation`` for the default case, with its own reported gap.

Usage: python benchmarks/allocate_milp.py [--synthetic] [--repeats 3] [--full-time-limit 30] [--no-full] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SERIES = DATA / "traces" / "servegen_m-large_rate_10min.csv"
PERIODS = 720
N_OFFERS = 6
GOAL_GAP = 0.01
GOAL_SECONDS = 10.0


def build_offers():
    from fleetwise.allocate.fromplan import offers_from_plan
    from fleetwise.plan.search import SLO, PlanRequest, plan
    from fleetwise.plan.workload import BUILTIN

    wl = BUILTIN["chat"].with_overrides(isl=914, osl=155, rate_rps=200)
    t0 = time.perf_counter()
    result = plan(PlanRequest(["llama-3.1-8b"], wl, SLO(1000, 50), clouds=["aws"]))
    plan_s = time.perf_counter() - t0
    return offers_from_plan(result, top=N_OFFERS, fine_fraction=0), plan_s


def demands(synthetic_default: bool) -> tuple[list[tuple[str, object]], list[str]]:
    """[(label, demand array)], default case first; and notes on what was skipped."""
    import numpy as np

    from fleetwise.forecast.models import ffill
    from fleetwise.traffic import SyntheticSpec, load_series, synthetic_series

    notes, cases = [], []
    syn = synthetic_series(SyntheticSpec(days=30, period_s=3600, base_rps=200), seed=0).values[:PERIODS]
    syn_case = ("synthetic 30 d, base 200 req/s (seed 0)", np.asarray(syn, dtype=float))
    if SERIES.exists():
        hourly = load_series(SERIES).resample(3600)
        vals = np.asarray(hourly.values, dtype=float)
        vals = ffill(vals)  # a missing hour is filled by the last known one (none in the shipped file)
        sg_case = (f"ServeGen m-large 1 h ({len(vals)} h tiled to {PERIODS} h)", np.resize(vals, PERIODS))
        cases = [syn_case, sg_case] if synthetic_default else [sg_case, syn_case]
    else:
        notes.append(f"ServeGen series not found at {SERIES} (expected ../shared/data next to the project); "
                     "skipping its row, the synthetic series is the goal case")
        cases = [syn_case]
    return cases, notes


def reservations_text(alloc) -> str:
    items = [f"{n} x {oid} {term}" for (oid, term), n in sorted(alloc.reserved.items()) if n > 0]
    return ", ".join(items) if items else "none"


def n_reservation_vars(offers, rules) -> int:
    return sum(1 for o in offers for t in rules.reserved_terms if o.price(t) is not None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true",
                        help="make the synthetic 30-day series the goal case (it is always a second row)")
    parser.add_argument("--repeats", type=int, default=3, help="timed plan_allocation calls per demand (median)")
    parser.add_argument("--full-time-limit", type=float, default=30.0,
                        help="time limit of the single full MILP shown for context, s")
    parser.add_argument("--no-full", action="store_true", help="skip the full-MILP context rows")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    args = parser.parse_args()
    if args.repeats < 1:
        sys.exit("allocate_milp: --repeats must be >= 1")

    from dataclasses import replace

    from fleetwise.allocate.model import AllocationRules, plan_allocation, solve

    cases, notes = demands(args.synthetic)
    for n in notes:
        print(f"allocate_milp: {n}", file=sys.stderr)
    print("planning offers ", end="", file=sys.stderr, flush=True)
    offers, plan_s = build_offers()
    print(f"({plan_s:.1f} s)", file=sys.stderr)
    rules = AllocationRules()
    R = n_reservation_vars(offers, rules)

    rows = []
    for label, demand in cases:
        T, O = len(demand), len(offers)
        print(f"{label}: ", end="", file=sys.stderr, flush=True)
        times, alloc = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            alloc = plan_allocation(offers, demand, 1.0, rules)
            times.append(time.perf_counter() - t0)
            print(".", end="", file=sys.stderr, flush=True)
        row = {"demand": label, "periods": T, "offers": O, "integer_vars": 2 * O * T + R,
               "reservation_vars": R, "mean_rps": float(demand.mean()), "peak_rps": float(demand.max()),
               "two_stage": {"solve_s_median": statistics.median(times), "solve_s_all": times,
                             "total_usd": alloc.total_usd, "lower_bound_usd": alloc.lower_bound_usd,
                             "gap": alloc.gap, "status": alloc.status, "reservations": reservations_text(alloc),
                             "cost_by_tier": {k: float(v) for k, v in alloc.cost_usd.items()}}}
        if not args.no_full:
            print(" full MILP", end="", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            full = solve(offers, demand, 1.0, replace(rules, time_limit_s=args.full_time_limit))
            row["full"] = {"solve_s": time.perf_counter() - t0, "time_limit_s": args.full_time_limit,
                           "total_usd": full.total_usd, "lower_bound_usd": full.lower_bound_usd, "gap": full.gap,
                           "status": full.status, "reservations": reservations_text(full),
                           "cost_by_tier": {k: float(v) for k, v in full.cost_usd.items()}}
        best_bound = max(r["lower_bound_usd"] for k, r in row.items() if k in ("two_stage", "full"))
        row["best_bound_usd"] = best_bound
        for k in ("two_stage", "full"):
            if k in row:
                row[k]["gap_vs_best_bound"] = max(0.0, (row[k]["total_usd"] - best_bound) / row[k]["total_usd"])
        rows.append(row)
        print(file=sys.stderr)

    goal = rows[0]
    g = goal["two_stage"]
    ok_gap, ok_time = g["gap"] <= GOAL_GAP, g["solve_s_median"] <= GOAL_SECONDS
    verdict = "PASS" if ok_gap and ok_time else "FAIL"

    if args.json:
        print(json.dumps({"offers": [{"id": o.id, "capacity_rps": o.capacity_rps, "prices": o.prices,
                                      "hazard_per_hour": o.hazard_per_hour, "label": o.label} for o in offers],
                          "plan_s": plan_s, "repeats": args.repeats, "notes": notes, "rows": rows,
                          "goal": {"case": goal["demand"], "gap": GOAL_GAP, "seconds": GOAL_SECONDS,
                                   "gap_ok": ok_gap, "time_ok": ok_time, "verdict": verdict}}, indent=2))
        return 0

    print(f"Allocation MILP: {PERIODS} hourly periods, {len(offers)} offers, AllocationRules() defaults, "
          f"{os.cpu_count()} CPU cores\n")
    print(f"Offers from plan() for llama-3.1-8b on AWS (isl 914, osl 155, 200 req/s, SLO 1000/50 ms), "
          f"plan took {plan_s:.1f} s (not in the MILP time):\n")
    print("| offer | req/s each | on-demand $/h | spot $/h | 1y $/h | 3y $/h | spot hazard /h |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    fmt = lambda v: f"{v:.2f}" if v is not None else "-"
    for o in offers:
        print(f"| {o.id} | {o.capacity_rps:.1f} | {fmt(o.price('on_demand'))} | {fmt(o.price('spot'))} "
              f"| {fmt(o.price('reserved_1y'))} | {fmt(o.price('reserved_3y'))} | {o.hazard_per_hour:.5f} |")
    print()
    print("| demand | method | periods | offers | integer vars | solve time | total cost | lower bound | gap (reported) "
          "| gap vs best bound | reservations | status |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        t = r["two_stage"]
        print(f"| {r['demand']} | plan_allocation (full MILP + two-stage), median of {args.repeats} | {r['periods']} | {r['offers']} "
              f"| {r['integer_vars']:,} | {t['solve_s_median']:.2f} s | ${t['total_usd']:,.0f} "
              f"| ${t['lower_bound_usd']:,.0f} | {t['gap']:.2%} | {t['gap_vs_best_bound']:.2%} | {t['reservations']} "
              f"| {t['status']} |")
        if "full" in r:
            f = r["full"]
            print(f"| {r['demand']} | solve() full MILP, limit {f['time_limit_s']:g} s, 1 run | {r['periods']} "
                  f"| {r['offers']} | {r['integer_vars']:,} | {f['solve_s']:.2f} s | ${f['total_usd']:,.0f} "
                  f"| ${f['lower_bound_usd']:,.0f} | {f['gap']:.2%} | {f['gap_vs_best_bound']:.2%} | {f['reservations']} "
                  f"| {f['status']} |")
    print(f"\nInteger vars = 2 x offers x periods (spot and on-demand counts) + {R} reservation variables "
          "(one per offer and priced reservation term). plan_allocation's stage 1 keeps only the reservations "
          "integer, its stage 2 only the counts. 'Gap (reported)' is alloc.gap against each method's own bound; "
          "'gap vs best bound' uses the larger of the two proven lower bounds.")
    for r in rows:
        t = r["two_stage"]
        if "full" in r and r["full"]["total_usd"] < t["total_usd"] - 1e-6:
            print(f"- {r['demand']}: the full MILP found a plan {1 - r['full']['total_usd'] / t['total_usd']:.1%} "
                  f"cheaper than plan_allocation (${r['full']['total_usd']:,.0f} vs ${t['total_usd']:,.0f}).")
    for n in notes:
        print(f"- {n}")

    ctx = ""
    if "full" in goal:
        f = goal["full"]
        ctx = (f"; for context the full MILP took {f['solve_s']:.1f} s to a {f['gap']:.2%} gap "
               f"({f['status']})")
    print(f"\nGoal: a {PERIODS}-period hourly MILP with {len(offers)} offers solves to <= {GOAL_GAP:.0%} gap in "
          f"<= {GOAL_SECONDS:g} s ({goal['demand']}, plan_allocation): {verdict} (gap {g['gap']:.2%} "
          f"{'PASS' if ok_gap else 'FAIL'}, {g['solve_s_median']:.2f} s {'PASS' if ok_time else 'FAIL'}{ctx})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
