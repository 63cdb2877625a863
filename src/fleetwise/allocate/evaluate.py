"""Score a schedule on the demand that actually came: cost and the share of demanded requests that found no
capacity, under one spot-interruption model shared by every strategy (common random numbers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from fleetwise.allocate.offers import (
    DEFAULT_COLD_START_S,
    CapacityOffer,
    schedule_cost,
    spot_availability,
    starts,
)


@dataclass
class Schedule:
    """Instances per offer: reserved (constant, with its term) and per-period spot / on-demand counts."""

    name: str
    offers: list[CapacityOffer]
    reserved: dict[tuple[str, str], int]
    spot: np.ndarray  # (O, T)
    on_demand: np.ndarray  # (O, T)

    def reserved_counts(self) -> np.ndarray:
        return np.array([sum(n for (oid, _), n in self.reserved.items() if oid == o.id) for o in self.offers],
                        dtype=float)


@dataclass(frozen=True)
class Evaluation:
    """A strategy's cost and unmet demand on the actual series, or why it does not apply to the offers."""

    name: str
    cost_usd: float  # NaN when not applicable
    cost_by_tier: dict[str, float]
    unmet_demand_fraction: float
    capacity_rps: np.ndarray  # (T,) served capacity after spot losses
    spot_lost_instance_h: float
    reason: str | None = None
    """Why the strategy cannot be built from these offers (e.g. none has a reserved price); None when it can."""

    @classmethod
    def not_applicable(cls, name: str, reason: str) -> Evaluation:
        """A row for a strategy the offers cannot express: no figures, only the reason."""
        return cls(name, float("nan"), {}, float("nan"), np.zeros(0), 0.0, reason)

    @property
    def applicable(self) -> bool:
        """Whether the strategy could be built from the offers (its figures are then real numbers)."""
        return self.reason is None

    def to_dict(self) -> dict:
        figures = self.applicable
        return {"name": self.name, "applicable": figures, "reason": self.reason,
                "cost_usd": self.cost_usd if figures else None, "cost_by_tier": self.cost_by_tier if figures else None,
                "unmet_demand_fraction": self.unmet_demand_fraction if figures else None,
                "spot_lost_instance_h": self.spot_lost_instance_h if figures else None}


def spot_uniforms(n_offers: int, n_periods: int, seed: int = 0) -> np.ndarray:
    """The random numbers behind spot losses, shared by every strategy so that none is luckier."""
    return np.random.default_rng(seed).random((n_offers, n_periods))


def spot_down(schedule: Schedule, cold_start_s: float = DEFAULT_COLD_START_S,
              uniforms: np.ndarray | None = None) -> np.ndarray:
    """(O, T) spot instances down in each period (reclaimed, replacement still starting): Binomial(count,
    1 - availability) drawn by inverse CDF from the shared uniforms (also what the request-level replay leaves
    out of its simulated fleets)."""
    O, T = schedule.spot.shape
    u = uniforms if uniforms is not None else spot_uniforms(O, T)
    down_p = np.array([1 - spot_availability(o.hazard_per_hour, cold_start_s) for o in schedule.offers])
    spot = schedule.spot.astype(np.int64)
    down = binom.ppf(u, spot, down_p[:, None]).astype(np.float64)
    return np.clip(np.nan_to_num(down), 0, spot)  # ppf(0) is -1


def evaluate(schedule: Schedule, demand_rps: np.ndarray, period_h: float, *, cold_start_s: float = DEFAULT_COLD_START_S,
             uniforms: np.ndarray | None = None) -> Evaluation:
    """Cost and unmet demand of a schedule against actual demand.

    Spot: in each period the number of spot instances down (reclaimed, replacement still starting) is
    Binomial(count, 1 - availability) drawn by inverse CDF from shared uniforms. Every instance start pays
    the cold start; reserved instances are paid for every hour.
    """
    offers = schedule.offers
    cap = np.array([o.capacity_rps for o in offers])
    down = spot_down(schedule, cold_start_s, uniforms)
    served = cap @ (schedule.reserved_counts()[:, None] + schedule.on_demand + schedule.spot - down)
    unmet = np.maximum(demand_rps - served, 0.0)
    total = float(np.sum(demand_rps))
    # Every reclaimed instance is replaced: one more start each.
    replacements = np.array([starts(row) for row in down])
    by_tier = schedule_cost(offers, schedule.reserved, schedule.spot, schedule.on_demand, period_h, cold_start_s,
                            extra_spot_starts=replacements)
    return Evaluation(schedule.name, float(sum(by_tier.values())), by_tier,
                      float(unmet.sum() / total) if total > 0 else 0.0, served, float(down.sum() * period_h))
