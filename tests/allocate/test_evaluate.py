"""Scoring a schedule against actual demand: cost by hand, unmet demand by hand, common random numbers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwise.allocate.evaluate import Schedule, evaluate, spot_uniforms

from .helpers import offer

O = offer("a", 10, od=1.0, spot=0.4, r1=0.6)  # hazard 0: spot never lost


def _schedule(spot, od, reserved=None, offers=None, name="hand"):
    return Schedule(name, offers or [O], dict(reserved or {}), np.array(spot, dtype=float),
                    np.array(od, dtype=float))


def test_cost_is_reserved_plus_running_hours_plus_cold_starts():
    s = _schedule([[1, 1, 0, 0]], [[0, 2, 2, 0]], {("a", "reserved_1y"): 1})
    ev = evaluate(s, np.array([15.0, 40.0, 30.0, 5.0]), 0.5, cold_start_s=360.0)
    # reserved: 1 x $0.6 x 0.5 h x 4 periods = 1.2
    # on-demand: 4 instance-periods x 0.5 h x $1 = 2.0, plus 2 starts x 0.1 h x $1 = 0.2
    # spot: 2 x 0.5 h x $0.4 = 0.4, plus 1 start x 0.1 h x $0.4 = 0.04
    assert ev.cost_by_tier == pytest.approx({"reserved": 1.2, "spot": 0.44, "on_demand": 2.2})
    assert ev.cost_usd == pytest.approx(3.84)
    assert ev.unmet_demand_fraction == 0.0
    assert ev.capacity_rps.tolist() == [20, 40, 30, 10]
    assert ev.spot_lost_instance_h == 0.0
    assert ev.to_dict()["cost_usd"] == pytest.approx(3.84)


def test_restarts_are_charged_once_per_rise():
    s = _schedule([[0, 0, 0, 0, 0]], [[2, 0, 3, 3, 1]])
    ev = evaluate(s, np.zeros(5), 1.0, cold_start_s=3600.0)  # a start costs one full hour
    assert ev.cost_usd == pytest.approx(9 + 2 + 3)
    assert ev.unmet_demand_fraction == 0.0  # no demand at all


def test_unmet_fraction_by_hand():
    s = _schedule([[1, 1, 0, 0]], [[0, 2, 2, 0]], {("a", "reserved_1y"): 1})
    demand = np.array([25.0, 45.0, 30.0, 12.0])
    ev = evaluate(s, demand, 1.0)
    # capacity 20, 40, 30, 10 -> missing 5, 5, 0, 2 of 112
    assert ev.unmet_demand_fraction == pytest.approx(12 / 112)


def test_spot_without_hazard_is_like_on_demand():
    demand = np.array([25.0, 45.0, 30.0, 12.0])
    counts = [[2, 4, 3, 1]]
    as_spot = evaluate(_schedule(counts, [[0, 0, 0, 0]]), demand, 1.0)
    as_od = evaluate(_schedule([[0, 0, 0, 0]], counts), demand, 1.0)
    assert as_spot.capacity_rps.tolist() == as_od.capacity_rps.tolist() == [20, 40, 30, 10]
    assert as_spot.unmet_demand_fraction == as_od.unmet_demand_fraction == pytest.approx(12 / 112)
    assert as_spot.spot_lost_instance_h == 0.0
    # same starts and hours, spot at 40% of the price
    assert as_spot.cost_usd == pytest.approx(0.4 * as_od.cost_usd)


def test_common_random_numbers_give_identical_results():
    risky = offer("r", 10, od=1.0, spot=0.3, hazard=20.0)  # availability 1/(1 + 20 x 480/3600) = 0.27
    s = _schedule([[5, 5, 5, 5, 5, 5]], np.zeros((1, 6)), offers=[risky])
    demand = np.full(6, 45.0)
    u = spot_uniforms(1, 6, seed=7)
    assert np.array_equal(u, spot_uniforms(1, 6, seed=7))
    assert not np.array_equal(u, spot_uniforms(1, 6, seed=8))
    a = evaluate(s, demand, 1.0, cold_start_s=600.0, uniforms=u)
    b = evaluate(s, demand, 1.0, cold_start_s=600.0, uniforms=u.copy())
    assert (a.cost_usd, a.unmet_demand_fraction, a.spot_lost_instance_h) == \
        (b.cost_usd, b.unmet_demand_fraction, b.spot_lost_instance_h)
    assert np.array_equal(a.capacity_rps, b.capacity_rps)
    default = evaluate(s, demand, 1.0, cold_start_s=600.0)  # default uniforms: seed 0
    again = evaluate(s, demand, 1.0, cold_start_s=600.0, uniforms=spot_uniforms(1, 6, 0))
    assert default.cost_usd == again.cost_usd and np.array_equal(default.capacity_rps, again.capacity_rps)
    # with such a hazard some spot capacity is lost, and every loss is a paid restart
    assert a.spot_lost_instance_h > 0
    assert a.unmet_demand_fraction > 0
    assert np.all(a.capacity_rps <= 50) and np.all(a.capacity_rps >= 0)
    no_loss_cost = 0.3 * (30 + 5 * 600 / 3600)
    assert a.cost_usd > no_loss_cost


def test_spot_losses_follow_the_uniforms():
    risky = offer("r", 10, od=1.0, spot=0.3, hazard=20.0)
    s = _schedule([[4, 4]], np.zeros((1, 2)), offers=[risky])
    lucky = evaluate(s, np.full(2, 40.0), 1.0, cold_start_s=600.0, uniforms=np.full((1, 2), 1e-9))
    unlucky = evaluate(s, np.full(2, 40.0), 1.0, cold_start_s=600.0, uniforms=np.full((1, 2), 1 - 1e-12))
    assert lucky.capacity_rps.tolist() == [40, 40]  # nothing lost
    assert unlucky.capacity_rps.tolist() == [0, 0]  # all four down
    assert unlucky.spot_lost_instance_h == 8.0
    assert unlucky.unmet_demand_fraction == 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=3, max_size=6), st.integers(1, 3), st.integers(0, 1000))
def test_more_spot_never_increases_unmet_demand(counts, extra, seed):
    risky = offer("r", 10, od=1.0, spot=0.3, hazard=5.0)
    T = len(counts)
    u = spot_uniforms(1, T, seed)
    demand = np.full(T, 40.0)
    few = evaluate(_schedule([counts], np.zeros((1, T)), offers=[risky]), demand, 1.0, uniforms=u)
    more = evaluate(_schedule([[c + extra for c in counts]], np.zeros((1, T)), offers=[risky]), demand, 1.0,
                    uniforms=u)
    assert np.all(more.capacity_rps >= few.capacity_rps)
    assert more.unmet_demand_fraction <= few.unmet_demand_fraction + 1e-12


def test_zero_uniform_loses_nothing_and_adds_nothing():
    s = _schedule([[2, 2]], [[0, 0]])
    ev = evaluate(s, np.array([30.0, 30.0]), 1.0, uniforms=np.zeros((1, 2)))
    assert ev.capacity_rps.tolist() == [20, 20]
    assert ev.spot_lost_instance_h == 0.0
    assert ev.unmet_demand_fraction == pytest.approx(20 / 60)
