"""Collection gaps: runs of zero in a rate series where the surrounding traffic makes zero implausible.

A bin of a Poisson stream with rate r and length T is empty with probability exp(-r T). A run of k empty bins
whose neighbours on both sides carry r requests/s on average is therefore a gap in collection, not real demand, once the
expected count r*T*k exceeds ``min_expected`` (default 30: chance below 1e-13). Runs touching either end of
the series are left alone because only one side can be seen.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MIN_EXPECTED = 30.0


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
        width = max(6, hi - lo)
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


def mask_gaps(
    values: np.ndarray, period_s: float, min_expected: float = DEFAULT_MIN_EXPECTED
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Values with detected gaps set to NaN, and the gaps found."""
    gaps = find_gaps(values, period_s, min_expected)
    out = values.astype(np.float64, copy=True)
    for lo, hi in gaps:
        out[lo:hi] = np.nan
    return out, gaps
