"""Point models: known seasonality is recovered, gaps are filled causally, and no model looks ahead."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.forecast.models import ETS, METHODS, Persistence, Profile, ffill, seasonal_fill
from fleetwise.traffic import SyntheticSpec, synthetic_series

DAY = 144  # 10-minute bins
MONDAY_2023_11_13 = 1_699_833_600.0  # an epoch series starting here has days 5, 6 on the weekend, as day indices do


def _prepared(name: str, values: np.ndarray, fit_end: int, series):
    model = METHODS[name]()
    model.prepare(values, fit_end, series.period_s, series.start_s, series.epoch)
    return model


def _mid_times(series, lo: int, hi: int) -> np.ndarray:
    return series.start_s + series.period_s * (np.arange(lo, hi) + 0.5)


# --- gap filling -------------------------------------------------------------------------------------------


def test_ffill_carries_the_last_finite_value_and_keeps_leading_nans():
    x = np.array([np.nan, np.nan, 1.0, np.nan, 3.0, np.nan, np.nan, np.inf, 7.0])
    out = ffill(x)
    np.testing.assert_array_equal(out[:2], [np.nan, np.nan])
    np.testing.assert_array_equal(out[2:], [1.0, 1.0, 3.0, 3.0, 3.0, 3.0, 7.0])  # inf is not a value either
    np.testing.assert_array_equal(x[3], np.nan)  # the input is left alone


def test_seasonal_fill_takes_the_value_one_season_earlier_recursively():
    x = np.arange(12, dtype=float)
    x[[5, 9]] = np.nan  # 9 - 4 = 5 is itself missing: it is filled first, from 1
    x[6] = np.nan
    out = seasonal_fill(x, season=4)
    assert out[5] == 1.0
    assert out[9] == 1.0
    assert out[6] == 2.0
    np.testing.assert_array_equal(out[[0, 1, 2, 3, 4, 7, 8, 10, 11]], [0, 1, 2, 3, 4, 7, 8, 10, 11])


def test_seasonal_fill_falls_back_to_the_last_value():
    x = np.array([np.nan, 1.0, np.nan, 3.0, np.nan, np.nan])
    out = seasonal_fill(x, season=4)
    # 0: nothing before; 2: no season earlier -> last value; 4: x[0] is missing -> last value; 5: x[1] = 1
    np.testing.assert_array_equal(out, [np.nan, 1.0, 1.0, 3.0, 3.0, 1.0])


def test_gap_filling_is_causal():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 2, 60)
    x[rng.choice(60, 15, replace=False)] = np.nan
    for fill in (ffill, lambda v: seasonal_fill(v, 7)):
        base = fill(x)
        for cut in (10, 30, 45):
            y = x.copy()
            y[cut:] = rng.uniform(50, 60, 60 - cut)
            y[cut + 1 :: 3] = np.nan
            np.testing.assert_array_equal(fill(y)[:cut], base[:cut])


def test_persistence_returns_the_last_finite_value_for_every_lead():
    x = np.array([1.0, 2.0, np.nan, 4.0, np.nan, np.nan, 7.0])
    m = Persistence()
    m.prepare(x, 3, 60.0, 0.0, False)
    out = m.paths(np.array([1, 2, 3, 4, 6, 7]), 3)
    np.testing.assert_array_equal(out, np.repeat([[1.0], [2.0], [2.0], [4.0], [4.0], [7.0]], 3, axis=1))


# --- known seasonality -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daily():
    spec = SyntheticSpec(days=21, period_s=600, noise_cv=0, bursts_per_day=0, weekend_factor=1.0)
    return spec, synthetic_series(spec, seed=0)


@pytest.mark.parametrize("name", ["seasonal-naive", "seasonal-naive-week", "profile", "profile-ar", "ets"])
def test_daily_seasonality_is_recovered_one_day_ahead(daily, name):
    spec, s = daily
    n = len(s)
    origin = n - DAY
    truth = spec.expected(_mid_times(s, origin, n))
    assert truth.max() / truth.min() > 2.5  # a real daily swing, so a flat forecast would fail
    path = _prepared(name, s.values, origin, s).paths(np.array([origin]), DAY)[0]
    np.testing.assert_allclose(path, truth, rtol=0.03)


def test_persistence_cannot_follow_the_daily_cycle(daily):
    """The seasonality check above is not vacuous: the last value is far off a day ahead."""
    spec, s = daily
    origin = len(s) - DAY
    path = _prepared("persistence", s.values, origin, s).paths(np.array([origin]), DAY)[0]
    assert np.max(np.abs(path / spec.expected(_mid_times(s, origin, len(s))) - 1)) > 0.3


@pytest.fixture(scope="module", params=[False, True], ids=["day-index", "epoch"])
def weekly(request):
    epoch = request.param
    spec = SyntheticSpec(days=28, period_s=600, noise_cv=0, bursts_per_day=0, weekend_factor=0.6, epoch=epoch,
                         start_s=MONDAY_2023_11_13 if epoch else 0.0)
    return spec, synthetic_series(spec, seed=0)


def _weekend_over_weekday(model, day=DAY) -> float:
    """Forecast mean for day 26 (a Saturday) over that for day 25 (a Friday), each one day ahead."""
    paths = model.paths(np.array([25 * day, 26 * day]), day)
    return float(paths[1].mean() / paths[0].mean())


@pytest.mark.parametrize("name", ["profile", "profile-ar", "seasonal-naive-week"])
def test_weekly_profile_captures_the_weekend_dip(weekly, name):
    spec, s = weekly
    model = _prepared(name, s.values, 26 * DAY, s)  # more than three weeks of history
    assert _weekend_over_weekday(model) == pytest.approx(spec.weekend_factor, abs=0.02)
    truth = spec.expected(_mid_times(s, 26 * DAY, 27 * DAY))
    np.testing.assert_allclose(model.paths(np.array([26 * DAY]), DAY)[0], truth, rtol=0.03)


def test_ets_weekday_effects_capture_the_weekend_dip(weekly):
    _spec, s = weekly
    model = _prepared("ets", s.values, 26 * DAY, s)
    effects = model._effects
    assert np.all(effects[5:] < 0) and np.all(effects[:5] > 0), effects
    ratio = _weekend_over_weekday(model)
    # Effects are shrunk toward zero by weeks / (weeks + 1) (~0.79 here), so most but not all of the dip shows.
    assert 0.55 <= ratio <= 0.72, ratio


def test_ets_without_two_weeks_has_no_weekday_effects(weekly):
    _, s = weekly
    model = _prepared("ets", s.values, 10 * DAY, s)
    np.testing.assert_array_equal(model._effects, np.zeros(7))


def test_profile_pools_the_days_of_the_last_week_with_less_than_two_weeks():
    spec = SyntheticSpec(days=14, period_s=600, noise_cv=0, bursts_per_day=0, weekend_factor=0.6)
    s = synthetic_series(spec, seed=0)
    model = Profile()
    model.prepare(s.values, 12 * DAY, s.period_s, s.start_s, s.epoch)  # day 12 is a Saturday
    sat = model.paths(np.array([12 * DAY]), DAY)[0]
    # The median over the last seven days (5 weekdays, 2 weekend days) is the weekday level.
    weekday_truth = spec.expected(_mid_times(s, 11 * DAY, 12 * DAY))
    np.testing.assert_allclose(sat, weekday_truth, rtol=0.03)


# --- no look-ahead -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy():
    """11 days at 30-minute bins with noise, bursts, a trend and a few missing bins."""
    spec = SyntheticSpec(days=11, period_s=1800, noise_cv=0.2, trend_per_day=0.02, bursts_per_day=2)
    s = synthetic_series(spec, seed=3)
    values = s.values.copy()
    values[[40, 41, 200, 333, 470]] = np.nan
    return s, values


@pytest.mark.parametrize("name", list(METHODS))
def test_changing_the_future_does_not_change_forecasts(noisy, name):
    s, values = noisy
    day, horizon = 48, 12
    fit_end = 8 * day  # more than a week: the weekly seasonal-naive is available
    origins = np.arange(fit_end, len(values) - horizon + 1, 5)
    base = _prepared(name, values, fit_end, s).paths(origins, horizon)
    assert np.isfinite(base).all()
    rng = np.random.default_rng(7)
    for o in (fit_end, fit_end + 13, fit_end + 61, origins[-1]):
        changed = values.copy()
        changed[o:] = changed[o:] * rng.uniform(0.1, 10.0, len(values) - o)
        changed[o + 2 :: 4] = np.nan
        after = _prepared(name, changed, fit_end, s).paths(origins, horizon)
        keep = origins <= o
        np.testing.assert_array_equal(after[keep], base[keep], err_msg=f"{name} saw values from {o} on")
        if (~keep).any() and name != "seasonal-naive-week":  # later origins see it: the check has teeth
            assert not np.allclose(after[~keep], base[~keep])


def test_ets_parameters_come_from_the_fit_prefix_only(noisy):
    s, values = noisy
    fit_end = 8 * 48
    a = ETS()
    a.prepare(values, fit_end, s.period_s, s.start_s, s.epoch)
    changed = values.copy()
    changed[fit_end:] *= 5
    b = ETS()
    b.prepare(changed, fit_end, s.period_s, s.start_s, s.epoch)
    assert a.params == b.params
