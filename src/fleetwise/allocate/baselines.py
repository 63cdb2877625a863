"""The strategies fleetwise is measured against, each producing a :class:`Schedule` from what it could know."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from fleetwise.allocate.evaluate import Evaluation, Schedule
from fleetwise.allocate.offers import DEFAULT_COLD_START_S, CapacityOffer, spot_availability
from fleetwise.errors import NotApplicableError

ALL_ON_DEMAND = "all on-demand (peak)"
ALL_RESERVED = "all reserved (peak)"  # named with its term ("all reserved 1y (peak)") when it applies
REACTIVE = "reactive on-demand"
PERCENTILE = "percentile (P25 res / P75 spot / P99 OD)"
_TIER_WORDS = {"on_demand": "an on-demand", "spot": "a spot", "reserved_1y": "a 1-year reserved",
               "reserved_3y": "a 3-year reserved"}


def _cheapest(offers: list[CapacityOffer], tier: str, strategy: str) -> tuple[int, CapacityOffer]:
    """The offer with the lowest price per req/s of capacity in a tier (NotApplicableError if none prices it)."""
    priced = [(o.price(tier) / o.capacity_rps, i, o) for i, o in enumerate(offers) if o.price(tier) is not None]
    if not priced:
        raise NotApplicableError(strategy, f"no offer has {_TIER_WORDS.get(tier, tier)} price")
    _, i, o = min(priced)
    return i, o


def _count(rps: float, offer: CapacityOffer, availability: float = 1.0) -> int:
    return max(0, math.ceil(rps / (offer.capacity_rps * availability) - 1e-9))


def _empty(offers: list[CapacityOffer], T: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((len(offers), T)), np.zeros((len(offers), T))


def all_on_demand_peak(offers, peak_rps: float, T: int) -> Schedule:
    """Enough on-demand instances for the peak, all the time."""
    i, o = _cheapest(offers, "on_demand", ALL_ON_DEMAND)
    spot, od = _empty(offers, T)
    od[i] = _count(peak_rps, o)
    return Schedule(ALL_ON_DEMAND, offers, {}, spot, od)


def reservation_term(offers, preferred: str = "reserved_1y") -> str | None:
    """The preferred reservation term if any offer has it, else any term some offer has."""
    for term in (preferred, "reserved_1y", "reserved_3y"):
        if any(o.price(term) is not None for o in offers):
            return term
    return None


def all_reserved_peak(offers, peak_rps: float, T: int, term: str = "reserved_1y") -> Schedule:
    """Enough reserved instances for the peak (1-year term, or 3-year if no offer has 1-year); not applicable
    when no offer has a reserved price."""
    term = reservation_term(offers, term)
    if term is None:
        raise NotApplicableError(ALL_RESERVED, "no offer has a reserved price")
    _i, o = _cheapest(offers, term, ALL_RESERVED)
    spot, od = _empty(offers, T)
    return Schedule(f"all reserved {term[-2:]} (peak)", offers, {(o.id, term): _count(peak_rps, o)}, spot, od)


def reactive_on_demand(offers, demand_rps: np.ndarray, lead_steps: int, target_utilization: float = 0.8,
                       history_rps: np.ndarray | None = None) -> Schedule:
    """Scale on current load: the count for period t is sized on the demand observed ``lead_steps + 1``
    periods earlier (decided then, ready after the cold start), at a target utilization."""
    i, o = _cheapest(offers, "on_demand", REACTIVE)
    T = len(demand_rps)
    seen = np.concatenate([history_rps if history_rps is not None else demand_rps[:1], demand_rps])
    offset = len(seen) - T
    spot, od = _empty(offers, T)
    for t in range(T):
        observed = seen[max(offset + t - lead_steps - 1, 0)]
        od[i, t] = _count(observed / target_utilization, o)
    return Schedule(REACTIVE, offers, {}, spot, od)


def percentile_heuristic(offers, history_rps: np.ndarray, T: int, cold_start_s: float = DEFAULT_COLD_START_S,
                         term: str = "reserved_1y") -> Schedule:
    """The classic rule on the history: reserved = P25 of needed instances, spot up to P75, on-demand to P99.

    Offers without a reserved price have no reserved tier: the P25 base then runs on on-demand, so the rule
    keeps a base that no reclaim can take (putting it on spot would make it cheaper than any plan that
    respects the spot-share cap)."""
    term = reservation_term(offers, term)
    p25, p75, p99 = np.percentile(history_rps, [25, 75, 99])
    i_d, do = _cheapest(offers, "on_demand", PERCENTILE)
    base = _cheapest(offers, term, PERCENTILE)[1] if term is not None else do
    n_base = _count(p25, base)
    base_rps = n_base * base.capacity_rps
    spot, od = _empty(offers, T)
    try:
        i_s, so = _cheapest(offers, "spot", PERCENTILE)
        spot[i_s] = _count(max(p75 - base_rps, 0), so, spot_availability(so.hazard_per_hour, cold_start_s))
        spot_rps = spot[i_s, 0] * so.capacity_rps * spot_availability(so.hazard_per_hour, cold_start_s)
    except NotApplicableError:  # no spot prices: on-demand covers up to P99
        spot_rps = 0.0
    od[i_d] = _count(max(p99 - base_rps - spot_rps, 0), do) + (n_base if term is None else 0)
    return Schedule(PERCENTILE, offers, {(base.id, term): n_base} if term is not None and n_base else {}, spot, od)


def score_baselines(builders: Iterable[Callable[[], Schedule]], score: Callable[[Schedule], Evaluation]
                    ) -> tuple[list[Evaluation], list[Schedule]]:
    """Build and score each baseline; one the offers cannot express becomes a not-applicable row instead of
    stopping the comparison. Returns the rows (in order) and the schedules that were built."""
    rows, schedules = [], []
    for build in builders:
        try:
            schedule = build()
        except NotApplicableError as exc:
            rows.append(Evaluation.not_applicable(exc.strategy, exc.reason))
            continue
        rows.append(score(schedule))
        schedules.append(schedule)
    return rows, schedules
