"""Rolling-origin forecasting: point paths from many origins, calibrated by each model's own past errors,
and the automatic choice among models. Backtests and live forecasts both run through here, so a live
forecast is calibrated and chosen the same way its backtest figures were measured."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.forecast.calibration import (
    MIN_SAMPLES,
    apply_offsets,
    level_floor,
    log_ratio,
    offsets_from_residuals,
    widen_offsets,
)
from fleetwise.forecast.models import METHODS, UNUSABLE, Ensemble, PointModel, default_stride
from fleetwise.traffic.records import RateSeries, steps_in_days, steps_per_day, steps_per_hour

# In auto, a single method replaces the ensemble only if its WAPE over the selection window is more than 3%
# below the ensemble's (without the ensemble, the simplest method within 3% of the best is taken): smaller
# WAPE differences are treated as selection noise. See _choose for what the benchmark says about it.
SELECTION_MARGIN = 0.03
SELECTION_WINDOWS = 4  # methods are ranked over 4 calibration windows: ranking needs more data than scaling
AUTO_CANDIDATES = ("persistence", "seasonal-naive", "profile", "profile-ar", "ets", "ensemble")


@dataclass
class Paths:
    """Calibrated quantile paths of one method at a set of origins."""

    method: str
    origins: np.ndarray  # (n,)
    quantiles: np.ndarray  # (Q,)
    values: np.ndarray  # (n, Q, H); NaN where the method had too little history
    chosen: np.ndarray | None = None  # for auto: index into AUTO candidates per origin
    errors_known: np.ndarray | None = None
    """(n,) past errors each origin's band was calibrated on; below MIN_SAMPLES it was widened instead."""


def actuals(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """(len(origins), horizon) values that followed each origin; NaN past the end of the data."""
    target = origins[:, None] + np.arange(horizon)[None, :]
    return np.where(target < len(values), values[np.minimum(target, len(values) - 1)], np.nan)


def make_model(name: str) -> PointModel:
    try:
        return METHODS[name]()
    except KeyError:
        raise ConfigError(f"unknown forecast method '{name}' (choose from auto, {', '.join(METHODS)})") from None


def origin_grid(last: int, stride: int, first: int = 1) -> np.ndarray:
    """Origins last, last - stride, ... down to ``first``, in increasing order."""
    return np.arange(last, first - 1, -stride)[::-1]


class Roller:
    """One series, one horizon: computes calibrated paths per method at the requested origins. Each method's
    model is prepared (fitted) once per Roller and reused by later calls, the ensemble's members included."""

    def __init__(self, values: np.ndarray, period_s: float, start_s: float, epoch: bool, fit_end: int,
                 horizon: int, quantiles: np.ndarray, stride: int, window_steps: int) -> None:
        self.values, self.fit_end, self.horizon = values, fit_end, horizon
        self.quantiles = np.unique(np.concatenate([[0.5], quantiles]))
        self.stride, self.window = max(int(stride), 1), window_steps
        self.clock = (period_s, start_s, epoch)
        self.day = steps_per_day(period_s)
        self.floor = level_floor(values[:fit_end])
        self._models: dict[str, PointModel] = {}

    def available(self, name: str) -> bool:
        return self.fit_end >= make_model(name).min_history(self.day)

    def model(self, name: str) -> PointModel:
        """``name``'s model prepared on values[:fit_end], made on first use and kept; the ensemble takes its
        members from here, so no model is fitted twice on the same data."""
        if name not in self._models:
            model = Ensemble(prepared=self.model) if name == Ensemble.name else make_model(name)
            model.prepare(self.values, self.fit_end, *self.clock)
            self._models[name] = model
        return self._models[name]

    def paths(self, name: str, origins: np.ndarray) -> Paths:
        """Calibrated paths at ``origins`` (all >= fit_end or the end of the data)."""
        first = make_model(name).min_history(self.day)
        if first >= UNUSABLE:
            raise ConfigError(f"method '{name}' needs bins of 12 h or shorter, for a daily cycle of two or more "
                              f"(these are {self.clock[0]:g} s)")
        if self.fit_end < first:
            raise ConfigError(f"method '{name}' needs at least {first} steps of history (have {self.fit_end})")
        model = self.model(name)
        pool = origin_grid(int(origins.min()) - self.stride, self.stride, first=max(first, 1))
        pool = pool[pool >= int(origins.min()) - self.window - self.horizon]
        pool_point = model.paths(pool, self.horizon) if pool.size else np.empty((0, self.horizon))
        # Origins before the method has enough history get no forecast (indexing back from them would wrap
        # around to the end of the series).
        point = np.full((len(origins), self.horizon), np.nan)
        ready = origins >= first
        if ready.any():
            point[ready] = model.paths(origins[ready], self.horizon)
        all_origins = np.concatenate([pool, origins])
        all_point = np.concatenate([pool_point, point])
        resid = self._residuals(all_origins, all_point)
        out = np.full((len(origins), len(self.quantiles), self.horizon), np.nan)
        leads = np.arange(1, self.horizon + 1)
        target = all_origins[:, None] + leads[None, :] - 1
        errors_known = np.zeros(len(origins), dtype=np.int64)
        for k, o in enumerate(origins):
            if not ready[k]:
                continue
            known = (target < o) & (all_origins[:, None] >= o - self.window)
            offsets = offsets_from_residuals(
                resid[known], np.broadcast_to(leads, resid.shape)[known], self.horizon, self.quantiles
            )
            errors_known[k] = np.isfinite(resid[known]).sum()
            if errors_known[k] < MIN_SAMPLES:
                offsets = widen_offsets(offsets, self.values[max(o - self.window, 0):o], self.quantiles, self.floor)
            out[k] = apply_offsets(point[k], offsets, self.floor)
        return Paths(name, origins, self.quantiles, out, errors_known=errors_known)

    def _residuals(self, origins: np.ndarray, point: np.ndarray) -> np.ndarray:
        return log_ratio(actuals(self.values, origins, self.horizon), point, self.floor)

    def auto(self, origins: np.ndarray, candidates: tuple[str, ...] = AUTO_CANDIDATES) -> Paths:
        """At each origin, the candidate chosen by :func:`_choose` from the WAPE of each calibrated median over
        the trailing window (only forecasts whose actuals were known at that origin count)."""
        names = [c for c in candidates if self.available(c)]
        if not names:
            raise ConfigError("too little history for any forecast method")
        sel_window = self.window * SELECTION_WINDOWS
        lo = max(int(origins.min()) - sel_window - self.horizon, 1)
        past = origin_grid(int(origins.min()) - self.stride, self.stride, first=lo)
        everything = np.concatenate([past, origins])
        runs = [self.paths(n, everything) for n in names]
        mid = int(np.flatnonzero(self.quantiles == 0.5)[0])
        target = everything[:, None] + np.arange(self.horizon)[None, :]
        actual = actuals(self.values, everything, self.horizon)
        errors = [np.abs(actual - r.values[:, mid, :]) for r in runs]
        out = np.full((len(origins), len(self.quantiles), self.horizon), np.nan)
        chosen = np.zeros(len(origins), dtype=np.int64)
        offset = len(past)
        for k, o in enumerate(origins):
            known = (target < o) & (everything[:, None] >= o - sel_window) & np.isfinite(actual)
            scores = [_wape(err[known], actual[known]) for err in errors]
            best = _choose(scores, names, SELECTION_MARGIN)
            chosen[k] = best
            out[k] = runs[best].values[offset + k]
        return Paths("auto", origins, self.quantiles, out, chosen=chosen)


def series_roller(series: RateSeries, fit_end: int, horizon: int, quantiles, window_days: float) -> Roller:
    """A :class:`Roller` over ``series`` with the default origin stride (:func:`default_stride`) and a
    calibration window of ``window_days``; backtests and live forecasts both build theirs here."""
    stride = default_stride(horizon, steps_per_hour(series.period_s))
    return Roller(series.values, series.period_s, series.start_s, series.epoch, fit_end, horizon,
                  np.asarray(quantiles, dtype=float), stride, steps_in_days(window_days, series.period_s))


def _choose(scores: list[float], names: list[str], margin: float) -> int:
    """The combination (``ensemble``) unless a single method beat it by more than ``margin`` over the window;
    without it, the first (simplest) candidate within ``margin`` of the best. Near-ties are treated as
    selection noise, on the premise that switching on noise costs accuracy, with the combination as the
    default. The premise is not established: run with ``SELECTION_MARGIN = 0``, ``python
    benchmarks/forecast_backtest.py --extra`` scored ``auto`` no worse on any of its series and horizons and
    better on three of them when this was written."""
    finite = [i for i, s in enumerate(scores) if np.isfinite(s)]
    if not finite:
        return names.index("ensemble") if "ensemble" in names else names.index(_default(names))
    best = min(finite, key=lambda i: scores[i])
    if "ensemble" in names and np.isfinite(scores[names.index("ensemble")]):
        ens = names.index("ensemble")
        return best if scores[best] < scores[ens] * (1 - margin) else ens
    return next(i for i in finite if scores[i] <= scores[best] * (1 + margin))


def _default(names: list[str]) -> str:
    return "ets" if "ets" in names else names[-1]


def _wape(err: np.ndarray, actual: np.ndarray) -> float:
    """WAPE of the known errors; NaN (not ranked) with fewer than 10 of them, too few to rank methods on, or
    with no traffic."""
    ok = np.isfinite(err)
    denom = np.abs(actual[ok]).sum()
    return float(err[ok].sum() / denom) if ok.sum() >= 10 and denom > 0 else float("nan")
