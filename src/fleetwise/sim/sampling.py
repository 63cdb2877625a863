"""How many requests ``optimize --evaluate requests`` simulates and where (a light module: the CLI reads its
defaults at import time; :mod:`fleetwise.sim.evaluate` does the work)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleetwise.errors import ConfigError

DEFAULT_REQUESTS_PER_DAY = 40_000
"""Simulated requests per strategy and day: the simulator runs ~70k requests/s on one core (a static fleet), so
the six strategies of a week's comparison take ~15 s; four windows of 10k each last ~50 s at 200 req/s."""
MAX_REQUESTS_PER_DAY = 1_000_000
"""A million requests per strategy-day take ~20 s each; a week of six strategies would then run for 15 min."""
DEFAULT_WINDOWS_PER_DAY = 4
"""Which periods a day's windows land in is what varies most (measured on ServeGen: the week's attainment of one
schedule moved from 71% with 2 windows a day to 78% with 8); four keep its standard error near 5 points."""
DEFAULT_WARMUP_S = 20.0
"""The empty warm fleet reaches steady batches within ~10-20 s at the loads that matter (measured: at 96% of
capacity, requests of the first 5 s all meet the SLO and those after 20 s mostly do not)."""


@dataclass(frozen=True)
class Sampling:
    """How many requests to simulate and where."""

    requests_per_day: int = DEFAULT_REQUESTS_PER_DAY
    windows_per_day: int = DEFAULT_WINDOWS_PER_DAY
    warmup_s: float = DEFAULT_WARMUP_S
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.windows_per_day <= self.requests_per_day <= MAX_REQUESTS_PER_DAY:
            raise ConfigError(f"request budget must be >= the windows per day (>= 1) and <= "
                              f"{MAX_REQUESTS_PER_DAY:,} requests per day")
        if not (self.warmup_s >= 0 and math.isfinite(self.warmup_s)):
            raise ConfigError("warm-up must be a finite number of seconds >= 0")

    def describe(self) -> str:
        return (f"{self.windows_per_day} windows per day drawn in proportion to demand, <= {self.requests_per_day:,} "
                f"requests per strategy and day, the first min({self.warmup_s:g} s, half a window) not counted")
