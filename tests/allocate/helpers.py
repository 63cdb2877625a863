"""Shared helpers of the allocation tests: offers, clean rules and a brute-force optimum."""

from __future__ import annotations

import itertools
import math

import numpy as np

from fleetwise.allocate.model import AllocationRules
from fleetwise.allocate.offers import CapacityOffer, spot_availability

# No cold starts, no switching penalty, no spot cap, no non-spot floor, exact MIP: total_usd is the objective.
CLEAN = AllocationRules(cold_start_s=0, switch_penalty_h=0, max_spot_share=1, min_nonspot_share=0,
                        mip_rel_gap=0)


def offer(oid: str = "a", capacity: float = 10.0, *, od: float | None = 1.0, spot: float | None = None,
          r1: float | None = None, r3: float | None = None, hazard: float = 0.0, caps: dict | None = None
          ) -> CapacityOffer:
    prices = {k: v for k, v in (("on_demand", od), ("spot", spot), ("reserved_1y", r1), ("reserved_3y", r3))
              if v is not None}
    return CapacityOffer(oid, capacity, prices, hazard, max_instances=dict(caps or {}))


def brute_force(offers: list[CapacityOffer], demand, period_h: float,
                rules: AllocationRules = CLEAN) -> float:
    """The optimal running cost by enumerating every integer count (reservations jointly, then each period).

    Cold starts are not counted: use it with ``cold_start_s=0`` rules (or compare with the MILP objective).
    Returns inf when nothing is feasible.
    """
    demand = np.asarray(demand, dtype=float)
    T = len(demand)
    peak = float(demand.max()) if T else 0.0
    cap = np.array([o.capacity_rps for o in offers])
    avail = np.array([spot_availability(o.hazard_per_hour, rules.cold_start_s) for o in offers])

    def bound(o, tier, a=1.0):
        if o.price(tier) is None or (tier == "spot" and not rules.allow_spot):
            return 0
        n = math.ceil(peak / (o.capacity_rps * a) + 1e-9) + 1
        return int(min(n, o.cap(tier)))

    # reservation choices: (offer index, term, count)
    res_vars = [(i, t) for i, o in enumerate(offers) for t in rules.reserved_terms if o.price(t) is not None]
    res_ranges = [range(bound(offers[i], t) + 1) for i, t in res_vars]
    # per-period choices: spot and on-demand per offer
    per_ranges = []
    for i, o in enumerate(offers):
        per_ranges.append(range(bound(o, "spot", avail[i]) + 1))
        per_ranges.append(range(bound(o, "on_demand") + 1))
    grid = np.array(list(itertools.product(*per_ranges)), dtype=float).reshape(-1, 2 * len(offers))
    spot, od = grid[:, 0::2], grid[:, 1::2]
    spot_cap = spot @ (cap * avail)
    od_cap = od @ cap
    price_s = np.array([o.price("spot") or 0.0 for o in offers])
    price_d = np.array([o.price("on_demand") or 0.0 for o in offers])
    run_cost = (spot @ price_s + od @ price_d) * period_h
    best = math.inf
    for counts in itertools.product(*res_ranges):
        res_cap = sum(n * cap[i] for n, (i, _) in zip(counts, res_vars))
        cost = sum(n * offers[i].price(t) * period_h * T for n, (i, t) in zip(counts, res_vars))
        for d in demand:
            total = res_cap + od_cap + spot_cap
            ok = (total >= d - 1e-9) & (res_cap + od_cap >= rules.min_nonspot_share * d - 1e-9)
            ok &= spot_cap <= rules.max_spot_share * total + 1e-9
            if not ok.any():
                cost = math.inf
                break
            cost += run_cost[ok].min()
        best = min(best, cost)
    return best
