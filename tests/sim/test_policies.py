"""Scaling policies: their decisions on hand-built fleet states, and their effect in the loop (cold starts,
scale-up and cooldown, budget caps)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from fleetwise.errors import ConfigError, InfeasibleError
from fleetwise.sim.core import SimConfig
from fleetwise.sim.fleet import InstanceType
from fleetwise.sim.policies import (
    Budget,
    Drain,
    FleetState,
    Launch,
    Reactive,
    StaticSchedule,
    fit_budget,
    to_target,
)
from fleetwise.sim.run import simulate_fleet

from .helpers import active_total, check_outcomes, poisson, requests

ITYPE = InstanceType("test", 1, {"on_demand": 10.0, "spot": 4.0, "reserved": 6.0}, 0.0, 120.0)


def state(t=0.0, active=None, serving=None, in_flight=0, queued=0, slo_slots=None, ttft_p95_ms=math.nan,
          usd_per_hour=None, itype=ITYPE, urgent_queued=None) -> FleetState:
    """A fleet state; by default every active instance serves one engine of 100 SLO slots, billed by role, and
    every queued request is urgent (waited half its TTFT target)."""
    active = {"reserved": 0, "on_demand": 0, "spot": 0, **(active or {})}
    serving = dict(active) if serving is None else {"reserved": 0, "on_demand": 0, "spot": 0, **serving}
    if slo_slots is None:
        slo_slots = 100 * sum(serving.values())
    if usd_per_hour is None:
        usd_per_hour = sum(n * itype.price(role) for role, n in active.items())
    return FleetState(t=t, interval_s=60.0, active=active, serving=serving, in_flight=in_flight, queued=queued,
                      slo_slots=slo_slots, arrivals_rps=0.0, ttft_p95_ms=ttft_p95_ms, usd_per_hour=usd_per_hour,
                      itype=itype, capacity_rps_per_instance=10.0,
                      ttft_slo_ratio_p95=ttft_p95_ms / 1000.0,
                      urgent_queued=queued if urgent_queued is None else urgent_queued)


def launched(actions) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in actions:
        assert isinstance(a, Launch)
        out[a.role] = out.get(a.role, 0) + a.count
    return out


# --- validation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("times,counts,match", [
    ([], [], "at least one row"),
    ([0.0, 60.0], [{"on_demand": 1}], "counts for every time"),
    ([0.0, 60.0, 60.0], [{"on_demand": 1}] * 3, "increase"),
    ([60.0, 0.0], [{"on_demand": 1}] * 2, "increase"),
    ([0.0], [{"gpu": 1}], "unknown role"),
    ([0.0], [{"spot": -1}], "negative count"),
])
def test_static_schedule_validates(times, counts, match):
    with pytest.raises(ConfigError, match=match):
        StaticSchedule(times, counts)


@pytest.mark.parametrize("options,match", [
    ({"low": 0.8, "target": 0.7}, "thresholds"),
    ({"target": 0.9, "high": 0.85}, "thresholds"),
    ({"low": 0.0}, "thresholds"),
    ({"spot_fraction": 1.5}, "spot fraction"),
    ({"spot_fraction": -0.1}, "spot fraction"),
    ({"min_instances": -1}, "min instances"),
    ({"min_instances": 5, "max_instances": 3}, "min instances"),
    ({"max_instances": 0, "min_instances": 0}, "max >= 1"),
])
def test_reactive_validates(options, match):
    with pytest.raises(ConfigError, match=match):
        Reactive(**options)
    with pytest.raises(ConfigError, match=match):
        Budget(**options)


# --- decisions on hand-built states ---------------------------------------------------------------------------


def test_to_target_moves_every_role():
    s = state(active={"on_demand": 3, "spot": 1})
    actions = to_target(s, {"on_demand": 1, "spot": 4, "reserved": 2})
    assert set(actions) == {Drain("on_demand", 2), Launch("spot", 3), Launch("reserved", 2)}
    assert to_target(s, {"on_demand": 3, "spot": 1}) == []


def test_static_schedule_launches_one_cold_start_ahead_and_drains_on_time():
    pol = StaticSchedule([0.0, 600.0, 1200.0], [{"on_demand": 1}, {"on_demand": 3, "spot": 1}, {"on_demand": 1}])
    assert pol.initial() == {"on_demand": 1}
    assert pol.at(599.0) == {"on_demand": 1} and pol.at(600.0)["on_demand"] == 3
    assert pol.decide(state(t=0.0, active={"on_demand": 1})) == []
    # cold start 120 s: at 480 the 600 s row is one cold start away
    assert launched(pol.decide(state(t=480.0, active={"on_demand": 1}))) == {"on_demand": 2, "spot": 1}
    assert pol.decide(state(t=420.0, active={"on_demand": 1})) == []
    # the step down at 1200 s: keep the capacity until then, drain at 1200
    assert pol.decide(state(t=1140.0, active={"on_demand": 3, "spot": 1})) == []
    assert set(pol.decide(state(t=1200.0, active={"on_demand": 3, "spot": 1}))) == {Drain("on_demand", 2),
                                                                                      Drain("spot", 1)}


def test_reactive_scales_up_by_the_step_back_to_target():
    pol = Reactive(initial_instances=2)
    assert pol.initial() == {"reserved": 0, "spot": 0, "on_demand": 2}
    # utilization (180 + 120) / 200 = 1.5 > high; sized as 180 in flight / 100 slots = 1.8 instances plus the
    # backlog cleared within a cold start: 120 / (10 req/s x 120 s) = 0.1 -> ceil(1.9 / 0.7) = 3 instances
    assert launched(pol.decide(state(t=60.0, active={"on_demand": 2}, in_flight=180, queued=120))) == {
        "on_demand": 1}
    # a backlog of 12,000 takes ten more instances to clear within the cold start: ceil((1.8 + 10) / 0.7) = 17
    assert launched(Reactive(initial_instances=2).decide(
        state(t=60.0, active={"on_demand": 2}, in_flight=180, queued=12_000))) == {"on_demand": 15}


def test_reactive_ignores_a_queue_of_work_that_is_not_late():
    pol = Reactive(initial_instances=2)
    # batch work waiting within its (long) TTFT target, the fleet at moderate utilization: hold
    assert pol.decide(state(t=60.0, active={"on_demand": 2}, in_flight=100, queued=20, urgent_queued=0)) == []


@pytest.mark.parametrize("kwargs", [
    {"queued": 1, "in_flight": 10},  # a queue, low utilization
    {"in_flight": 10, "ttft_p95_ms": 1500.0},  # TTFT over the SLO
    {"in_flight": 172},  # utilization 0.86 > high
])
def test_reactive_scales_up_on_any_signal(kwargs):
    pol = Reactive(initial_instances=2)
    assert launched(pol.decide(state(t=60.0, active={"on_demand": 2}, **kwargs))) == {"on_demand": 1}


def test_reactive_counts_provisioning_capacity_as_coming():
    pol = Reactive(initial_instances=1)
    # one serving (100 slots) + two provisioning; 150 requests in the system -> 3 instances at target 0.7
    coming = state(t=60.0, active={"on_demand": 3}, serving={"on_demand": 1}, in_flight=100, queued=50)
    assert pol.decide(coming) == []
    # the same load with everything serving already wants one more
    assert launched(Reactive(initial_instances=1).decide(
        state(t=60.0, active={"on_demand": 1}, in_flight=60, queued=5))) == {"on_demand": 1}


def test_reactive_holds_between_thresholds_and_scales_down_after_cooldown():
    pol = Reactive(initial_instances=3, cooldown_s=300.0)
    assert pol.decide(state(t=0.0, active={"on_demand": 3}, in_flight=180)) == []  # 0.6: inside the band
    # 0.9 > high: ceil(3 * 0.9 / 0.7) = 4 instances
    assert launched(pol.decide(state(t=60.0, active={"on_demand": 3}, in_flight=270))) == {"on_demand": 1}
    low = {"active": {"on_demand": 4}, "in_flight": 10}
    assert pol.decide(state(t=120.0, **low)) == []  # within the cooldown of the scale-up
    assert pol.decide(state(t=359.0, **low)) == []
    assert pol.decide(state(t=360.0, **low)) == [Drain("on_demand", 1)]  # one at a time
    assert pol.decide(state(t=420.0, active={"on_demand": 3}, in_flight=10)) == []
    assert pol.decide(state(t=660.0, active={"on_demand": 3}, in_flight=10)) == [Drain("on_demand", 1)]


def test_reactive_respects_bounds_and_never_drains_reserved():
    pol = Reactive(initial_instances=1, min_instances=2, max_instances=4, reserved=2, cooldown_s=0.0)
    assert pol.initial() == {"reserved": 2, "spot": 0, "on_demand": 0}
    assert pol.decide(state(t=0.0, active={"reserved": 2}, in_flight=0)) == []  # at the floor
    assert launched(pol.decide(state(t=60.0, active={"reserved": 2}, queued=10_000))) == {"on_demand": 2}
    assert pol.decide(state(t=120.0, active={"reserved": 2, "on_demand": 2}, queued=10_000)) == []  # at max
    assert pol.decide(state(t=180.0, active={"reserved": 2, "spot": 1, "on_demand": 1})) == [Drain("on_demand", 1)]
    assert pol.decide(state(t=240.0, active={"reserved": 2, "spot": 1})) == [Drain("spot", 1)]


def test_reactive_spot_fraction_splits_launches():
    pol = Reactive(initial_instances=4, spot_fraction=0.5)
    assert pol.initial() == {"reserved": 0, "spot": 2, "on_demand": 2}
    got = launched(pol.decide(state(t=60.0, active={"on_demand": 2, "spot": 2}, queued=6000, in_flight=400)))
    assert sum(got.values()) == 9  # 400 / 100 slots = 4, + 6000 / (10 x 120) = 5 -> ceil(9 / 0.7) = 13 instances
    assert got["spot"] > 0 and abs(got["spot"] - got["on_demand"]) <= 1


def test_budget_adds_no_capacity_beyond_its_budget():
    pol = Budget(initial_instances=1, usd_per_hour=35.0)
    # wants many more, can afford two more on-demand instances at $10/h
    assert launched(pol.decide(state(t=60.0, active={"on_demand": 1}, queued=10_000))) == {"on_demand": 2}
    assert pol.decide(state(t=120.0, active={"on_demand": 3}, queued=10_000)) == []
    # it still scales down like Reactive
    assert pol.decide(state(t=600.0, active={"on_demand": 3})) == [Drain("on_demand", 1)]


def test_budget_drains_a_fleet_found_over_it():
    pol = Budget(initial_instances=1, usd_per_hour=15.0)
    # $30/h of on-demand against $15/h: two must go, even with a queue that asks for more
    assert pol.decide(state(t=60.0, active={"on_demand": 3}, queued=10_000)) == [Drain("on_demand", 2)]
    # on-demand first, then spot (each counted at the spot price: $4/h)
    over = state(t=60.0, active={"on_demand": 1, "spot": 4})  # $26/h
    assert pol.decide(over) == [Drain("on_demand", 1), Drain("spot", 1)]


def test_budget_counts_drains_under_way_when_over_it():
    pol = Budget(initial_instances=1, usd_per_hour=15.0)
    # $30/h billed, $10/h of it an instance already draining: one more drain is enough, not two
    drained = state(t=60.0, active={"on_demand": 2}, usd_per_hour=30.0)
    assert pol.decide(FleetState(**{**vars(drained), "draining_usd_per_hour": 10.0})) == [Drain("on_demand", 1)]


@pytest.mark.parametrize("usd_per_hour", [0.0, -1.0, math.nan])
def test_budget_must_be_positive(usd_per_hour):
    with pytest.raises(ConfigError, match="budget"):
        Budget(usd_per_hour=usd_per_hour)


@pytest.mark.parametrize("usd_per_hour,reserved,wanted,expected", [
    (10.0, 0, 5, 1),  # one on-demand at $10/h
    (35.0, 0, 5, 3),
    (35.0, 0, 2, 2),  # within the budget, only what it wants
    (35.0, 2, 5, 4),  # $12/h reserved + two on-demand
    (12.0, 2, 5, 2),  # the reserved alone
    (35.0, 3, 1, 3),  # the reserved are held whatever it wants
])
def test_fit_budget_sizes_the_starting_fleet(usd_per_hour, reserved, wanted, expected):
    assert fit_budget(usd_per_hour, ITYPE, reserved, wanted) == expected


def test_fit_budget_refuses_what_it_cannot_hold():
    with pytest.raises(ConfigError, match=r"--reserved 3 costs \$18.00/h .*--budget-usd-per-hour 15.*--reserved 2"):
        fit_budget(15.0, ITYPE, reserved=3)
    with pytest.raises(InfeasibleError, match=r"--budget-usd-per-hour 9.5 buys no instance.*\$10.00/h.*--reserved 1"):
        fit_budget(9.5, ITYPE)
    with pytest.raises(InfeasibleError, match=r"buys no instance.*\$10.00/h") as info:
        fit_budget(0.01, ITYPE)
    assert "--reserved" not in str(info.value)  # not even a reserved instance fits


# --- in the loop ---------------------------------------------------------------------------------------------


def _burst(capacity_rps: float) -> np.ndarray:
    """Light load for ~2 minutes, a burst at ~1.6x one engine's capacity for ~2 minutes, light load again."""
    a = poisson(int(0.13 * capacity_rps * 120), 0.13 * capacity_rps, seed=0)
    b = poisson(int(1.6 * capacity_rps * 120), 1.6 * capacity_rps, seed=1, start=a[-1])
    c = poisson(int(0.13 * capacity_rps * 120), 0.13 * capacity_rps, seed=2, start=b[-1])
    return np.r_[a, b, c]


def test_cold_start_delays_capacity(make_spec, capacity_rps):
    t = _burst(capacity_rps)
    p95 = []
    for cold in (0.0, 30.0, 120.0):
        res = simulate_fleet(requests(t), make_spec(cold_start_s=cold), Reactive(initial_instances=1),
                             SimConfig(control_interval_s=30.0))
        check_outcomes(res)
        assert res.completed == res.requests
        assert sum(res.instances_launched.values()) > 1  # it did scale up
        p95.append(res.ttft_ms["p95"])
    assert p95[0] < p95[1] < p95[2]
    assert p95[2] > 3 * p95[0]


def _step_schedule_run(make_spec, cold: float):
    pol = StaticSchedule([0.0, 300.0], [{"on_demand": 1}, {"on_demand": 2}])
    res = simulate_fleet(requests(poisson(3000, 5.0)), make_spec(cold_start_s=cold), pol, SimConfig())
    return {k.t: k for k in res.timeline}, res


def test_static_schedule_step_up_launches_a_cold_start_early(make_spec):
    ticks, res = _step_schedule_run(make_spec, cold=120.0)
    # launched at the 180 s tick (= 300 - 120), provisioning at 240, serving at 300
    assert (ticks[180.0].serving["on_demand"], ticks[180.0].provisioning["on_demand"]) == (1, 0)
    assert (ticks[240.0].serving["on_demand"], ticks[240.0].provisioning["on_demand"]) == (1, 1)
    assert (ticks[300.0].serving["on_demand"], ticks[300.0].provisioning["on_demand"]) == (2, 0)
    # billed from the launch, cold start included
    end, price = res.duration_s, make_spec().itype.price("on_demand")
    assert res.cost_by_tier["on_demand"] == pytest.approx((end + (end - 180.0)) * price / 3600, rel=1e-12)


def test_static_schedule_capacity_serves_on_time_off_the_tick_grid(make_spec):
    ticks, _ = _step_schedule_run(make_spec, cold=100.0)
    assert ticks[300.0].serving["on_demand"] == 2


def test_static_schedule_step_down_drains_at_the_time(make_spec):
    pol = StaticSchedule([0.0, 300.0], [{"on_demand": 2}, {"on_demand": 1}])
    res = simulate_fleet(requests(poisson(3000, 5.0)), make_spec(cold_start_s=120.0), pol, SimConfig())
    ticks = {k.t: k for k in res.timeline}
    assert ticks[300.0].serving["on_demand"] == 2 and ticks[360.0].serving["on_demand"] == 1
    price, end = make_spec().itype.price("on_demand"), res.duration_s
    # the second instance is billed until it finished its last requests, just after 300 s
    assert (end + 300.0) * price / 3600 <= res.cost_by_tier["on_demand"] <= (end + 310.0) * price / 3600
    assert res.completed == res.requests


def test_reactive_scales_up_under_overload_and_down_after_cooldown(make_spec, capacity_rps):
    t = _burst(capacity_rps)
    t = np.r_[t, poisson(1200, 2.0, seed=3, start=t[-1])]  # ten quiet minutes
    cooldown = 120.0
    res = simulate_fleet(requests(t), make_spec(cold_start_s=30.0), Reactive(initial_instances=1, cooldown_s=cooldown),
                         SimConfig(control_interval_s=30.0))
    check_outcomes(res)
    assert res.completed == res.requests
    ticks = res.timeline
    counts = [active_total(k) for k in ticks]
    assert max(counts) >= 2  # scaled up in the burst
    assert counts[-1] == 1  # and back to one instance once it was quiet
    changes = [(a.t, active_total(b) - active_total(a)) for a, b in itertools.pairwise(ticks)
               if active_total(b) != active_total(a)]  # decided at tick a.t
    assert any(d > 0 for _, d in changes) and any(d < 0 for _, d in changes)
    for (t0, _), (t1, d1) in itertools.pairwise(changes):
        if d1 < 0:
            assert t1 - t0 >= cooldown  # no scale-down within the cooldown of the last change
            assert d1 == -1  # one instance at a time


def _budget_run(make_spec, capacity_rps, spot_fraction: float, spot_availability: float):
    spec = make_spec(cold_start_s=60.0)
    budget = 3 * spec.itype.price("on_demand")
    pol = Budget(initial_instances=1, usd_per_hour=budget, spot_fraction=spot_fraction)
    cfg = SimConfig(spot_availability=spot_availability, control_interval_s=30.0, tail_s=600.0)
    res = simulate_fleet(requests(poisson(6000, 2.5 * capacity_rps)), spec, pol, cfg)
    # USD/hour while it ran, from the cost accrued between ticks (instances billed at their tiers)
    slopes = [(b.cost_usd - a.cost_usd) / (b.t - a.t) * 3600 for a, b in itertools.pairwise(res.timeline)]
    return budget, max(slopes), res


def test_budget_never_exceeds_its_usd_per_hour(make_spec, capacity_rps):
    budget, peak, res = _budget_run(make_spec, capacity_rps, 0.0, 1.0)
    assert peak <= budget * (1 + 1e-9)
    assert peak == pytest.approx(budget)  # the cap bound: it wanted more
    assert res.instances_launched["on_demand"] == 3


@pytest.mark.parametrize("spot_fraction,spot_availability", [
    pytest.param(0.5, 1.0),
    pytest.param(1.0, 0.0),
])
def test_budget_holds_with_spot_in_the_mix(make_spec, capacity_rps, spot_fraction, spot_availability):
    budget, peak, _ = _budget_run(make_spec, capacity_rps, spot_fraction, spot_availability)
    assert peak <= budget * (1 + 1e-9)


def test_budget_counts_instances_still_draining(make_spec, capacity_rps):
    spec = make_spec(cold_start_s=10.0)
    price = spec.itype.price("on_demand")
    quiet = poisson(30, 0.2, seed=0)  # long requests at a trickle: low utilization, scale-down after 60 s
    n = int(1.6 * capacity_rps * 100)
    surge = poisson(n, 1.6 * capacity_rps, seed=1, start=quiet[-1])
    t = np.r_[quiet, surge]
    osl = np.r_[np.full(30, 30_000), np.full(n, 250)]
    pol = Budget(initial_instances=2, usd_per_hour=2 * price, cooldown_s=60.0)
    res = simulate_fleet(requests(t, 1000, osl), spec, pol, SimConfig(control_interval_s=30.0))
    assert any(active_total(k) == 1 for k in res.timeline)  # it did scale down before the surge
    slopes = [(b.cost_usd - a.cost_usd) / (b.t - a.t) * 3600 for a, b in itertools.pairwise(res.timeline)]
    assert max(slopes) <= 2 * price * (1 + 1e-9)


def test_reactive_sizes_on_latency_sensitive_load_only():
    """Batch work in flight fills idle capacity; it does not make the reactive policy buy more."""
    pol = Reactive(initial_instances=2)
    busy_with_batch = state(t=60.0, active={"on_demand": 2}, in_flight=190, urgent_queued=0)
    assert launched(pol.decide(busy_with_batch)) == {"on_demand": 1}  # all of it counted: 0.95 > high
    only_sensitive = FleetState(**{**vars(busy_with_batch), "load": (40, 0, 0.0)})
    assert Reactive(initial_instances=2).decide(only_sensitive) == []


def test_rolling_forecast_is_capped_by_what_was_observed():
    from fleetwise.sim.rolling import Rolling

    pol = Rolling(period_s=60.0, headroom=0.25)
    pol._ticks_per_period = 1
    pol._arrivals = [50.0 * 60] * 30 + [400.0 * 60] + [50.0 * 60] * 3  # one 8x step in 34 minutes
    fc = pol.forecast(6)
    assert np.all(fc <= 400.0 * 1.25 + 1e-9)
    assert np.all(fc >= 50.0)
    assert pol.forecast(6, queued=600)[0] == pytest.approx(fc[0] + 10.0)  # the queue cleared in one period


# --- budgets at several caps -----------------------------------------------------------------------------------


def interval_usd_per_hour(res) -> list[float]:
    """Spend rate over each control interval, from the cost accrued between ticks."""
    return [(b.cost_usd - a.cost_usd) / (b.t - a.t) * 3600 for a, b in itertools.pairwise(res.timeline)]


def check_within(res, budget: float) -> None:
    """A budget held: at every moment (per-second billing), so over every control interval too."""
    assert res.budget_usd_per_hour == budget
    assert res.usd_per_hour_peak <= budget * (1 + 1e-9)
    assert max(interval_usd_per_hour(res)) <= budget * (1 + 1e-9)
    assert res.usd_per_hour_mean <= res.usd_per_hour_peak * (1 + 1e-9)


@pytest.fixture(scope="module")
def steady(base_spec, make_spec):
    """Five minutes at 3.5 instances' capacity at the SLO (one engine per instance, a one-minute cold start):
    the first window sizes a fleet of four; reactive scaling takes it to about five."""
    from fleetwise.sim.strategies import make_policy

    per_instance = base_spec.capacity_rps_per_instance / base_spec.itype.engines
    spec = dataclasses.replace(make_spec(cold_start_s=60.0), capacity_rps_per_instance=per_instance)
    reqs = requests(poisson(int(3.5 * per_instance * 300), 3.5 * per_instance, seed=4))
    cfg = SimConfig(control_interval_s=30.0, tail_s=600.0)

    def run(name: str, **opts):
        return simulate_fleet(reqs, spec, make_policy(name, reqs, spec, **opts), cfg)

    return spec, reqs, run


@pytest.mark.parametrize("instances", [0.5, 0.99])
def test_a_budget_below_one_instance_is_refused(steady, instances):
    from fleetwise.sim.strategies import make_policy

    spec, reqs, _ = steady
    price = spec.itype.price("on_demand")
    with pytest.raises(InfeasibleError, match=rf"buys no instance.*\${price:,.2f}/h"):
        make_policy("budget", reqs, spec, budget_usd_per_hour=instances * price)


def test_reserved_over_the_budget_is_refused_up_front(steady):
    from fleetwise.sim.strategies import make_policy

    spec, reqs, _ = steady
    with pytest.raises(ConfigError, match="--reserved 3.*--budget-usd-per-hour"):
        make_policy("budget", reqs, spec, reserved=3, budget_usd_per_hour=2 * spec.itype.price("reserved"))


@pytest.mark.parametrize("instances,reserved", [(1.0, 0), (2.5, 0), (2.5, 1)])
def test_a_binding_budget_holds_and_costs_slo(steady, instances, reserved):
    spec, _, run = steady
    budget = instances * spec.itype.price("on_demand")
    free = run("reactive", reserved=reserved)
    res = run("budget", budget_usd_per_hour=budget, reserved=reserved)
    check_outcomes(res)
    check_within(res, budget)
    assert free.usd_per_hour_peak > budget  # the cap binds ...
    assert res.slo_attainment < free.slo_attainment - 0.1  # ... and the SLO pays for it
    assert res.instances_launched["reserved"] == reserved


def test_a_budget_above_the_unconstrained_spend_changes_nothing(steady):
    _, _, run = steady
    free = run("reactive")
    budget = 2 * free.usd_per_hour_peak
    res = run("budget", budget_usd_per_hour=budget)
    check_within(res, budget)
    assert (res.slo_attainment, res.cost_usd, res.instances_launched) == \
        (free.slo_attainment, free.cost_usd, free.instances_launched)
    assert free.budget_usd_per_hour is None


def test_a_fleet_started_over_its_budget_is_drained_at_once(make_spec, capacity_rps):
    spec = make_spec(cold_start_s=60.0)
    price = spec.itype.price("on_demand")
    pol = Budget(initial_instances=4, usd_per_hour=2 * price)  # sized by hand, past its own budget
    res = simulate_fleet(requests(poisson(3000, 0.5 * capacity_rps)), spec, pol, SimConfig(control_interval_s=30.0))
    check_outcomes(res)
    check_within(res, 2 * price)  # the extra two were cancelled before they billed a second


def test_budget_holds_through_spot_notices_and_fallbacks(make_spec, capacity_rps):
    """Replacements of reclaimed spot instances and retries at spot launch outside the policy's ticks: they
    wait when the budget has no room for them."""
    spec = make_spec(cold_start_s=60.0, hazard_per_hour=30.0)
    budget = 3 * spec.itype.price("on_demand")
    pol = Budget(initial_instances=1, usd_per_hour=budget, spot_fraction=1.0)
    cfg = SimConfig(spot_availability=0.5, control_interval_s=30.0, tail_s=600.0, seed=3)
    res = simulate_fleet(requests(poisson(6000, 2.5 * capacity_rps)), spec, pol, cfg)
    check_outcomes(res)
    assert res.preemptions > 0 and res.spot_fallbacks > 0
    check_within(res, budget)
