"""The controller's decisions on a fake fleet: modes, SLO burn and queue, stale metrics, spot fallback,
restart from the store. (Real worker processes: test_local.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest

from fleetwise.control.controller import ROUTER_GRACE_S, ControlConfig, Controller
from fleetwise.control.fake import FakeActuator, ManualClock, SyntheticSource
from fleetwise.control.store import SqlStore
from fleetwise.control.types import SERVING, FleetPlan
from fleetwise.errors import ConfigError
from fleetwise.sim.setup import fleet_spec


@pytest.fixture(scope="module")
def spec():
    return fleet_spec("llama-3.1-8b", "h100", 1, None, "fp8", engine="vllm")


def make(spec, tmp_path, mode="active", **kw):
    clock = ManualClock()
    act = FakeActuator("p", kw.pop("grant_spot", True))
    src = SyntheticSource(clock)
    cfg = ControlConfig(mode=mode, interval_s=60.0, fast_interval_s=10.0, cooldown_s=60.0, **kw)
    store = SqlStore(f"sqlite:///{tmp_path}/c.db")
    return Controller(cfg, act, src, store, spec=spec, clock=clock), act, src, clock


def run_steps(c: Controller, clock: ManualClock, n: int, dt: float = 10.0) -> list:
    async def go():
        out = []
        for _ in range(n):
            out.append(await c.step())
            clock.t += dt
        return out
    return asyncio.run(go())


def test_active_mode_launches_the_initial_fleet_and_holds_it(spec, tmp_path):
    c, act, _src, clock = make(spec, tmp_path, initial=(("on_demand", 2),))
    run_steps(c, clock, 3)
    assert sorted(w.tier for w in act.workers.values()) == ["on_demand", "on_demand"]
    assert act.plans[-1].desired[("p", "on_demand")] == 2


def test_queue_and_slo_burn_scale_up_at_once(spec, tmp_path):
    c, act, src, clock = make(spec, tmp_path, initial=(("on_demand", 1),))
    run_steps(c, clock, 2)
    src.rps, src.ttft_s, src.waiting = 50.0, 2.0, 40  # TTFT p95 twice the 1 s target, requests queued
    decisions = [d for d in run_steps(c, clock, 2) if d is not None]
    assert sum(c.desired.values()) > 1
    assert decisions[0].reason in ("queue", "slo_burn")
    assert decisions[0].loop == "fast"
    assert len(act.workers) == sum(c.desired.values())


def test_stale_metrics_hold_the_fleet(spec, tmp_path):
    c, act, src, clock = make(spec, tmp_path, initial=(("on_demand", 2),))
    run_steps(c, clock, 2)
    src.silent = {next(iter(act.workers))}
    src.rps, src.ttft_s, src.waiting = 500.0, 4.0, 100  # would scale up, but one worker did not report
    decisions = [d for d in run_steps(c, clock, 3) if d is not None]
    assert {d.reason for d in decisions} == {"hold_stale"}
    assert sum(c.desired.values()) == 2


def test_advisory_mode_records_but_never_acts(spec, tmp_path):
    c, act, src, clock = make(spec, tmp_path, mode="advisory", initial=(("on_demand", 1),))
    act.apply(FleetPlan({("p", "on_demand"): 1}))  # a fleet that exists already
    act.plans.clear()
    src.rps, src.ttft_s, src.waiting = 60.0, 3.0, 50
    run_steps(c, clock, 8)
    assert act.plans == []
    assert c.store.count() > 0
    assert sum(c.desired.values()) > 1  # it recommends more


def test_noop_mode_records_nothing(spec, tmp_path):
    c, act, _src, clock = make(spec, tmp_path, mode="noop")
    run_steps(c, clock, 8)
    assert act.plans == [] and c.store.count() == 0
    assert c.snapshot.observation is not None


def test_slow_loop_records_a_forecast_decision_each_interval(spec, tmp_path):
    c, _act, src, clock = make(spec, tmp_path)
    src.rps = 5.0
    decisions = [d for d in run_steps(c, clock, 20) if d is not None]
    slow = [d for d in decisions if d.loop == "slow"]
    assert len(slow) >= 2
    assert all(math.isfinite(d.inputs["observation"]["arrivals_rps"]) for d in slow)
    assert math.isfinite(c.snapshot.forecast_rps)


def test_unscheduled_spot_falls_back_to_on_demand_then_back_to_spot(spec, tmp_path):
    c, act, _src, clock = make(spec, tmp_path, initial=(("spot", 1),), grant_spot=False,
                              spot_grant_timeout_s=30.0, back_to_spot_s=120.0)
    run_steps(c, clock, 5)  # 40 s: the spot request times out
    assert c.desired["on_demand"] == 1 and c.desired["spot"] == 0
    assert any(w.tier == "on_demand" and w.state == SERVING for w in act.workers.values())
    act.grant_spot = True
    run_steps(c, clock, 12)  # past back_to_spot_s
    assert c.desired["spot"] == 1


def test_actuator_errors_are_counted_and_the_next_step_retries(spec, tmp_path):
    c, act, _src, clock = make(spec, tmp_path, initial=(("on_demand", 1),))
    act.fail = True
    assert run_steps(c, clock, 2) == [None, None]
    assert c.snapshot.actuator_errors == 2 and "cloud API down" in c.snapshot.last_error
    act.fail = False
    run_steps(c, clock, 1)
    assert len(act.workers) == 1


def test_a_restarted_controller_continues_from_the_store(spec, tmp_path):
    c, act, src, clock = make(spec, tmp_path, initial=(("on_demand", 1),))
    src.rps, src.ttft_s, src.waiting = 80.0, 3.0, 60
    run_steps(c, clock, 3)
    want = dict(c.desired)
    assert sum(want.values()) > 1
    again = Controller(c.config, act, src, SqlStore(f"sqlite:///{tmp_path}/c.db"), spec=spec, clock=clock)
    assert again.desired == want
    assert again.now() == pytest.approx(c.now())  # the controlled clock continues
    before = len(act.workers)
    run_steps(again, clock, 1)
    assert len(act.workers) >= before  # adopts what exists; launches nothing twice


def test_bad_configuration_is_one_clear_error():
    with pytest.raises(ConfigError, match="unknown mode"):
        ControlConfig(mode="yolo")
    with pytest.raises(ConfigError, match="fast interval"):
        ControlConfig(interval_s=5, fast_interval_s=10)


def test_a_fleet_resized_by_someone_else_is_adopted_not_fought(spec, tmp_path):
    c, act, _src, clock = make(spec, tmp_path, initial=(("on_demand", 2),))
    run_steps(c, clock, 2)
    act.external_changes = [("fleetwise-llama-p-on-demand", 2, 4)]  # e.g. kubectl scale
    act.apply(FleetPlan({("p", "on_demand"): 4}))
    decision = run_steps(c, clock, 1)[0]
    assert decision is None or decision.reason != "reconcile"  # reported by the apply of this step
    decision = run_steps(c, clock, 1)[0]
    assert decision.reason == "reconcile" and c.desired["on_demand"] == 4
    assert decision.inputs["external_changes"] == [["fleetwise-llama-p-on-demand", "2", "4"]]


def test_the_budget_caps_the_desired_fleet_with_spot_priced_as_on_demand(spec, tmp_path):
    c0, *_ = make(spec, tmp_path)
    od = c0.price("on_demand")
    (tmp_path / "b").mkdir()
    c, act, src, clock = make(spec, tmp_path / "b", initial=(("on_demand", 1),), budget_usd_per_hour=2.5 * od)
    src.rps, src.ttft_s, src.waiting = 500.0, 4.0, 200  # wants many more
    run_steps(c, clock, 6)
    assert sum(c.desired.values()) == 2
    assert sum(c.price(w.tier) for w in act.workers.values()) <= 2.5 * od


def test_metrics_export_a_cumulative_step_histogram_and_the_budget(spec, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from fleetwise.control.app import metrics_text

    c, _act, _src, clock = make(spec, tmp_path, budget_usd_per_hour=100.0)
    run_steps(c, clock, 5)
    fams = {f.name: f for f in text_string_to_metric_families(metrics_text(c).decode())}
    assert fams["fleetwise_budget_usd_per_hour"].samples[0].value == 100.0
    counts = [s.value for s in fams["fleetwise_step_duration_seconds"].samples
              if s.name.endswith("_count")]
    assert sum(counts) == 5
    desired = {s.labels["tier"]: s.value for s in fams["fleetwise_desired_replicas"].samples}
    assert desired == {"reserved": 0, "on_demand": 1, "spot": 0}


def test_a_restarted_controller_keeps_the_policys_schedule_cooldown_and_history(spec, tmp_path):
    c, act, src, clock = make(spec, tmp_path, initial=(("on_demand", 1),))
    src.rps = 20.0
    run_steps(c, clock, 9)  # past the first slow decision (60 s period)
    before = c.policy.state_dict()
    assert before["slow"]["next_s"] > 0 and len(before["slow"]["arrivals"]) >= 6
    again = Controller(c.config, act, src, SqlStore(f"sqlite:///{tmp_path}/c.db"), spec=spec, clock=clock)
    assert again.policy.state_dict() == before
    # killed every 40 s, a controller still makes its slow decisions on schedule
    slow = []
    for _ in range(6):
        again = Controller(c.config, act, src, SqlStore(f"sqlite:///{tmp_path}/c.db"), spec=spec, clock=clock)
        slow += [d for d in run_steps(again, clock, 4) if d is not None and d.loop == "slow"]
    assert len(slow) >= 3  # 240 s of controlled time at a 60 s period


def test_scale_down_drains_the_least_busy_worker_then_removes_it_when_idle(spec, tmp_path):
    c, act, src, clock = make(spec, tmp_path, initial=(("on_demand", 3),))
    run_steps(c, clock, 2)
    ids = sorted(act.workers)
    c.desired["on_demand"] = 2  # as a policy's Drain would

    async def busy(workers):  # the first worker has requests running; the others are idle except one waiting
        out = await SyntheticSource.sample(src, workers)
        return {k: dataclasses.replace(m, running=5.0 if k == ids[0] else 0.0, waiting=1.0 if k == ids[1] else 0.0)
                for k, m in out.items()}

    src.sample = busy
    asyncio.run(c.step())
    assert list(c.draining) == [ids[2]]  # idle, so the cheapest to lose
    assert ids[2] in act.workers  # drain first: still there
    run_steps(c, clock, 1, dt=ROUTER_GRACE_S)
    assert ids[2] in act.workers  # idle, but a router may not have read the list without it yet
    run_steps(c, clock, 1)
    assert ids[2] not in act.workers  # idle, and off the backends list long enough: removed
    run_steps(c, clock, 1)
    assert not c.draining and sorted(act.workers) == ids[:2]  # forgotten once gone, nothing relaunched


def test_a_restarted_controller_lists_no_backends_until_it_has_looked_and_removes_nothing_at_once(spec,
                                                                                                  tmp_path):
    """A controller killed and started again: until its first step /api/backends says 503 (an empty list
    would tell the gateway the fleet is gone), and a worker the old one drained stays until the routers have
    had time to read the new list."""
    from fastapi.testclient import TestClient

    from fleetwise.control.app import create_app

    c, act, src, clock = make(spec, tmp_path, initial=(("on_demand", 2),))
    run_steps(c, clock, 2)
    ids = sorted(act.workers)
    c.draining[ids[1]] = c.now() - 1000.0  # drained long ago, idle: the old controller would remove it now
    c.desired["on_demand"] = 1
    c._persist(set())
    again = Controller(c.config, act, src, SqlStore(f"sqlite:///{tmp_path}/c.db"), spec=spec, clock=clock)
    with TestClient(create_app(again, run_loop=False)) as http:
        resp = http.get("/api/backends")
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        run_steps(again, clock, 1, dt=ROUTER_GRACE_S / 2)
        assert ids[1] in act.workers  # the first step after a restart removes nothing
        assert [b["id"] for b in http.get("/api/backends").json()["backends"]] == [ids[0]]
        run_steps(again, clock, 2, dt=ROUTER_GRACE_S)
    assert sorted(act.workers) == [ids[0]]


def test_a_restarted_controller_measures_its_first_window_from_the_stored_scrapes(spec, tmp_path):
    c, act, src, clock = make(spec, tmp_path, initial=(("on_demand", 2),))
    src.rps = 12.0
    run_steps(c, clock, 4)
    again = Controller(c.config, act, src, SqlStore(f"sqlite:///{tmp_path}/c.db"), spec=spec, clock=clock)
    run_steps(again, clock, 1)
    assert again.snapshot.observation.arrivals_rps == pytest.approx(12.0)
    assert again.policy.state_dict()["slow"]["optimizer"]["step_index"] == \
        c.policy.state_dict()["slow"]["optimizer"]["step_index"]


def test_a_given_capacity_per_worker_is_what_the_policy_sizes_with(spec, tmp_path):
    """The closed-form estimate at 1,000 / 250 tokens can differ from what a worker serves on the real
    lengths; --capacity-rps (e.g. plan's verified goodput) replaces it."""
    c, _act, _src, clock = make(spec, tmp_path, initial=(("on_demand", 1),), capacity_rps=2.5)
    assert c.capacity_per_worker == 2.5
    run_steps(c, clock, 3)
    serving = sum(1 for w in c.snapshot.workers if w.state == SERVING)
    assert serving >= 1 and c.snapshot.capacity_rps == pytest.approx(2.5 * serving)
    with pytest.raises(ConfigError, match="capacity per worker"):
        ControlConfig(capacity_rps=0.0)
