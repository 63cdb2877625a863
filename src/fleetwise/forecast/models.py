"""Point-forecast models. Each one is prepared once on a whole array (parameters fitted on a prefix) and
then produces forecast paths from many origins, using only the values before each origin.

This "fit once, roll forward" shape makes rolling-origin backtests cheap: an origin costs an index lookup
(or one filter pass for ETS) instead of a refit.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Protocol

import numpy as np

from fleetwise.forecast.calibration import lead_bucket, level_floor
from fleetwise.traffic.records import steps_per_day, steps_per_hour, weekday

UNUSABLE = 1 << 62  # min_history() of a model that cannot run at this bin length, however long the history


class PointModel(Protocol):
    name: str

    def min_history(self, steps_per_day: int) -> int:
        """Steps of history needed before the first origin."""
        ...

    def prepare(self, values: np.ndarray, fit_end: int, period_s: float, start_s: float, epoch: bool) -> None:
        """Fit parameters on values[:fit_end]; keep what paths() needs for every origin."""
        ...

    def paths(self, origins: np.ndarray, horizon: int) -> np.ndarray:
        """(len(origins), horizon) forecasts of values[o], ..., values[o + horizon - 1] from values[:o]."""
        ...


def default_stride(horizon: int, steps_per_hour: int) -> int:
    """One origin per hour for horizons of an hour or more; every step for shorter ones."""
    return 1 if horizon < steps_per_hour else steps_per_hour


def ffill(values: np.ndarray) -> np.ndarray:
    """Carry the last finite value forward (leading NaNs stay NaN)."""
    idx = np.where(np.isfinite(values), np.arange(len(values)), -1)
    np.maximum.accumulate(idx, out=idx)
    out = np.where(idx >= 0, values[np.maximum(idx, 0)], np.nan)
    return out


def seasonal_fill(values: np.ndarray, season: int) -> np.ndarray:
    """Causal imputation: a missing value takes the value one season earlier (recursively), else the last value."""
    out = values.astype(np.float64, copy=True)
    missing = np.flatnonzero(~np.isfinite(out))
    for i in missing:  # gaps are rare; a loop over them is cheap
        if i >= season and np.isfinite(out[i - season]):
            out[i] = out[i - season]
    return ffill(out)


class Persistence:
    """The last observed value, for every lead (the reference that is hard to beat at short horizons)."""

    name = "persistence"

    def min_history(self, steps_per_day: int) -> int:
        return 1

    def prepare(self, values, fit_end, period_s, start_s, epoch) -> None:
        self._last = ffill(values)

    def paths(self, origins: np.ndarray, horizon: int) -> np.ndarray:
        return np.repeat(self._last[origins - 1][:, None], horizon, axis=1)


class SeasonalNaive:
    """The value at the same time one season (a day, or a week) earlier."""

    def __init__(self, season_days: int = 1) -> None:
        self.season_days = season_days
        self.name = "seasonal-naive" if season_days == 1 else f"seasonal-naive-{season_days}d"

    def min_history(self, steps_per_day: int) -> int:
        return self.season_days * steps_per_day

    def prepare(self, values, fit_end, period_s, start_s, epoch) -> None:
        self._season = self.season_days * steps_per_day(period_s)
        self._filled = seasonal_fill(values, self._season)

    def paths(self, origins: np.ndarray, horizon: int) -> np.ndarray:
        h = np.arange(horizon)
        back = self._season * (h // self._season + 1)
        return self._filled[origins[:, None] + h[None, :] - back[None, :]]


class Profile:
    """The weekday x time-of-day percentile profile: the median of the same time bin (and its two neighbours)
    on the same weekday over the last ``weeks`` weeks; with less than two weeks of history, over all days of
    the last week instead (weekdays pooled)."""

    name = "profile"

    def __init__(self, weeks: int = 4, neighbours: int = 1) -> None:
        self.weeks = weeks
        self.neighbours = neighbours

    def min_history(self, steps_per_day: int) -> int:
        return steps_per_day

    def prepare(self, values, fit_end, period_s, start_s, epoch) -> None:
        self._values = values
        self._day = steps_per_day(period_s)
        self._weekly = fit_end >= 14 * self._day

    def paths(self, origins: np.ndarray, horizon: int) -> np.ndarray:
        day = self._day
        step, count = (7 * day, self.weeks) if self._weekly else (day, 7)
        target = origins[:, None] + np.arange(horizon)[None, :]
        first = (target - origins[:, None]) // step + 1  # the first lag that lies in the past
        lags = (first[..., None] + np.arange(count)[None, None, :]) * step
        shifts = np.arange(-self.neighbours, self.neighbours + 1)
        idx = target[..., None, None] - lags[..., None] + shifts[None, None, None, :]
        # A neighbour bin of the latest lag may reach past the origin: keep only indices before it.
        valid = (idx >= 0) & (idx < origins[:, None, None, None])
        samples = np.where(valid, self._values[np.clip(idx, 0, len(self._values) - 1)], np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(samples.reshape(*target.shape, -1), axis=-1)


class ProfileAR:
    """The profile, corrected by the latest deviation from it: f(t+h) = p(t+h) * exp(beta_h * d_t), with
    d_t = log(y_t / p_t) and beta_h the least-squares lag-h autoregression of d fitted on the history.
    Near-persistence at short leads, the profile at long ones, and it follows level shifts in between."""

    name = "profile-ar"

    def __init__(self) -> None:
        self._profile = Profile()

    def min_history(self, steps_per_day: int) -> int:
        return 2 * steps_per_day

    def prepare(self, values, fit_end, period_s, start_s, epoch) -> None:
        self._profile.prepare(values, fit_end, period_s, start_s, epoch)
        day = self._profile._day
        self._c = level_floor(values[:fit_end], empty=1.0)
        t = np.arange(day, len(values))
        prof = np.full(len(values), np.nan)
        prof[day:] = self._profile.paths(t, 1)[:, 0]
        self._dev = ffill(np.log((values + self._c) / (prof + self._c)))
        self._start, self._fit_end = day, fit_end
        self._beta: dict[int, float] = {}

    def _betas(self, horizon: int) -> np.ndarray:
        d = self._dev[self._start : self._fit_end]
        out = np.zeros(horizon)
        for h in range(1, horizon + 1):
            if h not in self._beta:
                x, y = d[:-h], d[h:]
                ok = np.isfinite(x) & np.isfinite(y)
                # With 10 or fewer known (d_t, d_t+h) pairs there is no regression to trust: beta_h = 0, the
                # bare profile.
                den = float(x[ok] @ x[ok]) if ok.sum() > 10 else 0.0
                self._beta[h] = float(np.clip(x[ok] @ y[ok] / den, 0.0, 1.0)) if den > 0 else 0.0
            out[h - 1] = self._beta[h]
        return out

    def paths(self, origins: np.ndarray, horizon: int) -> np.ndarray:
        base = self._profile.paths(origins, horizon)
        dev = np.nan_to_num(self._dev[origins - 1])
        return np.maximum((base + self._c) * np.exp(self._betas(horizon)[None, :] * dev[:, None]) - self._c, 0.0)


class ETS:
    """Holt-Winters (additive damped trend, additive daily seasonality) on log(1 + rate), so seasonality acts
    multiplicatively and forecasts stay positive; weekday effects are removed first once two weeks of
    history exist. Parameters come from statsmodels' ExponentialSmoothing fitted on the history; the states
    at every later origin come from one filter pass with those parameters fixed."""

    name = "ets"
    # The parameters are fitted on at most the last 28 days (four weekly cycles) before fit_end: this caps the
    # cost of statsmodels' optimizer, which grows with the length, on long histories; the filter pass that
    # gives the states still runs over everything from there on.
    FIT_DAYS = 28

    def min_history(self, steps_per_day: int) -> int:
        # the seasonal component needs a daily cycle of two or more bins (statsmodels refuses a period of 1)
        return 2 * steps_per_day if steps_per_day >= 2 else UNUSABLE

    def prepare(self, values, fit_end, period_s, start_s, epoch) -> None:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        day = steps_per_day(period_s)
        lo = max(0, fit_end - self.FIT_DAYS * day)
        y = np.log1p(seasonal_fill(values, day))
        y = np.where(np.isfinite(y), y, np.nanmean(y[:fit_end]))
        wd = weekday(start_s + period_s * np.arange(len(values)), epoch)
        self._effects = self._weekday_effects(y[lo:fit_end], wd[lo:fit_end], day)
        self._clock = (start_s, period_s, epoch)
        y = y - self._effects[wd]
        opts = {"trend": "add", "damped_trend": True, "seasonal": "add", "seasonal_periods": day}
        with warnings.catch_warnings():
            # Convergence and information-criterion warnings (e.g. a flat series) are not actionable for a
            # user; the backtest is what judges the fit.
            warnings.simplefilter("ignore")
            fit = ExponentialSmoothing(y[lo:fit_end], initialization_method="heuristic", **opts).fit()
            p = fit.params
            run = ExponentialSmoothing(
                y[lo:], initialization_method="known", initial_level=p["initial_level"],
                initial_trend=p["initial_trend"], initial_seasonal=p["initial_seasons"], **opts,
            ).fit(smoothing_level=p["smoothing_level"], smoothing_trend=p["smoothing_trend"],
                  smoothing_seasonal=p["smoothing_seasonal"], damping_trend=p["damping_trend"], optimized=False)
        pad = np.full(lo, np.nan)
        self._level = np.concatenate([pad, run.level])
        self._trend = np.concatenate([pad, run.trend])
        self._season = np.concatenate([pad, run.season])
        self._phi = float(p["damping_trend"])
        self._day = day
        self.params = {k: float(p[k]) for k in ("smoothing_level", "smoothing_trend", "smoothing_seasonal",
                                                "damping_trend")}

    @staticmethod
    def _weekday_effects(y: np.ndarray, wd: np.ndarray, day: int) -> np.ndarray:
        effects = np.zeros(7)
        if len(y) < 14 * day:
            return effects
        overall = y.mean()
        for d in range(7):
            sel = y[wd == d]
            weeks = len(sel) / day
            effects[d] = (sel.mean() - overall) * weeks / (weeks + 1)  # shrink toward 0 with few weeks
        return effects

    def paths(self, origins: np.ndarray, horizon: int) -> np.ndarray:
        t = origins - 1  # the last observed step
        h = np.arange(1, horizon + 1)
        damp = np.cumsum(self._phi ** h)
        season_idx = t[:, None] + h[None, :] - self._day * ((h[None, :] - 1) // self._day + 1)
        start_s, period_s, epoch = self._clock
        target_wd = weekday(start_s + period_s * (t[:, None] + h[None, :]), epoch)
        log_f = (self._level[t][:, None] + damp[None, :] * self._trend[t][:, None] + self._season[season_idx]
                 + self._effects[target_wd])
        return np.expm1(log_f)


class Ensemble:
    """A weighted geometric mean of several methods' forecasts. Each member's weight, per lead bucket, is
    1 / (its mean absolute log error)^2 over forecasts made within the fitting history, so a member that is
    poor at some lead (seasonal-naive an hour ahead) barely counts there. Combining lets the members' errors
    partly cancel; how it compares with each single method is measured by ``python
    benchmarks/forecast_backtest.py --extra``: when this was written it had the lowest WAPE at 7 of the 13
    (series, horizon) pairs that scores, persistence or profile-ar at the others.

    ``prepared(name)``, if given, supplies members already prepared on the data this ensemble is prepared on
    (a :class:`~fleetwise.forecast.rolling.Roller`'s cache), so each member is fitted once; without it the
    ensemble prepares its own."""

    name = "ensemble"
    MEMBERS = ("persistence", "seasonal-naive", "profile-ar", "ets")

    def __init__(self, prepared: Callable[[str], PointModel] | None = None) -> None:
        self._prepared = prepared
        self._members = [METHODS[m]() for m in self.MEMBERS]
        self._weights: dict[int, np.ndarray] = {}

    def min_history(self, steps_per_day: int) -> int:
        return max(m.min_history(steps_per_day) for m in self._members)

    def prepare(self, values, fit_end, period_s, start_s, epoch) -> None:
        if self._prepared is not None:
            self._members = [self._prepared(m) for m in self.MEMBERS]
        else:
            for m in self._members:
                m.prepare(values, fit_end, period_s, start_s, epoch)
        self._values, self._fit_end = values, fit_end
        self._first = self.min_history(steps_per_day(period_s))
        self._hour = steps_per_hour(period_s)
        self._weights = {}

    def _member_weights(self, horizon: int) -> np.ndarray:
        """(members, horizon) weights summing to 1 over members at every lead."""
        if horizon in self._weights:
            return self._weights[horizon]
        origins = np.arange(self._first, self._fit_end - horizon + 1, default_stride(horizon, self._hour))
        weights = np.ones((len(self._members), horizon))
        if origins.size:
            target = origins[:, None] + np.arange(horizon)[None, :]
            actual = np.log1p(self._values[target])
            bucket = lead_bucket(horizon)
            for i, m in enumerate(self._members):
                err = np.abs(np.log1p(np.maximum(m.paths(origins, horizon), 0.0)) - actual)
                per_lead = np.nanmean(err, axis=0)
                for b in np.unique(bucket):
                    weights[i, bucket == b] = 1.0 / max(float(np.nanmean(per_lead[bucket == b])), 1e-6) ** 2
            weights = np.where(np.isfinite(weights), weights, 0.0)
        weights /= np.maximum(weights.sum(axis=0, keepdims=True), 1e-300)
        self._weights[horizon] = weights
        return weights

    def paths(self, origins: np.ndarray, horizon: int) -> np.ndarray:
        logs = np.stack([np.log1p(np.maximum(m.paths(origins, horizon), 0.0)) for m in self._members])
        return np.expm1(np.einsum("mh,moh->oh", self._member_weights(horizon), logs))


METHODS = {
    "persistence": Persistence,
    "seasonal-naive": SeasonalNaive,
    "seasonal-naive-week": lambda: SeasonalNaive(7),
    "profile": Profile,
    "profile-ar": ProfileAR,
    "ets": ETS,
    "ensemble": Ensemble,
}
