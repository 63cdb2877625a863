"""Conversions: samples -> grid, trace -> series, series -> sampled trace (rates, lengths, burstiness), and
replay scaling (time compression, rate multiplication)."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.traffic import (
    EmpiricalLengths,
    LengthDist,
    RateSeries,
    RequestTrace,
    grid_series,
    rate_multiply,
    series_to_trace,
    time_compress,
    trace_to_series,
)

FIXED = (LengthDist(100), LengthDist(10))


def _bin_counts(trace: RequestTrace, series: RateSeries) -> np.ndarray:
    edges = series.start_s + series.period_s * np.arange(len(series) + 1)
    return np.histogram(trace.arrival_s, bins=edges)[0]


def _cv(x: np.ndarray) -> float:
    return float(np.std(x) / np.mean(x))


# ---- grid_series ---------------------------------------------------------------------------------------------


def test_grid_series_irregular_samples_get_nan_bins():
    s = grid_series(np.array([0.0, 60.0, 120.0, 300.0, 360.0]), np.array([1.0, 2.0, 3.0, 4.0, 5.0]), epoch=False)
    assert s.period_s == 60.0 and s.start_s == 0.0
    assert s.values[[0, 1, 2, 5, 6]].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert np.isnan(s.values[[3, 4]]).all() and len(s) == 7


def test_grid_series_unsorted_and_jittered_samples():
    t = np.array([120.4, 0.2, 59.7, 60.5])  # grid starts at the first sample: bins [0.2, 60.2), ...
    s = grid_series(t, np.array([4.0, 1.0, 2.0, 3.0]), epoch=True, period_s=60.0)
    assert s.start_s == pytest.approx(0.2) and s.epoch is True
    assert s.values.tolist() == [1.5, 3.0, 4.0]  # 0.2 and 59.7 share bin 0: averaged


def test_grid_series_counts_are_summed_per_period():
    s = grid_series(np.array([0.0, 30.0, 60.0]), np.array([60.0, 30.0, 120.0]), epoch=False, period_s=60.0,
                    counts=True)
    assert s.values.tolist() == [1.5, 2.0]


def test_grid_series_nan_sample_is_missing():
    s = grid_series(np.array([0.0, 60.0, 120.0]), np.array([1.0, np.nan, 3.0]), epoch=False)
    assert s.values[0] == 1.0 and np.isnan(s.values[1]) and s.values[2] == 3.0


def test_grid_series_needs_rows_and_two_times():
    with pytest.raises(InputFormatError, match="no rows"):
        grid_series(np.empty(0), np.empty(0), epoch=False)
    with pytest.raises(InputFormatError, match="two distinct times"):
        grid_series(np.array([5.0, 5.0]), np.array([1.0, 2.0]), epoch=False)
    assert grid_series(np.array([5.0]), np.array([2.0]), epoch=False, period_s=60.0).values.tolist() == [2.0]


@pytest.mark.parametrize("t", [[0.0, 60.0, 180.0], [0.0, 60.0, 180.0, 300.0]], ids=["90s", "120s"])
def test_grid_series_period_survives_missing_samples(t):
    s = grid_series(np.array(t), np.ones(len(t)), epoch=False)
    assert s.period_s == 60.0


# ---- trace_to_series -----------------------------------------------------------------------------------------


def test_trace_to_series_exact_counts():
    trace = RequestTrace(np.arange(0.0, 600.0, 0.5), np.ones(1200, int), np.ones(1200, int))
    s = trace_to_series(trace, 60.0)
    assert (s.start_s, s.period_s, len(s)) == (0.0, 60.0, 10)
    assert s.values[:9].tolist() == [2.0] * 9
    assert s.values[9] == pytest.approx(120 / 59.5)  # last bin covers only up to the last arrival


def test_trace_to_series_partial_first_bin_is_scaled():
    trace = RequestTrace(30.0 + np.arange(0.0, 570.0, 0.5), np.ones(1140, int), np.ones(1140, int))
    s = trace_to_series(trace, 60.0)
    assert s.start_s == 0.0  # aligned to the clock
    assert s.values[0] == pytest.approx(2.0)  # 60 arrivals in the 30 s the trace covers
    assert s.values[1:9].tolist() == [2.0] * 8


def test_trace_to_series_explicit_start_and_epoch():
    t = 1_700_000_000.0 + np.arange(0.0, 300.0, 1.0)
    trace = RequestTrace(t, np.ones(300, int), np.ones(300, int), epoch=True)
    s = trace_to_series(trace, 100.0, start_s=1_700_000_100.0)
    assert s.epoch is True and s.start_s == 1_700_000_100.0
    assert s.values[0] == 1.0 and len(s) == 2


def test_trace_to_series_preserves_count_and_mean_rate(poisson_trace):
    trace = poisson_trace(5.0, 3600.0)
    s = trace_to_series(trace, 60.0)
    assert len(s) == 60 and not np.isnan(s.values).any()
    assert np.sum(s.counts) == pytest.approx(len(trace), rel=0.01)
    assert np.mean(s.values) == pytest.approx(trace.mean_rate_rps, rel=0.01)
    assert np.mean(s.values) == pytest.approx(5.0, rel=0.03)


def test_trace_to_series_rejects_bad_input():
    trace = RequestTrace(np.array([0.0, 1.0]), np.ones(2, int), np.ones(2, int))
    with pytest.raises(ConfigError, match="positive"):
        trace_to_series(trace, 0.0)
    with pytest.raises(ConfigError, match="empty"):
        trace_to_series(RequestTrace(np.empty(0), np.empty(0, int), np.empty(0, int)), 60.0)


# ---- series_to_trace -----------------------------------------------------------------------------------------


def test_series_to_trace_follows_per_bin_rates():
    rates = np.array([0.5, 1.0, 2.0, 5.0, 0.0, np.nan, 3.0, 0.2])
    series = RateSeries(1000.0, 600.0, rates, epoch=True, source="unit")
    trace = series_to_trace(series, FIXED, seed=7)
    counts = _bin_counts(trace, series)
    expected = np.nan_to_num(rates) * 600.0
    assert counts[4] == 0 and counts[5] == 0  # zero and missing bins carry no requests
    busy = expected > 0
    assert np.all(np.abs(counts[busy] - expected[busy]) < 4 * np.sqrt(expected[busy]))
    assert trace.arrival_s.min() >= 1000.0 and trace.arrival_s.max() < series.end_s
    assert np.all(np.diff(trace.arrival_s) >= 0)
    assert trace.epoch is True and trace.source == "sampled from unit"
    assert set(trace.input_tokens.tolist()) == {100} and set(trace.output_tokens.tolist()) == {10}


def test_series_to_trace_is_seeded():
    series = RateSeries(0.0, 60.0, np.full(10, 2.0))
    a, b = series_to_trace(series, FIXED, seed=1), series_to_trace(series, FIXED, seed=1)
    c = series_to_trace(series, FIXED, seed=2)
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert len(a) != len(c) or not np.array_equal(a.arrival_s, c.arrival_s)


def test_series_to_trace_empirical_lengths(poisson_trace):
    source = poisson_trace(20.0, 1000.0, seed=3)
    lengths = EmpiricalLengths(source.input_tokens, source.output_tokens)
    trace = series_to_trace(RateSeries(0.0, 60.0, np.full(50, 20.0)), lengths, seed=4)
    assert len(trace) == pytest.approx(60_000, rel=0.02)
    for a, b in ((source.input_tokens, trace.input_tokens), (source.output_tokens, trace.output_tokens)):
        assert np.percentile(b, [10, 50, 90, 99]) == pytest.approx(np.percentile(a, [10, 50, 90, 99]), rel=0.05)
    pairs = set(zip(source.input_tokens.tolist(), source.output_tokens.tolist(), strict=True))
    assert all(p in pairs for p in zip(trace.input_tokens[:200].tolist(), trace.output_tokens[:200].tolist(),
                                       strict=True))


def test_series_to_trace_lognormal_lengths():
    lengths = (LengthDist(1000, 3000), LengthDist(200, 450))
    trace = series_to_trace(RateSeries(0.0, 3600.0, np.full(4, 10.0)), lengths, seed=5)  # ~144k requests
    assert len(trace) == pytest.approx(144_000, rel=0.01)
    assert trace.input_tokens.mean() == pytest.approx(1000, rel=0.05)
    assert np.percentile(trace.input_tokens, 95) == pytest.approx(3000, rel=0.05)
    assert trace.output_tokens.mean() == pytest.approx(200, rel=0.05)
    assert np.percentile(trace.output_tokens, 95) == pytest.approx(450, rel=0.05)


@pytest.mark.parametrize(("cv", "lo", "hi"), [(1.0, 0.93, 1.07), (2.0, 1.8, 2.2), (0.5, 0.45, 0.55)])
def test_series_to_trace_interarrival_cv(cv, lo, hi):
    trace = series_to_trace(RateSeries(0.0, 3600.0, np.array([10.0])), FIXED, seed=3, cv=cv)
    assert len(trace) == pytest.approx(36_000, rel=0.05)
    assert lo < _cv(np.diff(trace.arrival_s)) < hi


def test_series_to_trace_limits():
    series = RateSeries(0.0, 60.0, np.full(10, 100.0))
    with pytest.raises(ConfigError, match="CV must be positive"):
        series_to_trace(series, FIXED, cv=0.0)
    with pytest.raises(ConfigError, match="60,000 requests"):
        series_to_trace(series, FIXED, max_requests=1000)


def test_round_trip_trace_series_trace():
    rng = np.random.default_rng(11)
    # inhomogeneous source: rate steps 2 -> 8 -> 4 req/s over three 20-minute blocks
    parts = [np.sort(rng.uniform(a, a + 1200.0, rng.poisson(r * 1200.0))) for a, r in ((0, 2.0), (1200, 8.0),
                                                                                       (2400, 4.0))]
    t = np.concatenate(parts)
    isl = np.maximum(np.round(rng.lognormal(6.0, 0.8, len(t))), 1).astype(np.int64)
    osl = np.maximum(np.round(rng.lognormal(4.5, 0.6, len(t))), 1).astype(np.int64)
    trace = RequestTrace(t, isl, osl)
    series = trace_to_series(trace, 60.0)
    back = series_to_trace(series, EmpiricalLengths(trace.input_tokens, trace.output_tokens), seed=12)
    assert back.mean_rate_rps == pytest.approx(trace.mean_rate_rps, rel=0.03)
    again = trace_to_series(back, 60.0, start_s=series.start_s)
    for block, rate in enumerate((2.0, 8.0, 4.0)):
        assert np.mean(again.values[block * 20 + 1 : block * 20 + 19]) == pytest.approx(rate, rel=0.1)
    for a, b in ((trace.input_tokens, back.input_tokens), (trace.output_tokens, back.output_tokens)):
        assert np.percentile(b, [10, 50, 90]) == pytest.approx(np.percentile(a, [10, 50, 90]), rel=0.05)
        assert np.percentile(b, 99) == pytest.approx(np.percentile(a, 99), rel=0.12)
        assert b.mean() == pytest.approx(a.mean(), rel=0.03)


# ---- replay scaling ------------------------------------------------------------------------------------------


def _prefixed(n: int = 2000, seed: int = 0) -> RequestTrace:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(100.0, 1100.0, n))
    offsets = np.arange(n + 1, dtype=np.int64)  # one prefix id per request: its own index
    return RequestTrace(t, np.arange(n, dtype=np.int64), np.arange(n, dtype=np.int64) * 2,
                        prefix_offsets=offsets, prefix_ids=np.arange(n, dtype=np.int64))


def test_time_compress():
    trace = _prefixed()
    fast = time_compress(trace, 4.0)
    assert fast.mean_rate_rps == pytest.approx(4.0 * trace.mean_rate_rps, rel=1e-9)
    assert fast.start_s == trace.start_s
    assert fast.duration_s == pytest.approx(trace.duration_s / 4.0)
    assert np.array_equal(fast.input_tokens, trace.input_tokens)
    assert np.array_equal(fast.output_tokens, trace.output_tokens)
    assert np.array_equal(fast.prefix_ids, trace.prefix_ids)
    assert time_compress(trace, 0.5).mean_rate_rps == pytest.approx(0.5 * trace.mean_rate_rps, rel=1e-9)
    with pytest.raises(ConfigError, match="positive"):
        time_compress(trace, 0.0)


@pytest.mark.parametrize("factor", [0.5, 2.5])
def test_rate_multiply_scales_count(factor):
    trace = _prefixed(4000)
    out = rate_multiply(trace, factor, seed=3)
    frac = factor - np.floor(factor)
    sd = np.sqrt(len(trace) * frac * (1 - frac))
    assert abs(len(out) - factor * len(trace)) < 4 * sd
    assert np.all(np.diff(out.arrival_s) >= 0)
    assert out.arrival_s.min() >= trace.start_s
    # every copy keeps its request's lengths and prefix, and sits within the jitter of the original
    orig = out.input_tokens
    assert np.array_equal(out.output_tokens, orig * 2)
    assert np.array_equal(out.prefix_ids, orig) and out.prefix_offsets.tolist() == list(range(len(out) + 1))
    assert np.all(np.abs(out.arrival_s - trace.arrival_s[orig]) <= 1.0 + 1e-9)
    copies = np.bincount(orig, minlength=len(trace))
    assert set(np.unique(copies).tolist()) <= {int(np.floor(factor)), int(np.floor(factor)) + 1}


def test_rate_multiply_whole_factor_and_errors():
    trace = _prefixed(500)
    out = rate_multiply(trace, 2.0, seed=1)
    assert len(out) == 1000 and np.all(np.bincount(out.input_tokens) == 2)
    assert rate_multiply(trace, 2.0, seed=1).arrival_s.tolist() == out.arrival_s.tolist()
    with pytest.raises(ConfigError, match="positive"):
        rate_multiply(trace, -1.0)
