"""Predict benchmark points, measure the error per tier, and fit engine efficiency factors.

Tiers (what ``fleetwise validate`` reports): offline output throughput, rate-mode TTFT, rate-mode
ITL, and static batch (output throughput at a batch, and batch-1 TTFT). The fit minimises squared
log errors with every tier weighted equally, over the global parameters in
:data:`fleetwise.perf.profile.FITTED_BOUNDS` only, so what is learnt transfers to other GPUs and models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from fleetwise.catalog import Catalog, load_catalog
from fleetwise.errors import FleetwiseError, SolverError
from fleetwise.perf.points import METRIC_FIELDS, Case, Point
from fleetwise.perf.predict import ServingMetrics, predict
from fleetwise.perf.profile import FITTED_BOUNDS, EngineProfile
from fleetwise.perf.replica import build_replica

# (mode, measured metric) pairs that make up each validation tier.
TIERS: dict[str, tuple[tuple[str, str], ...]] = {
    "offline_throughput": (("offline", "output_throughput"),),
    "rate_ttft": (("rate", "mean_ttft"),),
    "rate_itl": (("rate", "mean_itl"),),
    "static": (("static", "output_throughput"), ("static", "mean_ttft")),
}
# Tiers the default fit uses. Static rows come from TensorRT-LLM v0.5/v0.6 static batching (an engine
# generation older than the in-flight-batching data) and their source table mixes per-GPU and
# per-replica throughput units, so they are validated against but not fitted to.
FIT_TIERS = ("offline_throughput", "rate_ttft", "rate_itl")


def predict_case(case: Case, profile: EngineProfile, catalog: Catalog | None = None) -> tuple[ServingMetrics | None, str]:
    """Metrics for one point, or None with the reason it cannot be served ('ok' otherwise)."""
    cat = catalog or load_catalog()
    try:
        replica = build_replica(
            cat.model(case.model), cat.gpu(case.gpu), case.num_gpus, case.tp, cat.precision(case.precision),
            profile, max_batch=None,
        )
        metrics = predict(
            replica, case.isl, case.osl, case.mode,  # type: ignore[arg-type]
            rate_qps=case.rate_qps, batch=case.batch, concurrency=case.batch,
            arrival="constant",
        )
    except FleetwiseError as exc:
        return None, str(exc)
    return metrics, "ok"


@dataclass(frozen=True)
class TierError:
    """Error of one tier: mean absolute percentage error over its points."""

    tier: str
    mape: float
    n: int
    worst: str  # the point with the largest error, for the report


def _pairs(points: Sequence[Point], tiers: Sequence[str] = tuple(TIERS)) -> list[tuple[str, Point, str]]:
    out = []
    for tier in tiers:
        keys = TIERS[tier]
        for point in points:
            for mode, metric in keys:
                if point.case.mode == mode and metric in point.measured:
                    out.append((tier, point, metric))
    return out


def tier_errors(points: Sequence[Point], predictions: dict[Case, ServingMetrics | None]) -> list[TierError]:
    """MAPE per tier of predictions against the measured metrics of ``points``."""
    by_tier: dict[str, list[tuple[float, str]]] = {}
    for tier, point, metric in _pairs(points):
        pred = predictions.get(point.case)
        if pred is None:
            continue
        value = getattr(pred, METRIC_FIELDS[metric])
        err = abs(value - point.measured[metric]) / point.measured[metric]
        c = point.case
        label = f"{c.model} {c.num_gpus}x{c.gpu} {c.precision} {c.isl}/{c.osl} {c.mode}"
        label += f"@{c.rate_qps:g}" if c.rate_qps else ""
        by_tier.setdefault(tier, []).append((err, f"{label} {metric} {value:.4g} vs {point.measured[metric]:.4g}"))
    return [
        TierError(tier, float(np.mean([e for e, _ in rows])), len(rows), max(rows)[1])
        for tier, rows in by_tier.items()
    ]


def predict_points(
    points: Sequence[Point], profile: EngineProfile, catalog: Catalog | None = None
) -> dict[Case, ServingMetrics | None]:
    cat = catalog or load_catalog()
    return {p.case: predict_case(p.case, profile, cat)[0] for p in points}


def _residuals(points: Sequence[Point], profile: EngineProfile, cat: Catalog, tiers: Sequence[str]) -> np.ndarray:
    pairs = _pairs(points, tiers)
    counts: dict[str, int] = {}
    for tier, _, _ in pairs:
        counts[tier] = counts.get(tier, 0) + 1
    preds = predict_points(points, profile, cat)
    res = []
    for tier, point, metric in pairs:
        pred = preds.get(point.case)
        value = getattr(pred, METRIC_FIELDS[metric]) if pred is not None else 0.0
        log_err = math.log(max(value, 1e-9) / point.measured[metric])
        res.append(max(-3.0, min(3.0, log_err)) / math.sqrt(counts[tier]))
    return np.array(res)


def calibrate(
    points: Sequence[Point],
    start: EngineProfile,
    *,
    catalog: Catalog | None = None,
    dataset: str = "",
    max_evals: int = 200,
    tiers: Sequence[str] = FIT_TIERS,
    progress: Callable[[int, float], None] | None = None,
) -> EngineProfile:
    """Fit the engine's global efficiency factors to measured points by bounded least squares.

    Returns:
        The fitted profile, with ``fitted_on`` and the per-tier ``fit_error`` (MAPE) recorded.
    """
    cat = catalog or load_catalog()
    names = list(FITTED_BOUNDS)
    low = np.array([FITTED_BOUNDS[n][0] for n in names])
    high = np.array([FITTED_BOUNDS[n][1] for n in names])
    scale = high - low
    x0 = (np.clip(start.fitted_vector(), low, high) - low) / scale
    calls = [0]

    def objective(x: np.ndarray) -> np.ndarray:
        profile = start.with_params(**dict(zip(names, (low + x * scale).tolist(), strict=True)))
        res = _residuals(points, profile, cat, tiers)
        calls[0] += 1
        if progress:
            progress(calls[0], float(np.sum(res**2)))
        return res

    all_points = points
    points = [p for p in points if any(p.case.mode == m for t in tiers for m, _ in TIERS[t])]
    if not _pairs(points, tiers):
        raise SolverError("no measured points with a metric used for calibration")
    # least_squares does not count finite-difference Jacobian calls in max_nfev: budget iterations so
    # that the objective runs about max_evals times in all.
    iterations = max(1, max_evals // (len(names) + 1))
    fit = least_squares(objective, np.clip(x0, 0.0, 1.0), bounds=(0.0, 1.0), diff_step=0.02, max_nfev=iterations)
    params = dict(zip(names, (low + fit.x * scale).round(6).tolist(), strict=True))
    fitted = start.with_params(**params)
    errors = tier_errors(all_points, predict_points(all_points, fitted, cat))
    return fitted.with_params(
        fitted_on=dataset,
        fit_error={e.tier: round(e.mape, 4) for e in errors},
        source=f"fitted by fleetwise calibrate on {dataset or 'user points'} ({len(points)} cases)",
    )
