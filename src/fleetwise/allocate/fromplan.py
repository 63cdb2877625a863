"""Capacity offers from a plan: for each instance offer, the replica configuration that gives the most
requests/s per on-demand dollar within the SLO, and the instance's capacity at that goodput."""

from __future__ import annotations

from fleetwise.allocate.offers import CapacityOffer
from fleetwise.catalog import load_catalog
from fleetwise.cost import replicas_per_instance
from fleetwise.errors import InfeasibleError
from fleetwise.plan.search import PlanResult

# An allocation follows demand in whole instances: offers of a third of the mean rate or more round every period
# up by a large step, and the margin a forecast quantile adds comes in those steps too. A quarter of the mean
# rate keeps the rounding of a fine-grained offer under ~12% of the demand on average.
FINE_FRACTION = 0.25


def offers_from_plan(result: PlanResult, top: int = 6, catalog: str | None = None,
                     max_instances: dict[str, int] | None = None,
                     fine_fraction: float = FINE_FRACTION) -> list[CapacityOffer]:
    """The ``top`` instance offers with the lowest best-tier price per req/s of capacity, plus, for each tier,
    the cheapest offer per req/s among those no larger than ``fine_fraction`` x the plan's request rate when
    the ``top`` hold none that small (0 disables): ranked on price alone, the top offers can all be large
    nodes that follow demand only in big steps. ``max_instances`` (tier -> count) caps what each offer can
    supply in a tier (e.g. a spot pool's availability)."""
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
    chosen = ranked[:top]
    limit = fine_fraction * result.request.workload.rate_rps
    small = [o for o in ranked if o.capacity_rps <= limit]
    if small and not any(o.capacity_rps <= limit for o in chosen):
        for tier in sorted({t for o in small for t in o.prices}):
            pick = min((o for o in small if tier in o.prices), key=lambda o: o.prices[tier] / o.capacity_rps)
            if pick not in chosen:
                chosen.append(pick)
    return chosen
