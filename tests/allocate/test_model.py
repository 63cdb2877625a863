"""The allocation MILP (``solve``) and the two-stage planner (``plan_allocation``) on problems whose optimum is
known by hand or by brute-force enumeration."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetwise.allocate import model
from fleetwise.allocate.model import AllocationRules, Damping, allocation_cost, plan_allocation, solve
from fleetwise.allocate.offers import spot_availability
from fleetwise.errors import ConfigError, InfeasibleError

from .helpers import CLEAN, brute_force, offer

HYP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _spot_cap(alloc) -> np.ndarray:
    caps = np.array([o.capacity_rps for o in alloc.offers])
    return (caps * alloc.availability) @ alloc.spot


def _nonspot_cap(alloc) -> np.ndarray:
    caps = np.array([o.capacity_rps for o in alloc.offers])
    return caps @ (alloc.reserved_counts()[:, None] + alloc.on_demand)


def _assert_integral(alloc):
    for a in (alloc.spot, alloc.on_demand):
        assert np.all(a >= 0)
        assert np.array_equal(a, np.round(a))


# ------------------------------------------------------------------------------------------ hand-checked optima


def test_on_demand_only_rounds_each_period_up():
    alloc = solve([offer("a", 10, od=1.0)], np.array([5.0, 15.0, 25.0, 0.0]), 1.0, CLEAN)
    assert alloc.on_demand.tolist() == [[1, 2, 3, 0]]
    assert alloc.spot.tolist() == [[0, 0, 0, 0]]
    assert alloc.reserved == {}
    assert alloc.total_usd == pytest.approx(6.0)
    assert alloc.cost_usd == pytest.approx({"reserved": 0.0, "spot": 0.0, "on_demand": 6.0})
    assert alloc.status == "optimal"
    assert alloc.capacity_rps().tolist() == [10, 20, 30, 0]


def test_period_length_scales_cost():
    a1 = solve([offer("a", 10, od=1.0)], np.array([5.0, 15.0]), 1.0, CLEAN)
    a2 = solve([offer("a", 10, od=1.0)], np.array([5.0, 15.0]), 0.25, CLEAN)
    assert a1.total_usd == pytest.approx(3.0)
    assert a2.total_usd == pytest.approx(0.75)
    assert a2.horizon_h == pytest.approx(0.5)
    assert a2.monthly_usd()["on_demand"] == pytest.approx(0.75 * 730 / 0.5)


def test_two_offers_mix_by_hand():
    # A: 10 req/s for $1 (0.10 $/req/s); B: 25 req/s for $2 (0.08 $/req/s).
    # 20 -> 2A or 1B ($2); 25 -> 1B ($2); 30 -> 1B + 1A or 3A ($3).  Total $7.
    offers = [offer("A", 10, od=1.0), offer("B", 25, od=2.0)]
    demand = np.array([20.0, 25.0, 30.0])
    alloc = solve(offers, demand, 1.0, CLEAN)
    assert alloc.total_usd == pytest.approx(7.0)
    assert brute_force(offers, demand, 1.0) == pytest.approx(7.0)
    assert np.all(alloc.capacity_rps() >= demand - 1e-9)
    assert alloc.on_demand[:, 1].tolist() == [0, 1]


def test_cold_start_cost_is_added_to_total():
    rules = replace(CLEAN, cold_start_s=360.0)  # 0.1 h per start
    alloc = solve([offer("a", 10, od=1.0)], np.array([10.0, 20.0, 0.0, 10.0]), 1.0, rules)
    assert alloc.on_demand.tolist() == [[1, 2, 0, 1]]
    # 4 running hours + 3 starts (0->1, 1->2, 0->1) x 0.1 h, all at $1/h
    assert alloc.total_usd == pytest.approx(4.0 + 0.3)
    assert allocation_cost(alloc, rules)["on_demand"] == pytest.approx(4.3)


# ----------------------------------------------------------------------------------------------- reservations


def test_constant_demand_buys_reservations():
    o = offer("a", 10, od=1.0, r1=0.6)
    alloc = solve([o], np.full(24, 30.0), 1.0, CLEAN)
    assert alloc.reserved == {("a", "reserved_1y"): 3}
    assert alloc.on_demand.sum() == 0 and alloc.spot.sum() == 0
    assert alloc.total_usd == pytest.approx(3 * 0.6 * 24)
    assert alloc.cost_usd["reserved"] == pytest.approx(43.2)


def test_cheapest_term_wins_and_rules_terms_are_respected():
    o = offer("a", 10, od=1.0, r1=0.6, r3=0.45)
    alloc = solve([o], np.full(12, 20.0), 1.0, CLEAN)
    assert alloc.reserved == {("a", "reserved_3y"): 2}
    assert alloc.total_usd == pytest.approx(2 * 0.45 * 12)
    only_1y = solve([o], np.full(12, 20.0), 1.0, replace(CLEAN, reserved_terms=("reserved_1y",)))
    assert only_1y.reserved == {("a", "reserved_1y"): 2}
    none = solve([o], np.full(12, 20.0), 1.0, replace(CLEAN, reserved_terms=()))
    assert none.reserved == {} and none.on_demand.tolist() == [[2] * 12]


@pytest.mark.parametrize(("busy", "reserve"), [(24, True), (16, True), (12, False), (3, False)])
def test_reservations_follow_break_even_utilization(busy, reserve):
    """Break-even utilization is 0.6: reserve when demand is there in more than 60% of the periods."""
    o = offer("a", 10, od=1.0, r1=0.6)
    assert o.break_even_utilization("reserved_1y") == pytest.approx(0.6)
    demand = np.zeros(24)
    demand[:busy] = 30.0
    alloc = solve([o], demand, 1.0, CLEAN)
    if reserve:
        assert alloc.reserved == {("a", "reserved_1y"): 3}
        assert alloc.total_usd == pytest.approx(43.2)
    else:
        assert alloc.reserved == {}
        assert alloc.total_usd == pytest.approx(3 * busy)
    assert alloc.total_usd == pytest.approx(brute_force([o], demand, 1.0))


def test_reservations_cover_the_base_and_on_demand_the_peaks():
    # base 20 req/s always, 40 req/s in 2 of 10 periods: 2 reserved + 2 on-demand in the peaks
    o = offer("a", 10, od=1.0, r1=0.5)
    demand = np.array([20, 20, 40, 20, 20, 20, 40, 20, 20, 20], dtype=float)
    alloc = solve([o], demand, 1.0, CLEAN)
    assert alloc.reserved == {("a", "reserved_1y"): 2}
    assert alloc.on_demand[0].tolist() == [0, 0, 2, 0, 0, 0, 2, 0, 0, 0]
    assert alloc.total_usd == pytest.approx(2 * 0.5 * 10 + 4 * 1.0)


# ------------------------------------------------------------------------------------------------------- spot


def test_spot_only_cover_needs_ceil_of_discounted_capacity():
    rules = replace(CLEAN, cold_start_s=300.0)
    o = offer("s", 10, od=None, spot=0.3, hazard=0.5)
    a = spot_availability(0.5, 300.0)
    assert a == pytest.approx(1 / 1.025)
    demand = np.array([20.0, 9.7, 9.8, 0.0])
    alloc = solve([o], demand, 1.0, rules)
    expected = [math.ceil(d / (10 * a)) for d in demand]
    assert expected == [3, 1, 2, 0]  # without the discount it would be [2, 1, 1, 0]
    assert alloc.spot.tolist() == [expected]
    assert alloc.availability.tolist() == pytest.approx([a])
    assert np.all(alloc.capacity_rps() >= demand)


def test_cheap_spot_is_used_when_allowed_and_not_when_forbidden():
    o = offer("a", 10, od=1.0, spot=0.3)
    demand = np.array([40.0, 10.0])
    alloc = solve([o], demand, 1.0, CLEAN)
    assert alloc.spot.tolist() == [[4, 1]] and alloc.on_demand.sum() == 0
    assert alloc.total_usd == pytest.approx(1.5)
    no_spot = solve([o], demand, 1.0, replace(CLEAN, allow_spot=False))
    assert no_spot.spot.sum() == 0
    assert no_spot.on_demand.tolist() == [[4, 1]]
    assert no_spot.total_usd == pytest.approx(5.0)


@pytest.mark.parametrize(("share", "demand", "spot", "od", "cost"), [
    (0.5, 40.0, 2, 2, 2.4),
    (0.5, 30.0, 1, 2, 2.2),
    (0.25, 40.0, 1, 3, 3.2),
    (0.0, 40.0, 0, 4, 4.0),
])
def test_spot_share_cap(share, demand, spot, od, cost):
    o = offer("a", 10, od=1.0, spot=0.2)
    alloc = solve([o], np.array([demand, demand]), 1.0, replace(CLEAN, max_spot_share=share))
    assert alloc.spot.tolist() == [[spot, spot]]
    assert alloc.on_demand.tolist() == [[od, od]]
    assert alloc.total_usd == pytest.approx(2 * cost)
    assert np.all(_spot_cap(alloc) <= share * alloc.capacity_rps() + 1e-9)


@pytest.mark.parametrize(("floor", "od"), [(0.0, 0), (0.3, 2), (0.6, 3), (1.0, 4)])
def test_non_spot_floor(floor, od):
    # demand 40: reserved + on-demand capacity must reach floor x 40 (10 req/s per instance)
    o = offer("a", 10, od=1.0, spot=0.2)
    demand = np.array([40.0, 40.0, 0.0])
    alloc = solve([o], demand, 1.0, replace(CLEAN, min_nonspot_share=floor))
    assert alloc.on_demand[0].tolist() == [od, od, 0]
    assert alloc.spot[0].tolist() == [4 - od, 4 - od, 0]
    assert np.all(_nonspot_cap(alloc) >= floor * demand - 1e-9)


def test_availability_caps_are_respected():
    # spot is dearer than on-demand here, but on-demand is capped at 2 instances
    o = offer("a", 10, od=1.0, spot=1.5, caps={"on_demand": 2})
    alloc = solve([o], np.array([40.0, 20.0]), 1.0, CLEAN)
    assert alloc.on_demand.tolist() == [[2, 2]]
    assert alloc.spot.tolist() == [[2, 0]]
    assert alloc.total_usd == pytest.approx(2 + 3 + 2)
    capped_spot = offer("b", 10, od=2.0, spot=0.5, caps={"spot": 1})
    alloc = solve([capped_spot], np.array([40.0]), 1.0, CLEAN)
    assert alloc.spot.tolist() == [[1]] and alloc.on_demand.tolist() == [[3]]


def test_reserved_availability_cap_in_solve():
    o = offer("a", 10, od=1.0, r1=0.5, caps={"reserved_1y": 2})
    alloc = solve([o], np.full(6, 50.0), 1.0, CLEAN)
    assert alloc.reserved == {("a", "reserved_1y"): 2}
    assert alloc.on_demand.tolist() == [[3] * 6]
    assert alloc.total_usd == pytest.approx(2 * 0.5 * 6 + 3 * 6)


def test_default_rules_constraints_hold_on_a_mixed_fleet():
    offers = [offer("big", 20, od=4.0, spot=1.6, r1=2.6, hazard=0.05),
              offer("small", 6, od=1.5, spot=0.5, hazard=0.1, caps={"spot": 4})]
    demand = np.array([60, 80, 120, 150, 90, 40, 30, 100], dtype=float)
    rules = AllocationRules()
    alloc = solve(offers, demand, 1.0, rules)
    _assert_integral(alloc)
    cap = alloc.capacity_rps()
    assert np.all(cap >= demand - 1e-6)
    assert np.all(_spot_cap(alloc) <= rules.max_spot_share * cap + 1e-6)
    assert np.all(_nonspot_cap(alloc) >= rules.min_nonspot_share * demand - 1e-6)
    assert np.all(alloc.spot[1] <= 4)
    assert alloc.gap >= 0 and alloc.lower_bound_usd <= alloc.total_usd + 1e-9


# ------------------------------------------------------------------------------------ brute force / monotonicity

_price = st.floats(0.3, 2.0, allow_nan=False)


@st.composite
def _problems(draw):
    n_offers = draw(st.integers(1, 2))
    specs = []
    for i in range(n_offers):
        od = draw(_price)
        specs.append({"oid": f"o{i}", "capacity": float(draw(st.sampled_from([5, 8, 10, 13]))), "od": od,
                      "spot": od * draw(st.floats(0.2, 0.9)),
                      "r1": draw(st.one_of(st.none(), st.just(od * draw(st.floats(0.4, 0.95))))),
                      "hazard": draw(st.sampled_from([0.0, 0.5, 2.0]))})
    demand = draw(st.lists(st.integers(0, 35), min_size=2, max_size=4))
    extra = draw(st.lists(st.integers(0, 10), min_size=len(demand), max_size=len(demand)))
    rules = replace(CLEAN, max_spot_share=draw(st.sampled_from([1.0, 0.7, 0.5])),
                    min_nonspot_share=draw(st.sampled_from([0.0, 0.3])), reserved_terms=("reserved_1y",))
    return specs, np.array(demand, float), np.array(extra, float), rules


@HYP
@given(_problems())
def test_solve_matches_brute_force(problem):
    specs, demand, _, rules = problem
    offers = [offer(**s) for s in specs]
    alloc = solve(offers, demand, 1.0, rules)
    assert alloc.total_usd == pytest.approx(brute_force(offers, demand, 1.0, rules), rel=1e-6, abs=1e-9)
    _assert_integral(alloc)


@HYP
@given(_problems(), st.floats(0.2, 0.95))
def test_solve_cheaper_spot_never_costs_more(problem, factor):
    specs, demand, _, rules = problem
    base = solve([offer(**s) for s in specs], demand, 1.0, rules).total_usd
    cheaper = solve([offer(**{**s, "spot": s["spot"] * factor}) for s in specs], demand, 1.0, rules).total_usd
    assert cheaper <= base * (1 + 1e-9) + 1e-9


@HYP
@given(_problems())
def test_solve_more_demand_never_costs_less(problem):
    specs, demand, extra, rules = problem
    offers = [offer(**s) for s in specs]
    assert solve(offers, demand + extra, 1.0, rules).total_usd >= solve(offers, demand, 1.0, rules).total_usd - 1e-9


# -------------------------------------------------------------------------------------------- plan_allocation


def test_plan_allocation_bound_and_gap():
    offers = [offer("big", 20, od=4.0, spot=1.6, r1=2.6, r3=1.9, hazard=0.05), offer("small", 6, od=1.5, spot=0.5)]
    demand = np.round(50 + 30 * np.sin(np.arange(24) / 24 * 2 * np.pi))
    alloc = plan_allocation(offers, demand, 1.0, AllocationRules())
    assert alloc.gap >= 0
    assert alloc.lower_bound_usd <= alloc.total_usd + 1e-9
    assert alloc.gap == pytest.approx(1 - alloc.lower_bound_usd / alloc.total_usd)
    assert np.all(alloc.capacity_rps() >= demand - 1e-6)
    _assert_integral(alloc)
    # the planner is never worse than the plain MILP without reservations
    no_res = solve(offers, demand, 1.0, replace(AllocationRules(), reserved_terms=()))
    assert alloc.total_usd <= no_res.total_usd * (1 + 1e-9)


@pytest.fixture(params=["every-set", "two-stage+milp"])
def planner_path(request, monkeypatch):
    """Run plan_allocation both ways: trying every reservation set (small problems), and the two-stage search
    plus the full MILP (what larger problems get)."""
    if request.param != "every-set":
        monkeypatch.setattr(model, "MAX_EXHAUSTIVE_SETS", 0)
    return request.param


@pytest.mark.parametrize("demand", [[30.0] * 8, [30.0, 30.0, 50.0, 30.0, 30.0, 30.0], [5.0, 25.0, 12.0]])
def test_plan_allocation_matches_brute_force_on_tiny_problems(demand, planner_path):
    offers = [offer("a", 10, od=1.0, spot=0.4, r1=0.6)]
    rules = replace(CLEAN, max_spot_share=0.5, reserved_terms=("reserved_1y",))
    alloc = plan_allocation(offers, np.array(demand), 1.0, rules)
    assert alloc.total_usd == pytest.approx(brute_force(offers, demand, 1.0, rules), rel=1e-9)
    assert alloc.gap >= 0 and alloc.lower_bound_usd <= alloc.total_usd + 1e-9


@pytest.mark.parametrize("demand", [[30.0] * 6, [5.0, 25.0, 12.0, 40.0]])
def test_plan_allocation_without_reserved_prices(demand, planner_path):
    # GCP / Azure / Lambda offers have no reserved tier: the planner buys spot + on-demand only, optimally.
    offers = [offer("g", 10, od=1.0, spot=0.4), offer("l", 25, od=2.0)]
    rules = replace(CLEAN, max_spot_share=0.5)
    alloc = plan_allocation(offers, np.array(demand), 1.0, rules)
    assert alloc.reserved == {} and alloc.cost_usd["reserved"] == 0.0
    assert alloc.total_usd == pytest.approx(brute_force(offers, demand, 1.0, rules), rel=1e-9)
    assert alloc.spot.sum() > 0
    assert np.all(alloc.capacity_rps() >= np.array(demand) - 1e-6)


def test_plan_allocation_finds_a_single_reservation():
    # the continuous relaxation buys no reservation here; the optimum buys one
    rules = replace(AllocationRules(), cold_start_s=0, switch_penalty_h=0, reserved_terms=("reserved_1y",), mip_rel_gap=0)
    o = offer("o0", 10.0, od=0.78, spot=0.197, r1=0.618, hazard=0.5)
    demand = np.array([1.0, 9.0, 35.0])
    best = brute_force([o], demand, 1.0, rules)
    assert solve([o], demand, 1.0, rules).total_usd == pytest.approx(best)  # the MILP finds it
    assert plan_allocation([o], demand, 1.0, rules).total_usd == pytest.approx(best, rel=1e-6)


_SPECS = [{"oid": "o0", "capacity": 5.0, "od": 1.2693, "spot": 0.8276, "r1": 1.1196, "hazard": 0.5},
          {"oid": "o1", "capacity": 13.0, "od": 1.5551, "spot": 1.0143, "r1": 0.6941, "hazard": 2.0}]


def test_plan_allocation_cheaper_spot_never_costs_more():
    # 30% cheaper spot makes the relaxation drop its reservation; the plan must not get dearer
    rules = replace(AllocationRules(), cold_start_s=0, switch_penalty_h=0, reserved_terms=("reserved_1y",))
    demand = np.array([20.0, 5.0, 7.0])
    base = plan_allocation([offer(**s) for s in _SPECS], demand, 1.0, rules)
    cheaper = plan_allocation([offer(**{**s, "spot": s["spot"] * 0.7}) for s in _SPECS], demand, 1.0, rules)
    assert cheaper.total_usd <= base.total_usd * (1 + rules.mip_rel_gap)


def test_plan_allocation_more_demand_never_costs_less():
    # the smaller demand is the one whose relaxation buys no reservation
    rules = replace(AllocationRules(), cold_start_s=0, switch_penalty_h=0, reserved_terms=("reserved_1y",))
    o = offer("o0", 10.0, od=0.78, spot=0.197, r1=0.618, hazard=0.5)
    low = plan_allocation([o], np.array([1.0, 9.0, 35.0]), 1.0, rules)
    high = plan_allocation([o], np.array([5.0, 17.0, 35.0]), 1.0, rules)
    assert high.total_usd >= low.total_usd * (1 - rules.mip_rel_gap)


@pytest.mark.parametrize("max_sets", [model.MAX_EXHAUSTIVE_SETS, 0], ids=["every-set", "two-stage+milp"])
@HYP
@given(problem=_problems())
def test_plan_allocation_matches_brute_force(problem, max_sets):
    model.MAX_EXHAUSTIVE_SETS, saved = max_sets, model.MAX_EXHAUSTIVE_SETS  # hypothesis: no function fixtures
    try:
        _matches_brute_force(problem)
    finally:
        model.MAX_EXHAUSTIVE_SETS = saved


def _matches_brute_force(problem):
    specs, demand, _, rules = problem
    offers = [offer(**s) for s in specs]
    alloc = plan_allocation(offers, demand, 1.0, rules)
    assert alloc.total_usd == pytest.approx(brute_force(offers, demand, 1.0, rules), rel=1e-6, abs=1e-9)
    assert alloc.gap >= 0 and alloc.lower_bound_usd <= alloc.total_usd + 1e-6


@HYP
@given(_problems(), st.floats(0.2, 0.95))
def test_plan_allocation_monotone(problem, factor):
    specs, demand, extra, rules = problem
    offers = [offer(**s) for s in specs]
    base = plan_allocation(offers, demand, 1.0, rules).total_usd
    assert plan_allocation(offers, demand + extra, 1.0, rules).total_usd >= base - 1e-9
    cheaper = [offer(**{**s, "spot": s["spot"] * factor}) for s in specs]
    assert plan_allocation(cheaper, demand, 1.0, rules).total_usd <= base + 1e-9


@pytest.mark.parametrize(("demand", "extra"), [([30.0] * 6, [0, 5, 0, 5, 0, 5]), ([10.0, 40.0, 20.0], [10, 0, 15])])
def test_plan_allocation_monotone_on_easy_cases(demand, extra):
    o = offer("a", 10, od=1.0, spot=0.35, r1=0.6, hazard=0.2)
    rules = replace(AllocationRules(), cold_start_s=0, switch_penalty_h=0)
    d = np.array(demand)
    base = plan_allocation([o], d, 1.0, rules).total_usd
    assert plan_allocation([o], d + np.array(extra), 1.0, rules).total_usd >= base * (1 - 0.004)
    cheaper = offer("a", 10, od=1.0, spot=0.25, r1=0.6, hazard=0.2)
    assert plan_allocation([cheaper], d, 1.0, rules).total_usd <= base * (1 + 0.004)


def test_plan_allocation_respects_reserved_cap():
    o = offer("a", 10, od=1.0, r1=0.5, caps={"reserved_1y": 2})
    alloc = plan_allocation([o], np.full(6, 50.0), 1.0, CLEAN)
    assert alloc.reserved.get(("a", "reserved_1y"), 0) <= 2
    assert alloc.total_usd == pytest.approx(24.0)


def test_plan_allocation_when_reservations_are_required():
    # on-demand is capped at 1 instance: the peak of 32 req/s needs reservations
    o = offer("a", 10, od=1.25, r1=0.55, caps={"on_demand": 1})
    demand = np.array([32.0, 15.0, 17.0, 11.0])
    best = brute_force([o], demand, 1.0, replace(CLEAN, reserved_terms=("reserved_1y",)))
    assert math.isfinite(best)
    solve([o], demand, 1.0, CLEAN)  # the MILP itself is feasible
    alloc = plan_allocation([o], demand, 1.0, CLEAN)
    assert alloc.total_usd == pytest.approx(best, rel=0.01)


# ------------------------------------------------------------------------------------------- errors and shortfall


def _one_line(exc: Exception) -> str:
    text = str(exc)
    assert "\n" not in text and "HiGHS" not in text and "status" not in text.lower()
    return text


def test_infeasible_peak_above_caps():
    o = offer("a", 10, od=1.0, spot=0.3, caps={"on_demand": 2, "spot": 1})
    with pytest.raises(InfeasibleError, match="peak demand 50.0 req/s exceeds") as info:
        solve([o], np.array([10.0, 50.0]), 1.0, CLEAN)
    assert "30.0 req/s" in _one_line(info.value)  # 2 x 10 on-demand + 1 x 10 spot


def test_infeasible_non_spot_floor_with_spot_only():
    o = offer("s", 10, od=None, spot=0.3)
    with pytest.raises(InfeasibleError, match="non-spot floor") as info:
        solve([o], np.array([10.0, 20.0]), 1.0, AllocationRules())
    _one_line(info.value)
    with pytest.raises(InfeasibleError, match="only spot capacity"):
        solve([o], np.array([10.0, 20.0]), 1.0, AllocationRules(min_nonspot_share=0.0))
    # with no floor and no cap, spot alone is fine
    assert solve([o], np.array([10.0, 20.0]), 1.0, CLEAN).spot.tolist() == [[1, 2]]


def test_infeasible_when_on_demand_is_capped_and_spot_share_limited():
    # on-demand at most 1 instance (10 req/s); spot may be at most half the capacity -> at most 20 req/s
    o = offer("a", 10, od=1.0, spot=0.3, caps={"on_demand": 1})
    with pytest.raises(InfeasibleError) as info:
        solve([o], np.array([40.0]), 1.0, replace(CLEAN, max_spot_share=0.5))
    _one_line(info.value)


def test_no_offers_is_infeasible():
    with pytest.raises(InfeasibleError, match="no instance offers"):
        solve([], np.array([1.0]), 1.0)


@pytest.mark.parametrize("demand", [[1.0, -1.0], [1.0, float("nan")], [float("inf")], [], [[1.0, 2.0]]])
def test_bad_demand_is_config_error(demand):
    with pytest.raises(ConfigError, match="demand"):
        solve([offer()], np.array(demand), 1.0)


@pytest.mark.parametrize("period_h", [0.0, -1.0])
def test_bad_period_is_config_error(period_h):
    with pytest.raises(ConfigError, match="period"):
        solve([offer()], np.array([1.0]), period_h)


@pytest.mark.parametrize("kwargs", [{"max_spot_share": 1.5}, {"min_nonspot_share": -0.1}, {"cold_start_s": -1},
                                    {"switch_penalty_h": -1}, {"reserved_terms": ("reserved_5y",)}])
def test_bad_rules_are_config_error(kwargs):
    with pytest.raises(ConfigError):
        AllocationRules(**kwargs)


def test_soft_demand_shortfall_only_where_caps_bind():
    o = offer("a", 10, od=1.0, caps={"on_demand": 2})
    demand = np.array([10.0, 30.0, 20.0, 25.0])
    with pytest.raises(InfeasibleError):
        solve([o], demand, 1.0, CLEAN)
    alloc = solve([o], demand, 1.0, CLEAN, soft_demand_penalty=5.0)
    assert alloc.on_demand.tolist() == [[1, 2, 2, 2]]
    assert alloc.shortfall_rps == pytest.approx([0.0, 10.0, 0.0, 5.0])
    assert alloc.cost_usd["shortfall_penalty"] == pytest.approx(5.0 * 15.0)
    assert alloc.total_usd == pytest.approx(7.0 + 75.0)
    # without caps, capacity is cheaper than the penalty: no shortfall
    free = solve([offer("a", 10, od=1.0)], demand, 1.0, CLEAN, soft_demand_penalty=5.0)
    assert free.shortfall_rps == pytest.approx([0, 0, 0, 0])
    assert free.cost_usd["shortfall_penalty"] == 0.0
    assert free.total_usd == pytest.approx(9.0)


def test_soft_demand_with_damping_limits_the_ramp():
    o = offer("a", 10, od=1.0)
    rules = replace(CLEAN)
    damping = Damping(up=2, down=1, initial_spot=np.zeros(1), initial_on_demand=np.array([1.0]))
    alloc = solve([o], np.array([10.0, 80.0, 80.0]), 1.0, rules, damping=damping, soft_demand_penalty=5.0)
    # from 1 instance running: at most +2 per step, starting with the first period
    assert alloc.on_demand.tolist() == [[3, 5, 7]]
    assert alloc.shortfall_rps == pytest.approx([0.0, 30.0, 10.0])
    with pytest.raises(InfeasibleError, match="damping"):
        solve([o], np.array([10.0, 80.0, 80.0]), 1.0, rules, damping=damping)


def test_solve_prints_nothing_to_stdout(capfd):
    o = offer("o0", 5.0, od=1.4333, r1=0.6824, hazard=2.0)
    rules = AllocationRules(max_spot_share=0.5, min_nonspot_share=0.3, cold_start_s=0, switch_penalty_h=0,
                            reserved_terms=("reserved_1y",))
    capfd.readouterr()
    solve([o], np.array([1.0, 28.0, 21.0, 18.0]), 1.0, rules, relax_counts=True)
    out, _ = capfd.readouterr()
    assert out == ""


def test_two_stage_search_walks_to_the_right_reservation_count(monkeypatch):
    """Spot that comes only in huge nodes makes the relaxation (fractional nodes) reserve too little; when the full
    MILP gives no answer, the local search around the stage-2 candidates still finds the optimum."""
    offers = [offer("node", 80, od=6.9, r3=3.0), offer("huge", 600, od=50, spot=6.0, hazard=0.05)]
    rng = np.random.default_rng(0)
    demand = np.maximum(200 + 60 * np.sin(np.arange(168) / 24 * 2 * np.pi) + rng.normal(0, 15, 168), 0)
    rules = replace(AllocationRules(), reserved_terms=("reserved_3y",))
    optimum = solve(offers, demand, 1.0, rules)
    assert optimum.reserved == {("node", "reserved_3y"): 3}
    full_solve = model.solve

    def no_full_milp(*args, **kwargs):
        if not kwargs:  # the full MILP (the others fix reservations or relax counts)
            raise model.SolverError("time limit reached without a solution")
        return full_solve(*args, **kwargs)

    monkeypatch.setattr(model, "MAX_EXHAUSTIVE_SETS", 0)
    monkeypatch.setattr(model, "solve", no_full_milp)
    relaxed = solve(offers, demand, 1.0, rules, relax_counts=True)
    assert optimum.reserved not in model._reservation_trials(offers, demand, rules, relaxed.reserved)
    alloc = plan_allocation(offers, demand, 1.0, rules)
    assert alloc.reserved == optimum.reserved
    assert alloc.total_usd == pytest.approx(optimum.total_usd, rel=1e-9)


def test_servable_rps_under_caps_and_shares():
    from fleetwise.allocate.model import servable_rps

    rules = replace(CLEAN, max_spot_share=0.5, min_nonspot_share=0.25)
    # no caps: anything can be served
    assert servable_rps([offer("a", 10, od=1.0, spot=0.4)], rules) == float("inf")
    # 3 on-demand (30 req/s) + at most 5 spot (50): the share cap lets spot add only as much as non-spot (30)
    capped = [offer("a", 10, od=1.0, spot=0.4, caps={"on_demand": 3, "spot": 5})]
    assert servable_rps(capped, rules) == pytest.approx(60.0)
    # a floor of 60% binds first: 30 non-spot req/s carry at most 50 req/s of demand
    assert servable_rps(capped, replace(rules, min_nonspot_share=0.6)) == pytest.approx(50.0)
    # the allocator covers exactly that much and no more
    assert plan_allocation(capped, np.array([10.0, 60.0]), 1.0, rules).capacity_rps()[1] >= 60.0 - 1e-6
    with pytest.raises(InfeasibleError):
        plan_allocation(capped, np.array([10.0, 60.5]), 1.0, rules)
