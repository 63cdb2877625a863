"""Capacity offers from a plan: for each instance offer, the replica configuration that gives the most
requests/s per on-demand dollar within the SLO, and the instance's capacity at that goodput."""

from __future__ import annotations

from fleetwise.allocate.offers import CapacityOffer
from fleetwise.catalog import load_catalog
from fleetwise.cost import replicas_per_instance
from fleetwise.errors import InfeasibleError
from fleetwise.plan.search import PlanResult


def offers_from_plan(result: PlanResult, top: int = 6, catalog: str | None = None,
                     max_instances: dict[str, int] | None = None) -> list[CapacityOffer]:
    """The ``top`` instance offers with the lowest best-tier price per req/s of capacity; ``max_instances``
    (tier -> count) caps what each offer can supply in a tier (e.g. a spot pool's availability)."""
    cat = load_catalog(catalog if catalog is not None else result.request.catalog)
    best: dict[str, CapacityOffer] = {}
    for c in result.candidates:
        offer = cat.offer(c.offer)
        per_instance = replicas_per_instance(offer, c.tp)
        capacity = c.goodput_rps * per_instance
        if capacity <= 0:
            continue
        current = best.get(offer.id)
        if current is None or capacity > current.capacity_rps:
            best[offer.id] = CapacityOffer(
                offer.id, capacity, dict(offer.price_usd_per_hour), offer.hazard_per_hour or 0.0,
                max_instances=dict(max_instances or {}), precision=c.precision,
                label=f"{c.label} x{per_instance} per instance ({offer.instance_type}, {offer.region})")
    if not best:
        raise InfeasibleError("no instance offer can serve the workload within the SLO")
    ranked = sorted(best.values(), key=lambda o: min(o.prices.values()) / o.capacity_rps)
    return ranked[:top]
