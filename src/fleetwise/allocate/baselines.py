"""The strategies fleetwise is measured against, each producing a :class:`Schedule` from what it could know."""

from __future__ import annotations

import math

import numpy as np

from fleetwise.allocate.evaluate import Schedule
from fleetwise.allocate.offers import DEFAULT_COLD_START_S, CapacityOffer, spot_availability
from fleetwise.errors import InfeasibleError


def _cheapest(offers: list[CapacityOffer], tier: str) -> tuple[int, CapacityOffer]:
    """The offer with the lowest price per req/s of capacity in a tier."""
    priced = [(o.price(tier) / o.capacity_rps, i, o) for i, o in enumerate(offers) if o.price(tier) is not None]
    if not priced:
        raise InfeasibleError(f"no offer has a {tier} price")
    _, i, o = min(priced)
    return i, o


def _count(rps: float, offer: CapacityOffer, availability: float = 1.0) -> int:
    return max(0, math.ceil(rps / (offer.capacity_rps * availability) - 1e-9))


def _empty(offers: list[CapacityOffer], T: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((len(offers), T)), np.zeros((len(offers), T))


def all_on_demand_peak(offers, peak_rps: float, T: int) -> Schedule:
    """Enough on-demand instances for the peak, all the time."""
    i, o = _cheapest(offers, "on_demand")
    spot, od = _empty(offers, T)
    od[i] = _count(peak_rps, o)
    return Schedule("all on-demand (peak)", offers, {}, spot, od)


def reservation_term(offers, preferred: str = "reserved_1y") -> str | None:
    """The preferred reservation term if any offer has it, else any term some offer has."""
    for term in (preferred, "reserved_1y", "reserved_3y"):
        if any(o.price(term) is not None for o in offers):
            return term
    return None


def all_reserved_peak(offers, peak_rps: float, T: int, term: str = "reserved_1y") -> Schedule:
    """Enough reserved instances for the peak (1-year term, or 3-year if no offer has 1-year)."""
    term = reservation_term(offers, term) or term
    i, o = _cheapest(offers, term)
    spot, od = _empty(offers, T)
    return Schedule(f"all reserved {term[-2:]} (peak)", offers, {(o.id, term): _count(peak_rps, o)}, spot, od)


def reactive_on_demand(offers, demand_rps: np.ndarray, lead_steps: int, target_utilization: float = 0.8,
                       history_rps: np.ndarray | None = None) -> Schedule:
    """Scale on current load: the count for period t is sized on the demand observed ``lead_steps + 1``
    periods earlier (decided then, ready after the cold start), at a target utilization."""
    i, o = _cheapest(offers, "on_demand")
    T = len(demand_rps)
    seen = np.concatenate([history_rps if history_rps is not None else demand_rps[:1], demand_rps])
    offset = len(seen) - T
    spot, od = _empty(offers, T)
    for t in range(T):
        observed = seen[max(offset + t - lead_steps - 1, 0)]
        od[i, t] = _count(observed / target_utilization, o)
    return Schedule("reactive on-demand", offers, {}, spot, od)


def percentile_heuristic(offers, history_rps: np.ndarray, T: int, cold_start_s: float = DEFAULT_COLD_START_S,
                         term: str = "reserved_1y") -> Schedule:
    """The classic rule on the history: reserved = P25 of needed instances, spot up to P75, on-demand to P99."""
    term = reservation_term(offers, term) or term
    ir, res = _cheapest(offers, term)
    p25, p75, p99 = np.percentile(history_rps, [25, 75, 99])
    n_res = _count(p25, res)
    spot, od = _empty(offers, T)
    try:
        i_s, so = _cheapest(offers, "spot")
        spot[i_s] = _count(max(p75 - n_res * res.capacity_rps, 0),
                           so, spot_availability(so.hazard_per_hour, cold_start_s))
        spot_rps = spot[i_s, 0] * so.capacity_rps * spot_availability(so.hazard_per_hour, cold_start_s)
    except InfeasibleError:
        spot_rps = 0.0
    i_d, do = _cheapest(offers, "on_demand")
    od[i_d] = _count(max(p99 - n_res * res.capacity_rps - spot_rps, 0), do)
    return Schedule("percentile (P25 res / P75 spot / P99 OD)", offers, {(res.id, term): n_res} if n_res else {},
                    spot, od)
