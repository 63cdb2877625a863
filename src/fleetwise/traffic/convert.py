"""Conversions between the two shapes: trace -> rate series at any resolution, series -> sampled trace,
and replay scaling of real traces (time compression, rate multiplication)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.traffic.lengths import EmpiricalLengths, LengthDist, sample_lengths
from fleetwise.traffic.records import LoadReport, RateSeries, RequestTrace

MAX_BINS = 10_000_000  # bins in one grid (a 1-minute grid of 19 years); more would take gigabytes and hours
MIN_PERIOD_S = 1e-3  # the shortest bin
SPARSE_BINS = 1_000  # a longer grid of samples must have ...
MIN_FILLED = 0.01  # ... at least this fraction of its bins holding one, or its bin length does not fit the data
MAX_REQUESTS = 50_000_000  # requests a sampled or rate-multiplied trace may have


def bin_count(first_s: float, last_s: float, period_s: float, file: str | None = None) -> int:
    """Bins of ``period_s`` from the one holding ``first_s`` to the one holding ``last_s``: the one check of
    every grid built from data (series, trace rates, profiles), refusing a bin shorter than
    :data:`MIN_PERIOD_S` or a span that would need more than :data:`MAX_BINS` of them."""
    if not period_s >= MIN_PERIOD_S:
        raise ConfigError(f"a bin length of {period_s:g} s is below the minimum of {MIN_PERIOD_S:g} s", file=file)
    bins = (last_s - first_s) / period_s + 1e-6
    if not bins < MAX_BINS:
        raise InputFormatError(
            f"the data span {last_s - first_s:,.6g} s, which is {bins:,.0f} bins of {period_s:g} s (at most "
            f"{MAX_BINS:,}); check the times or use longer bins", file=file,
        )
    return int(bins) + 1


def grid_series(
    t: np.ndarray, v: np.ndarray, *, epoch: bool, period_s: float | None = None, counts: bool = False,
    source: str = "", report: LoadReport | None = None,
) -> RateSeries:
    """Place (time, value) samples on a regular grid; the period defaults to the median spacing.

    Samples sharing a bin are averaged (summed if they are counts); bins without a sample are NaN. A grid of
    more than :data:`SPARSE_BINS` bins of which fewer than :data:`MIN_FILLED` hold a sample is refused: its bin
    length does not fit the data (and the grid could be huge).
    """
    report = report or LoadReport()
    file = report.file or source or None
    if t.size == 0:
        raise InputFormatError("the series has no rows", file=file)
    if t.size > 1 and np.any(np.diff(t) < 0):
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        report = replace(report, sorted_rows=True)
    inferred = period_s is None
    if period_s is None:
        period_s = infer_period(t, file)
    n = bin_count(t[0], t[-1], period_s, file)
    idx = np.floor((t - t[0]) / period_s + 1e-6).astype(np.int64)
    filled = np.count_nonzero(np.bincount(idx, minlength=n))
    if n > SPARSE_BINS and filled < MIN_FILLED * n:
        how = "the most common spacing of the samples" if inferred else "asked for"
        raise InputFormatError(
            f"only {filled:,} of {n:,} bins of {period_s:g} s ({how}) hold a sample: the times are too "
            "irregular for a grid of that bin length (pass --freq with the bin length the data were collected at)",
            file=file,
        )
    ok = np.isfinite(v)
    total = np.bincount(idx[ok], weights=v[ok], minlength=n)
    hits = np.bincount(idx[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = total / period_s if counts else total / hits
    values[hits == 0] = np.nan
    return RateSeries(float(t[0]), float(period_s), values, epoch=epoch, source=source, report=report)


def infer_period(t: np.ndarray, source: str | None = "") -> float:
    """The bin length of sorted sample times, robust to missing samples (see below); the most common spacing
    when no common spacing divides the others. Spacings below :data:`MIN_PERIOD_S` (timing noise) do not
    count."""
    steps = np.diff(np.unique(t))
    if steps.size == 0:
        raise InputFormatError("a series needs at least two distinct times to infer its period "
                               "(or pass --freq)", file=source or None)
    values, counts = np.unique(np.round(steps, 6), return_counts=True)
    usable = values >= MIN_PERIOD_S
    if not usable.any():
        raise InputFormatError(f"the samples are at most {steps.max():.3g} s apart; a series needs bins of at "
                               f"least {MIN_PERIOD_S:g} s (check the time unit)", file=source or None)
    values, counts = values[usable], counts[usable]
    # The smallest spacing that is common (>= 10% of gaps) and divides >= 90% of all gaps: with samples
    # missing, 60 s data may show 120 s gaps more often than 60 s ones.
    for step in values[counts >= 0.1 * steps.size]:
        ratio = steps / step
        if np.mean(np.abs(ratio - np.round(ratio)) < 1e-6 * np.maximum(ratio, 1)) >= 0.9:
            return float(step)
    return float(values[np.argmax(counts)])


def trace_to_series(trace: RequestTrace, period_s: float, start_s: float | None = None) -> RateSeries:
    """Arrivals per second in bins of ``period_s`` aligned to the clock (a partial first/last bin is scaled
    by the part the trace covers)."""
    if not period_s > 0:
        raise ConfigError(f"bin length must be positive (got {period_s:g} s)")
    if len(trace) == 0:
        raise ConfigError("the trace is empty", file=trace.report.file)
    t0 = np.floor(trace.start_s / period_s) * period_s if start_s is None else start_s
    bin_count(t0, max(float(trace.arrival_s[-1]), t0), period_s, trace.report.file)
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
    cv: float = 1.0, max_requests: int = MAX_REQUESTS,
) -> RequestTrace:
    """Sample a request trace whose rate follows the series (missing bins carry no requests).

    Arrivals are a renewal process with inter-arrival CV ``cv`` (1 = Poisson, >1 burstier) run in
    operational time: unit-rate gamma inter-arrivals mapped back through the cumulative rate.
    """
    if not 0 < cv < math.inf:
        raise ConfigError(f"inter-arrival CV must be positive (got {cv:g})")
    rng = np.random.default_rng(seed)
    rate = np.nan_to_num(series.values, nan=0.0)
    cum = np.concatenate([[0.0], np.cumsum(rate * series.period_s)])
    total = cum[-1]
    if not total <= max_requests:
        raise ConfigError(f"the series implies {total:,.0f} requests (limit {max_requests:,})",
                          file=series.report.file)
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
    _check_factor(factor, "time-compression factor")
    t0 = trace.start_s
    return replace(trace, arrival_s=t0 + (trace.arrival_s - t0) / factor)


def series_time_compress(series: RateSeries, factor: float) -> RateSeries:
    """The series version of :func:`time_compress`: bins ``factor`` times shorter, rates ``factor`` times
    higher (requests per bin unchanged); the start stays where it was."""
    _check_factor(factor, "time-compression factor")
    return replace(series, period_s=series.period_s / factor, values=series.values * factor)


def rate_multiply(trace: RequestTrace, factor: float, *, seed: int = 0, jitter_s: float = 1.0) -> RequestTrace:
    """Scale the rate by ``factor`` keeping the time axis: thin (factor < 1) or add copies of requests.

    Each request is kept floor(factor) times plus once more with probability frac(factor); extra copies
    arrive within +-``jitter_s`` of the original, so the daily shape and lengths are preserved.
    """
    _check_factor(factor, "rate multiplier")
    if not len(trace) * factor <= MAX_REQUESTS:
        raise ConfigError(f"rate multiplier {factor:g} would make {len(trace) * factor:,.0f} requests "
                          f"(limit {MAX_REQUESTS:,})")
    rng = np.random.default_rng(seed)
    copies = np.floor(factor).astype(np.int64) + (rng.random(len(trace)) < factor - np.floor(factor))
    index = np.repeat(np.arange(len(trace)), copies)
    first = np.concatenate([[True], index[1:] != index[:-1]]) if index.size else np.zeros(0, bool)
    jitter = np.where(first, 0.0, rng.uniform(-jitter_s, jitter_s, index.size))
    arrival = np.maximum(trace.arrival_s[index] + jitter, trace.start_s)
    order = np.argsort(arrival, kind="stable")
    return trace.take(index[order], arrival_s=arrival[order])


def _check_factor(factor: float, what: str) -> None:
    if not 0 < factor < math.inf:
        raise ConfigError(f"{what} must be a positive finite number (got {factor:g})")
