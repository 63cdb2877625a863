"""Collection gaps: runs of zero in a rate series where the surrounding traffic makes zero implausible.

A bin of a Poisson stream with rate r and length T is empty with probability exp(-r T). A run of k empty bins
whose neighbours on both sides carry r requests/s on average is therefore a gap in collection, not real demand, once the
expected count r*T*k exceeds ``min_expected`` (default 30: chance below 1e-13). Runs touching either end of
the series are left alone because only one side can be seen.

The bins at the edges of a gap (or of a run of missing bins, or of the series) are often only partly
observed: collection stopped or started inside them, so a 10-minute bin amid ~1,000 req/s reads 0.9 req/s.
Such a bin is *partial* when its count is implausibly low for the traffic on its observed side: that side's
mean level r (the 3 nearest bins) expects r*T >= ``min_expected`` requests, the bin holds less than a quarter
of them (``PARTIAL_SHARE``: real traffic does not fall 4x from one bin to the next; a ramp or a diurnal edge
does not trip it), and the shortfall is over ``PARTIAL_SIGMAS`` Poisson standard deviations (sqrt(r*T)). Partial bins
are treated as missing like gaps (the source does not say which fraction was observed, so they are not
scaled), which keeps them out of fits and scores.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MIN_EXPECTED = 30.0
PARTIAL_SIGMAS = 5.0
"""A partial bin falls this many Poisson standard deviations short of its side's level (chance < 3e-7)."""
PARTIAL_SHARE = 0.25
PARTIAL_SIDE_BINS = 3
SIDE_BINS = 6


def zero_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """[lo, hi) index ranges of consecutive exact zeros."""
    z = np.concatenate([[0], (values == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(z))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def find_gaps(
    values: np.ndarray, period_s: float, min_expected: float = DEFAULT_MIN_EXPECTED
) -> list[tuple[int, int]]:
    """[lo, hi) bin ranges that are collection gaps rather than real zero demand."""
    n, gaps = len(values), []
    for lo, hi in zero_runs(values):
        if lo == 0 or hi == n:
            continue
        # Each side's window is as wide as the run, but at least 6 bins, so a run of one or two zeros is not
        # judged on the mean of one or two neighbouring bins alone.
        width = max(SIDE_BINS, hi - lo)
        before = values[max(0, lo - width) : lo]
        after = values[hi : hi + width]
        sides = [s[np.isfinite(s)] for s in (before, after)]
        if any(s.size == 0 or not np.any(s > 0) for s in sides):
            continue
        # The Poisson rate estimate of each side is its mean, zeros included (sparse traffic has many empty
        # bins, and its quiet stretches are real); take the quieter side to stay conservative.
        level = min(float(s.mean()) for s in sides)
        if level * period_s * (hi - lo) >= min_expected * (1 - 1e-9):  # 0.1 * 60 * 5 is 30, not 29.999
            gaps.append((lo, hi))
    return gaps


def partial_bins(values: np.ndarray, period_s: float, min_expected: float = DEFAULT_MIN_EXPECTED) -> list[int]:
    """Indices of the partly observed bins at the edges of runs of NaN (gaps already masked) and of the series."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    m = np.concatenate([[1], np.isnan(v).astype(np.int8), [1]])  # outside the series counts as missing
    edges = np.flatnonzero(np.diff(m))  # observed runs [edges[0], edges[1]), [edges[2], edges[3]), ...
    out = set()
    for lo, hi in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        k = PARTIAL_SIDE_BINS
        for i, side in ((lo, v[lo + 1:min(hi, lo + 1 + k)]), (hi - 1, v[max(lo, hi - 1 - k):hi - 1])):
            if side.size < k:
                continue  # too little observed traffic beside it to judge
            expected = float(side.mean()) * period_s
            count = float(v[i]) * period_s
            if (expected >= min_expected and count < PARTIAL_SHARE * expected
                    and expected - count > PARTIAL_SIGMAS * np.sqrt(expected)):
                out.add(i)
    return sorted(i for i in out if 0 <= i < n)


def mask_gaps(
    values: np.ndarray, period_s: float, min_expected: float = DEFAULT_MIN_EXPECTED
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Values with detected gaps set to NaN, and the gaps found (see :func:`mask_partial` for edge bins)."""
    gaps = find_gaps(values, period_s, min_expected)
    out = values.astype(np.float64, copy=True)
    for lo, hi in gaps:
        out[lo:hi] = np.nan
    return out, gaps


def mask_partial(
    values: np.ndarray, period_s: float, min_expected: float = DEFAULT_MIN_EXPECTED
) -> tuple[np.ndarray, list[tuple[int, int]], list[int]]:
    """Values with gaps and partial edge bins set to NaN, the gaps, and the partial bins."""
    out, gaps = mask_gaps(values, period_s, min_expected)
    partial = partial_bins(out, period_s, min_expected)
    out[partial] = np.nan
    return out, gaps, partial
