"""Held-out error of the vllm and sglang profiles: leave one source out, leave one GPU out.

The ``vllm`` and ``sglang`` profiles are to be fitted on every usable row of their engine in
``../shared/data/perf/measured_engines.csv`` (the shipped ones are still adjustments of trtllm's, not fitted
on these rows, until a fit beats them). Here each group of rows -- one
source (a benchmark publication), or one GPU -- is held out in turn: the profile is refitted on the other
rows, starting from the pre-calibration profile (the engine's scheduler settings with TensorRT-LLM's fitted
efficiencies, fitted on other data, so nothing of the held-out rows leaks into the start), with the same
global parameters and tiers as the shipped fit, and its error is measured on the held-out rows.

Tiers (MAPE): offline_throughput (offline throughput), static (static-batch throughput, from the whole-batch
time), rate_ttft (TTFT under open-loop rate and closed-loop concurrency), rate_itl (ITL, else TPOT). Goals on
held-out groups: offline/static <= 15%, TTFT <= 25%, ITL/TPOT <= 20%. Metrics the calibrator's stated
exclusion rules (``fleetwise.perf.calibrate.EXCLUSIONS``, each a known issue of the data README) keep out of
fits are left out of these errors too, and reported on their own. "n" counts (point, metric) pairs; a group
whose rows are the only ones of a tier cannot be held out for it (its train set has none) and shows "-".

Also fitted: a profile on every usable row of the engine (what would be shipped), with its in-sample error
next to the shipped profile's, and its bias per publication, GPU and tier (median predicted / measured,
as a throughput for the static tier): where the data disagree with the physics and with each other, in one
global set of parameters. Also printed: the same configuration measured by different runs. With ``--floor``,
each publication, GPU, and publication on one GPU is also fitted on its own rows and scored on them (leaks by
design: what one set of global parameters reaches on that group at this budget, not a generalization figure).

Usage: python benchmarks/engine_profiles.py [--max-evals 20] [--engines vllm,sglang] [--json] [--floor]
       [--write-profiles DIR]
       python benchmarks/engine_profiles.py --report vllm.json sglang.json   (print saved --json reports together)
Takes ~20-30 min of one core at the defaults (17 fits; the two engines can run as two processes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CSV = DATA / "perf" / "measured_engines.csv"
GOALS = {"offline_throughput": 0.15, "static": 0.15, "rate_ttft": 0.25, "rate_itl": 0.20}
TIER_ORDER = ("offline_throughput", "static", "rate_ttft", "rate_itl")
# Source groups: one benchmark publication each (the data README's table), by a text of its `source`.
SOURCES = (
    ("argonne", "argonne-lcf/LLM-Inference-Bench"),
    ("dstack-r1", "dstackai/benchmarks Deepseek-R1"),
    ("dstack-405b", "dstackai/benchmarks comparison"),
    ("simon-mo", "simon-mo/vLLM-Benchmark"),
    ("datacrunch", "datacrunch-research/h200-benchmarks"),
    ("amd-rocm", "amd.com"),
)


def source_group(point) -> str:
    """The publication a point comes from (see SOURCES)."""
    text = point.extra.get("source", "")
    return next((name for name, key in SOURCES if key in text), "other")


def run_label(point) -> str:
    """A short name of the run a point comes from: its source group and the file (and folder) it names."""
    text = point.extra.get("source", "")
    first = text.split(" @")[0].split(" ")[-1] if " @" in text else ""
    where = f"{Path(first).parent.name}/{Path(first).name}" if "/" in first else ""
    return f"{source_group(point)}:{where or point.extra.get('engine_version', '')[:20]}"


def _gpu(point) -> str:
    return point.case.gpu


def _source_gpu(point) -> str:
    return f"{source_group(point)}/{point.case.gpu}"


GROUPINGS = (("source", source_group), ("gpu", _gpu))
"""How rows are held out: one publication at a time, one GPU at a time."""


def _start(engine: str):
    """The pre-calibration profile: this engine's scheduler settings, trtllm's fitted efficiencies."""
    from fleetwise.perf.profile import FITTED_BOUNDS, get_profile

    trt = get_profile("trtllm")
    return get_profile(engine).with_params(
        **{n: getattr(trt, n) for n in FITTED_BOUNDS}, source="pre-calibration start", fitted_on="", fit_error={},
        coverage={},
    )


def _errors(points, profile, cat, exclude=True) -> dict[str, dict]:
    from fleetwise.errors import FleetwiseError
    from fleetwise.perf.calibrate import predict_points, tier_errors

    if not points:
        return {}
    try:
        errs = tier_errors(points, predict_points(points, profile, cat), exclude=exclude)
    except FleetwiseError as exc:  # a held-out group with nothing predictable: report it, do not stop
        return {"error": {"message": str(exc)}}
    return {e.tier: {"mape": e.mape, "n": e.n, "worst": e.worst} for e in errs}


def fit_tiers(points) -> list[str]:
    """The tiers the engine's rows have metrics of: what its shipped profile is fitted on."""
    from fleetwise.perf.calibrate import _pairs

    return sorted({tier for tier, _, _ in _pairs(points, exclude=True)}, key=TIER_ORDER.index)


def held_out(engine: str, points, cat, max_evals: int) -> list[dict]:
    """One refit per held-out group (each source, each GPU); errors on the held-out rows."""
    from fleetwise.errors import FleetwiseError
    from fleetwise.perf.calibrate import _pairs, calibrate

    tiers = fit_tiers(points)
    start = _start(engine)
    rows = []
    for kind, key in GROUPINGS:
        for group in sorted({key(p) for p in points}):
            test = [p for p in points if key(p) == group]
            train = [p for p in points if key(p) != group]
            if not _pairs(test, exclude=True):
                continue
            t0 = time.perf_counter()
            print(f"{engine}: leave {kind} {group} out ({len(train)} train / {len(test)} test points) ...",
                  file=sys.stderr, flush=True)
            try:
                fitted = calibrate(train, start, catalog=cat, tiers=tiers, max_evals=max_evals,
                                   dataset=f"{CSV.name} minus {kind} {group}")
            except FleetwiseError as exc:
                rows.append({"engine": engine, "held_out": f"{kind}={group}", "error": str(exc)})
                continue
            rows.append({"engine": engine, "held_out": f"{kind}={group}", "train_points": len(train),
                         "test_points": len(test), "seconds": round(time.perf_counter() - t0, 1),
                         "tiers": _errors(test, fitted, cat)})
    return rows


def fit_all(engine: str, points, cat, max_evals: int):
    """The profile fitted on every row of the engine: the same start, tiers and budget as the held-out refits."""
    from fleetwise.perf.calibrate import calibrate

    return calibrate(points, _start(engine), catalog=cat, tiers=fit_tiers(points), max_evals=max_evals,
                     dataset=f"{CSV.name} ({engine} rows)")


def bias(points, profile, cat) -> list[dict]:
    """Median predicted / measured per (tier, publication, GPU) under one profile (static: of throughput).

    One global profile leaves each group off by its own factor; groups that need opposite factors are what
    keep the held-out error up, whatever the weights (1 = unbiased; 2 = predicts twice as fast/long).
    """
    from fleetwise.perf.calibrate import TIME_FOR_WORK, _pairs, predict_points
    from fleetwise.perf.points import METRIC_FIELDS

    preds = predict_points(points, profile, cat)
    ratios = defaultdict(list)
    for tier, point, metric in _pairs(points, exclude=True):
        pred = preds.get(point.case)
        if pred is None:
            continue
        ratio = getattr(pred, METRIC_FIELDS[metric]) / point.measured[metric]
        if (point.case.mode, metric) in TIME_FOR_WORK:
            ratio = 1.0 / ratio
        ratios[tier, source_group(point), point.case.gpu].append(ratio)
    return [{"tier": t, "source": s, "gpu": g, "n": len(r), "median": float(np.median(r)), "low": min(r),
             "high": max(r)} for (t, s, g), r in sorted(ratios.items(), key=lambda kv: TIER_ORDER.index(kv[0][0]))]


def self_fits(engine: str, points, cat, max_evals: int) -> list[dict]:
    """Each group fitted on its own rows and scored on them, with the held-out refits' budget.

    The fit sees the rows it is scored on, so this is no generalization figure: it asks whether one set of the
    profile's parameters meets the goals on a group at all. Where a publication's rows on one GPU miss even so,
    weighting or excluding *other* rows cannot bring that group under the goal; only a longer fit (it is a
    local, budgeted optimization) or a change to the model's physics can.
    """
    from fleetwise.errors import FleetwiseError
    from fleetwise.perf.calibrate import _pairs, calibrate

    start = _start(engine)
    rows = []
    for kind, key in (*GROUPINGS, ("source+gpu", _source_gpu)):
        for group in sorted({key(p) for p in points}):
            own = [p for p in points if key(p) == group]
            if not _pairs(own, exclude=True):
                continue
            print(f"{engine}: fit {kind} {group} on its own {len(own)} points ...", file=sys.stderr, flush=True)
            try:
                fitted = calibrate(own, start, catalog=cat, tiers=fit_tiers(own), max_evals=max_evals)
            except FleetwiseError as exc:
                rows.append({"engine": engine, "held_out": f"{kind}={group}", "error": str(exc)})
                continue
            rows.append({"engine": engine, "held_out": f"{kind}={group}", "tiers": _errors(own, fitted, cat)})
    return rows


def pooled(rows: list[dict], kind: str) -> dict[str, dict]:
    """Every held-out group of one kind pooled: MAPE over all their (point, metric) pairs."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for row in rows:
        if not row["held_out"].startswith(kind + "="):
            continue
        for tier, e in row.get("tiers", {}).items():
            if "mape" in e:
                sums[tier][0] += e["mape"] * e["n"]
                sums[tier][1] += e["n"]
    return {t: {"mape": s / n, "n": n} for t, (s, n) in sums.items() if n}


def disagreements(points) -> list[dict]:
    """The same configuration measured by more than one run: the spread of each shared headline metric."""
    by_case = defaultdict(list)
    for p in points:
        by_case[(p.case.engine, p.case)].append(p)
    out = []
    for (engine, case), runs in by_case.items():
        if len(runs) < 2:
            continue
        for metric in ("output_throughput", "total_token_throughput", "mean_ttft", "median_ttft", "mean_itl",
                       "median_itl", "mean_e2e"):
            values = [(r.measured[metric], run_label(r), r.extra.get("engine_version", "")) for r in runs
                      if metric in r.measured]
            if len(values) < 2:
                continue
            low, high = min(values), max(values)
            out.append({"engine": engine, "case": f"{case.model} {case.num_gpus}x{case.gpu} {case.precision} "
                        f"{case.isl}/{case.osl} {case.mode}", "metric": metric, "runs": len(values),
                        "ratio": high[0] / low[0], "low": low, "high": high})
    return sorted(out, key=lambda d: -d["ratio"])


def _cell(e: dict | None, goal: float | None = None) -> str:
    if not e or "mape" not in e:
        return "-"
    miss = "" if goal is None or e["mape"] <= goal else " ✗"
    return f"{100 * e['mape']:.1f}% (n={e['n']}){miss}"


def _print(report: dict) -> None:
    head = "| engine | held out | " + " | ".join(TIER_ORDER) + " |"
    print(f"Held-out error of the engine profiles on {CSV.name}; refits start from the pre-calibration profile, "
          f"max_evals={report['max_evals']}; MAPE on the held-out rows (✗: misses the goal: offline/static "
          "<= 15%, TTFT <= 25%, ITL/TPOT <= 20%)\n")
    print(head)
    print("|---|---|" + "---:|" * len(TIER_ORDER))
    for engine, block in report["engines"].items():
        rows = [("in-sample (shipped profile)", block["in_sample"])]
        rows += [(f"in-sample, {c} models only", e) for c, e in block["in_sample_by_class"].items()]
        rows += [("in-sample (profile fitted on all rows)", block["fitted_in_sample"])]
        rows += [(f"in-sample fitted, {c} models only", e) for c, e in block["fitted_in_sample_by_class"].items()]
        for label, tiers in rows:
            print(f"| {engine} | {label} | " + " | ".join(_cell(tiers.get(t)) for t in TIER_ORDER) + " |")
        for row in block["held_out"]:
            cells = (["error: " + row["error"]] + ["-"] * (len(TIER_ORDER) - 1) if "error" in row
                     else [_cell(row["tiers"].get(t), GOALS[t]) for t in TIER_ORDER])
            print(f"| {engine} | {row['held_out']} | " + " | ".join(cells) + " |")
        for kind in ("source", "gpu"):
            tiers = block[f"pooled_{kind}"]
            print(f"| {engine} | **all leave-one-{kind}-out** | "
                  + " | ".join(_cell(tiers.get(t), GOALS[t]) for t in TIER_ORDER) + " |")
        for kind, tiers in block.get("pooled_self_fit", {}).items():
            print(f"| {engine} | floor: each {kind} fitted on its own rows, pooled | "
                  + " | ".join(_cell(tiers.get(t), GOALS[t]) for t in TIER_ORDER) + " |")
        excluded = block["excluded_by_rules"]
        if excluded:
            print(f"| {engine} | rows kept out by exclusion rules (shipped profile) | "
                  + " | ".join(_cell(excluded.get(t)) for t in TIER_ORDER) + " |")
    print("\nWorst held-out point per engine and tier (leave-one-GPU-out):")
    for engine, block in report["engines"].items():
        for row in block["held_out"]:
            if row["held_out"].startswith("gpu="):
                for tier in TIER_ORDER:
                    e = row.get("tiers", {}).get(tier)
                    if e and "worst" in e:
                        print(f"  {engine} {row['held_out']} {tier}: {e['worst']}")
    floors = [(engine, row) for engine, block in report["engines"].items() for row in block.get("self_fit", [])
              if row["held_out"].startswith("source+gpu=")]
    if floors:
        print("\nFloor per publication and GPU (fitted on its own rows with the same budget, scored on them):")
        for engine, row in floors:
            cells = ["error: " + row["error"]] if "error" in row else [
                _cell(row["tiers"].get(t), GOALS[t]) for t in TIER_ORDER]
            print(f"  {engine} {row['held_out']}: " + " | ".join(cells))
    print("\nBias of the profile fitted on all rows: median predicted / measured (static: throughput) per tier, "
          "publication and GPU, with its range:")
    for engine, block in report["engines"].items():
        print(f"  {engine}: " + ", ".join(f"{k}={v:.4g}" for k, v in block["fitted_params"].items()))
        for b in block["fitted_bias"]:
            print(f"  {engine} {b['tier']} {b['source']} {b['gpu']}: x{b['median']:.2f} (n={b['n']}, "
                  f"{b['low']:.2f}-{b['high']:.2f})")
    print("\nWhere the data disagree (same configuration, different runs; largest spread first):")
    for d in report["disagreements"][:12]:
        print(f"  {d['engine']} {d['case']} {d['metric']}: x{d['ratio']:.2f} ({d['low'][0]:.4g} {d['low'][1]} "
              f"[{d['low'][2][:16]}] vs {d['high'][0]:.4g} {d['high'][1]} [{d['high'][2][:16]}])")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-evals", type=int, default=20, help="model evaluations per refit (default 20)")
    parser.add_argument("--engines", default="vllm,sglang", help="engines to evaluate (default vllm,sglang)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--floor", action="store_true",
                        help="also fit each source, GPU and source+GPU on its own rows and score it there")
    parser.add_argument("--write-profiles", metavar="DIR", help="write the profiles fitted on all rows to DIR/ENGINE.yaml")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="print these saved --json reports as one")
    args = parser.parse_args()
    if args.report:
        reports = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.report]
        merged = {**reports[0], "engines": {k: v for r in reports for k, v in r["engines"].items()}}
        _print(merged)
        return 0
    if not CSV.is_file():
        print(f"engine_profiles: measured data not found at {CSV} (expected ../shared/data next to the project); "
              "skipping", file=sys.stderr)
        return 0

    from fleetwise.catalog import load_catalog
    from fleetwise.perf.arch import model_class
    from fleetwise.perf.calibrate import EXCLUSIONS, _pairs, exclusion_of, predict_points, tier_errors
    from fleetwise.perf.points import read_points
    from fleetwise.perf.profile import FITTED_BOUNDS, get_profile

    cat = load_catalog()
    points, _ = read_points(CSV, measured=True)
    report = {"data": str(CSV), "max_evals": args.max_evals, "exclusions": [e.__dict__ for e in EXCLUSIONS],
              "engines": {}, "disagreements": disagreements(points)}
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        mine = [p for p in points if p.case.engine == engine]
        rows = held_out(engine, mine, cat, args.max_evals)
        get_profile.cache_clear()  # the shipped profile as it is now, after the refits
        profile = get_profile(engine)
        kept_out = [p for p in mine if any(exclusion_of(p, t) for t in TIER_ORDER)]
        excluded = {}
        if kept_out:
            preds = predict_points(kept_out, profile, cat)
            every = {e.tier: e for e in tier_errors(kept_out, preds)}
            kept = {e.tier: e for e in tier_errors(kept_out, preds, exclude=True)} if _pairs(kept_out, exclude=True) \
                else {}
            for tier, e in every.items():  # error of just the excluded (point, metric) pairs
                k = kept.get(tier)
                n = e.n - (k.n if k else 0)
                if n:
                    excluded[tier] = {"mape": (e.mape * e.n - (k.mape * k.n if k else 0.0)) / n, "n": n}
        print(f"{engine}: fit on all rows ...", file=sys.stderr, flush=True)
        fitted = fit_all(engine, mine, cat, args.max_evals)
        if args.write_profiles:
            Path(args.write_profiles).mkdir(parents=True, exist_ok=True)
            (Path(args.write_profiles) / f"{engine}.yaml").write_text(fitted.to_yaml(), encoding="utf-8")
        classes = defaultdict(list)
        for p in mine:
            classes[model_class(cat.model(p.case.model))].append(p)
        report["engines"][engine] = {
            "in_sample": _errors(mine, profile, cat),
            "in_sample_by_class": {c: _errors(classes[c], profile, cat) for c in sorted(classes)},
            "fitted_in_sample": _errors(mine, fitted, cat),
            "fitted_in_sample_by_class": {c: _errors(classes[c], fitted, cat) for c in sorted(classes)},
            "fitted_params": {n: getattr(fitted, n) for n in FITTED_BOUNDS},
            "fitted_bias": bias(mine, fitted, cat),
            "held_out": rows, "pooled_source": pooled(rows, "source"), "pooled_gpu": pooled(rows, "gpu"),
            "excluded_by_rules": excluded,
        }
        if args.floor:
            floor = self_fits(engine, mine, cat, args.max_evals)
            report["engines"][engine]["self_fit"] = floor
            report["engines"][engine]["pooled_self_fit"] = {
                kind: pooled(floor, kind) for kind in ("source", "gpu", "source+gpu")}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
