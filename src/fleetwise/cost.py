"""Cost model: what a replica costs per hour in each capacity tier, per token and per month.

cost per token = (USD/hour / 3600) / tokens per second. A replica of ``g`` GPUs runs on an instance
with ``n`` GPUs; ``n // g`` replicas share one instance and idle GPUs are still paid for.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetwise.catalog.records import TIERS, Offer
from fleetwise.errors import ConfigError, InfeasibleError

HOURS_PER_MONTH = 730.0


def replicas_per_instance(offer: Offer, gpus_per_replica: int) -> int:
    """How many replicas of ``gpus_per_replica`` GPUs one instance of the offer hosts (0 if none)."""
    return offer.gpu_count // gpus_per_replica if gpus_per_replica > 0 else 0


def check_tier(tier: str) -> None:
    """Raise a ConfigError naming the valid tiers unless ``tier`` is one."""
    if tier not in TIERS:
        raise ConfigError(f"unknown capacity tier '{tier}' (one of {', '.join(TIERS)})")


def replica_usd_per_hour(offer: Offer, tier: str, gpus_per_replica: int) -> float:
    """USD/hour of one replica on an offer in a capacity tier.

    Raises:
        InfeasibleError: the tier is not offered, or the replica needs more GPUs than one instance has.
    """
    check_tier(tier)
    price = offer.price(tier)
    if price is None:
        raise InfeasibleError(f"{offer.id} has no {tier} price")
    per_instance = replicas_per_instance(offer, gpus_per_replica)
    if per_instance == 0:
        raise InfeasibleError(f"{offer.id} has {offer.gpu_count} GPUs, the replica needs {gpus_per_replica}")
    return price / per_instance


def usd_per_million(usd_per_hour: float, tokens_per_s: float) -> float:
    """USD per 1M tokens at a sustained token rate."""
    if tokens_per_s <= 0:
        return float("inf")
    return usd_per_hour / 3600.0 / tokens_per_s * 1e6


@dataclass(frozen=True)
class CostBreakdown:
    """Cost of serving a load with a number of replicas."""

    usd_per_hour: float  # all replicas, including overhead
    usd_per_1m_output_tokens: float
    usd_per_1m_total_tokens: float
    usd_per_request: float
    usd_per_month: float
    utilization: float  # served load / capacity of the replicas


def serving_cost(
    replica_usd_per_hour: float,
    replicas: int,
    *,
    rate_rps: float,
    mean_isl: float,
    mean_osl: float,
    capacity_rps_per_replica: float,
    overhead_pct: float = 0.0,
) -> CostBreakdown:
    """Cost per token, per request and per month of ``replicas`` replicas serving ``rate_rps``.

    Args:
        overhead_pct: networking, storage and other costs, as a percentage added to the GPU bill.
    """
    if rate_rps <= 0 or replicas <= 0:
        raise ConfigError("rate and replicas must be > 0")
    hourly = replica_usd_per_hour * replicas * (1.0 + overhead_pct / 100.0)
    return CostBreakdown(
        usd_per_hour=hourly,
        usd_per_1m_output_tokens=usd_per_million(hourly, rate_rps * mean_osl),
        usd_per_1m_total_tokens=usd_per_million(hourly, rate_rps * (mean_isl + mean_osl)),
        usd_per_request=hourly / 3600.0 / rate_rps,
        usd_per_month=hourly * HOURS_PER_MONTH,
        utilization=rate_rps / (capacity_rps_per_replica * replicas) if capacity_rps_per_replica > 0 else 1.0,
    )
