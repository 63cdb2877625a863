"""Rolling-origin backtests: scoring by hand, fold counts, calibration on a known noise distribution, no
look-ahead, and the automatic choice on real data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fleetwise.errors import ConfigError
from fleetwise.forecast import AUTO_CANDIDATES, METHODS, QuantileForecaster, Score, backtest
from fleetwise.forecast.backtest import eval_origins, score
from fleetwise.forecast.rolling import Paths
from fleetwise.traffic import RateSeries, SyntheticSpec, load_series, synthetic_series
from tests.shared_data import shared

DAY = 144  # 10-minute bins
REAL = shared("traces", "servegen_m-large_rate_10min.csv")


# --- scoring -----------------------------------------------------------------------------------------------


def _paths(origins, quantiles, values) -> Paths:
    return Paths("hand", np.asarray(origins), np.asarray(quantiles, dtype=float), np.asarray(values, dtype=float))


def test_score_on_a_hand_checkable_case():
    actual = np.array([10.0, 20.0, 30.0, 40.0])
    # origins 0 and 2, two leads: targets [[10, 20], [30, 40]]
    values = [
        [[12.0, 18.0], [15.0, 19.0]],  # origin 0: median, q0.9
        [[30.0, 50.0], [35.0, 60.0]],  # origin 2
    ]
    s = score(_paths([0, 2], [0.5, 0.9], values), actual, (0.5, 0.9))
    assert s.method == "hand" and s.horizon_steps == 2 and s.folds == 2
    assert s.wape == pytest.approx((2 + 2 + 0 + 10) / 100)
    assert s.mape == pytest.approx((0.2 + 0.1 + 0.0 + 0.25) / 4)
    # pinball: mean of max(q d, (q - 1) d) with d = actual - forecast
    assert s.pinball[0.5] == pytest.approx((1 + 1 + 0 + 5) / 4)
    assert s.pinball[0.9] == pytest.approx((0.5 + 0.9 + 0.5 + 2.0) / 4)
    assert s.coverage[0.5] == pytest.approx(0.75)  # 20 > 18
    assert s.coverage[0.9] == pytest.approx(0.75)  # 20 > 19
    assert s.under_provision == pytest.approx({0.5: 0.25, 0.9: 0.25})


def test_score_skips_missing_actuals_targets_past_the_end_and_zero_actuals_in_mape():
    actual = np.array([0.0, 10.0, np.nan, 20.0])
    values = [
        [[1.0, 12.0]],  # origin 0 -> actuals 0, 10
        [[5.0, 25.0]],  # origin 2 -> actuals NaN, 20
        [[7.0, 7.0]],  # origin 3 -> actuals 20, past the end
    ]
    s = score(_paths([0, 2, 3], [0.5], values), actual, (0.5,))
    # scored pairs: (0, 1), (10, 12), (20, 25), (20, 7)
    assert s.wape == pytest.approx((1 + 2 + 5 + 13) / 50)
    assert s.mape == pytest.approx((0.2 + 0.25 + 0.65) / 3)  # the zero actual is left out of MAPE
    assert s.coverage[0.5] == pytest.approx(3 / 4)  # only 20 > 7 is above the median


def test_score_with_nothing_to_score_is_a_config_error():
    with pytest.raises(ConfigError, match="no forecast could be scored"):
        score(_paths([0], [0.5], [[[np.nan, np.nan]]]), np.array([1.0, 2.0]), (0.5,))


def test_score_to_dict_and_under_provision():
    s = Score("x", 6, 10, 0.1, 0.2, {0.5: 1.0, 0.95: 0.5}, {0.5: 0.4, 0.95: 0.9})
    assert s.under_provision == pytest.approx({0.5: 0.6, 0.95: 0.1})
    d = s.to_dict()
    assert d["coverage"] == {"0.5": 0.4, "0.95": 0.9}
    assert d["under_provision"] == pytest.approx({"0.5": 0.6, "0.95": 0.1})
    assert d["pinball"] == {"0.5": 1.0, "0.95": 0.5}
    assert {"method", "horizon_steps", "folds", "wape", "mape"} <= set(d) and "chosen" not in d


# --- folds and errors --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nine_days() -> RateSeries:
    return synthetic_series(SyntheticSpec(days=9, period_s=600), seed=5)  # 1296 bins


def test_one_score_per_method_in_order(nine_days):
    names = ("profile", "persistence", "auto", "seasonal-naive")
    scores = backtest(nine_days, 6, methods=names, folds=20)
    assert [s.method for s in scores] == list(names)
    assert all(isinstance(s, Score) and s.horizon_steps == 6 and s.folds == 20 for s in scores)
    auto = scores[2]
    assert sum(auto.chosen.values()) == 20 and set(auto.chosen) <= set(AUTO_CANDIDATES)
    assert all(math.isfinite(s.wape) and 0 < s.wape < 1 for s in scores)


@pytest.mark.parametrize(("horizon", "folds"), [
    (1, 1296 - 1 - 1008 + 1),  # shorter than an hour: every step
    (6, (1296 - 6 - 1008) // 6 + 1),  # an hour: one origin per hour
    (144, (1296 - 144 - 1008) // 6 + 1),  # a day: one origin per hour
])
def test_default_folds(nine_days, horizon, folds):
    (s,) = backtest(nine_days, horizon, methods=("persistence",))
    assert s.folds == folds


def test_default_folds_every_step_below_an_hour(nine_days):
    (s,) = backtest(nine_days, 3, methods=("persistence",))
    assert s.folds == 1296 - 3 - 1008 + 1


def test_folds_n_gives_n_evenly_spaced_origins(nine_days):
    origins = eval_origins(1296, 1008, 6, 6, folds=5)
    np.testing.assert_array_equal(origins, np.linspace(1008, 1290, 5).round())  # warm-up .. last full horizon
    assert origins[0] == 1008 and origins[-1] == 1290 and np.ptp(np.diff(origins)) <= 1
    assert eval_origins(1296, 1008, 6, 6, folds=1).tolist() == [1008]
    for n_folds in (1, 7, 33):
        (s,) = backtest(nine_days, 6, methods=("profile",), folds=n_folds)
        assert s.folds == n_folds


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"horizon_steps": 0}, "horizon"),
    ({"horizon_steps": 6, "quantiles": (0.5, 1.5)}, "quantiles"),
    ({"horizon_steps": 6, "quantiles": (0.0,)}, "quantiles"),
    ({"horizon_steps": 6, "history_days": 9}, "no room"),  # all of the series is warm-up
    ({"horizon_steps": 3 * DAY, "history_days": 7}, "no room"),
    ({"horizon_steps": 6, "methods": ("nope",)}, "nope"),
])
def test_bad_backtests_are_config_errors(nine_days, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        backtest(nine_days, **kwargs)


def test_too_short_series_is_a_config_error():
    short = RateSeries(0.0, 600.0, np.ones(3 * DAY))
    with pytest.raises(ConfigError):
        backtest(short, 6)


# --- calibration on a known distribution -------------------------------------------------------------------

SIGMA = 0.2


@pytest.fixture(scope="module")
def lognormal() -> RateSeries:
    """A constant level 100 with iid lognormal noise: the true quantiles are 100 exp(z_q sigma)."""
    rng = np.random.default_rng(0)
    return RateSeries(0.0, 600.0, 100 * np.exp(SIGMA * rng.standard_normal(21 * DAY)))


@pytest.fixture(scope="module")
def lognormal_scores(lognormal) -> dict[str, Score]:
    scores = backtest(lognormal, 6, methods=("profile", "profile-ar", "ets"), history_days=7)
    return {s.method: s for s in scores}


@pytest.mark.parametrize("method", ["profile", "profile-ar", "ets"])
def test_coverage_is_nominal_on_iid_noise(lognormal_scores, method):
    s = lognormal_scores[method]
    assert s.folds == (21 * DAY - 6 - 7 * DAY) // 6 + 1
    assert s.coverage[0.9] == pytest.approx(0.9, abs=0.03)
    assert s.coverage[0.95] == pytest.approx(0.95, abs=0.03)
    assert s.coverage[0.5] == pytest.approx(0.5, abs=0.05)


def test_calibrated_quantiles_match_the_true_lognormal_quantiles(lognormal):
    fc = QuantileForecaster("profile").fit(lognormal).predict_quantiles(6)
    assert fc.quantile(0.5).mean() == pytest.approx(100, rel=0.05)
    assert fc.quantile(0.9).mean() == pytest.approx(100 * math.exp(1.2816 * SIGMA), rel=0.10)
    assert fc.quantile(0.95).mean() == pytest.approx(100 * math.exp(1.645 * SIGMA), rel=0.10)


# --- no look-ahead through the backtest --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ten_days() -> RateSeries:
    return synthetic_series(SyntheticSpec(days=10, period_s=600, noise_cv=0.2), seed=3)


def _tail_changed(series: RateSeries) -> RateSeries:
    values = series.values.copy()
    values[-150:] *= 50  # long after the only fold's targets (the first hour after day 7)
    return series.with_values(values)


@pytest.mark.parametrize("method", list(METHODS))
def test_first_fold_does_not_see_the_end_of_the_series(ten_days, method):
    a = backtest(ten_days, 6, methods=(method,), folds=1)[0]
    b = backtest(_tail_changed(ten_days), 6, methods=(method,), folds=1)[0]
    assert a == b


LEAKY_CANDIDATES = [c for c in ("seasonal-naive", "ensemble") if c in METHODS]


@pytest.mark.parametrize("candidate", LEAKY_CANDIDATES)
def test_auto_does_not_see_the_end_of_the_series(ten_days, candidate):
    kw = {"methods": ("auto",), "candidates": (candidate,), "folds": 1}
    a = backtest(ten_days, 6, **kw)[0]
    b = backtest(_tail_changed(ten_days), 6, **kw)[0]
    assert (a.wape, a.coverage) == (b.wape, b.coverage)


@pytest.mark.parametrize("method", ["seasonal-naive", "profile-ar"])
def test_auto_with_one_candidate_is_that_method(ten_days, method):
    auto, alone = backtest(ten_days, 6, methods=("auto", method), candidates=(method,))
    assert auto.chosen == {method: alone.folds}
    assert auto.wape == pytest.approx(alone.wape, rel=1e-9)
    assert auto.coverage == pytest.approx(alone.coverage)


# --- real data ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_scores() -> dict[int, dict[str, Score]]:
    if not REAL.is_file():
        pytest.skip(f"{REAL} is not available")
    series = load_series(REAL)
    assert series.period_s == 600 and len(series) >= 14 * DAY
    out = {}
    for horizon in (6, DAY):
        scores = backtest(series, horizon, methods=("auto", *METHODS), history_days=7)
        out[horizon] = {s.method: s for s in scores}
    return out


@pytest.mark.parametrize("horizon", [6, DAY], ids=["1h", "1d"])
def test_real_data_auto_is_at_least_as_good_as_the_naive_baselines(real_scores, horizon):
    s = real_scores[horizon]
    assert set(s) == {"auto", *METHODS}
    baseline = min(s["persistence"].wape, s["seasonal-naive"].wape)
    assert s["auto"].wape <= baseline * 1.001, {k: round(v.wape, 4) for k, v in s.items()}


@pytest.mark.parametrize("horizon", [6, DAY], ids=["1h", "1d"])
def test_real_data_auto_p95_is_calibrated(real_scores, horizon):
    auto = real_scores[horizon]["auto"]
    assert 0.90 <= auto.coverage[0.95] <= 0.98, auto.coverage
    assert auto.coverage[0.5] <= auto.coverage[0.9] <= auto.coverage[0.95]
    assert sum(auto.chosen.values()) == auto.folds
