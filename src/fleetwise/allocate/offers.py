"""What the allocator buys: instance offers with their serving capacity at the SLO and price per tier, and the
spot-availability model that discounts spot capacity for interruptions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleetwise.errors import ConfigError

RESERVED_TERMS = ("reserved_1y", "reserved_3y")
WARNING_S = 120.0  # spot interruption notice (AWS, GCP preemptible 30 s; Azure 30 s): drain starts then
# Library default cold start (boot + model load + engine start) when the caller gives none; the CLI estimates
# one per model (allocate/coldstart.py), and the benchmarks use this value (README, Allocation).
DEFAULT_COLD_START_S = 300.0


@dataclass(frozen=True)
class CapacityOffer:
    """One instance type in one region: requests/s it serves within the SLO and what it costs per tier."""

    id: str
    capacity_rps: float  # replicas per instance x goodput per replica at the SLO
    prices: dict[str, float]  # tier -> USD per instance-hour (on_demand, spot, reserved_1y, reserved_3y)
    hazard_per_hour: float = 0.0  # spot interruption rate per instance-hour
    max_instances: dict[str, int] = field(default_factory=dict)  # tier -> availability cap (absent: none)
    label: str = ""  # the replica configuration behind the capacity
    precision: str | None = None  # of that configuration (for the weight bytes a cold start loads)

    def __post_init__(self) -> None:
        if not self.capacity_rps > 0:
            raise ConfigError(f"offer '{self.id}': capacity must be > 0 req/s")
        if not self.prices:
            raise ConfigError(f"offer '{self.id}' has no prices")
        if self.hazard_per_hour < 0:
            raise ConfigError(f"offer '{self.id}': spot hazard must be >= 0")

    def price(self, tier: str) -> float | None:
        return self.prices.get(tier)

    def cap(self, tier: str) -> float:
        value = self.max_instances.get(tier)
        return float("inf") if value is None else float(value)

    def break_even_utilization(self, term: str) -> float | None:
        """Share of hours an instance must be needed for a reservation to beat on-demand."""
        res, od = self.prices.get(term), self.prices.get("on_demand")
        return res / od if res is not None and od else None


def spot_availability(hazard_per_hour: float, replace_s: float, warning_s: float = WARNING_S) -> float:
    """Long-run share of time a spot slot serves.

    Model: each spot slot alternates exponential up-times (rate = hazard) and a down-time while the
    replacement comes up. The 2-minute notice lets the replacement be requested before the loss, so the
    down-time is the replacement's cold start minus the notice (never negative). Availability of this
    alternating renewal process is 1 / (1 + hazard * down-time). It is the expected discount; correlated mass
    reclaims are handled separately by the spot-share cap and the non-spot floor.
    """
    down_h = max(replace_s - warning_s, 0.0) / 3600.0
    return 1.0 / (1.0 + hazard_per_hour * down_h)


def starts(counts: np.ndarray) -> float:
    """Instances started over a count series beginning from zero: the sum of its increases."""
    return float(np.maximum(np.diff(np.concatenate([[0.0], counts])), 0.0).sum())


def schedule_cost(offers: list[CapacityOffer], reserved: dict[tuple[str, str], int], spot: np.ndarray,
                  on_demand: np.ndarray, period_h: float, cold_start_s: float,
                  extra_spot_starts: np.ndarray | None = None) -> dict[str, float]:
    """USD by tier of a schedule: reserved instances every hour, spot / on-demand running hours, and the cold
    start of every instance started (``extra_spot_starts``: replacements of reclaimed spot, per offer)."""
    T = spot.shape[1]
    lead_h = cold_start_s / 3600
    out = {"reserved": 0.0, "spot": 0.0, "on_demand": 0.0}
    by_id = {o.id: o for o in offers}
    for (oid, term), n in reserved.items():
        out["reserved"] += n * by_id[oid].price(term) * period_h * T
    for i, o in enumerate(offers):
        for tier, counts in (("spot", spot[i]), ("on_demand", on_demand[i])):
            price = o.price(tier)
            if price is None:
                continue
            n_starts = starts(counts) + (float(extra_spot_starts[i]) if tier == "spot" and
                                         extra_spot_starts is not None else 0.0)
            out[tier] += price * (counts.sum() * period_h + n_starts * lead_h)
    return out
