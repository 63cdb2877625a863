"""Held-out error of the trtllm calibration: fit on a TRAIN subset, measure on the TEST subset.

The shipped trtllm profile was fitted on every row of ``measured_calibration.csv``, so its error on
that file is in-sample. This benchmark refits the profile, starting from the uncalibrated defaults
(the fitted parameters of ``EngineProfile(name='trtllm')``; scheduler settings from the shipped
profile, which are TensorRT-LLM's defaults), on each train subset with the default fit tiers, and
reports the mean absolute percentage error per tier on the held-out test subset:

  (a) leave-GPU-out: hold out every h200 row
  (b) hold out every l40s and a100-80gb row
  (c) hold out llama-3.1-405b and llama-3.1-70b TP8 (the 8-GPU replicas)
  (d) leave-model-out: hold out llama-3.1-8b

For comparison it also reports the in-sample error of the shipped profile on all the data.
The ``static`` tier is never fitted (see ``FIT_TIERS``), so its error is out-of-sample in every row.
A '-' means the split leaves that tier with no test points. "n" counts (point, metric) pairs.

Usage: python benchmarks/calibration_holdout.py [--max-evals 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CSV = DATA / "perf" / "measured_calibration.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-evals", type=int, default=60, help="max_evals for each fit (default 60)")
    args = parser.parse_args()
    if not CSV.is_file():
        sys.exit(f"calibration_holdout: measured data not found at {CSV} (expected ../shared/data next to the project); skipping")

    from fleetwise.catalog import load_catalog
    from fleetwise.perf.calibrate import TIERS, calibrate, predict_points, tier_errors
    from fleetwise.perf.points import read_points
    from fleetwise.perf.profile import FITTED_BOUNDS, EngineProfile, get_profile

    cat = load_catalog()
    points, _ = read_points(CSV, measured=True)
    shipped = get_profile("trtllm")
    defaults = EngineProfile(name="trtllm")
    start = shipped.with_params(
        **{n: getattr(defaults, n) for n in FITTED_BOUNDS},
        source="uncalibrated defaults", fitted_on="", fit_error={},
    )

    splits = [
        ("(a) leave-GPU-out: h200", lambda c: c.gpu == "h200"),
        ("(b) l40s + a100-80gb", lambda c: c.gpu in ("l40s", "a100-80gb")),
        ("(c) llama-3.1-405b + llama-3.1-70b TP8", lambda c: c.model == "llama-3.1-405b" or (c.model == "llama-3.1-70b" and c.tp == 8)),
        ("(d) leave-model-out: llama-3.1-8b", lambda c: c.model == "llama-3.1-8b"),
    ]

    def cells(errs, test) -> list[str]:
        by = {e.tier: e for e in errs}
        return [f"{100 * by[t].mape:.1f}% (n={by[t].n})" if t in by else "-" for t in TIERS]

    def unpredictable(preds) -> int:
        return sum(1 for v in preds.values() if v is None)

    rows, train_rows, params = [], [], []
    for label, held_out in splits:
        test = [p for p in points if held_out(p.case)]
        train = [p for p in points if not held_out(p.case)]
        print(f"{label}: {len(train)} train / {len(test)} test points, fitting ", end="", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        calls = [0]

        def progress(i: int, cost: float, calls: list[int] = calls) -> None:
            calls[0] = i
            if i % 5 == 0:
                print(".", end="", file=sys.stderr, flush=True)

        fitted = calibrate(train, start, catalog=cat, dataset=f"train of {label}", max_evals=args.max_evals, progress=progress)
        preds = predict_points(test, fitted, cat)
        errs = tier_errors(test, preds)
        elapsed = time.perf_counter() - t0
        print(f" {calls[0]} model evaluations, {elapsed:.0f} s", file=sys.stderr)
        miss = unpredictable(preds)
        rows.append((label, len(train), len(test), cells(errs, test), miss))
        train_rows.append((label, [f"{100 * fitted.fit_error[t]:.1f}%" if t in fitted.fit_error else "-" for t in TIERS]))
        params.append((label, fitted))

    preds = predict_points(points, shipped, cat)
    errs = tier_errors(points, preds)
    rows.append(("shipped profile, in-sample (fitted on all)", len(points), len(points), cells(errs, points), unpredictable(preds)))

    print(f"Calibration hold-out: trtllm, {CSV.name} ({len(points)} points), fits start from the uncalibrated "
          f"defaults, max_evals={args.max_evals}; MAPE per tier on the TEST points\n")
    print("| split (held out = test) | train points | test points | offline_throughput MAPE | rate_ttft | rate_itl | static |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, ntr, nte, c, miss in rows:
        note = f" ({miss} test points not servable, skipped)" if miss else ""
        print(f"| {label}{note} | {ntr} | {nte} | " + " | ".join(c) + " |")

    print("\nIn-sample (TRAIN) MAPE of each split's fit, for comparison:\n")
    print("| split | " + " | ".join(TIERS) + " |")
    print("|---|" + "---:|" * len(TIERS))
    for label, c in train_rows:
        print(f"| {label} | " + " | ".join(c) + " |")

    names = list(FITTED_BOUNDS)
    print("\nFitted parameters:\n")
    print("| profile | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, prof in [("uncalibrated start", start), ("shipped (all data)", shipped), *params]:
        print(f"| {label} | " + " | ".join(f"{getattr(prof, n):.3g}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
