"""QuantileForecaster: shapes, monotone quantiles, the time axis, records(), missing tails, auto, errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fleetwise.errors import ConfigError
from fleetwise.forecast import AUTO_CANDIDATES, DEFAULT_QUANTILES, METHODS, Forecast, QuantileForecaster
from fleetwise.forecast.calibration import level_floor
from fleetwise.traffic import RateSeries, SyntheticSpec, synthetic_series

MONDAY_2023_11_13 = 1_699_833_600.0
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def series() -> RateSeries:
    """Nine days at 30-minute bins with noise and bursts (day-index clock)."""
    return synthetic_series(SyntheticSpec(days=9, period_s=1800), seed=2)


@pytest.fixture(scope="module")
def epoch_series() -> RateSeries:
    return synthetic_series(SyntheticSpec(days=9, period_s=1800, epoch=True, start_s=MONDAY_2023_11_13), seed=2)


@pytest.fixture(scope="module")
def forecasts(series) -> dict[str, Forecast]:
    return {m: QuantileForecaster(m).fit(series).predict_quantiles(12) for m in METHODS}


@pytest.mark.parametrize("method", list(METHODS))
def test_shapes_and_monotone_quantiles(forecasts, series, method):
    fc = forecasts[method]
    assert fc.method == method
    assert fc.quantiles == DEFAULT_QUANTILES
    assert fc.values.shape == (3, 12)
    assert np.isfinite(fc.values).all() and (fc.values >= 0).all()
    assert np.all(fc.quantile(0.5) <= fc.quantile(0.9)) and np.all(fc.quantile(0.9) <= fc.quantile(0.95))
    assert np.any(fc.quantile(0.5) < fc.quantile(0.95))  # real intervals, not a point forecast thrice
    # a sane level: within the range the history has seen
    finite = series.values[np.isfinite(series.values)]
    assert finite.min() * 0.5 <= fc.quantile(0.5).min() and fc.quantile(0.5).max() <= finite.max() * 1.5


def test_times_start_at_the_end_of_the_series(forecasts, series):
    fc = forecasts["profile"]
    assert fc.start_s == series.end_s == 9 * 86_400
    assert fc.period_s == series.period_s and fc.epoch is False
    np.testing.assert_array_equal(fc.starts, series.end_s + 1800 * np.arange(12))


def test_records_for_a_day_index_series(forecasts):
    recs = forecasts["profile"].records()
    assert len(recs) == 12
    assert list(recs[0]) == ["time", "q0.5", "q0.9", "q0.95"]
    assert [r["time"] for r in recs[:2]] == [9 * 86_400.0, 9 * 86_400.0 + 1800]
    assert all(isinstance(v, float) for r in recs for v in r.values())


def test_records_for_an_epoch_series_are_iso_utc(epoch_series):
    fc = QuantileForecaster("seasonal-naive").fit(epoch_series).predict_quantiles(3, (0.5, 0.8))
    recs = fc.records()
    assert [list(r) for r in recs] == [["time", "q0.5", "q0.8"]] * 3
    assert all(ISO_Z.match(r["time"]) for r in recs)
    assert [r["time"] for r in recs] == ["2023-11-22T00:00:00Z", "2023-11-22T00:30:00Z", "2023-11-22T01:00:00Z"]


def test_requested_quantiles_only_and_in_the_given_order(series):
    fc = QuantileForecaster("profile").fit(series).predict_quantiles(4, [0.8, 0.3])
    assert fc.quantiles == (0.8, 0.3)
    assert fc.values.shape == (2, 4)
    assert np.all(fc.quantile(0.3) <= fc.quantile(0.8))
    with pytest.raises(ConfigError, match="0.5"):
        fc.quantile(0.5)


def test_a_missing_tail_is_ignored(series):
    values = series.values.copy()
    values[-7:] = np.nan
    values[100] = np.nan  # a gap inside the history stays history
    holed = series.with_values(values)
    fc = QuantileForecaster("profile-ar").fit(holed).predict_quantiles(6)
    assert fc.start_s == series.end_s - 7 * series.period_s
    trimmed = QuantileForecaster("profile-ar").fit(holed.slice(0, len(series) - 7)).predict_quantiles(6)
    np.testing.assert_allclose(fc.values, trimmed.values)


def test_auto_chooses_a_candidate(series):
    f = QuantileForecaster("auto")
    assert f.chosen is None
    fc = f.fit(series).predict_quantiles(6)
    assert f.chosen in AUTO_CANDIDATES
    assert fc.method == f.chosen
    assert fc.values.shape == (3, 6)
    # the forecast is the chosen method's own forecast, refitted on everything
    alone = QuantileForecaster(f.chosen).fit(series).predict_quantiles(6)
    np.testing.assert_allclose(fc.values, alone.values)


def test_auto_on_a_short_series_falls_back_to_what_is_available():
    short = RateSeries(0.0, 600.0, np.linspace(10.0, 12.0, 40))  # under a day: only persistence qualifies
    f = QuantileForecaster()
    fc = f.fit(short).predict_quantiles(3)
    assert f.chosen == "persistence"
    assert np.all(fc.quantile(0.5) <= fc.quantile(0.95))


def test_noise_free_seasonality_is_forecast():
    spec = SyntheticSpec(days=9, period_s=1800, noise_cv=0, bursts_per_day=0)
    s = synthetic_series(spec, seed=0)
    fc = QuantileForecaster().fit(s).predict_quantiles(48)
    truth = spec.expected(fc.starts + 900)
    np.testing.assert_allclose(fc.quantile(0.5), truth, rtol=0.05)


@pytest.mark.parametrize("method", ["nope", "Profile", ""])
def test_unknown_method_is_a_config_error(series, method):
    with pytest.raises(ConfigError, match="unknown forecast method"):
        QuantileForecaster(method).fit(series).predict_quantiles(6)


@pytest.mark.parametrize(("horizon", "quantiles", "match"), [
    (0, DEFAULT_QUANTILES, "horizon"),
    (6, (0.5, 1.5), "quantiles"),
    (6, (1.0,), "quantiles"),
])
def test_bad_predictions_are_config_errors(series, horizon, quantiles, match):
    f = QuantileForecaster("persistence").fit(series)
    with pytest.raises(ConfigError, match=match):
        f.predict_quantiles(horizon, quantiles)


def test_predict_before_fit_is_a_config_error():
    with pytest.raises(ConfigError, match="fit"):
        QuantileForecaster().predict_quantiles(6)


def test_fewer_than_two_known_values_is_a_config_error():
    with pytest.raises(ConfigError, match="two known values"):
        QuantileForecaster().fit(RateSeries(0.0, 60.0, np.array([np.nan, 3.0, np.nan])))


def test_too_little_history_for_a_method_is_a_config_error(series):
    with pytest.raises(ConfigError, match="needs at least"):
        QuantileForecaster("seasonal-naive-week").fit(series.slice(0, 5 * 48)).predict_quantiles(6)


def test_one_hour_of_history_widens_the_band_and_says_so():
    """Twelve 5-minute bins leave no past error to calibrate on: P95 above P50, with a warning."""
    hour = synthetic_series(SyntheticSpec(days=1 / 24, period_s=300, noise_cv=0.2), seed=3)
    fc = QuantileForecaster().fit(hour).predict_quantiles(12, (0.5, 0.95))
    assert np.all(fc.quantile(0.95) > fc.quantile(0.5))
    assert len(fc.warnings) == 1 and "too little history for a calibrated band" in fc.warnings[0]
    known = hour.values[np.isfinite(hour.values)]
    c = level_floor(known)  # the stated rule: P95 / P50 = the history's max over its median (12 values)
    ratio = (fc.quantile(0.95) + c) / (fc.quantile(0.5) + c)
    assert ratio == pytest.approx(np.full(12, (known.max() + c) / (np.median(known) + c)), rel=1e-9)
    median_only = QuantileForecaster().fit(hour).predict_quantiles(12, (0.5,))
    assert median_only.warnings == ()  # no band asked for, nothing to warn about


def test_a_calibrated_band_has_no_warning(forecasts):
    assert all(fc.warnings == () for fc in forecasts.values())
