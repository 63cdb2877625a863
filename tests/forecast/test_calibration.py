"""Conformal calibration: offsets are the finite-sample quantiles of past log-ratio errors, per lead bucket."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleetwise.forecast.calibration import (
    apply_offsets,
    lead_bucket,
    log_ratio,
    offsets_from_residuals,
    widen_offsets,
)


def _conformal(x: np.ndarray, q: float) -> float:
    n = len(x)
    return float(np.quantile(x, min(math.ceil((n + 1) * q) / n, 1.0)))


def test_lead_buckets_double_in_width():
    np.testing.assert_array_equal(lead_bucket(9), [0, 1, 1, 2, 2, 2, 2, 3, 3])
    np.testing.assert_array_equal(lead_bucket(1), [0])


def test_offsets_are_the_finite_sample_conformal_quantiles():
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.3, 57)
    qs = np.array([0.1, 0.5, 0.9, 0.95])
    out = offsets_from_residuals(r, np.ones(57, dtype=int), 1, qs)
    assert out.shape == (4, 1)
    for k, q in enumerate(qs):
        assert out[k, 0] == pytest.approx(_conformal(r, q))
        # ... which lies between the ceil((n+1)q)-th and the next order statistic: at least nominal coverage
        kth = math.ceil((len(r) + 1) * q)
        s = np.sort(r)
        assert s[kth - 1] <= out[k, 0] <= s[min(kth, len(r) - 1)]
        assert np.mean(r <= out[k, 0]) >= q


def test_offsets_on_hand_checkable_residuals():
    r = np.arange(1.0, 21.0)  # 1..20, n = 20
    out = offsets_from_residuals(r, np.ones(20, dtype=int), 1, np.array([0.5, 0.9, 0.99]))
    # q=0.5: ceil(10.5)/20 = 0.55 -> 1 + 0.55 * 19 = 11.45; q=0.9: ceil(18.9)/20 = 0.95 -> 19.05;
    # q=0.99: ceil(20.79)/20 > 1 -> clipped to the maximum
    np.testing.assert_allclose(out[:, 0], [11.45, 19.05, 20.0])


def test_each_lead_bucket_uses_its_own_residuals():
    rng = np.random.default_rng(1)
    r1 = rng.normal(0.0, 0.1, 40)  # lead 1: bucket 0
    r2 = rng.normal(-1.0, 0.1, 40)  # leads 2-3: bucket 1
    r4 = rng.normal(1.0, 0.1, 40)  # leads 4-7: bucket 2
    residuals = np.concatenate([r1, r2, r4])
    leads = np.concatenate([np.full(40, 1), 2 + np.arange(40) % 2, 4 + np.arange(40) % 4])
    qs = np.array([0.5, 0.9])
    out = offsets_from_residuals(residuals, leads, 5, qs)
    for k, q in enumerate(qs):
        c1, c2, c4 = _conformal(r1, q), _conformal(r2, q), _conformal(r4, q)
        np.testing.assert_allclose(out[k], [c1, c2, c2, c4, c4])


def test_a_sparse_bucket_borrows_from_the_nearest_shorter_lead():
    rng = np.random.default_rng(2)
    r1 = rng.normal(0.0, 0.1, 30)  # bucket 0: enough
    r2 = rng.normal(5.0, 0.1, 5)  # lead 2, bucket 1: too few (min_samples=20) -> borrows bucket 0
    r5 = rng.normal(-2.0, 0.1, 25)  # lead 5, bucket 2 (leads 4-7): enough
    residuals = np.concatenate([r1, r2, r5])
    leads = np.concatenate([np.full(30, 1), np.full(5, 2), np.full(25, 5)])
    qs = np.array([0.5, 0.95])
    out = offsets_from_residuals(residuals, leads, 12, qs)  # bucket 3 (leads 8-12): nothing -> bucket 2
    buckets = lead_bucket(12)
    for k, q in enumerate(qs):
        expect = {0: _conformal(r1, q), 1: _conformal(r1, q), 2: _conformal(r5, q), 3: _conformal(r5, q)}
        np.testing.assert_allclose(out[k], [expect[b] for b in buckets])


def test_a_sparse_first_bucket_falls_back_to_all_residuals():
    rng = np.random.default_rng(3)
    residuals = np.concatenate([rng.normal(0, 0.1, 5), rng.normal(1, 0.1, 30)])
    leads = np.concatenate([np.full(5, 1), np.full(30, 2)])
    out = offsets_from_residuals(residuals, leads, 2, np.array([0.5]))
    assert out[0, 0] == pytest.approx(_conformal(residuals, 0.5))  # bucket 0: everything pooled
    assert out[0, 1] == pytest.approx(_conformal(residuals[5:], 0.5))


def test_min_samples_is_respected():
    r = np.linspace(-1, 1, 15)
    lead_one = offsets_from_residuals(r, np.ones(15, dtype=int), 1, np.array([0.9]), min_samples=10)
    assert lead_one[0, 0] == pytest.approx(_conformal(r, 0.9))


@pytest.mark.parametrize("residuals", [np.empty(0), np.full(12, np.nan)], ids=["none", "all-nan"])
def test_no_residuals_means_zero_offsets(residuals):
    out = offsets_from_residuals(residuals, np.ones(len(residuals), dtype=int), 6, np.array([0.5, 0.9, 0.95]))
    np.testing.assert_array_equal(out, np.zeros((3, 6)))


def test_non_finite_residuals_are_ignored():
    r = np.linspace(0, 1, 30)
    with_nans = np.concatenate([r, [np.nan, np.inf, -np.inf]])
    a = offsets_from_residuals(r, np.ones(30, dtype=int), 3, np.array([0.5, 0.9]))
    b = offsets_from_residuals(with_nans, np.ones(33, dtype=int), 3, np.array([0.5, 0.9]))
    np.testing.assert_array_equal(a, b)


def test_apply_offsets_shape_and_formula():
    point = np.array([[10.0, 20.0, 30.0], [0.0, 5.0, 1.0]])  # (2 origins, H=3)
    offsets = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 0.3]])  # (Q=2, H=3)
    out = apply_offsets(point, offsets, floor=0.5)
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[:, 0, :], point)  # zero offsets: the point forecast itself
    np.testing.assert_allclose(out[:, 1, :], (point + 0.5) * np.exp(offsets[1]) - 0.5)


def test_apply_offsets_is_monotone_in_q_and_non_negative():
    rng = np.random.default_rng(4)
    residuals = rng.normal(0, 1.5, 400)  # wide errors: low quantiles would go negative without the clip
    leads = rng.integers(1, 9, 400)
    qs = np.array([0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99])
    offsets = offsets_from_residuals(residuals, leads, 8, qs)
    point = np.concatenate([rng.uniform(0, 3, (20, 8)), -np.ones((1, 8))])  # a negative point is floored
    out = apply_offsets(point, offsets, floor=0.1)
    assert np.all(out >= 0)
    assert np.all(np.diff(out, axis=1) >= 0)
    assert np.any(out == 0)  # the clip was exercised


def test_apply_offsets_inverts_log_ratio():
    actual = np.array([0.0, 1.0, 7.0, 100.0])
    forecast = np.array([3.0, 1.0, 0.0, 80.0])
    r = log_ratio(actual, forecast, floor=0.25)
    back = apply_offsets(forecast, r[None, :], floor=0.25)[0]
    np.testing.assert_allclose(back, actual, atol=1e-12)


def test_widening_takes_the_history_spread_around_its_median():
    """Each quantile at least as far out as the history's own log ratios to its median; the median stays."""
    history = np.array([8.0, 9.0, 10.0, 11.0, 12.0, np.nan, 10.0])
    qs = np.array([0.05, 0.5, 0.95])
    narrow = np.zeros((3, 4))
    wide = widen_offsets(narrow, history, qs, floor=0.0)
    assert wide[:, 0] == pytest.approx([math.log(8 / 10), 0.0, math.log(12 / 10)])  # 6 values: the extremes
    assert np.all(wide == wide[:, :1])  # the same at every lead
    already = np.array([[-1.0] * 4, [0.1] * 4, [1.0] * 4])  # wider than the history: kept as it is
    np.testing.assert_array_equal(widen_offsets(already, history, qs, floor=0.0), already)
    np.testing.assert_array_equal(widen_offsets(narrow, np.array([5.0, np.nan]), qs, 0.0), narrow)  # one value
