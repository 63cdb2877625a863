"""The simulator's seams: router and strategy registries, the one billing formula, and the narrow interface an
engine talks to (an engine runs against a stub host with nothing else of the simulator)."""

from __future__ import annotations

import math
from heapq import heappop, heappush

import pytest

from fleetwise.errors import ConfigError
from fleetwise.sim import routers
from fleetwise.sim.billing import billed_usd
from fleetwise.sim.core import EngineSpec, SimConfig
from fleetwise.sim.dispatch import Dispatcher
from fleetwise.sim.engine import Engine, EngineHost
from fleetwise.sim.routers import ROUTERS, least_work, make_router
from fleetwise.sim.run import simulate_fleet
from fleetwise.sim.strategies import STRATEGIES, make_policy

from .helpers import fixed, poisson, requests

# --- routers ---------------------------------------------------------------------------------------------------


def test_router_registry_names_and_unknown_name():
    assert list(ROUTERS) == ["least-work", "round-robin", "p2c"]
    with pytest.raises(ConfigError, match="unknown router 'nope'.*least-work"):
        make_router("nope", None)
    with pytest.raises(ConfigError, match="unknown router"):
        SimConfig(router="nope")


def test_a_registered_router_is_the_one_the_simulator_uses(make_spec, capacity_rps, monkeypatch):
    calls = []

    class Counting:
        def __init__(self, rng):
            pass

        def route(self, engines, kv_need):
            calls.append(len(engines))
            return least_work(engines, kv_need)

    monkeypatch.setitem(routers.ROUTERS, "counting", Counting)
    n = 200
    res = simulate_fleet(requests(poisson(n, 0.5 * capacity_rps)), make_spec(engines=2), fixed(on_demand=1),
                         SimConfig(router="counting"))
    assert res.completed == n
    assert len(calls) == n and set(calls) == {2}


# --- strategies ------------------------------------------------------------------------------------------------


def test_every_registered_strategy_builds_a_policy_named_for_it(make_spec, capacity_rps):
    spec = make_spec(engines=2)
    reqs = requests(poisson(300, capacity_rps))
    for name in STRATEGIES:
        policy = make_policy(name, reqs, spec, budget_usd_per_hour=500.0)
        assert callable(policy.decide) and callable(policy.initial)
        assert policy.name == name
    with pytest.raises(ConfigError, match="unknown strategy 'nope'.*static-peak"):
        make_policy("nope", reqs, spec)


# --- billing ---------------------------------------------------------------------------------------------------


def test_billed_usd_is_per_second_at_the_hourly_price():
    assert billed_usd(3600.0, 2.5) == 2.5
    assert billed_usd(90.0, 40.0) == pytest.approx(1.0)
    assert billed_usd(0.0, 99.0) == 0.0


def test_run_cost_and_timeline_come_from_the_one_formula(make_spec, capacity_rps):
    spec = make_spec(engines=1, cold_start_s=30.0, hazard_per_hour=10.0)
    res = simulate_fleet(requests(poisson(1500, 1.5 * capacity_rps, seed=4)), spec,
                         fixed(reserved=1, on_demand=1, spot=1), SimConfig(seed=2, spot_availability=1.0))
    itype, end = spec.itype, res.duration_s
    price = itype.price
    assert res.cost_by_tier["reserved"] == billed_usd(end, price("reserved"))  # one reservation held all run
    assert res.cost_usd == pytest.approx(sum(res.cost_by_tier.values()))
    ticks = [tick.cost_usd for tick in res.timeline]
    assert ticks == sorted(ticks) and ticks[0] == 0.0 and ticks[-1] <= res.cost_usd
    assert res.usd_per_hour_mean == pytest.approx(res.cost_usd / end * 3600.0)


# --- the engine's narrow interface -------------------------------------------------------------------------------


class StubHost:
    """Everything an engine needs, and nothing of the fleet: lengths, KV needs, outcomes and a step heap."""

    def __init__(self, osl: list[int], kv: list[int]) -> None:
        self.osl, self.cls, self.assigned_work = osl, [0] * len(osl), [0] * len(osl)
        self._kv = kv
        self.first: dict[int, float] = {}
        self.done: dict[int, float] = {}
        self.steps: list = []

    def kv_need(self, rid: int) -> int:
        return self._kv[rid]

    def first_token(self, rid: int, t: float) -> None:
        self.first.setdefault(rid, t)

    def complete(self, rid: int, t: float) -> None:
        self.done[rid] = t

    def pull(self, engine: Engine, t: float) -> None:
        pass

    def push_step(self, t: float, engine: Engine) -> None:
        heappush(self.steps, (t, len(self.steps), engine.version))


def test_an_engine_runs_against_a_stub_host(base_spec):
    spec = base_spec.engine
    host = StubHost(osl=[50, 200], kv=[1024, 2048])
    e = Engine(0, None, host, spec.step_model, max_batch=spec.max_batch, budget=spec.max_num_tokens,
               kv_cap=spec.kv_capacity_tokens, classes=1)
    for rid, isl in enumerate([500, 1500]):
        host.assigned_work[rid] = isl + host.osl[rid]
        e.assign(rid, isl, 0, host.kv_need(rid), host.assigned_work[rid], 0, 0.0)
    while host.steps:
        t, _, version = heappop(host.steps)
        if version == e.version:
            e.step_end(t)
    assert set(host.done) == {0, 1}
    assert 0.0 < host.first[0] < host.done[0] < host.done[1]
    assert e.slots == 0 and e.work == 0 and e.kv_free == spec.kv_capacity_tokens
    assert e.busy_s == pytest.approx(host.done[1])


def test_the_dispatcher_is_an_engine_host():
    members = [m for m in vars(EngineHost) if not m.startswith("_")] + list(EngineHost.__annotations__)
    assert {"kv_need", "first_token", "complete", "pull", "push_step", "osl", "cls", "assigned_work"} <= set(members)
    reqs = requests([0.0, 1.0])
    spec = EngineSpec(step_model=None, max_batch=4, max_num_tokens=512, kv_capacity_tokens=4096, kv_block_tokens=16,
                      slo_batch=4)
    d = Dispatcher(reqs, spec, make_router("least-work", None), lambda t, e: None, {})
    for m in members:
        assert hasattr(d, m), m
    assert d.kv_need(0) == math.ceil((1000 + 250) / 16) * 16


def test_fleet_policy_is_what_simulate_runs_one_driver_at_a_time(tmp_path):
    import numpy as np
    import pytest

    from fleetwise.errors import ConfigError
    from fleetwise.sim.requests import PriorityClass, SimRequests
    from fleetwise.sim.setup import fleet_spec
    from fleetwise.sim.strategies import fleet_policy

    n = 200
    reqs = SimRequests(np.linspace(0, 600, n), np.full(n, 500), np.full(n, 100), np.zeros(n, dtype=np.int64),
                       (PriorityClass("interactive", 1000.0, 50.0),))
    spec = fleet_spec("llama-3.1-8b", "h100-sxm", 1, 1, "fp8", offer="aws/us-east-1/p5.4xlarge")
    assert fleet_policy(reqs, spec).name == "static-peak"
    fixed = fleet_policy(reqs, spec, replicas=3, spot_fraction=1 / 3)
    assert fixed.name == "3 replicas"
    csv = tmp_path / "s.csv"
    csv.write_text("time_s,on_demand,spot\n0,2,1\n300,3,0\n")
    from_file = fleet_policy(reqs, spec, schedule=csv)
    assert from_file.name != "static-peak" and from_file.name != fixed.name
    with pytest.raises(ConfigError, match="give one of replicas, schedule, policy"):
        fleet_policy(reqs, spec, replicas=2, policy="reactive")
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        fleet_policy(reqs, spec, policy="nope")
    with pytest.raises(ConfigError, match="budget"):
        fleet_policy(reqs, spec, policy="budget")
