"""Seeded synthetic traffic: daily and weekly seasonality, trend, correlated noise and bursts.

Used as the built-in default workload and in tests, where the true shape is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.traffic.convert import MAX_BINS, series_to_trace
from fleetwise.traffic.lengths import CHAT_INPUT, CHAT_OUTPUT, EmpiricalLengths, LengthDist
from fleetwise.traffic.records import (
    SECONDS_PER_DAY,
    RateSeries,
    RequestTrace,
    steps_in_days,
    time_of_day_s,
    weekday,
)

MAX_BURSTS_PER_DAY = 1440  # one a minute: more is noise, not bursts (and each costs a pass over the series)


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape of a synthetic rate series (rates in requests per second)."""

    days: float = 14.0
    period_s: float = 300.0
    base_rps: float = 20.0
    daily_amplitude: float = 0.5
    """Peak-to-mean swing of the day: rate x (1 + a cos(...)), peaking at ``peak_hour``."""
    peak_hour: float = 14.0
    weekend_factor: float = 0.7
    """Rate multiplier on days 5 and 6 of the week (Saturday, Sunday for epoch series)."""
    trend_per_day: float = 0.0
    """Relative growth per day (0.01 = +1 %/day, compounded)."""
    noise_cv: float = 0.1
    """Multiplicative noise with this CV, AR(1)-correlated over ``noise_corr_s``."""
    noise_corr_s: float = 1800.0
    bursts_per_day: float = 1.0
    burst_multiplier: float = 2.0
    burst_minutes: float = 20.0
    start_s: float = 0.0
    epoch: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "epoch" and not math.isfinite(value):
                raise ConfigError(f"synthetic '{f.name}' must be a finite number (got {value})")
        for name in ("days", "period_s", "base_rps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"synthetic '{name}' must be positive (got {getattr(self, name)})")
        if not 0 <= self.daily_amplitude < 1:
            raise ConfigError(f"daily_amplitude must be in [0, 1) (got {self.daily_amplitude})")
        checks = (
            (0 <= self.peak_hour < 24, f"peak_hour must be an hour of the day, in [0, 24) (got {self.peak_hour:g})"),
            (self.noise_cv >= 0, "noise_cv must be >= 0"),
            (self.noise_corr_s > 0, "noise_corr_s must be > 0"),
            (self.weekend_factor > 0, "weekend_factor must be > 0"),
            (self.burst_multiplier > 0, "burst_multiplier must be > 0"),
            (self.bursts_per_day >= 0, "bursts_per_day must be >= 0"),
            (self.burst_minutes >= 0, "burst_minutes must be >= 0"),
            (self.trend_per_day > -1, "trend_per_day must be > -1 (a fall of 100%/day or more is not a trend)"),
            (self.days * SECONDS_PER_DAY >= self.period_s, "the series must span at least one period"),
            (self.days * SECONDS_PER_DAY / self.period_s <= MAX_BINS,
             f"{self.days:g} days of {self.period_s:g} s bins is more than {MAX_BINS:,} bins"),
            (self.bursts_per_day <= MAX_BURSTS_PER_DAY,
             f"bursts_per_day must be <= {MAX_BURSTS_PER_DAY} (one a minute; got {self.bursts_per_day:g})"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"synthetic spec: {message}")

    def expected(self, times_s: np.ndarray) -> np.ndarray:
        """The noise- and burst-free rate at the given times (the 'truth' a forecaster should recover)."""
        hours = time_of_day_s(times_s) / 3600.0
        daily = 1 + self.daily_amplitude * np.cos(2 * np.pi * (hours - self.peak_hour) / 24)
        weekly = np.where(weekday(times_s, self.epoch) >= 5, self.weekend_factor, 1.0)
        trend = (1 + self.trend_per_day) ** ((times_s - self.start_s) / SECONDS_PER_DAY)
        return self.base_rps * daily * weekly * trend


def synthetic_series(spec: SyntheticSpec = SyntheticSpec(), seed: int = 0) -> RateSeries:
    """A rate series following ``spec`` with seeded noise and bursts."""
    rng = np.random.default_rng(seed)
    n = steps_in_days(spec.days, spec.period_s)
    t = spec.start_s + spec.period_s * (np.arange(n) + 0.5)
    rate = spec.expected(t) * _noise(n, spec, rng) * _bursts(t, spec, rng)
    return RateSeries(spec.start_s, spec.period_s, rate, epoch=spec.epoch, source=f"synthetic(seed={seed})")


def _noise(n: int, spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    if spec.noise_cv == 0:
        return np.ones(n)
    rho = float(np.exp(-spec.period_s / spec.noise_corr_s))
    sigma = np.sqrt(np.log1p(spec.noise_cv**2))
    # AR(1) with unit stationary variance, via scipy's IIR filter instead of a Python loop.
    from scipy.signal import lfilter

    eps = rng.standard_normal(n) * np.sqrt(1 - rho * rho)
    eps[0] = rng.standard_normal()
    z = lfilter([1.0], [1.0, -rho], eps)
    return np.exp(sigma * z - sigma * sigma / 2)


def _bursts(t: np.ndarray, spec: SyntheticSpec, rng: np.random.Generator) -> np.ndarray:
    out = np.ones(len(t))
    k = rng.poisson(spec.bursts_per_day * spec.days)
    for start in rng.uniform(t[0], t[-1], k):
        out[(t >= start) & (t < start + spec.burst_minutes * 60)] *= spec.burst_multiplier
    return out


# The built-in default workload: a 14-day chat service with the Azure conversation trace's lengths.
DEFAULT_SPEC = SyntheticSpec()
DEFAULT_LENGTHS = (CHAT_INPUT, CHAT_OUTPUT)


def synthetic_trace(
    spec: SyntheticSpec = DEFAULT_SPEC,
    lengths: EmpiricalLengths | tuple[LengthDist, LengthDist] = DEFAULT_LENGTHS,
    *, seed: int = 0, cv: float = 1.0,
) -> RequestTrace:
    """Requests sampled from a synthetic series (``cv`` > 1 for burstier arrivals than Poisson)."""
    return series_to_trace(synthetic_series(spec, seed), lengths, seed=seed + 1, cv=cv)
