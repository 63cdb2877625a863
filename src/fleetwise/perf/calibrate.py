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
from fleetwise.errors import ConfigError, FleetwiseError, InfeasibleError, InputFormatError, SolverError
from fleetwise.perf.points import METRIC_FIELDS, Case, Point, check_points, context_problem
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
        model = cat.model(case.model)
        too_long = context_problem(case, model)
        if too_long:
            return None, too_long
        replica = build_replica(
            model, cat.gpu(case.gpu), case.num_gpus, case.tp, cat.precision(case.precision), profile,
            max_batch=None,
        )
        metrics = predict(
            replica, case.isl, case.osl, case.mode,  # type: ignore[arg-type]
            rate_qps=case.rate_qps, batch=case.batch, concurrency=case.batch,
            arrival="constant",
        )
    except FleetwiseError as exc:
        return None, str(exc)
    return metrics, "ok"


def _nothing_predictable(points: Sequence[Point], reason: str = "") -> InfeasibleError:
    first = points[0]
    why = f": {reason}" if reason else " (fleetwise perf --points FILE shows why)"
    return InfeasibleError(
        f"none of the {len(points)} measured points can be predicted; the first, on line {first.line}{why}",
        file=first.file or None,
    )


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


def _points_of(pairs: Sequence[tuple[str, Point, str]]) -> list[Point]:
    """The distinct points of (tier, point, metric) pairs, in order."""
    return list({id(point): point for _, point, _ in pairs}.values())


def tier_errors(points: Sequence[Point], predictions: dict[Case, ServingMetrics | None]) -> list[TierError]:
    """MAPE per tier of predictions against the measured metrics of ``points``.

    Points that cannot be predicted (their configuration does not fit, say) are left out; when that
    leaves nothing, or no point has a metric of any tier, this raises rather than report no error at all.
    """
    by_tier: dict[str, list[tuple[float, str]]] = {}
    pairs = _pairs(points)
    if points and not pairs:
        raise InputFormatError(
            f"no measured point has a metric of any tier ({_tier_metrics(TIERS)})",
            file=points[0].file or None,
        )
    for tier, point, metric in pairs:
        pred = predictions.get(point.case)
        if pred is None:
            continue
        value = getattr(pred, METRIC_FIELDS[metric])
        err = abs(value - point.measured[metric]) / point.measured[metric]
        c = point.case
        label = f"{c.model} {c.num_gpus}x{c.gpu} {c.precision} {c.isl}/{c.osl} {c.mode}"
        label += f"@{c.rate_qps:g}" if c.rate_qps else ""
        by_tier.setdefault(tier, []).append((err, f"{label} {metric} {value:.4g} vs {point.measured[metric]:.4g}"))
    if pairs and not by_tier:
        raise _nothing_predictable(_points_of(pairs))
    return [
        TierError(tier, float(np.mean([e for e, _ in rows])), len(rows), max(rows)[1])
        for tier, rows in by_tier.items()
    ]


def _tier_metrics(tiers: Sequence[str]) -> str:
    return ", ".join(sorted({f"{mode} {metric}" for t in tiers for mode, metric in TIERS[t]}))


def predict_points(
    points: Sequence[Point], profile: EngineProfile, catalog: Catalog | None = None
) -> dict[Case, ServingMetrics | None]:
    """Predictions of every point (None where a configuration cannot be served).

    Raises:
        InputFormatError: a point names a model, GPU or precision the catalog does not know, or its
            requests do not fit the model's context window.
    """
    cat = catalog or load_catalog()
    check_points(points, cat)
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
    if isinstance(max_evals, bool) or not isinstance(max_evals, int) or max_evals < 1:
        raise ConfigError(f"must be a whole number >= 1 (got {max_evals!r})", field="max_evals")
    cat = catalog or load_catalog()
    check_points(points, cat)
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
        raise SolverError(f"no measured points with a metric used for calibration ({_tier_metrics(tiers)})")
    # Points that cannot be served (say, they do not fit in memory) add a constant residual and no
    # information; when no point is left, refuse rather than write a profile fitted to nothing.
    fit_points = _points_of(_pairs(points, tiers))
    if not any(predict_case(p.case, start, cat)[0] is not None for p in fit_points):
        raise _nothing_predictable(fit_points, predict_case(fit_points[0].case, start, cat)[1])
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
