"""Conformal calibration of forecast quantiles from the model's own past errors.

Residuals are log ratios r = log((y + c) / (f + c)) with c a small floor, so errors scale with the level
and a level shift does not distort them. For each lead bucket (1, 2-3, 4-7, 8-15, ... steps ahead) the q-th
quantile of the residuals seen in a trailing window becomes a multiplicative offset: f_q = (f + c) e^{r_q} - c.
Only residuals whose actual value is already known at the origin are used, so backtests stay honest.

With fewer than :data:`MIN_SAMPLES` such residuals (a short history) there is no calibrated band: each quantile's
offset is then widened to at least the history's own spread around its median (:func:`widen_offsets`), and the
forecast says so.
"""

from __future__ import annotations

import numpy as np

MIN_SAMPLES = 20  # past errors behind a calibrated quantile: with fewer, its q0.95 rests on the largest one alone


def lead_bucket(horizon: int) -> np.ndarray:
    """Bucket of each lead 1..horizon: floor(log2(lead))."""
    return np.floor(np.log2(np.arange(1, horizon + 1))).astype(np.int64)


def level_floor(history: np.ndarray, empty: float = 0.0) -> float:
    """The floor c: 1% of the mean known value of ``history`` (``empty`` if it has none), and at least 1e-9.

    It keeps the log ratio finite at zero rates; being small next to the level, it leaves the errors at normal
    traffic relative, while errors at near-zero rates (where a ratio is meaningless) are damped.
    """
    finite = history[np.isfinite(history)]
    return max(0.01 * float(finite.mean()) if finite.size else empty, 1e-9)


def log_ratio(actual: np.ndarray, forecast: np.ndarray, floor: float) -> np.ndarray:
    return np.log((actual + floor) / (np.maximum(forecast, 0) + floor))


def apply_offsets(point: np.ndarray, offsets: np.ndarray, floor: float) -> np.ndarray:
    """Quantile forecasts from a point path and per-lead log offsets: (..., H) x (Q, H) -> (..., Q, H)."""
    base = np.maximum(point, 0)[..., None, :] + floor
    return np.maximum(base * np.exp(offsets) - floor, 0.0)


def offsets_from_residuals(residuals: np.ndarray, leads: np.ndarray, horizon: int, quantiles: np.ndarray,
                           min_samples: int = MIN_SAMPLES) -> np.ndarray:
    """(Q, H) log offsets from residuals observed at the given leads (1-based).

    A bucket with too few residuals borrows from the nearest shorter-lead bucket that has enough, and failing
    that from all residuals; with none at all the offsets are zero (the bare point forecast). "Enough" is
    ``min_samples`` (20): with fewer, a bucket's quantiles would rest on a handful of errors (its q0.95 on
    the largest one alone)."""
    buckets = lead_bucket(horizon)
    have = np.floor(np.log2(np.maximum(leads, 1))).astype(np.int64)
    ok = np.isfinite(residuals)
    residuals, have = residuals[ok], have[ok]
    out = np.zeros((len(quantiles), horizon))
    if residuals.size == 0:
        return out
    n = len(residuals)
    # Finite-sample conformal level: ceil((n + 1) q) / n, clipped to [0, 1].
    overall = np.quantile(residuals, np.clip(np.ceil((n + 1) * quantiles) / n, 0, 1))
    last = overall
    for b in range(int(buckets.max()) + 1):
        sel = residuals[have == b]
        if sel.size >= min_samples:
            m = sel.size
            last = np.quantile(sel, np.clip(np.ceil((m + 1) * quantiles) / m, 0, 1))
        out[:, buckets == b] = last[:, None]
    return out


def _conservative_levels(quantiles: np.ndarray, n: int) -> np.ndarray:
    """Empirical levels for ``n`` samples that err outward: ceil((n + 1) q) / n above the median, its mirror
    below (with a handful of samples, the extremes)."""
    upper = np.ceil((n + 1) * quantiles) / n
    lower = 1 - np.ceil((n + 1) * (1 - quantiles)) / n
    return np.clip(np.where(quantiles >= 0.5, upper, lower), 0, 1)


def widen_offsets(offsets: np.ndarray, history: np.ndarray, quantiles: np.ndarray, floor: float) -> np.ndarray:
    """(Q, H) offsets widened to at least the history's own spread: the log ratios of its known values to
    their median, at each quantile's conservative level. Quantiles above the median move up, those below move
    down, the median stays: the band of a forecast whose errors are not known yet."""
    known = history[np.isfinite(history)]
    if known.size < 2:
        return offsets
    spread = np.log((known + floor) / (float(np.median(known)) + floor))
    wide = np.quantile(spread, _conservative_levels(quantiles, spread.size))[:, None]
    up, down = (quantiles > 0.5)[:, None], (quantiles < 0.5)[:, None]
    return np.where(up, np.maximum(offsets, wide), np.where(down, np.minimum(offsets, wide), offsets))
