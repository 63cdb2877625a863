"""RequestTrace / RateSeries invariants, the CSR prefix-id layout, LoadReport warnings and calendar helpers."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.errors import ConfigError
from fleetwise.traffic.records import (
    LoadReport,
    RateSeries,
    RequestTrace,
    take_csr,
    time_of_day_s,
    weekday,
)


def _prefixed() -> RequestTrace:
    """Five requests at t = 0..4 with prefix lists [1,2], [3], [], [4,5,6], [7]."""
    offsets = np.array([0, 2, 3, 3, 6, 7], dtype=np.int64)
    ids = np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.int64)
    return RequestTrace(
        np.arange(5, dtype=np.float64), np.array([10, 11, 12, 13, 14]), np.array([20, 21, 22, 23, 24]),
        prefix_offsets=offsets, prefix_ids=ids,
    )


def _lists(trace: RequestTrace) -> list[list[int]]:
    return [trace.prefix(i).tolist() for i in range(len(trace))]


def _csr_consistent(trace: RequestTrace) -> None:
    off = trace.prefix_offsets
    assert off is not None and trace.prefix_ids is not None
    assert len(off) == len(trace) + 1
    assert off[0] == 0 and off[-1] == len(trace.prefix_ids)
    assert np.all(np.diff(off) >= 0)


# ---- RequestTrace -------------------------------------------------------------------------------------------


def test_unsorted_arrivals_rejected():
    with pytest.raises(ConfigError, match="sorted"):
        RequestTrace(np.array([0.0, 2.0, 1.0]), np.ones(3, int), np.ones(3, int))


def test_equal_arrival_times_are_allowed():
    trace = RequestTrace(np.array([1.0, 1.0, 1.0]), np.ones(3, int), np.ones(3, int))
    assert len(trace) == 3 and trace.duration_s == 0.0


def test_unequal_array_lengths_rejected():
    with pytest.raises(ConfigError, match="equal lengths"):
        RequestTrace(np.array([0.0, 1.0]), np.ones(3, int), np.ones(2, int))


def test_prefix_needs_offsets_and_ids():
    with pytest.raises(ConfigError, match="both offsets and ids"):
        RequestTrace(np.array([0.0]), np.ones(1, int), np.ones(1, int), prefix_offsets=np.array([0, 1]))


def test_trace_summary_properties():
    trace = RequestTrace(np.array([10.0, 12.0, 14.0, 20.0]), np.ones(4, int), np.ones(4, int))
    assert trace.start_s == 10.0
    assert trace.duration_s == 10.0
    assert trace.mean_rate_rps == pytest.approx(0.3)  # 3 gaps over 10 s


def test_empty_trace_properties():
    trace = RequestTrace(np.empty(0), np.empty(0, int), np.empty(0, int))
    assert len(trace) == 0 and trace.start_s == 0.0 and trace.duration_s == 0.0
    assert np.isnan(trace.mean_rate_rps)


def test_prefix_reads_csr_rows():
    trace = _prefixed()
    assert _lists(trace) == [[1, 2], [3], [], [4, 5, 6], [7]]


def test_prefix_without_ids_is_empty():
    trace = RequestTrace(np.array([0.0]), np.ones(1, int), np.ones(1, int))
    assert trace.prefix(0).size == 0 and trace.prefix(0).dtype == np.int64


def test_take_indices_keeps_csr_consistent():
    sub = _prefixed().take(np.array([0, 2, 3]))
    _csr_consistent(sub)
    assert sub.prefix_offsets.tolist() == [0, 2, 2, 5]
    assert _lists(sub) == [[1, 2], [], [4, 5, 6]]
    assert sub.arrival_s.tolist() == [0.0, 2.0, 3.0]
    assert sub.input_tokens.tolist() == [10, 12, 13]
    assert sub.output_tokens.tolist() == [20, 22, 23]


def test_take_boolean_mask():
    sub = _prefixed().take(np.array([False, True, False, True, True]))
    _csr_consistent(sub)
    assert _lists(sub) == [[3], [4, 5, 6], [7]]
    assert sub.input_tokens.tolist() == [11, 13, 14]


def test_take_with_repeats_and_new_times():
    sub = _prefixed().take(np.array([3, 3, 1]), arrival_s=np.array([0.0, 0.5, 1.0]))
    _csr_consistent(sub)
    assert _lists(sub) == [[4, 5, 6], [4, 5, 6], [3]]
    assert sub.arrival_s.tolist() == [0.0, 0.5, 1.0]
    assert sub.input_tokens.tolist() == [13, 13, 11]


def test_take_with_unsorted_new_times_rejected():
    with pytest.raises(ConfigError, match="sorted"):
        _prefixed().take(np.array([0, 1]), arrival_s=np.array([5.0, 1.0]))


def test_window_is_half_open_and_keeps_prefixes():
    win = _prefixed().window(1.0, 4.0)
    _csr_consistent(win)
    assert win.arrival_s.tolist() == [1.0, 2.0, 3.0]
    assert _lists(win) == [[3], [], [4, 5, 6]]
    assert win.input_tokens.tolist() == [11, 12, 13]


def test_empty_window():
    win = _prefixed().window(10.0, 20.0)
    assert len(win) == 0
    assert win.prefix_offsets.tolist() == [0] and win.prefix_ids.size == 0


def test_take_csr_directly():
    offsets, ids = take_csr(np.array([0, 1, 4, 4, 6]), np.array([9, 1, 2, 3, 7, 8]), np.array([3, 1]))
    assert offsets.tolist() == [0, 2, 5]
    assert ids.tolist() == [7, 8, 1, 2, 3]


# ---- RateSeries ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("period", [0.0, -60.0])
def test_series_period_must_be_positive(period):
    with pytest.raises(ConfigError, match="period must be positive"):
        RateSeries(0.0, period, np.array([1.0]))


def test_series_rejects_negative_rates_but_allows_nan():
    with pytest.raises(ConfigError, match="non-negative"):
        RateSeries(0.0, 60.0, np.array([1.0, -0.5]))
    s = RateSeries(0.0, 60.0, np.array([1.0, np.nan]))
    assert np.isnan(s.values[1])


def test_series_grid_properties():
    s = RateSeries(100.0, 300.0, np.array([1.0, 2.0, np.nan]))
    assert s.starts.tolist() == [100.0, 400.0, 700.0]
    assert s.end_s == 1000.0
    assert s.counts[:2].tolist() == [300.0, 600.0] and np.isnan(s.counts[2])
    assert s.steps_per_day == 288
    assert RateSeries(0.0, 86_400.0 * 2, np.array([1.0])).steps_per_day == 1


def test_series_slice():
    s = RateSeries(0.0, 60.0, np.arange(10, dtype=float)).slice(3, 6)
    assert s.start_s == 180.0 and s.values.tolist() == [3.0, 4.0, 5.0]
    assert RateSeries(0.0, 60.0, np.arange(10, dtype=float)).slice(8).values.tolist() == [8.0, 9.0]


def test_resample_averages():
    s = RateSeries(0.0, 60.0, np.arange(1, 13, dtype=float)).resample(180.0)
    assert s.period_s == 180.0 and s.start_s == 0.0
    assert s.values.tolist() == [2.0, 5.0, 8.0, 11.0]


def test_resample_partly_missing_bin_is_nan():
    vals = np.arange(1, 13, dtype=float)
    vals[4] = np.nan
    out = RateSeries(0.0, 60.0, vals).resample(180.0).values
    assert np.isnan(out[1])
    assert out[[0, 2, 3]].tolist() == [2.0, 8.0, 11.0]


def test_resample_drops_trailing_partial_bin():
    out = RateSeries(0.0, 60.0, np.arange(1, 8, dtype=float)).resample(120.0).values
    assert out.tolist() == [1.5, 3.5, 5.5]


def test_resample_same_period_is_identity():
    s = RateSeries(0.0, 60.0, np.array([1.0, 2.0]))
    assert s.resample(60.0) is s


@pytest.mark.parametrize("period", [90.0, 30.0])
def test_resample_needs_whole_multiple(period):
    with pytest.raises(ConfigError, match="whole multiple"):
        RateSeries(0.0, 60.0, np.ones(6)).resample(period)


# ---- LoadReport and calendar helpers -------------------------------------------------------------------------


def test_load_report_warnings():
    report = LoadReport(
        rows=1200, bad_rows=2, first_bad=("line 4: x", "line 9: y"), sorted_rows=True, gap_bins=7,
        gaps=((0.0, 60.0), (600.0, 900.0), (1200.0, 1500.0), (3000.0, 3060.0)),
    )
    w = report.warnings()
    assert len(w) == 3
    assert w[0] == "skipped 2 bad row(s) of 1,200; first: line 4: x; line 9: y"
    assert w[1] == "timestamps were not in order; sorted them"
    assert w[2].startswith("7 bin(s) in 4 collection gap(s) treated as missing: 0-60 s, 600-900 s, 1,200-1,500 s")
    assert w[2].endswith("(+1 more)")
    assert LoadReport(rows=10).warnings() == []


def test_weekday_and_time_of_day():
    # 1970-01-01 was a Thursday (3 with Monday = 0); 2024-01-01 00:00 UTC was a Monday.
    assert weekday(np.array([0.0, 1_704_067_200.0, 1_704_067_200.0 + 5 * 86_400]), epoch=True).tolist() == [3, 0, 5]
    assert weekday(np.array([0.0, 86_400.0 * 6 + 1, 86_400.0 * 7]), epoch=False).tolist() == [0, 6, 0]
    assert time_of_day_s(np.array([86_400.0 + 3600.0, 5.0])).tolist() == [3600.0, 5.0]
