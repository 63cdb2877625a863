"""Conversions between the two shapes: trace -> rate series at any resolution, series -> sampled trace,
and replay scaling of real traces (time compression, rate multiplication)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.traffic.lengths import EmpiricalLengths, LengthDist, sample_lengths
from fleetwise.traffic.records import LoadReport, RateSeries, RequestTrace


def grid_series(
    t: np.ndarray, v: np.ndarray, *, epoch: bool, period_s: float | None = None, counts: bool = False,
    source: str = "", report: LoadReport | None = None,
) -> RateSeries:
    """Place (time, value) samples on a regular grid; the period defaults to the median spacing.

    Samples sharing a bin are averaged (summed if they are counts); bins without a sample are NaN.
    """
    if t.size == 0:
        raise InputFormatError("the series has no rows", file=source or None)
    report = report or LoadReport()
    if t.size > 1 and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        report = replace(report, sorted_rows=True)
    if period_s is None:
        period_s = infer_period(t, source)
    idx = np.floor((t - t[0]) / period_s + 1e-6).astype(np.int64)
    n = int(idx[-1]) + 1
    ok = np.isfinite(v)
    total = np.bincount(idx[ok], weights=v[ok], minlength=n)
    hits = np.bincount(idx[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = total / period_s if counts else total / hits
    values[hits == 0] = np.nan
    return RateSeries(float(t[0]), float(period_s), values, epoch=epoch, source=source, report=report)


def infer_period(t: np.ndarray, source: str = "") -> float:
    """The bin length of sorted sample times, robust to missing samples (see below); the most common spacing
    when no common spacing divides the others."""
    steps = np.diff(np.unique(t))
    if steps.size == 0:
        raise InputFormatError("a series needs at least two distinct times to infer its period "
                               "(or pass --freq)", file=source or None)
    values, counts = np.unique(np.round(steps, 6), return_counts=True)
    # The smallest spacing that is common (>= 10% of gaps) and divides >= 90% of all gaps: with samples
    # missing, 60 s data may show 120 s gaps more often than 60 s ones.
    for step in values[(counts >= 0.1 * steps.size) & (values > 0)]:
        ratio = steps / step
        if np.mean(np.abs(ratio - np.round(ratio)) < 1e-6 * np.maximum(ratio, 1)) >= 0.9:
            return float(step)
    return float(values[np.flatnonzero(counts == counts.max())[0]])


def trace_to_series(trace: RequestTrace, period_s: float, start_s: float | None = None) -> RateSeries:
    """Arrivals per second in bins of ``period_s`` aligned to the clock (a partial first/last bin is scaled
    by the part the trace covers)."""
    if period_s <= 0:
        raise ConfigError(f"bin length must be positive (got {period_s:g} s)")
    if len(trace) == 0:
        raise ConfigError("the trace is empty")
    t0 = np.floor(trace.start_s / period_s) * period_s if start_s is None else start_s
    idx = np.floor((trace.arrival_s - t0) / period_s).astype(np.int64)
    idx = idx[idx >= 0]
    n = int(idx.max()) + 1 if idx.size else 1
    counts = np.bincount(idx, minlength=n).astype(np.float64)
    covered = np.full(n, float(period_s))
    covered[0] = min(period_s, t0 + period_s - max(trace.start_s, t0))
    end = t0 + (n - 1) * period_s
    covered[-1] = min(covered[-1], max(trace.arrival_s[-1] - end, 0.0)) if n > 1 else covered[-1]
    # An edge bin the trace covers for 5% of the period or less is left missing: a count over a sliver of the
    # bin, scaled up to a rate, is too noisy an estimate (and zero coverage would divide by zero).
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(covered > 0.05 * period_s, counts / np.maximum(covered, 1e-12), np.nan)
    return RateSeries(float(t0), float(period_s), values, epoch=trace.epoch, source=trace.source,
                      report=trace.report)


def series_to_trace(
    series: RateSeries, lengths: EmpiricalLengths | tuple[LengthDist, LengthDist], *, seed: int = 0,
    cv: float = 1.0, max_requests: int = 50_000_000,
) -> RequestTrace:
    """Sample a request trace whose rate follows the series (missing bins carry no requests).

    Arrivals are a renewal process with inter-arrival CV ``cv`` (1 = Poisson, >1 burstier) run in
    operational time: unit-rate gamma inter-arrivals mapped back through the cumulative rate.
    """
    if cv <= 0:
        raise ConfigError(f"inter-arrival CV must be positive (got {cv:g})")
    rng = np.random.default_rng(seed)
    rate = np.nan_to_num(series.values, nan=0.0)
    cum = np.concatenate([[0.0], np.cumsum(rate * series.period_s)])
    total = cum[-1]
    if total > max_requests:
        raise ConfigError(f"the series implies {total:,.0f} requests (limit {max_requests:,})")
    shape = 1.0 / (cv * cv)
    n_draw = int(total + 10 * np.sqrt(total + 1) * max(cv, 1.0) + 20)
    tau = np.cumsum(rng.gamma(shape, 1.0 / shape, n_draw))
    while tau[-1] < total:  # rare: extend the draw
        tau = np.concatenate([tau, tau[-1] + np.cumsum(rng.gamma(shape, 1.0 / shape, n_draw))])
    tau = tau[tau < total]
    edges = series.start_s + series.period_s * np.arange(len(rate) + 1)
    arrivals = np.interp(tau, cum, edges)
    isl, osl = sample_lengths(len(arrivals), lengths, rng)
    return RequestTrace(arrivals, isl, osl, epoch=series.epoch, source=f"sampled from {series.source or 'series'}")


def time_compress(trace: RequestTrace, factor: float) -> RequestTrace:
    """Replay ``factor`` times faster: inter-arrival gaps shrink, lengths and order stay (rate x factor)."""
    if factor <= 0:
        raise ConfigError(f"time-compression factor must be positive (got {factor:g})")
    t0 = trace.start_s
    return replace(trace, arrival_s=t0 + (trace.arrival_s - t0) / factor)


def series_time_compress(series: RateSeries, factor: float) -> RateSeries:
    """The series version of :func:`time_compress`: bins ``factor`` times shorter, rates ``factor`` times
    higher (requests per bin unchanged); the start stays where it was."""
    if factor <= 0:
        raise ConfigError(f"time-compression factor must be positive (got {factor:g})")
    return replace(series, period_s=series.period_s / factor, values=series.values * factor)


def rate_multiply(trace: RequestTrace, factor: float, *, seed: int = 0, jitter_s: float = 1.0) -> RequestTrace:
    """Scale the rate by ``factor`` keeping the time axis: thin (factor < 1) or add copies of requests.

    Each request is kept floor(factor) times plus once more with probability frac(factor); extra copies
    arrive within +-``jitter_s`` of the original, so the daily shape and lengths are preserved.
    """
    if factor <= 0:
        raise ConfigError(f"rate multiplier must be positive (got {factor:g})")
    rng = np.random.default_rng(seed)
    copies = np.floor(factor).astype(np.int64) + (rng.random(len(trace)) < factor - np.floor(factor))
    index = np.repeat(np.arange(len(trace)), copies)
    first = np.concatenate([[True], index[1:] != index[:-1]]) if index.size else np.zeros(0, bool)
    jitter = np.where(first, 0.0, rng.uniform(-jitter_s, jitter_s, index.size))
    arrival = np.maximum(trace.arrival_s[index] + jitter, trace.start_s)
    order = np.argsort(arrival, kind="stable")
    return trace.take(index[order], arrival_s=arrival[order])
