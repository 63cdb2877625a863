"""How accurate and how fast the rate forecasts are: rolling-origin backtests at 5 min, 1 h and 1 day ahead.

Series: ``../shared/data/traces/servegen_m-large_rate_10min.csv`` (ServeGen m-large language traffic, total
request rate of all clients, 14 days in 10-minute bins), read with ``fleetwise.traffic.load_series``; or any
file ``fleetwise.traffic.load_as_series`` accepts with ``--series PATH`` (a request trace is binned at
``--freq-s``, default 300 s). Each horizon is ``ceil(horizon_s / period_s)`` steps (at least one), so on
10-minute bins "5 min" is one step ahead. For each horizon it runs
``fleetwise.forecast.backtest(series, steps, methods=(persistence, seasonal-naive, seasonal-naive-week,
profile, profile-ar, ets, ensemble, auto), history_days=7)``: parameters are fitted on the first 7 days, then
forecasts are rolled forward origin by origin (every step for sub-hour horizons, hourly otherwise), each
calibrated only on errors already seen. WAPE and MAPE score the median; pinball loss (req/s) and coverage
(share of actuals at or below the quantile) score the q0.5 / q0.9 / q0.95 quantiles.

Goal checks, at the 1 h and 1 day horizons: ``auto`` WAPE no worse than the better of persistence and
seasonal-naive (aim: 10 % better), and ``auto`` P95 coverage within [0.90, 0.98]; and all backtests of the
series together in <= 60 s of wall time. ``--extra`` repeats the accuracy checks on other real series, to
show the method is not tuned to one: the 4 busiest ServeGen m-large client files (by total rate, each read
with ``load_series(f, detect_gaps=False)``) and a synthetic 21-day series with a level shift (halved from
bin 1500 on) and two collection gaps (bins 2000-2011 and 2500-2502, masked by ``mask_gaps``).

Usage: python benchmarks/forecast_backtest.py [--series PATH [--freq-s 300]] [--extra] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SERIES = DATA / "traces" / "servegen_m-large_rate_10min.csv"
CLIENTS = DATA / "traces" / "servegen" / "language" / "m-large"
METHODS = ("persistence", "seasonal-naive", "seasonal-naive-week", "profile", "profile-ar", "ets", "ensemble", "auto")
HORIZONS = (("5 min", 300.0), ("1 h", 3600.0), ("1 day", 86_400.0))
GOAL_HORIZONS = ("1 h", "1 day")
HISTORY_DAYS = 7.0
GOAL_SECONDS = 60.0
AIM_IMPROVEMENT = 0.10
COVERAGE_BAND = (0.90, 0.98)
EXTRA_CLIENTS = 4


def steps_for(horizon_s: float, period_s: float) -> int:
    return max(1, math.ceil(horizon_s / period_s - 1e-9))


def run_horizons(series, horizons=HORIZONS) -> tuple[dict[str, dict], float]:
    """{label: {"steps", "seconds", "scores": {method: Score}} or {"error"}}, and the total wall time."""
    from fleetwise.errors import FleetwiseError
    from fleetwise.forecast import backtest

    out, total = {}, 0.0
    for label, horizon_s in horizons:
        steps = steps_for(horizon_s, series.period_s)
        t0 = time.perf_counter()
        try:
            scores = backtest(series, steps, methods=METHODS, history_days=HISTORY_DAYS)
        except FleetwiseError as exc:
            out[label] = {"steps": steps, "error": str(exc)}
            continue
        dt = time.perf_counter() - t0
        total += dt
        out[label] = {"steps": steps, "period_s": series.period_s, "seconds": dt,
                      "scores": {s.method: s for s in scores}}
        print(".", end="", file=sys.stderr, flush=True)
    return out, total


def goal_check(result: dict) -> dict | None:
    """Auto vs the better naive baseline, and auto's P95 coverage, for one horizon's scores."""
    scores = result.get("scores") or {}
    base = {m: scores[m].wape for m in ("persistence", "seasonal-naive") if m in scores}
    if "auto" not in scores or not base:
        return None
    auto = scores["auto"]
    base_method = min(base, key=base.get)
    ratio = auto.wape / base[base_method] if base[base_method] > 0 else float("nan")
    singles = {m: s.wape for m, s in scores.items() if m != "auto"}
    best = min(singles, key=singles.get)
    cov = auto.coverage.get(0.95, float("nan"))
    return {
        "auto_wape": auto.wape, "baseline": base_method, "baseline_wape": base[base_method], "ratio": ratio,
        "improvement": 1 - ratio, "no_worse": ratio <= 1 + 1e-12, "aim_met": 1 - ratio >= AIM_IMPROVEMENT - 1e-12,
        "p95_coverage": cov, "coverage_ok": COVERAGE_BAND[0] <= cov <= COVERAGE_BAND[1],
        "persistence_wape": scores["persistence"].wape if "persistence" in scores else float("nan"),
        "seasonal_naive_wape": scores["seasonal-naive"].wape if "seasonal-naive" in scores else float("nan"),
        "best_single": best, "best_single_wape": singles[best], "chosen": auto.chosen,
    }


def busiest_clients(directory: Path, k: int) -> list[tuple[Path, float]]:
    """The k ServeGen client files with the largest total rate (column 2, requests/s, summed over bins)."""
    totals = []
    for f in sorted(directory.glob("*.csv")):
        total = 0.0
        with open(f, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split(",", 2)
                try:
                    v = float(parts[1])
                except (IndexError, ValueError):
                    continue
                if math.isfinite(v):
                    total += v
        totals.append((f, total))
    return sorted(totals, key=lambda x: -x[1])[:k]


def synthetic_shifted():
    """21 days of synthetic 10-minute traffic, halved from bin 1500 on, with two collection gaps masked."""
    import numpy as np

    from fleetwise.traffic import SyntheticSpec, synthetic_series
    from fleetwise.traffic.gaps import mask_gaps

    s = synthetic_series(SyntheticSpec(days=21, period_s=600, base_rps=30), seed=3)
    v = s.values.copy()
    v[1500:] *= 0.5
    v[2000:2012] = 0.0
    v[2500:2503] = 0.0
    masked, gaps = mask_gaps(v, s.period_s)
    return s.with_values(masked, source="synthetic 21 d (seed 3), x0.5 from bin 1500, gaps masked"), gaps, int(np.isnan(masked).sum())


def fmt_pct(x: float) -> str:
    return f"{100 * x:.1f}%" if math.isfinite(x) else "-"


def missing_bins(series) -> int:
    import numpy as np

    return int((~np.isfinite(series.values)).sum())


def describe(series) -> str:
    days = len(series) * series.period_s / 86_400
    missing = missing_bins(series)
    return (f"{series.source}: {len(series):,} bins of {series.period_s:g} s ({days:.1f} days), "
            f"{missing} missing bin(s)")


def print_horizon(label: str, res: dict) -> None:
    if "error" in res:
        print(f"### {label} ahead ({res['steps']} step(s)): not scored - {res['error']}\n")
        return
    scores = res["scores"]
    any_score = next(iter(scores.values()))
    lead = res["steps"] * res["period_s"]
    lead_text = f"{lead / 3600:g} h" if lead >= 3600 else f"{lead / 60:g} min"
    print(f"### {label} ahead: {res['steps']} step(s) of {res['period_s']:g} s (forecasts up to {lead_text} ahead), "
          f"{any_score.folds:,} origins, {res['seconds']:.1f} s\n")
    print("| method | folds | WAPE | MAPE | pinball q0.5 | pinball q0.9 | pinball q0.95 | coverage q0.5 | coverage q0.9 "
          "| coverage q0.95 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in METHODS:
        s = scores.get(m)
        if s is None:
            print(f"| {m} | - | not available (too little history) | | | | | | | |")
            continue
        pin = " | ".join(f"{s.pinball.get(q, float('nan')):.2f}" for q in (0.5, 0.9, 0.95))
        cov = " | ".join(f"{s.coverage.get(q, float('nan')):.3f}" for q in (0.5, 0.9, 0.95))
        print(f"| {m} | {s.folds:,} | {fmt_pct(s.wape)} | {fmt_pct(s.mape)} | {pin} | {cov} |")
    auto = scores.get("auto")
    if auto is not None and auto.chosen:
        picks = ", ".join(f"{m} {n}" for m, n in sorted(auto.chosen.items(), key=lambda x: -x[1]))
        print(f"\nauto picked: {picks}")
    print()


def to_json(res: dict) -> dict:
    if "error" in res:
        return res
    return {"steps": res["steps"], "period_s": res["period_s"], "seconds": res["seconds"],
            "scores": {m: s.to_dict() for m, s in res["scores"].items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=Path, default=None,
                        help=f"rate series or request trace to backtest (default {SERIES})")
    parser.add_argument("--freq-s", type=float, default=None,
                        help="bin width in seconds: bins a request trace (default 300), or aggregates a series")
    parser.add_argument("--extra", action="store_true",
                        help="also check the 4 busiest ServeGen clients and a shifted, gappy synthetic series")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    args = parser.parse_args()

    path = args.series or SERIES
    if not path.exists():
        where = "" if args.series else " (expected ../shared/data next to the project)"
        sys.exit(f"forecast_backtest: series not found at {path}{where}; skipping")
    if args.extra and not CLIENTS.is_dir():
        sys.exit(f"forecast_backtest: ServeGen client files not found at {CLIENTS} (needed by --extra); skipping")

    from fleetwise.errors import FleetwiseError
    from fleetwise.traffic import load_as_series, load_series

    try:
        if args.series is None and args.freq_s is None:
            series = load_series(path)
        else:
            series = load_as_series(path, args.freq_s)
    except FleetwiseError as exc:
        sys.exit(f"forecast_backtest: {exc}")

    print(f"backtesting {path.name} ", end="", file=sys.stderr, flush=True)
    results, total_s = run_horizons(series)
    checks = {h: goal_check(results[h]) for h in GOAL_HORIZONS if h in results}

    extra_rows = []
    if args.extra:
        extra_series = []
        for f, total in busiest_clients(CLIENTS, EXTRA_CLIENTS):
            try:
                s = load_series(f, detect_gaps=False)
            except FleetwiseError as exc:
                print(f"\nskipping {f.name}: {exc}", file=sys.stderr)
                continue
            extra_series.append((f"ServeGen client {f.stem} (mean {total / len(s):.1f} req/s)", s))
        synth, gaps, missing = synthetic_shifted()
        extra_series.append((f"synthetic 21 d, level shift, {len(gaps)} gaps masked ({missing} bins)", synth))
        goal_h = tuple(h for h in HORIZONS if h[0] in GOAL_HORIZONS)
        for name, s in extra_series:
            print(f"\nbacktesting {name} ", end="", file=sys.stderr, flush=True)
            res, _ = run_horizons(s, goal_h)
            for h, _ in goal_h:
                extra_rows.append({"series": name, "horizon": h, "seconds": res[h].get("seconds"),
                                   "error": res[h].get("error"), "check": goal_check(res[h])})
    print(file=sys.stderr)

    ok_time = total_s <= GOAL_SECONDS
    scored = [c for c in checks.values() if c is not None]
    ok_acc = len(scored) == len(GOAL_HORIZONS) and all(c["no_worse"] and c["coverage_ok"] for c in scored)
    aim = len(scored) == len(GOAL_HORIZONS) and all(c["aim_met"] for c in scored)
    verdict = "PASS" if ok_time and ok_acc else "FAIL"
    extra_pass = sum(1 for r in extra_rows if r["check"] and r["check"]["no_worse"] and r["check"]["coverage_ok"])

    if args.json:
        print(json.dumps({
            "series": {"path": str(path), "source": series.source, "bins": len(series), "period_s": series.period_s,
                       "missing_bins": missing_bins(series)},
            "history_days": HISTORY_DAYS, "methods": list(METHODS),
            "horizons": {h: to_json(r) for h, r in results.items()},
            "goal_checks": checks, "total_backtest_s": total_s,
            "goal": {"seconds": GOAL_SECONDS, "aim_improvement": AIM_IMPROVEMENT, "coverage_band": COVERAGE_BAND,
                     "time_ok": ok_time, "accuracy_ok": ok_acc, "aim_met": aim, "verdict": verdict},
            "extra": extra_rows, "extra_passed": extra_pass,
        }, indent=2))
        return 0

    print(f"Forecast backtests, history {HISTORY_DAYS:g} days, {os.cpu_count()} CPU cores\n{describe(series)}\n")
    for label, _ in HORIZONS:
        print_horizon(label, results[label])

    print(f"Goal checks (auto vs the better of persistence and seasonal-naive; P95 coverage in "
          f"[{COVERAGE_BAND[0]:.2f}, {COVERAGE_BAND[1]:.2f}]):\n")
    print("| horizon | auto WAPE | baseline | baseline WAPE | auto / baseline | improvement | no worse | aim >= 10 % "
          "| auto P95 coverage | coverage |")
    print("|---|---:|---|---:|---:|---:|:---:|:---:|---:|:---:|")
    for h in GOAL_HORIZONS:
        c = checks.get(h)
        if c is None:
            print(f"| {h} | - | | | | | FAIL | no | - | FAIL |")
            continue
        print(f"| {h} | {fmt_pct(c['auto_wape'])} | {c['baseline']} | {fmt_pct(c['baseline_wape'])} | {c['ratio']:.3f} "
              f"| {fmt_pct(c['improvement'])} | {'PASS' if c['no_worse'] else 'FAIL'} | {'yes' if c['aim_met'] else 'no'} "
              f"| {c['p95_coverage']:.3f} | {'PASS' if c['coverage_ok'] else 'FAIL'} |")
    print(f"\nWall time of all {len(HORIZONS)} backtests ({len(METHODS)} methods each): {total_s:.1f} s "
          f"(goal <= {GOAL_SECONDS:g} s: {'PASS' if ok_time else 'FAIL'})")

    if extra_rows:
        print("\nOther series (WAPE of the median; baseline = the better of persistence and seasonal-naive):\n")
        print("| series | horizon | persistence | seasonal-naive | best single method | auto WAPE | auto / baseline "
              "| auto P95 coverage | checks |")
        print("|---|---|---:|---:|---|---:|---:|---:|:---:|")
        for row in extra_rows:
            c = row["check"]
            if c is None:
                print(f"| {row['series']} | {row['horizon']} | not scored: {row['error'] or 'no auto score'} | | | | | | FAIL |")
                continue
            ok = "PASS" if c["no_worse"] and c["coverage_ok"] else "FAIL"
            print(f"| {row['series']} | {row['horizon']} | {fmt_pct(c['persistence_wape'])} "
                  f"| {fmt_pct(c['seasonal_naive_wape'])} | {c['best_single']} {fmt_pct(c['best_single_wape'])} "
                  f"| {fmt_pct(c['auto_wape'])} | {c['ratio']:.3f} | {c['p95_coverage']:.3f} | {ok} |")
        print(f"\n{extra_pass} of {len(extra_rows)} (series, horizon) pairs pass both accuracy checks.")

    parts = []
    for h in GOAL_HORIZONS:
        c = checks.get(h)
        if c:
            parts.append(f"{h}: auto/baseline {c['ratio']:.2f} ({fmt_pct(c['improvement'])} better), "
                         f"P95 coverage {c['p95_coverage']:.3f}")
    print(f"\nGoal: auto no worse than min(persistence, seasonal-naive) at 1 h and 1 day with P95 coverage in "
          f"[{COVERAGE_BAND[0]:.2f}, {COVERAGE_BAND[1]:.2f}], all backtests <= {GOAL_SECONDS:g} s: {verdict} "
          f"({'; '.join(parts or ['not scored: the series is too short for the horizons'])}; {total_s:.1f} s); aim of 10 % better: {'met' if aim else 'not met'}"
          + (f"; --extra: {extra_pass} of {len(extra_rows)} other (series, horizon) pairs pass" if extra_rows else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
