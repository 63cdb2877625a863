"""The allocation MILP: reserved counts per offer and term (constant), spot and on-demand counts per offer and
period (integer), minimizing cost subject to capacity >= demand, a spot-share cap, a non-spot floor,
availability caps, cold-start cost and (for rolling steps) damping. Solved by HiGHS through SciPy."""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from fleetwise.allocate.offers import (
    DEFAULT_COLD_START_S,
    RESERVED_TERMS,
    CapacityOffer,
    schedule_cost,
    spot_availability,
)
from fleetwise.cost import HOURS_PER_MONTH
from fleetwise.errors import ConfigError, InfeasibleError, SolverError


@dataclass(frozen=True)
class AllocationRules:
    """Knobs of the allocation problem, with the defaults a cautious operator would pick."""

    max_spot_share: float = 0.7
    """Spot may provide at most this share of the (discounted) capacity in any period."""
    min_nonspot_share: float = 0.3
    """Reserved + on-demand alone must cover this share of demand: a mass reclaim degrades, never zeroes."""
    cold_start_s: float = DEFAULT_COLD_START_S
    """Instance boot plus model load; paid but not serving, and the spot down-time after a reclaim."""
    switch_penalty_h: float = 0.25
    """Extra instance-hours charged per start, so the plan does not churn between instance types."""
    reserved_terms: tuple[str, ...] = RESERVED_TERMS
    allow_spot: bool = True
    mip_rel_gap: float = 0.004
    time_limit_s: float = 20.0

    def __post_init__(self) -> None:
        if not 0 <= self.max_spot_share <= 1 or not 0 <= self.min_nonspot_share <= 1:
            raise ConfigError("spot share cap and non-spot floor must lie in [0, 1]")
        if self.cold_start_s < 0 or self.switch_penalty_h < 0:
            raise ConfigError("cold start and switching penalty must be >= 0")
        for term in self.reserved_terms:
            if term not in RESERVED_TERMS:
                raise ConfigError(f"unknown reservation term '{term}' (one of {', '.join(RESERVED_TERMS)})")


@dataclass(frozen=True)
class Damping:
    """Rolling-step limits: per offer and tier, at most ``up`` more / ``down`` fewer instances per step."""

    up: int = 2
    down: int = 1
    initial_spot: np.ndarray | None = None  # (O,) counts running now
    initial_on_demand: np.ndarray | None = None
    no_scale_down: np.ndarray | None = None  # (O, 2) bool: offer/tier in scale-down cooldown (spot, on-demand)


@dataclass
class Allocation:
    """A solved allocation: counts, costs and solver facts."""

    offers: list[CapacityOffer]
    period_h: float
    demand_rps: np.ndarray
    reserved: dict[tuple[str, str], int]  # (offer id, term) -> count
    spot: np.ndarray  # (O, T)
    on_demand: np.ndarray  # (O, T)
    cost_usd: dict[str, float]  # tier -> USD over the horizon (incl. cold starts)
    shortfall_rps: np.ndarray  # (T,) capacity missing (only with soft demand)
    gap: float
    status: str
    solve_s: float
    availability: np.ndarray = field(default_factory=lambda: np.ones(0))
    lower_bound_usd: float = float("nan")  # the solver's proven bound on the optimum

    @property
    def total_usd(self) -> float:
        return float(sum(self.cost_usd.values()))

    @property
    def horizon_h(self) -> float:
        return self.period_h * len(self.demand_rps)

    def reserved_counts(self) -> np.ndarray:
        """(O,) reserved instances per offer, all terms together."""
        out = np.zeros(len(self.offers))
        for i, o in enumerate(self.offers):
            out[i] = sum(c for (oid, _), c in self.reserved.items() if oid == o.id)
        return out

    def capacity_rps(self) -> np.ndarray:
        caps = np.array([o.capacity_rps for o in self.offers])
        res = self.reserved_counts()
        return caps @ (res[:, None] + self.on_demand + self.availability[:, None] * self.spot)

    def monthly_usd(self) -> dict[str, float]:
        scale = HOURS_PER_MONTH / self.horizon_h
        return {k: v * scale for k, v in self.cost_usd.items()}


class _Index:
    """Column layout of the MILP."""

    def __init__(self, n_offers: int, n_periods: int, terms: list[tuple[int, str]], soft: bool,
                 per_offer_starts: bool) -> None:
        self.O, self.T = n_offers, n_periods
        self.terms = terms  # (offer index, term) pairs that are decision variables
        starts = n_offers * n_periods if per_offer_starts else 0
        self.s0 = len(terms)
        self.d0 = self.s0 + n_offers * n_periods
        self.us0 = self.d0 + n_offers * n_periods
        self.ud0 = self.us0 + starts
        self.short0 = self.ud0 + starts
        self.excess0 = self.short0 + (n_periods if soft else 0)  # spot above its share cap (soft mode)
        self.n = self.excess0 + (n_periods if soft else 0)

    def s(self, o, t):
        return self.s0 + o * self.T + t

    def d(self, o, t):
        return self.d0 + o * self.T + t


def solve(
    offers: list[CapacityOffer], demand_rps: np.ndarray, period_h: float,
    rules: AllocationRules = AllocationRules(), *,
    reserved_fixed: dict[tuple[str, str], int] | None = None, damping: Damping | None = None,
    soft_demand_penalty: float | None = None, relax_counts: bool = False,
) -> Allocation:
    """Cheapest allocation covering ``demand_rps`` (req/s per period) with the rules' constraints.

    ``reserved_fixed`` fixes reservations (rolling operation); ``soft_demand_penalty`` (USD per req/s-hour)
    lets capacity fall short at that price instead of failing; ``damping`` adds per-step limits;
    ``relax_counts`` makes spot / on-demand counts continuous (reservations stay integer): a relaxation
    whose optimum is a lower bound on the integer problem.
    """
    demand = np.asarray(demand_rps, dtype=np.float64)
    if not offers:
        raise InfeasibleError("no instance offers to allocate")
    if demand.ndim != 1 or demand.size == 0 or not np.all(np.isfinite(demand)) or np.any(demand < 0):
        raise ConfigError("demand must be a non-empty series of finite, non-negative req/s values")
    if period_h <= 0:
        raise ConfigError("period length must be > 0")
    start = time.perf_counter()
    O, T = len(offers), len(demand)
    cap = np.array([o.capacity_rps for o in offers])
    avail = np.array([spot_availability(o.hazard_per_hour, rules.cold_start_s) for o in offers])
    fixed = reserved_fixed or {}
    terms = [] if reserved_fixed is not None else [
        (i, t) for i, o in enumerate(offers) for t in rules.reserved_terms if o.price(t) is not None]
    res_fixed = np.array([sum(c for (oid, _), c in fixed.items() if oid == o.id) for o in offers], dtype=float)
    soft = soft_demand_penalty is not None
    if not soft:
        _check_feasible(offers, demand, cap, avail, rules)
    # Cold-start cost is modelled per offer in rolling steps (few periods, where churn matters). The long
    # planning problem leaves it out: start-up terms make HiGHS' primal heuristics stall, and dropping a
    # non-negative cost keeps the solver's bound a valid lower bound for the full cost, which is computed
    # exactly afterwards (allocation_cost) and compared with that bound for the reported gap.
    per_offer = damping is not None
    ix = _Index(O, T, terms, soft, per_offer)
    c = np.zeros(ix.n)
    lb, ub = np.zeros(ix.n), np.full(ix.n, np.inf)
    integrality = np.zeros(ix.n)
    integrality[: ix.s0 if relax_counts else ix.us0] = 1
    lead_h = rules.cold_start_s / 3600 + rules.switch_penalty_h
    for k, (i, term) in enumerate(terms):
        c[k] = offers[i].price(term) * period_h * T
        ub[k] = offers[i].cap(term)
    for i, o in enumerate(offers):
        for tier, count0, start0 in (("spot", ix.s0, ix.us0), ("on_demand", ix.d0, ix.ud0)):
            price = o.price(tier) if tier != "spot" or rules.allow_spot else None
            counts = slice(count0 + i * T, count0 + (i + 1) * T)
            if price is None:
                ub[counts] = 0
                continue
            c[counts] = price * period_h
            ub[counts] = o.cap(tier)
            if per_offer:
                c[start0 + i * T : start0 + (i + 1) * T] = price * lead_h
    if soft:
        c[ix.short0 : ix.excess0] = soft_demand_penalty * period_h
        c[ix.excess0 :] = soft_demand_penalty * period_h
    rows, cols, vals, lo, hi = [], [], [], [], []
    row = 0

    def add(r_cols, r_vals, low, high):
        nonlocal row
        rows.extend([row] * len(r_cols))
        cols.extend(r_cols)
        vals.extend(r_vals)
        lo.append(low)
        hi.append(high)
        row += 1

    res_cap_const = float(cap @ res_fixed)
    phi, beta = rules.max_spot_share, rules.min_nonspot_share
    rc = list(range(len(terms)))  # reservation columns and their capacities: the same every period
    rv = [cap[terms[k][0]] for k in rc]
    for t in range(T):
        dc = [ix.d(i, t) for i in range(O)]
        sc = [ix.s(i, t) for i in range(O)]
        # cover: reserved + on-demand + discounted spot (+ shortfall) >= demand
        add(rc + dc + sc + ([ix.short0 + t] if soft else []),
            rv + list(cap) + list(cap * avail) + ([1.0] if soft else []), demand[t] - res_cap_const, np.inf)
        if phi < 1:
            # In soft mode (rolling steps) a running fleet may start above the cap: the excess is priced.
            add(rc + dc + sc + ([ix.excess0 + t] if soft else []),
                [-phi * v for v in rv] + list(-phi * cap) + list((1 - phi) * cap * avail) + ([-1.0] if soft else []),
                -np.inf, phi * res_cap_const)
        if beta > 0:
            add(rc + dc + ([ix.short0 + t] if soft else []), rv + list(cap) + ([1.0] if soft else []),
                beta * demand[t] - res_cap_const, np.inf)
    init_s = damping.initial_spot if damping and damping.initial_spot is not None else np.zeros(O)
    init_d = damping.initial_on_demand if damping and damping.initial_on_demand is not None else np.zeros(O)
    if per_offer:
        for i in range(O):
            for var, start_col, init in ((ix.s, ix.us0, init_s), (ix.d, ix.ud0, init_d)):
                for t in range(T):
                    # starts >= x_t - x_{t-1}
                    prev = [var(i, t - 1)] if t > 0 else []
                    add([start_col + i * T + t, var(i, t), *prev], [1.0, -1.0, *([1.0] if prev else [])],
                        -init[i] if t == 0 else 0.0, np.inf)
    if damping is not None:
        _add_damping(add, ix, damping, init_s, init_d, ub)
    A = sparse.csr_array((vals, (rows, cols)), shape=(row, ix.n))
    with _quiet_stdout():
        result = milp(c, integrality=integrality, bounds=Bounds(lb, ub), constraints=LinearConstraint(A, lo, hi),
                      options={"mip_rel_gap": rules.mip_rel_gap, "time_limit": rules.time_limit_s, "disp": False})
    if result.status == 2:
        raise InfeasibleError(_explain_infeasible(demand, rules, damping))
    if result.x is None:
        raise SolverError(f"HiGHS found no allocation: {result.message}")
    x = result.x if relax_counts else np.round(result.x)
    x[: ix.s0] = np.round(x[: ix.s0])
    spot = x[ix.s0 : ix.d0].reshape(O, T)
    od = x[ix.d0 : ix.us0].reshape(O, T)
    reserved = dict(fixed)
    for k, (i, term) in enumerate(terms):
        if x[k] > 0:
            reserved[(offers[i].id, term)] = int(x[k])
    short = result.x[ix.short0 : ix.excess0] if soft else np.zeros(T)
    alloc = Allocation(offers, period_h, demand, reserved, spot, od, {}, np.maximum(short, 0.0), 0.0,
                       "optimal" if result.status == 0 else "time limit (best found)",
                       time.perf_counter() - start, avail)
    alloc.cost_usd = allocation_cost(alloc, rules)
    if soft:
        alloc.cost_usd["shortfall_penalty"] = float(soft_demand_penalty * period_h * alloc.shortfall_rps.sum())
    fixed_usd = sum(n * o.price(term) * period_h * T for o in offers for (oid, term), n in fixed.items()
                    if oid == o.id)
    dual = getattr(result, "mip_dual_bound", None)
    bound = (float(dual) if dual is not None else float(result.fun)) + fixed_usd
    alloc.lower_bound_usd = bound
    total = alloc.total_usd
    alloc.gap = max(0.0, (total - bound) / total) if total > 0 and np.isfinite(bound) else 0.0
    return alloc


def plan_allocation(offers: list[CapacityOffer], demand_rps: np.ndarray, period_h: float,
                    rules: AllocationRules = AllocationRules()) -> Allocation:
    """The planning problem: the full MILP within the rules' time limit, plus a fast two-stage search, and
    the cheaper answer.

    Two-stage: (1) integer reservations with continuous spot / on-demand counts, a relaxation whose optimum
    is a valid lower bound; (2) reservations fixed at that answer and at the other candidates of
    :func:`_reservation_trials`, integer counts per period (fast: the periods decouple). On realistic offer
    sets the full MILP usually wins within seconds; on sets with many similar small instances HiGHS can
    stall and the two-stage answer is the fallback. The gap is measured against the best proven bound.

    When few reservation sets are possible at all (one or two reservable offers and a peak of a few
    instances), stage 2 runs on every one of them instead: that is exact, and much faster than the full MILP,
    which takes ~8 s to close the gap on the single-offer seed scenario.
    """
    demand = np.asarray(demand_rps, dtype=float)
    fixed = _FixedSolves(offers, demand, period_h, rules)
    every = _every_reservation_set(offers, demand, rules)
    if every is not None:
        for reserved in every:
            fixed(reserved)
        best = fixed.best()
        if best is None:
            raise fixed.error or InfeasibleError("no reservation set can cover the demand")
        return _with_bound(best, min(a.lower_bound_usd for a in fixed.solved()), fixed.spent)
    relaxed = solve(offers, demand, period_h, rules, relax_counts=True)
    for reserved in _reservation_trials(offers, demand, rules, relaxed.reserved):
        fixed(reserved)
    best = fixed.best()
    if best is not None:
        best = _descend(best, fixed, _cheapest_reservations(offers, rules, 1), offers)
    bound, spent = relaxed.lower_bound_usd, relaxed.solve_s + fixed.spent
    try:
        full = solve(offers, demand, period_h, rules)
    except (InfeasibleError, SolverError):
        if best is None:
            raise
        full = None
    if full is not None:
        spent += full.solve_s
        bound = max(bound, full.lower_bound_usd) if np.isfinite(full.lower_bound_usd) else bound
        if best is None or full.total_usd < best.total_usd:
            best = full
    return _with_bound(best, bound, spent)


def _with_bound(best: Allocation, bound: float, spent_s: float) -> Allocation:
    """``best`` with the proven lower bound, the gap to it and the solver time of the whole search."""
    best.lower_bound_usd = bound
    best.gap = max(0.0, (best.total_usd - bound) / best.total_usd) if best.total_usd > 0 else 0.0
    best.solve_s = spent_s
    return best


class _FixedSolves:
    """Stage 2: ``fixed(reserved)`` solves with those reservations fixed (integer counts per period), once per
    reservation set; None when the set cannot cover the peak under the caps (others may)."""

    def __init__(self, offers, demand: np.ndarray, period_h: float, rules: AllocationRules) -> None:
        self.args = (offers, demand, period_h, rules)
        self.done: dict[frozenset, Allocation | None] = {}
        self.spent = 0.0
        self.error: InfeasibleError | None = None

    def __call__(self, reserved: dict) -> Allocation | None:
        key = frozenset((k, n) for k, n in reserved.items() if n > 0)
        if key not in self.done:
            try:
                alloc = solve(*self.args, reserved_fixed=dict(key))
                self.spent += alloc.solve_s
            except InfeasibleError as exc:
                alloc, self.error = None, exc
            self.done[key] = alloc
        return self.done[key]

    def solved(self) -> list[Allocation]:
        return [a for a in self.done.values() if a is not None]

    def best(self) -> Allocation | None:
        """The cheapest so far (the first of equals)."""
        return min(self.solved(), key=lambda a: a.total_usd, default=None)


MAX_EXHAUSTIVE_SETS = 16
"""Reservation sets few enough to try every one (each is a fast fixed-reservation solve, ~0.05 s for 30 days
hourly)."""


def _every_reservation_set(offers, demand: np.ndarray, rules: AllocationRules) -> list[dict] | None:
    """Every reservation set worth trying, or None if there are more than MAX_EXHAUSTIVE_SETS.

    An offer/term never needs more reservations than cover the peak on their own (beyond that, each one costs
    money and serves nothing), nor more than its availability cap."""
    options = [(o, t) for o in offers for t in rules.reserved_terms if o.price(t) is not None]
    peak = float(demand.max()) if demand.size else 0.0
    counts = [int(min(np.ceil(peak / o.capacity_rps), o.cap(t))) + 1 for o, t in options]
    if math.prod(counts) > MAX_EXHAUSTIVE_SETS:
        return None
    return [{(o.id, t): n for (o, t), n in zip(options, combo) if n > 0}
            for combo in itertools.product(*(range(c) for c in counts))]


MAX_DESCENT_SOLVES = 12
"""Fixed-reservation solves the local search may spend (~0.15 s each for 30 days hourly)."""


def _cheapest_reservations(offers, rules: AllocationRules, n: int) -> list[tuple[CapacityOffer, str]]:
    """The ``n`` reservable (offer, term) pairs with the lowest price per req/s."""
    options = sorted(((o.price(t) / o.capacity_rps, k, o, t) for k, o in enumerate(offers)
                      for t in rules.reserved_terms if o.price(t) is not None), key=lambda x: x[:2])
    return [(o, t) for _, _, o, t in options[:n]]


def _descend(best: Allocation, fixed: _FixedSolves, cheapest, offers) -> Allocation:
    """Local search from the best stage-2 answer: one reservation more or fewer of any held (offer, term), or of
    the cheapest per req/s, while that lowers the cost. The relaxation's rounding can miss by several big
    instances (on ServeGen-shaped months its answer is 1 where the optimum is 3), and the full MILP, which
    would find it, may stop at its time limit."""
    by_id = {o.id: o for o in offers}
    budget = MAX_DESCENT_SOLVES
    improved = True
    while improved and budget > 0:
        improved = False
        keys = list(dict.fromkeys([*best.reserved, *((o.id, t) for o, t in cheapest)]))
        for key, step in ((k, d) for k in keys for d in (1, -1)):
            count = best.reserved.get(key, 0) + step
            if count < 0 or count > by_id[key[0]].cap(key[1]) or budget <= 0:
                continue
            budget -= 1
            alloc = fixed({**best.reserved, key: count})
            if alloc is not None and alloc.total_usd < best.total_usd * (1 - 1e-9):
                best, improved = alloc, True
                break
    return best


def _reservation_trials(offers, demand: np.ndarray, rules: AllocationRules, relaxed: dict) -> list[dict]:
    """Candidate reservation sets for stage 2: the relaxation's answer and its neighbours, none at all, and
    the cheapest reservations per req/s sized on low percentiles of demand (with large instances the
    relaxation's rounding can be far off)."""
    base = {k: v for k, v in relaxed.items() if v > 0}
    trials = [base, {}]
    if base:
        key = max(base, key=base.get)
        trials += [{**base, key: base[key] + 1}, {k: v for k, v in {**base, key: base[key] - 1}.items() if v > 0}]
    for o, term in _cheapest_reservations(offers, rules, 2):
        for pct in (0, 25, 50):
            n = int(np.floor(np.percentile(demand, pct) / o.capacity_rps))
            if n > 0:
                trials.append({(o.id, term): min(n, int(o.cap(term)) if np.isfinite(o.cap(term)) else n)})
    by_id = {o.id: o for o in offers}
    unique = []
    for t in trials:
        if all(n <= by_id[oid].cap(term) for (oid, term), n in t.items()) and t not in unique:
            unique.append(t)
    return unique


def _add_damping(add, ix, damping: Damping, init_s, init_d, ub) -> None:
    """Per-step change limits, and no scale-down in the first step of an offer/tier in cooldown."""
    for i in range(ix.O):
        for k, (var, init) in enumerate(((ix.s, init_s), (ix.d, init_d))):
            for t in range(ix.T):
                col = var(i, t)
                prev_cols, prev_val = ([var(i, t - 1)], 0.0) if t > 0 else ([], float(init[i]))
                cooling = damping.no_scale_down is not None and damping.no_scale_down[i, k]
                down = 0 if cooling and t == 0 else damping.down
                low = prev_val - down
                if not prev_cols and np.isfinite(ub[col]) and ub[col] < low:
                    low = ub[col]  # a running fleet above an availability cap may drop to it at once
                add([col, *prev_cols], [1.0, *([-1.0] * len(prev_cols))], low, prev_val + damping.up)


def allocation_cost(alloc: Allocation, rules: AllocationRules) -> dict[str, float]:
    """USD over the horizon by tier: running hours plus cold starts of every instance started."""
    return schedule_cost(alloc.offers, alloc.reserved, alloc.spot, alloc.on_demand, alloc.period_h,
                         rules.cold_start_s)


@contextmanager
def _quiet_stdout():
    """HiGHS (in SciPy 1.17) sometimes prints to file descriptor 1 even with disp=False, which would corrupt
    --json output: point fd 1 at stderr while it runs."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _tier_capacity(o: CapacityOffer, tiers: tuple[str, ...]) -> float:
    """Instances an offer can supply over the tiers it prices (inf when uncapped)."""
    return sum(o.cap(t) for t in tiers if o.price(t) is not None)


def _capped_capacity(offers, cap, avail, rules: AllocationRules) -> tuple[float, float]:
    """(non-spot, availability-discounted spot) req/s the availability caps allow at most (inf: uncapped)."""
    nonspot = float(sum(c * _tier_capacity(o, ("on_demand", *rules.reserved_terms))
                        for o, c in zip(offers, cap, strict=True)))
    spot = float(sum(c * a * _tier_capacity(o, ("spot",)) for o, c, a in zip(offers, cap, avail, strict=True))
                 ) if rules.allow_spot else 0.0
    return nonspot, spot


def servable_rps(offers: list[CapacityOffer], rules: AllocationRules = AllocationRules()) -> float:
    """The highest demand any allocation can cover under the availability caps, the spot-share cap and the
    non-spot floor (inf when nothing is capped): with all non-spot capacity N and spot S, spot may add at most
    phi / (1 - phi) x N, and the floor needs N >= beta x demand."""
    cap = np.array([o.capacity_rps for o in offers])
    avail = np.array([spot_availability(o.hazard_per_hour, rules.cold_start_s) for o in offers])
    nonspot, spot = _capped_capacity(offers, cap, avail, rules)
    phi, beta = rules.max_spot_share, rules.min_nonspot_share
    spot_usable = spot if phi >= 1 else min(spot, phi / (1 - phi) * nonspot)
    floor_limit = nonspot / beta if beta > 0 else float("inf")
    return min(nonspot + spot_usable, floor_limit)


def _check_feasible(offers, demand, cap, avail, rules: AllocationRules) -> None:
    """Explain the obvious infeasibilities before asking the solver."""
    peak = float(demand.max())
    nonspot, spot = _capped_capacity(offers, cap, avail, rules)
    if nonspot + spot < peak:
        raise InfeasibleError(
            f"peak demand {peak:,.1f} req/s exceeds what the availability caps allow "
            f"({nonspot + spot:,.1f} req/s); raise the caps or add offers")
    if nonspot < rules.min_nonspot_share * peak:
        raise InfeasibleError(
            f"the non-spot floor needs {rules.min_nonspot_share * peak:,.1f} req/s of reserved/on-demand capacity "
            f"but the caps allow {nonspot:,.1f}; lower the non-spot share or raise the caps")
    if nonspot == 0 and peak > 0 and rules.max_spot_share < 1:
        raise InfeasibleError("only spot capacity is available but spot may provide at most "
                              f"{rules.max_spot_share:.0%} of capacity")


def _explain_infeasible(demand: np.ndarray, rules: AllocationRules, damping: Damping | None) -> str:
    if damping is not None:
        return (f"the damping limits (at most +{damping.up} / -{damping.down} instances per offer per step) cannot reach the demand in "
                "time; allow shortfall or loosen the damping")
    return (f"no allocation meets every constraint: peak demand {demand.max():,.1f} req/s, spot share <= "
            f"{rules.max_spot_share:.0%}, non-spot floor {rules.min_nonspot_share:.0%}; loosen the caps or shares")
