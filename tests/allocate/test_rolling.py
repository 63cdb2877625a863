"""Rolling re-optimization: damping, cooldown, lead time, spikes and step time."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.allocate.evaluate import evaluate
from fleetwise.allocate.model import AllocationRules
from fleetwise.allocate.rolling import RollingConfig, RollingOptimizer, operate
from fleetwise.errors import ConfigError

from .helpers import offer

OFFERS = [offer("big", 20, od=4.0, spot=1.6, r1=2.6, hazard=0.05), offer("small", 6, od=1.5, spot=0.5, hazard=0.1)]
RESERVED = {("big", "reserved_1y"): 1}
CONFIG = RollingConfig(up=2, down=1, cooldown_steps=3)
INITIAL = (np.array([0.0, 2.0]), np.array([3.0, 1.0]))
T = 36


def _demand(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(100 + 80 * np.sin(np.arange(n) / 3) + rng.normal(0, 20, n), 0)


def _forecasts(demand: np.ndarray, n: int, width: int = 8) -> np.ndarray:
    padded = np.concatenate([demand, np.full(width, demand[-1])])
    return np.array([padded[k : k + width] for k in range(n)])


@pytest.fixture(scope="module")
def run():
    demand = _demand(T + 8)
    sched, actions, opt = operate(OFFERS, RESERVED, _forecasts(demand, T), 1.0, AllocationRules(), CONFIG, initial=INITIAL)
    return demand[:T], sched, actions, opt


def _series(sched):
    """Per offer and tier: the initial count followed by the served counts."""
    for i in range(len(OFFERS)):
        for j, counts in enumerate((sched.spot[i], sched.on_demand[i])):
            yield i, j, np.concatenate([[INITIAL[j][i]], counts])


def test_damping_limits_every_change(run):
    _, sched, _, _ = run
    moved = 0
    for _, _, counts in _series(sched):
        steps = np.diff(counts)
        assert steps.max() <= CONFIG.up
        assert steps.min() >= -CONFIG.down
        moved += np.count_nonzero(steps)
    assert moved > 10  # the fleet does follow the demand


def test_cooldown_after_scale_down(run):
    _, sched, _, _ = run
    downs = 0
    for _, _, counts in _series(sched):
        steps = np.diff(counts)
        for t in np.flatnonzero(steps < 0):
            downs += 1
            after = steps[t + 1 : t + 1 + CONFIG.cooldown_steps]
            assert np.all(after >= 0), (t, counts)
    assert downs >= 3  # the rule was exercised


def test_first_lead_periods_serve_the_initial_fleet(run):
    _, sched, actions, opt = run
    assert opt.lead_steps == 1  # 300 s cold start in 1-hour periods
    assert sched.spot[:, 0].tolist() == INITIAL[0].tolist()
    assert sched.on_demand[:, 0].tolist() == INITIAL[1].tolist()
    assert sched.reserved == RESERVED
    assert all(a.at_step >= 1 for a in actions)


def test_actions_reproduce_the_schedule(run):
    _, sched, actions, _ = run
    assert actions and all(a.delta != 0 for a in actions)
    for t in range(1, T):
        for i, o in enumerate(OFFERS):
            for tier, arr in (("spot", sched.spot), ("on_demand", sched.on_demand)):
                delta = sum(a.delta for a in actions if a.at_step == t and a.offer == o.id and a.tier == tier)
                assert arr[i, t] == arr[i, t - 1] + delta


def test_steps_are_fast_and_schedule_covers_most_demand(run):
    demand, sched, _, opt = run
    assert len(opt.solve_times_s) == T
    assert max(opt.solve_times_s) < 2.0
    ev = evaluate(sched, demand, 1.0)
    assert ev.unmet_demand_fraction < 0.1


def test_longer_lead_commits_more_periods():
    # 5-minute periods with a 10-minute cold start: two periods already committed
    rules = AllocationRules(cold_start_s=600.0)
    forecasts = _forecasts(np.full(20, 200.0), 6)
    sched, _, opt = operate(OFFERS, {}, forecasts, 5 / 60, rules, CONFIG, initial=INITIAL)
    assert opt.lead_steps == 2
    for k in range(2):
        assert sched.spot[:, k].tolist() == INITIAL[0].tolist()
        assert sched.on_demand[:, k].tolist() == INITIAL[1].tolist()
    assert (sched.spot[:, 2:] != INITIAL[0][:, None]).any() or (sched.on_demand[:, 2:] != INITIAL[1][:, None]).any()


def test_spike_beyond_reach_gives_shortfall_not_an_error():
    demand = np.full(20, 60.0)
    demand[8:12] = 5000.0
    forecasts = _forecasts(demand, 20)
    sched, _, opt = operate(OFFERS, RESERVED, forecasts, 1.0, AllocationRules(), CONFIG, initial=INITIAL)
    ev = evaluate(sched, demand, 1.0)
    assert ev.unmet_demand_fraction > 0.5  # 4 periods at 5000 req/s cannot be reached with +2 per step
    for _, _, counts in _series(sched):
        assert np.diff(counts).max() <= 2 and np.diff(counts).min() >= -1
    assert max(opt.solve_times_s) < 2.0


def test_step_by_step_api():
    opt = RollingOptimizer(OFFERS, {}, 1.0, AllocationRules(), CONFIG, lead_steps=1)
    spot, od, actions = opt.step(np.full(8, 100.0))
    assert spot.tolist() == [0, 0] and od.tolist() == [0, 0]  # nothing was running or committed
    assert all(a.at_step == 1 for a in actions)
    assert sum(a.delta for a in actions) <= 2 * 2 * len(OFFERS)
    spot, od, _ = opt.step(np.full(8, 100.0))
    assert opt.step_index == 2
    assert all(0 <= d <= 2 for d in (*spot, *od))  # the first decision, damped from zero


@pytest.mark.parametrize("kwargs", [{"lookahead_steps": 0}, {"up": -1}, {"down": -1}, {"cooldown_steps": -1}])
def test_rolling_config_validation(kwargs):
    with pytest.raises(ConfigError):
        RollingConfig(**kwargs)


def test_rolling_with_offers_without_on_demand():
    offers = [offer("s", 10, od=None, spot=0.3, r1=0.5)]
    opt = RollingOptimizer(offers, {("s", "reserved_1y"): 1}, 1.0, AllocationRules(max_spot_share=1, min_nonspot_share=0),
                           CONFIG)
    _, od, _ = opt.step(np.full(8, 30.0))
    assert od.tolist() == [0]


@pytest.mark.parametrize(("caps", "initial"), [
    ({}, (np.array([10.0]), np.array([0.0]))),  # all-spot fleet running, spot share cap 70%
    ({"spot": 3}, (np.array([6.0]), np.array([5.0]))),  # more spot running than the cap now allows
], ids=["spot-share", "spot-cap"])
def test_running_fleet_outside_the_rules_is_steered_back(caps, initial):
    o = offer("a", 10, od=1.0, spot=0.3, caps=caps)
    forecasts = np.full((6, 8), 100.0)
    sched, _, _ = operate([o], {}, forecasts, 1.0, AllocationRules(), CONFIG, initial=initial)
    steps = np.diff(np.concatenate([initial[0][:, None], sched.spot], axis=1), axis=1)
    if "spot" in caps:
        # Instances beyond an availability cap cannot be kept: the first decided step drops to the cap at once.
        assert sched.spot[0, 1:].max() <= caps["spot"]
    else:
        assert steps.min() >= -1  # the share cap is priced, so the fleet is steered back within the damping
    assert sched.spot[0, -1] < initial[0][0]  # on its way back within the rules


def test_small_demand_next_to_a_big_instance_is_covered_not_left_short():
    """3 req/s against one 300 req/s instance at $55/h: leaving the demand short must never be the cheaper
    answer (the shortfall price scales up to twice the instance-hour per req/s of the demand)."""
    big = [offer("node", 300, od=55.0)]
    opt = RollingOptimizer(big, {}, 1 / 12, AllocationRules(allow_spot=False, min_nonspot_share=0),
                           RollingConfig(), lead_steps=1)
    opt.step(np.full(8, 3.0))
    assert opt.committed_od[-1][0] == 1


def test_a_step_without_a_plan_in_time_holds_the_running_fleet(monkeypatch):
    from fleetwise.allocate import rolling
    from fleetwise.errors import SolverError

    opt = RollingOptimizer(OFFERS, RESERVED, 1.0, AllocationRules(), CONFIG, lead_steps=1)
    opt.step(np.full(8, 150.0))  # decides a fleet for step 1
    decided = (opt.committed_spot[-1].copy(), opt.committed_od[-1].copy())
    assert decided[0].sum() + decided[1].sum() > 0

    def no_plan(*args, **kwargs):
        raise SolverError("HiGHS found no allocation: Time limit reached")

    monkeypatch.setattr(rolling, "solve", no_plan)
    _, _, actions = opt.step(np.full(8, 400.0))
    assert actions == [] and opt.held_steps == 1
    assert np.array_equal(opt.committed_spot[-1], decided[0])
    assert np.array_equal(opt.committed_od[-1], decided[1])
