"""Synthetic series and traces: seeded, and with the daily / weekly / trend shape the spec describes."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.errors import ConfigError
from fleetwise.traffic import DEFAULT_SPEC, SyntheticSpec, synthetic_series, synthetic_trace

QUIET = {"noise_cv": 0.0, "bursts_per_day": 0.0}
MONDAY = 1_704_067_200.0  # 2024-01-01 00:00 UTC


def test_deterministic_per_seed():
    spec = SyntheticSpec(days=3)
    a, b, c = synthetic_series(spec, seed=5), synthetic_series(spec, seed=5), synthetic_series(spec, seed=6)
    assert np.array_equal(a.values, b.values)
    assert not np.allclose(a.values, c.values)
    assert a.source == "synthetic(seed=5)"


def test_grid_shape():
    s = synthetic_series(SyntheticSpec(days=2, period_s=600.0, start_s=1000.0))
    assert (len(s), s.period_s, s.start_s) == (288, 600.0, 1000.0)
    assert np.all(s.values > 0)


def test_noise_free_equals_expected_at_bin_midpoints():
    spec = SyntheticSpec(days=7, trend_per_day=0.02, **QUIET)
    s = synthetic_series(spec, seed=3)
    mid = s.starts + s.period_s / 2
    assert np.allclose(s.values, spec.expected(mid), rtol=1e-12)


def test_noise_has_the_requested_cv():
    spec = SyntheticSpec(days=28, noise_cv=0.2, noise_corr_s=300.0, bursts_per_day=0.0)
    s = synthetic_series(spec, seed=1)
    ratio = s.values / spec.expected(s.starts + s.period_s / 2)
    assert ratio.mean() == pytest.approx(1.0, abs=0.03)
    assert ratio.std() == pytest.approx(0.2, rel=0.15)


@pytest.mark.parametrize("peak_hour", [14.0, 3.5, 21.0])
def test_daily_peak_at_peak_hour(peak_hour):
    s = synthetic_series(SyntheticSpec(days=1, peak_hour=peak_hour, daily_amplitude=0.5, **QUIET))
    top = int(np.argmax(s.values))
    assert abs((s.starts[top] + s.period_s / 2) / 3600.0 - peak_hour) <= s.period_s / 3600.0
    assert s.values.max() == pytest.approx(20.0 * 1.5, rel=1e-3)
    assert s.values.min() == pytest.approx(20.0 * 0.5, rel=1e-3)


def test_weekend_days_are_lower():
    s = synthetic_series(SyntheticSpec(days=14, weekend_factor=0.6, **QUIET))
    daily = s.values.reshape(14, -1).mean(axis=1)
    weekday_mean = daily[[0, 1, 2, 3, 4, 7, 8, 9, 10, 11]].mean()
    assert daily[[5, 6, 12, 13]] == pytest.approx(0.6 * weekday_mean, rel=1e-9)


def test_weekend_uses_real_weekdays_for_epoch_series():
    # starts on a Monday: days 5 and 6 are Saturday and Sunday
    s = synthetic_series(SyntheticSpec(days=7, start_s=MONDAY, epoch=True, weekend_factor=0.5,
                                       daily_amplitude=0.0, **QUIET))
    assert s.epoch is True
    daily = s.values.reshape(7, -1).mean(axis=1)
    assert daily.tolist() == pytest.approx([20.0] * 5 + [10.0] * 2)
    # starting on a Thursday, the weekend is days 2 and 3
    thursday = MONDAY + 3 * 86_400
    s = synthetic_series(SyntheticSpec(days=7, start_s=thursday, epoch=True, weekend_factor=0.5,
                                       daily_amplitude=0.0, **QUIET))
    assert s.values.reshape(7, -1).mean(axis=1).tolist() == pytest.approx([20, 20, 10, 10, 20, 20, 20])


def test_trend_grows_the_level():
    spec = SyntheticSpec(days=10, trend_per_day=0.05, weekend_factor=1.0, **QUIET)
    s = synthetic_series(spec)
    per_day = len(s) // 10
    assert s.values[9 * per_day] / s.values[0] == pytest.approx(1.05**9, rel=1e-9)  # same time of day
    daily = s.values.reshape(10, -1).mean(axis=1)
    assert np.all(np.diff(daily) > 0)


def test_bursts_raise_the_rate():
    spec = SyntheticSpec(days=5, noise_cv=0.0, bursts_per_day=4.0, burst_multiplier=3.0, burst_minutes=30.0)
    s = synthetic_series(spec, seed=2)
    ratio = s.values / spec.expected(s.starts + s.period_s / 2)
    assert set(np.round(np.unique(ratio), 9).tolist()) <= {1.0, 3.0, 9.0, 27.0}
    assert (ratio > 1).sum() >= 6  # ~20 bursts of 6 bins each, some overlapping


@pytest.mark.parametrize(
    "changes",
    [{"days": 0.0}, {"period_s": -1.0}, {"base_rps": 0.0}, {"daily_amplitude": 1.0}, {"daily_amplitude": -0.1},
     {"noise_cv": -0.1}, {"weekend_factor": 0.0}, {"burst_multiplier": 0.0}],
)
def test_invalid_specs_rejected(changes):
    with pytest.raises(ConfigError):
        SyntheticSpec(**changes)




@pytest.mark.parametrize(
    "changes",
    [pytest.param({"noise_corr_s": 0.0}, id="noise_corr_s=0"),
     pytest.param({"noise_corr_s": -600.0}, id="noise_corr_s<0"),
     pytest.param({"bursts_per_day": -1.0}, id="bursts_per_day<0"),
     pytest.param({"trend_per_day": -2.0}, id="trend_per_day<=-1"),
     pytest.param({"days": 1.0, "period_s": 3 * 86_400.0}, id="period>days")],
)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_unchecked_specs_should_raise_config_error(changes):
    with pytest.raises(ConfigError):
        synthetic_series(SyntheticSpec(**changes), seed=0)


def test_synthetic_trace_follows_the_series():
    spec = SyntheticSpec(days=1, base_rps=2.0, **QUIET)
    trace = synthetic_trace(spec, seed=4)
    assert len(trace) == pytest.approx(2.0 * 86_400, rel=0.02)
    assert np.array_equal(trace.arrival_s, synthetic_trace(spec, seed=4).arrival_s)
    hours = trace.arrival_s / 3600.0
    busy = ((hours >= 12) & (hours < 16)).sum()
    quiet = (hours < 4).sum()
    assert busy / quiet == pytest.approx(spec.expected(np.array([14 * 3600.0]))[0]
                                         / spec.expected(np.array([2 * 3600.0]))[0], rel=0.1)
    assert trace.input_tokens.mean() == pytest.approx(1155, rel=0.05)  # DEFAULT_LENGTHS
    assert trace.output_tokens.mean() == pytest.approx(211, rel=0.05)


def test_default_spec():
    assert (DEFAULT_SPEC.days, DEFAULT_SPEC.period_s, DEFAULT_SPEC.base_rps) == (14.0, 300.0, 20.0)
    s = synthetic_series()
    assert len(s) == 14 * 288
