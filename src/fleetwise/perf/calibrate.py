"""Predict benchmark points, measure the error per tier, and fit engine efficiency factors.

Tiers (what ``fleetwise validate`` reports): offline output throughput, rate-mode TTFT, rate-mode
ITL, and static batch (output throughput at a batch, and batch-1 TTFT). The fit minimises a soft-L1
loss of log errors with every tier, within a tier every publication, and within a publication every GPU weighted
equally (:func:`publication`), over the global parameters in :data:`fleetwise.perf.profile.FITTED_BOUNDS` only,
so what is learnt transfers to other GPUs and models.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import numpy as np
from scipy.optimize import least_squares

from fleetwise.catalog import Catalog, Precision, load_catalog
from fleetwise.errors import ConfigError, FleetwiseError, InfeasibleError, InputFormatError, SolverError
from fleetwise.perf.arch import model_class
from fleetwise.perf.lengths import sharegpt_lengths
from fleetwise.perf.points import METRIC_FIELDS, SHAREGPT, Case, Point, check_points, context_problem
from fleetwise.perf.predict import DEFAULT_REQUESTS, ServingMetrics, predict
from fleetwise.perf.profile import FITTED_BOUNDS, EngineProfile
from fleetwise.perf.replica import build_replica

# What each validation tier measures: groups of (modes, metrics). A point in one of the modes adds the first
# metric of the group it has (mean before median, ITL before TPOT), so a run reporting both counts once.
# rate_* tiers cover open-loop (rate) and closed-loop (concurrency) serving alike.
TIERS: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    "offline_throughput": ((("offline",), ("output_throughput", "total_token_throughput")),),
    "rate_ttft": ((("rate", "concurrency"), ("mean_ttft", "median_ttft")),),
    "rate_itl": ((("rate", "concurrency"), ("mean_itl", "mean_tpot", "median_itl", "median_tpot")),),
    "static": ((("static",), ("output_throughput", "mean_e2e")), (("static",), ("mean_ttft",))),
}
# A static batch's mean_e2e is the time the whole batch takes (vLLM benchmark_latency): its error is scored
# as the error of the throughput it implies (batch x osl / time), so the static tier is a throughput MAPE.
TIME_FOR_WORK = frozenset({("static", "mean_e2e")})
# Tiers the default fit uses. Static rows come from TensorRT-LLM v0.5/v0.6 static batching (an engine
# generation older than the in-flight-batching data) and their source table mixes per-GPU and
# per-replica throughput units, so they are validated against but not fitted to.
FIT_TIERS = ("offline_throughput", "rate_ttft", "rate_itl")
ALL_TIERS = tuple(TIERS)
ROBUST_LOG_SCALE = 0.5
"""Soft-L1 scale of the fit, in log error (x1.65): points further off than that pull on the parameters linearly."""


@dataclass(frozen=True)
class Exclusion:
    """A stated rule that keeps some measured metrics out of a fit (they are still validated against)."""

    name: str
    flag: str  # text in a point's `source` that marks the runs the rule covers
    tiers: tuple[str, ...]
    reason: str


# Each rule is a known issue of shared/data/README.md, matched by the run's own configuration, never by
# how well the model fits it.
EXCLUSIONS = (
    Exclusion("enforce-eager", "--enforce-eager", ALL_TIERS,
              "ran with --enforce-eager (no CUDA/HIP graphs): not the engine as served; the data README calls "
              "the MI300X offline runs pessimistic"),
    Exclusion("multi-step-15", "--num-scheduler-step 15", ("rate_itl",),
              "multi-step scheduling 15 with chunked prefill off: the data README calls this MI300X serving "
              "TPOT pathological (decode stalls behind 15-step batches)"),
)


def exclusion_of(point: Point, tier: str) -> Exclusion | None:
    """The rule that keeps this point out of the fit of ``tier``, if any."""
    source = point.extra.get("source", "")
    return next((e for e in EXCLUSIONS if tier in e.tiers and e.flag in source), None)


def predict_case(case: Case, profile: EngineProfile, catalog: Catalog | None = None) -> tuple[ServingMetrics | None, str]:
    """Metrics for one point, or None with the reason it cannot be served ('ok' otherwise)."""
    cat = catalog or load_catalog()
    try:
        model = cat.model(case.model)
        too_long = context_problem(case, model)
        if too_long:
            return None, too_long
        replica = build_replica(
            model, cat.gpu(case.gpu), case.num_gpus, case.tp, _precision(cat, case), profile, max_batch=None,
        )
        isl, osl = _lengths(case)
        metrics = predict(
            replica, isl, osl, case.mode,  # type: ignore[arg-type]
            rate_qps=case.rate_qps, batch=case.batch, concurrency=case.concurrency,
            num_requests=case.num_requests if case.mode != "static" else None, arrival="constant",
        )
    except FleetwiseError as exc:
        return None, str(exc)
    return metrics, "ok"


def _precision(cat: Catalog, case: Case) -> Precision:
    """The case's precision, with its KV-cache dtype where the run's differs (16-bit: 2 bytes, fp8: 1)."""
    precision = cat.precision(case.precision)
    if case.kv_dtype is None or case.kv_dtype == precision.kv_dtype:
        return precision
    kv_bytes = {"fp8": 1.0, "int8": 1.0, "bf16": 2.0, "fp16": 2.0}.get(case.kv_dtype)
    if kv_bytes is None:
        raise InputFormatError(f"unknown KV-cache dtype '{case.kv_dtype}' (fp8, int8, bf16 or fp16)", field="kv_dtype")
    return replace(precision, kv_dtype=case.kv_dtype, kv_bytes=kv_bytes)


def _lengths(case: Case) -> tuple[int | np.ndarray, int | np.ndarray]:
    """The case's request lengths: fixed, or ShareGPT draws (one per request the benchmark sent).

    An offline benchmark of a known prompt count runs exactly those requests (4 prompts are not a steady
    state), so they are given one length each: predict() runs per-request lengths as they are.
    """
    if case.lengths != SHAREGPT:
        if case.mode == "offline" and case.num_requests:
            return np.full(case.num_requests, case.isl), np.full(case.num_requests, case.osl)
        return case.isl, case.osl
    n = case.batch if case.mode == "static" else case.num_requests or DEFAULT_REQUESTS[case.mode]
    return sharegpt_lengths(int(n or 1), case.isl, case.osl)


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


def _pairs(
    points: Sequence[Point], tiers: Sequence[str] = ALL_TIERS, *, exclude: bool = False
) -> list[tuple[str, Point, str]]:
    """(tier, point, metric) of every measured metric a tier scores; with ``exclude``, minus :data:`EXCLUSIONS`."""
    out = []
    for tier in tiers:
        for point in points:
            if exclude and exclusion_of(point, tier):
                continue
            for modes, metrics in TIERS[tier]:
                if point.case.mode in modes:
                    metric = next((m for m in metrics if m in point.measured), None)
                    if metric:
                        out.append((tier, point, metric))
    return out


def relative_error(case: Case, metric: str, predicted: float, measured: float) -> float:
    """|predicted - measured| / measured, of the implied throughput for a time to finish fixed work."""
    if (case.mode, metric) in TIME_FOR_WORK:
        return abs(measured / predicted - 1.0) if predicted > 0 else math.inf
    return abs(predicted - measured) / measured


def _points_of(pairs: Sequence[tuple[str, Point, str]]) -> list[Point]:
    """The distinct points of (tier, point, metric) pairs, in order."""
    return list({id(point): point for _, point, _ in pairs}.values())


def tier_errors(
    points: Sequence[Point], predictions: dict[Case, ServingMetrics | None], *, exclude: bool = False
) -> list[TierError]:
    """MAPE per tier of predictions against the measured metrics of ``points``.

    Points that cannot be predicted (their configuration does not fit, say) are left out; when that
    leaves nothing, or no point has a metric of any tier, this raises rather than report no error at all.
    With ``exclude``, metrics that :data:`EXCLUSIONS` keep out of a fit are left out too.
    """
    by_tier: dict[str, list[tuple[float, str]]] = {}
    pairs = _pairs(points, exclude=exclude)
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
        err = relative_error(point.case, metric, value, point.measured[metric])
        c = point.case
        lengths = f"sharegpt({c.isl}/{c.osl})" if c.lengths == SHAREGPT else f"{c.isl}/{c.osl}"
        label = f"{c.engine} {c.model} {c.num_gpus}x{c.gpu} {c.precision} {lengths} {c.mode}"
        label += f"@{c.rate_qps:g}" if c.rate_qps and c.mode == "rate" else ""
        label += f"@c{c.concurrency}" if c.concurrency and c.mode == "concurrency" else ""
        label += f"@b{c.batch}" if c.batch and c.mode == "static" else ""
        by_tier.setdefault(tier, []).append((err, f"{label} {metric} {value:.4g} vs {point.measured[metric]:.4g}"))
    if pairs and not by_tier:
        raise _nothing_predictable(_points_of(pairs))
    return [
        TierError(tier, float(np.mean([e for e, _ in rows])), len(rows), max(rows)[1])
        for tier, rows in by_tier.items()
    ]


def _tier_metrics(tiers: Sequence[str]) -> str:
    return ", ".join(sorted({f"{'/'.join(modes)} {'|'.join(metrics)}" for t in tiers for modes, metrics in TIERS[t]}))


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


def _residuals(
    pairs: Sequence[tuple[str, Point, str]], root_weights: Sequence[float], points: Sequence[Point],
    profile: EngineProfile, cat: Catalog, robust_scale: float | None,
) -> np.ndarray:
    """One weighted residual per (tier, point, metric) pair; ``root_weights`` are the square roots of
    :func:`_weights`, per pair (they do not change between evaluations)."""
    preds = predict_points(points, profile, cat)
    res = []
    for (_, point, metric), root in zip(pairs, root_weights, strict=True):
        pred = preds.get(point.case)
        value = getattr(pred, METRIC_FIELDS[metric]) if pred is not None else 0.0
        log_err = max(-3.0, min(3.0, math.log(max(value, 1e-9) / point.measured[metric])))
        res.append(_robust(log_err, robust_scale) * root)
    return np.array(res)


def publication(point: Point) -> str:
    """The publication a measured point comes from: its source's repository and top folder, or its web host.

    ``dstackai/benchmarks Deepseek-R1/raw_data/...`` and ``dstackai/benchmarks comparison/...`` are two
    publications of one repository (two rows of the data README's source table); the five crawls of AMD's
    page, one publication. Points without a source are one publication.
    """
    words = point.extra.get("source", "").split()
    if not words:
        return ""
    if "://" in words[0]:
        return urlsplit(words[0]).netloc
    return f"{words[0]} {words[1].split('/')[0]}" if len(words) > 1 else words[0]


def _weights(pairs: Sequence[tuple[str, Point, str]]) -> dict[tuple[str, str, str], float]:
    """Weight of one (tier, publication, GPU) row: every tier weighs the same, within a tier every
    publication, within a publication every GPU it measured.

    Publications disagree with each other by 2-20x on the same configuration (benchmarks/engine_profiles.py);
    weighted by rows, the one with the most (1,290 Argonne static batches, 719 of them on MI300X) would set
    the global parameters for every GPU and model; weighted by GPU alone, one publication still owns every
    GPU only it measured. A file of one publication (a user's own) is weighted by GPU, as before.
    """
    rows = Counter((tier, publication(point), point.case.gpu) for tier, point, _ in pairs)
    gpus = Counter((tier, pub) for tier, pub, _ in rows)
    pubs = Counter(tier for tier, _ in gpus)
    return {cell: 1.0 / (n * gpus[cell[:2]] * pubs[cell[0]]) for cell, n in rows.items()}


def _robust(log_err: float, scale: float | None) -> float:
    """A residual whose square is the soft-L1 loss of ``log_err``: quadratic within ``scale``, linear beyond.

    Measured sources disagree with each other by up to 20x (data README, benchmarks/engine_profiles.py); with
    squares, the few rows furthest from the rest would set the global parameters for every GPU and model.
    """
    if not scale:
        return log_err
    z = log_err / scale
    return math.copysign(scale * math.sqrt(2.0 * (math.sqrt(1.0 + z * z) - 1.0)), log_err)


def calibrate(
    points: Sequence[Point],
    start: EngineProfile,
    *,
    catalog: Catalog | None = None,
    dataset: str = "",
    max_evals: int = 200,
    tiers: Sequence[str] = FIT_TIERS,
    progress: Callable[[int, float], None] | None = None,
    robust_scale: float | None = ROBUST_LOG_SCALE,
) -> EngineProfile:
    """Fit the engine's global efficiency factors to measured points by bounded least squares.

    Args:
        robust_scale: log-error beyond which a point's loss grows linearly, not quadratically (soft L1);
            None for plain squares.

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
    all_points = points
    fit_pairs = _pairs(points, tiers, exclude=True)
    if not fit_pairs:
        raise SolverError(f"no measured points with a metric used for calibration ({_tier_metrics(tiers)})")
    # Points that cannot be served (say, they do not fit in memory) add a constant residual and no
    # information; when no point is left, refuse rather than write a profile fitted to nothing.
    fit_points = _points_of(fit_pairs)
    if not any(predict_case(p.case, start, cat)[0] is not None for p in fit_points):
        raise _nothing_predictable(fit_points, predict_case(fit_points[0].case, start, cat)[1])
    weights = _weights(fit_pairs)
    root_weights = [math.sqrt(weights[tier, publication(p), p.case.gpu]) for tier, p, _ in fit_pairs]
    calls = [0]

    def objective(x: np.ndarray) -> np.ndarray:
        profile = start.with_params(**dict(zip(names, (low + x * scale).tolist(), strict=True)))
        res = _residuals(fit_pairs, root_weights, fit_points, profile, cat, robust_scale)
        calls[0] += 1
        if progress:
            progress(calls[0], float(np.sum(res**2)))
        return res

    # least_squares does not count finite-difference Jacobian calls in max_nfev: budget iterations so
    # that the objective runs about max_evals times in all.
    iterations = max(1, max_evals // (len(names) + 1))
    # A start on a bound leaves the finite differences one-sided and the trust region pinned there: start inside.
    fit = least_squares(objective, np.clip(x0, 0.05, 0.95), bounds=(0.0, 1.0), diff_step=0.02, max_nfev=iterations)
    params = dict(zip(names, (low + fit.x * scale).round(6).tolist(), strict=True))
    fitted = start.with_params(**params)
    errors = tier_errors(all_points, predict_points(all_points, fitted, cat), exclude=True)
    left_out = len(_points_of(_pairs(all_points, tiers))) - len(fit_points)
    rules = f"; {left_out} left out by the stated exclusion rules" if left_out else ""
    return fitted.with_params(
        fitted_on=dataset,
        fit_error={e.tier: round(e.mape, 4) for e in errors},
        coverage=coverage_of(fit_points, cat),
        source=f"fitted by fleetwise calibrate on {dataset or 'user points'} ({len(fit_points)} cases{rules})",
    )


def coverage_of(points: Sequence[Point], catalog: Catalog | None = None) -> dict[str, list[str]]:
    """What measured points cover: 'gpu/precision' pairs, 'gpu/precision/class' triples, model classes (dense,
    moe, mla) and models - what a planner needs to label a prediction measured, interpolated or extrapolated
    without the points file at hand."""
    cat = catalog or load_catalog()
    models = sorted({cat.model(p.case.model).id for p in points})
    return {
        "gpu_precision": sorted({f"{cat.gpu(p.case.gpu).id}/{cat.precision(p.case.precision).id}" for p in points}),
        "gpu_precision_class": sorted({f"{cat.gpu(p.case.gpu).id}/{cat.precision(p.case.precision).id}/"
                                       f"{model_class(cat.model(p.case.model))}" for p in points}),
        "model_classes": sorted({model_class(cat.model(m)) for m in models}),
        "models": models,
    }
