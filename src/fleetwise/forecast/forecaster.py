"""The ``Forecaster`` interface and its one implementation family: a point model (or the automatic choice)
with conformally calibrated quantiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.forecast.backtest import DEFAULT_QUANTILES, DEFAULT_WINDOW_DAYS, _check_quantiles
from fleetwise.forecast.calibration import MIN_SAMPLES
from fleetwise.forecast.rolling import AUTO_CANDIDATES, Roller, series_roller
from fleetwise.traffic.records import RateSeries


@dataclass(frozen=True)
class Forecast:
    """Quantile forecasts of the rate (req/s) for the bins after the history."""

    method: str
    start_s: float
    period_s: float
    epoch: bool
    quantiles: tuple[float, ...]
    values: np.ndarray  # (len(quantiles), horizon) req/s
    warnings: tuple[str, ...] = ()
    """What makes the forecast less certain than it looks (a band not calibrated on past errors)."""

    @property
    def starts(self) -> np.ndarray:
        return self.start_s + self.period_s * np.arange(self.values.shape[1])

    def quantile(self, q: float) -> np.ndarray:
        for i, have in enumerate(self.quantiles):
            if abs(have - q) < 1e-9:
                return self.values[i]
        raise ConfigError(f"quantile {q:g} was not forecast (have {', '.join(f'{x:g}' for x in self.quantiles)})")

    def records(self) -> list[dict]:
        """One dict per bin: time (ISO-8601 UTC if the series had dates, else seconds) and q<level> values."""
        times = self.starts
        if self.epoch:
            labels = np.datetime_as_string(times.astype("datetime64[s]"), unit="s").tolist()
            labels = [t + "Z" for t in labels]
        else:
            labels = [float(t) for t in times]
        return [
            {"time": label, **{f"q{q:g}": float(self.values[i, k]) for i, q in enumerate(self.quantiles)}}
            for k, label in enumerate(labels)
        ]


class Forecaster(Protocol):
    """Fit on a history, then predict quantiles for the next ``horizon_steps`` bins."""

    name: str

    def fit(self, series: RateSeries) -> Forecaster: ...

    def predict_quantiles(self, horizon_steps: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast: ...


class QuantileForecaster:
    """A method from :data:`fleetwise.forecast.models.METHODS` (or ``auto``) with quantiles calibrated on
    its own errors over the last ``window_days`` of the history, exactly as in the backtests."""

    def __init__(self, method: str = "auto", window_days: float = DEFAULT_WINDOW_DAYS,
                 candidates: tuple[str, ...] = AUTO_CANDIDATES) -> None:
        self.name = method
        self.window_days = window_days
        self.candidates = candidates
        self._series: RateSeries | None = None
        self.chosen: str | None = None

    def fit(self, series: RateSeries) -> QuantileForecaster:
        finite = np.isfinite(series.values)
        if finite.sum() < 2:
            raise ConfigError("the series has fewer than two known values; nothing to forecast from",
                              file=series.report.file)
        last = int(np.flatnonzero(finite)[-1]) + 1  # a missing tail is not history
        self._series = series.slice(0, last)
        return self

    def predict_quantiles(self, horizon_steps: int, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> Forecast:
        if self._series is None:
            raise ConfigError("fit() the forecaster before predicting")
        if horizon_steps < 1:
            raise ConfigError(f"horizon must be at least one step (got {horizon_steps})")
        qs = tuple(float(q) for q in quantiles)
        _check_quantiles(qs)
        s = self._series
        n = len(s)

        @cache  # one Roller (and so one fit of each model) per fit_end
        def roller(fit_end: int) -> Roller:
            return series_roller(s, fit_end, horizon_steps, qs, self.window_days)

        origin = np.array([n])
        self.chosen = self.name
        if self.name == "auto":
            # Rank methods on forecasts made with parameters fitted before the ranking window, as in a
            # backtest (in-sample fits would flatter the fitted models); then refit the winner on everything.
            day = s.steps_per_day
            ranker = roller(max(n - roller(n).window, min(n, 7 * day)))
            names = [c for c in self.candidates if ranker.available(c)]
            if not names:
                ranker = roller(n)
                names = [c for c in self.candidates if ranker.available(c)]
            self.chosen = names[int(ranker.auto(origin, self.candidates).chosen[0])]
        paths = roller(n).paths(self.chosen, origin)
        keep = [int(np.flatnonzero(np.isclose(paths.quantiles, q))[0]) for q in qs]
        errors = int(paths.errors_known[0]) if paths.errors_known is not None else MIN_SAMPLES
        warnings = (_uncalibrated(errors),) if errors < MIN_SAMPLES and any(q != 0.5 for q in qs) else ()
        return Forecast(self.chosen, s.end_s, s.period_s, s.epoch, qs, paths.values[0][keep], warnings)


def _uncalibrated(errors: int) -> str:
    return (f"too little history for a calibrated band: {errors} past forecast error(s) to calibrate the quantiles "
            f"on, {MIN_SAMPLES} needed; the quantiles other than 0.5 are widened to the history's own spread "
            "around its median instead (the wider of the two), not calibrated - give more history (a day or more)")
