"""Rolling-origin backtests: forecast from many origins after a warm-up and score against what happened."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.forecast.models import default_stride  # noqa: F401 (re-exported: importable from here)
from fleetwise.forecast.rolling import AUTO_CANDIDATES, Paths, actuals, series_roller
from fleetwise.traffic.records import RateSeries, steps_in_days

DEFAULT_QUANTILES = (0.5, 0.9, 0.95)
DEFAULT_WINDOW_DAYS = 7.0


@dataclass(frozen=True)
class Score:
    """Accuracy of one method at one horizon over the evaluation origins."""

    method: str
    horizon_steps: int
    folds: int
    wape: float
    mape: float
    pinball: dict[float, float]
    coverage: dict[float, float]
    chosen: dict[str, int] = field(default_factory=dict)  # auto: how often each method was picked

    @property
    def under_provision(self) -> dict[float, float]:
        """Share of forecast periods where the actual exceeded the quantile (1 - coverage)."""
        return {q: 1 - c for q, c in self.coverage.items()}

    def to_dict(self) -> dict:
        key = lambda q: f"{q:g}"
        return {
            "method": self.method, "horizon_steps": self.horizon_steps, "folds": self.folds, "wape": self.wape,
            "mape": self.mape, "pinball": {key(q): v for q, v in self.pinball.items()},
            "coverage": {key(q): v for q, v in self.coverage.items()},
            "under_provision": {key(q): v for q, v in self.under_provision.items()},
            **({"chosen": self.chosen} if self.chosen else {}),
        }


def score(paths: Paths, values: np.ndarray, quantiles: tuple[float, ...]) -> Score:
    """WAPE/MAPE of the median, pinball loss and coverage of each quantile, over every (origin, lead)."""
    horizon = paths.values.shape[2]
    actual = actuals(values, paths.origins, horizon)
    qi = {float(q): int(i) for i, q in enumerate(paths.quantiles)}
    median = paths.values[:, qi[0.5], :]
    ok = np.isfinite(actual) & np.isfinite(median)
    if not ok.any():
        raise ConfigError("no forecast could be scored (too little data after the warm-up)")
    y, f = actual[ok], median[ok]
    pos = y > 0
    pinball, coverage = {}, {}
    for q in quantiles:
        fq = paths.values[:, qi[float(q)], :][ok]
        diff = y - fq
        pinball[q] = float(np.mean(np.maximum(q * diff, (q - 1) * diff)))
        coverage[q] = float(np.mean(y <= fq))
    return Score(
        method=paths.method, horizon_steps=horizon, folds=len(paths.origins),
        wape=float(np.abs(y - f).sum() / max(np.abs(y).sum(), 1e-12)),
        mape=float(np.mean(np.abs(y[pos] - f[pos]) / y[pos])) if pos.any() else float("nan"),
        pinball=pinball, coverage=coverage,
    )


def eval_origins(n: int, start: int, horizon: int, stride: int, folds: int | None) -> np.ndarray:
    """Origins from ``start`` on whose whole horizon lies inside the data; ``folds`` spaces N evenly."""
    last = n - horizon
    if last < start:
        raise ConfigError(
            f"no room to backtest: {n} steps, warm-up {start}, horizon {horizon} (need more data or less history)"
        )
    if folds:
        return np.unique(np.linspace(start, last, folds).round().astype(np.int64))
    return np.arange(start, last + 1, stride)


def backtest(
    series: RateSeries, horizon_steps: int, *, methods: tuple[str, ...] = ("auto",),
    quantiles: tuple[float, ...] = DEFAULT_QUANTILES, history_days: float = 7.0, folds: int | None = None,
    window_days: float = DEFAULT_WINDOW_DAYS, candidates: tuple[str, ...] = AUTO_CANDIDATES,
) -> list[Score]:
    """Score each method at one horizon: parameters fitted on the first ``history_days``, then forecasts
    rolled forward origin by origin with calibration from errors already observed at each origin."""
    if horizon_steps < 1:
        raise ConfigError(f"horizon must be at least one step (got {horizon_steps})")
    _check_quantiles(quantiles)
    start = steps_in_days(history_days, series.period_s)
    roller = series_roller(series, start, horizon_steps, quantiles, window_days)
    origins = eval_origins(len(series), start, horizon_steps, roller.stride, folds)
    out = []
    for name in methods:
        if name == "auto":
            paths = roller.auto(origins, candidates)
            s = score(paths, series.values, quantiles)
            names = [c for c in candidates if roller.available(c)]
            counts = np.bincount(paths.chosen, minlength=len(names))
            out.append(replace(s, chosen={names[i]: int(c) for i, c in enumerate(counts) if c}))
        elif roller.available(name):
            out.append(score(roller.paths(name, origins), series.values, quantiles))
    return out


def _check_quantiles(quantiles: tuple[float, ...]) -> None:
    for q in quantiles:
        if not 0 < q < 1:
            raise ConfigError(f"quantiles must lie strictly between 0 and 1 (got {q:g})")
