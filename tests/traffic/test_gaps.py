"""Collection gaps: zero runs amid clear traffic are flagged; real quiet periods and edge runs are not."""

from __future__ import annotations

import numpy as np

from fleetwise.traffic import RequestTrace, trace_to_series
from fleetwise.traffic.gaps import DEFAULT_MIN_EXPECTED, find_gaps, mask_gaps, zero_runs


def test_zero_runs():
    assert zero_runs(np.array([0.0, 1.0, 0.0, 0.0, 2.0, np.nan, 0.0])) == [(0, 1), (2, 4), (6, 7)]
    assert zero_runs(np.array([1.0, 2.0])) == []
    assert zero_runs(np.zeros(3)) == [(0, 3)]


def test_run_of_zeros_in_heavy_traffic_is_a_gap():
    v = np.full(100, 10.0)
    v[40:45] = 0.0
    assert find_gaps(v, 60.0) == [(40, 45)]
    single = np.full(20, 10.0)
    single[10] = 0.0
    assert find_gaps(single, 60.0) == [(10, 11)]  # 600 expected requests missing


def test_runs_touching_the_ends_are_not_gaps():
    v = np.full(100, 10.0)
    v[:3] = 0.0
    v[-2:] = 0.0
    v[40:45] = 0.0
    assert find_gaps(v, 60.0) == [(40, 45)]
    assert find_gaps(np.zeros(10), 60.0) == []


def test_threshold_on_expected_count():
    # 0.1 req/s in 60 s bins: 6 requests expected per empty bin, 30 needed to call it a gap
    v = np.full(40, 0.1)
    v[10:15] = 0.0  # 5 bins -> 30 expected: a gap
    v[25:29] = 0.0  # 4 bins -> 24 expected: plausible
    assert DEFAULT_MIN_EXPECTED == 30.0
    assert find_gaps(v, 60.0) == [(10, 15)]
    assert find_gaps(v, 60.0, min_expected=20.0) == [(10, 15), (25, 29)]


def test_quieter_side_decides():
    v = np.concatenate([np.full(10, 10.0), np.zeros(3), np.full(10, 0.05)])
    assert find_gaps(v, 60.0) == []  # 0.05 * 60 * 3 = 9 < 30


def test_zero_run_next_to_missing_data_is_left_alone():
    v = np.concatenate([np.full(10, 10.0), np.zeros(3), np.full(10, np.nan), np.full(5, 10.0)])
    assert find_gaps(v, 60.0) == []


def test_mask_gaps_copies_and_sets_nan():
    v = np.full(30, 5.0)
    v[10:12] = 0.0
    out, gaps = mask_gaps(v, 60.0)
    assert gaps == [(10, 12)]
    assert np.isnan(out[10:12]).all() and np.isfinite(np.delete(out, [10, 11])).all()
    assert v[10] == 0.0  # input untouched


def test_mask_gaps_integer_input():
    out, gaps = mask_gaps(np.array([5, 5, 5, 5, 5, 5, 0, 5, 5, 5, 5, 5, 5]), 60.0)
    assert gaps == [(6, 7)] and out.dtype == np.float64 and np.isnan(out[6])


def test_sparse_traffic_is_not_a_gap():
    # 0.001 req/s in 60 s bins: an isolated request every ~17 bins, with long natural zero runs
    for seed in range(3):
        rng = np.random.default_rng(seed)
        t = np.sort(rng.uniform(0.0, 2 * 86_400.0, rng.poisson(0.001 * 2 * 86_400)))
        series = trace_to_series(RequestTrace(t, np.ones(len(t), int), np.ones(len(t), int)), 60.0)
        assert find_gaps(np.nan_to_num(series.values), 60.0) == []
    regular = np.zeros(500)
    regular[::50] = 1 / 60  # one request every 50 minutes
    assert find_gaps(regular, 60.0) == []


def test_partly_observed_bins_beside_a_gap_are_missing_too():
    from fleetwise.traffic.gaps import mask_partial

    v = np.full(60, 1000.0)
    v[20:25] = 0.0  # collection stopped for 5 bins
    v[19], v[25] = 0.9, 3.3  # ... inside bin 19 and restarted inside bin 25
    out, gaps, partial = mask_partial(v, 600.0)
    assert gaps == [(20, 25)] and partial == [19, 25]
    assert np.isnan(out[19:26]).all() and np.isfinite(np.delete(out, range(19, 26))).all()
    v[19], v[25] = 700.0, 950.0  # lower but within what the traffic can do: kept
    assert mask_partial(v, 600.0)[2] == []


def test_partial_bins_at_the_series_ends_and_beside_nan_runs():
    from fleetwise.traffic.gaps import partial_bins

    v = np.full(40, 50.0)
    v[0], v[-1] = 2.0, 5.0  # the collection began and ended inside these bins
    v[15:18] = np.nan
    v[14] = 1.0
    assert partial_bins(v, 60.0) == [0, 14, 39]
    quiet = np.full(40, 0.05)  # 3 requests expected per bin: a low bin is ordinary Poisson noise
    quiet[0] = 0.0
    quiet[-1] = 0.01
    assert partial_bins(quiet, 60.0) == []
    rng = np.random.default_rng(0)  # heavy Poisson traffic never yields a false partial bin
    for _ in range(20):
        noisy = rng.poisson(1000 * 60, 200) / 60.0
        assert partial_bins(noisy, 60.0) == []


def test_loading_a_series_reports_partial_bins(tmp_path):
    from fleetwise.traffic.load import load_series

    v = np.full(48, 1000.0)
    v[20:24] = 0.0
    v[19], v[24] = 0.9, 3.3
    path = tmp_path / "s.csv"
    path.write_text("time,rate\n" + "".join(f"{600 * k},{x}\n" for k, x in enumerate(v)))
    series = load_series(path)
    assert np.isnan(series.values[19:25]).all() and np.isfinite(series.values[:19]).all()
    assert series.report.partial_bins == (19 * 600.0, 24 * 600.0)
    assert any("partly observed" in w and "11,400 s" in w for w in series.report.warnings())
