"""The anchors' scaling rules: each checked on hand-made fleet states, then run once in the simulator."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from fleetwise.sim.anchors import DynamoLoad, HpaQueue, SkyServeFallback, WvaSaturation
from fleetwise.sim.core import SimConfig
from fleetwise.sim.fleet import InstanceType
from fleetwise.sim.policies import Drain, FleetState, Launch
from fleetwise.sim.run import simulate_fleet
from fleetwise.sim.strategies import STRATEGIES, make_policy
from tests.shared_data import shared

from .helpers import check_outcomes, poisson, requests

ITYPE = InstanceType("test", 2, {"on_demand": 10.0, "spot": 4.0, "reserved": 6.0}, 0.0, 100.0)
SLOTS_PER_ENGINE = 100
CAP = 10.0  # req/s per instance at the SLO


def state(t: float = 60.0, od: int = 0, spot: int = 0, serving_od: int | None = None,
          serving_spot: int | None = None, in_flight: int = 0, queued: int = 0, arrivals: float = 0.0,
          interval: float = 60.0) -> FleetState:
    """A fleet state of ITYPE instances (2 engines, 100 SLO slots each)."""
    serving = {"reserved": 0, "on_demand": od if serving_od is None else serving_od,
               "spot": spot if serving_spot is None else serving_spot}
    engines = sum(serving.values()) * ITYPE.engines
    return FleetState(t=t, interval_s=interval, active={"reserved": 0, "on_demand": od, "spot": spot},
                      serving=serving, in_flight=in_flight, queued=queued, slo_slots=engines * SLOTS_PER_ENGINE,
                      arrivals_rps=arrivals, ttft_p95_ms=math.nan, usd_per_hour=0.0, itype=ITYPE,
                      capacity_rps_per_instance=CAP)


def started(policy, t: float = 0.0, **kw):
    """The policy after its first tick (every anchor skips it: no interval behind it)."""
    assert policy.decide(state(t=t, **kw)) == []
    return policy


# -- HPA / KEDA on the waiting queue -------------------------------------------------------------------


def test_hpa_keeps_the_count_within_tolerance():
    hpa = started(HpaQueue(initial_instances=4), od=4)
    # target 5 waiting per engine = 10 per instance; 42 waiting on 4 instances is a ratio of 1.05
    assert hpa.decide(state(od=4, queued=42)) == []


def test_hpa_scales_up_to_ceil_of_metric_over_target():
    hpa = started(HpaQueue(initial_instances=2), od=2)
    assert hpa.decide(state(od=2, queued=95)) == [Launch("on_demand", 8)]  # ceil(95 / 10) = 10


def test_hpa_scale_up_is_rate_limited_per_15_s_period():
    hpa = started(HpaQueue(initial_instances=2, max_instances=100), od=2, interval=15.0)
    # one 15 s period: max(2 + 4 pods, 2 x 200%) = 6
    assert hpa.decide(state(t=15.0, od=2, queued=500, interval=15.0)) == [Launch("on_demand", 4)]
    # four periods in a 60 s tick compound: 2 -> 6 -> 12 -> 24 -> 48
    assert HpaQueue().limit_up(2, 4) == 48


def test_hpa_scale_down_waits_for_the_stabilization_window():
    hpa = started(HpaQueue(initial_instances=5), od=5)
    for t in range(60, 300, 60):  # empty queue: recommendation 1, but 5 was recommended within 300 s
        assert hpa.decide(state(t=t, od=5)) == []
    assert hpa.decide(state(t=360.0, od=5)) == [Drain("on_demand", 4)]


def test_hpa_scale_down_keeps_the_highest_recent_recommendation():
    hpa = started(HpaQueue(initial_instances=2), od=2)
    assert hpa.decide(state(t=60.0, od=2, queued=60)) == [Launch("on_demand", 4)]  # 6
    assert hpa.decide(state(t=120.0, od=6, queued=30)) == []  # recommends 3, holds 6
    assert hpa.decide(state(t=420.0, od=6, queued=30)) == [Drain("on_demand", 3)]  # the 6 left the window


# -- WVA saturation --------------------------------------------------------------------------------------


def test_wva_scales_up_one_replica_when_queue_spare_is_low():
    wva = started(WvaSaturation(initial_instances=3), od=3)
    # 3 instances = 6 engines; 18 waiting = 3 per engine: spare 5 - 3 = 2 < 3
    assert wva.decide(state(od=3, queued=18, in_flight=60)) == [Launch("on_demand", 1)]


def test_wva_scales_up_when_every_replica_is_saturated():
    wva = started(WvaSaturation(initial_instances=3), od=3)
    assert wva.decide(state(od=3, in_flight=540)) == [Launch("on_demand", 1)]  # KV proxy 0.9 >= 0.8


def test_wva_blocks_scaling_while_replicas_start():
    wva = started(WvaSaturation(initial_instances=3), od=4)
    assert wva.decide(state(od=4, serving_od=3, queued=100)) == []


def test_wva_scales_down_only_when_spare_remains_after_removal():
    wva = started(WvaSaturation(initial_instances=4), od=4)
    # 8 engines, KV proxy 0.125: without one instance (2 engines) 0.167, spare 0.63 >= 0.1
    assert wva.decide(state(od=4, in_flight=100)) == [Drain("on_demand", 1)]
    wva = started(WvaSaturation(initial_instances=4), od=4)
    # KV proxy 0.6 -> 0.8 after removal: spare 0 < 0.1, unsafe; no scale-up either (spare 0.2)
    assert wva.decide(state(od=4, in_flight=480)) == []


def test_wva_reconciles_every_60_s():
    wva = started(WvaSaturation(initial_instances=3), od=3, interval=30.0)
    assert wva.decide(state(t=30.0, od=3, queued=100, interval=30.0)) == [Launch("on_demand", 1)]
    assert wva.decide(state(t=60.0, od=3, queued=100, interval=30.0)) == []
    assert wva.decide(state(t=90.0, od=3, queued=100, interval=30.0)) == [Launch("on_demand", 1)]


# -- Dynamo load-based planner ---------------------------------------------------------------------------


def test_dynamo_adds_one_worker_when_load_exceeds_capacity():
    dyn = started(DynamoLoad(initial_instances=3), od=3)
    assert dyn.decide(state(od=3, arrivals=3.5 * CAP)) == [Launch("on_demand", 1)]


def test_dynamo_observes_only_while_scaling():
    dyn = started(DynamoLoad(initial_instances=3), od=4)
    assert dyn.decide(state(od=4, serving_od=3, arrivals=10 * CAP)) == []


def test_dynamo_counts_queued_work_in_the_itl_estimate():
    dyn = started(DynamoLoad(initial_instances=2), od=2)
    # 2 instances = 400 SLO slots; 300 running + 150 queued > 400
    assert dyn.decide(state(od=2, in_flight=300, queued=150)) == [Launch("on_demand", 1)]


def test_dynamo_scales_down_while_every_estimate_is_under_80_percent():
    dyn = started(DynamoLoad(initial_instances=6), od=6)
    # the load is 3 instances' capacity: 6 -> 5 -> 4 -> 3 (at 4 the estimate is 0.75 < 0.8; at 3 it is 1.0)
    assert dyn.decide(state(od=6, arrivals=3 * CAP)) == [Drain("on_demand", 3)]
    # one 5 s interval per tick: one step
    dyn = started(DynamoLoad(initial_instances=6), od=6, interval=5.0)
    assert dyn.decide(state(t=5.0, od=6, arrivals=3 * CAP, interval=5.0)) == [Drain("on_demand", 1)]


def test_dynamo_keeps_the_count_between_the_thresholds():
    dyn = started(DynamoLoad(initial_instances=4), od=4)
    assert dyn.decide(state(od=4, arrivals=3.6 * CAP)) == []  # 0.9: neither > 1 nor < 0.8


# -- SkyServe fallback autoscaler ------------------------------------------------------------------------


def test_skyserve_starts_with_spot_and_base_on_demand():
    assert SkyServeFallback(CAP, initial_instances=4).initial() == {"spot": 3, "on_demand": 1}


def test_skyserve_upscales_after_the_upscale_delay():
    sky = started(SkyServeFallback(CAP, initial_instances=2), od=1, spot=1)
    # 300 s / 20 s = 15 decision intervals; a 60 s tick is 3 of them
    for t in (60.0, 120.0, 180.0, 240.0):
        assert sky.decide(state(t=t, od=1, spot=1, arrivals=4 * CAP)) == []
    assert sky.decide(state(t=300.0, od=1, spot=1, arrivals=4 * CAP)) == [Launch("spot", 2), Launch("on_demand", 2)]


def test_skyserve_upscale_counter_resets_when_the_rate_drops():
    sky = started(SkyServeFallback(CAP, initial_instances=2), od=1, spot=1)
    for t in (60.0, 120.0, 180.0, 240.0):
        sky.decide(state(t=t, od=1, spot=1, arrivals=4 * CAP))
    sky.decide(state(t=270.0, od=1, spot=1, arrivals=2 * CAP, interval=20.0))  # equal target: reset
    assert sky.decide(state(t=330.0, od=1, spot=1, arrivals=4 * CAP)) == []


def test_skyserve_dynamic_fallback_covers_spot_not_ready():
    sky = started(SkyServeFallback(CAP, initial_instances=4), od=1, spot=3)
    # two spot replacements provisioning after preemptions: on-demand for the two spot replicas not ready
    assert sky.decide(state(od=1, spot=3, serving_spot=1, arrivals=4 * CAP)) == [Launch("on_demand", 2)]
    # spot ready again: the fallbacks go
    assert sky.decide(state(t=120.0, od=3, spot=3, arrivals=4 * CAP)) == [Drain("on_demand", 2)]


def test_skyserve_downscales_after_the_downscale_delay():
    sky = started(SkyServeFallback(CAP, initial_instances=4), od=1, spot=3)
    for t in range(60, 1200, 60):  # 1200 s / 20 s = 60 intervals = 20 ticks
        assert sky.decide(state(t=float(t), od=1, spot=3, arrivals=1.5 * CAP)) == []
    # target 2: spot 3 -> 1; SkyServe's unclamped dynamic fallback (base 1 + spot wanted 1 - ready 3 < 0) also
    # scales the base on-demand replica down in the same step
    assert sky.decide(state(t=1200.0, od=1, spot=3, arrivals=1.5 * CAP)) == [Drain("spot", 2),
                                                                            Drain("on_demand", 1)]


# -- in the simulator ------------------------------------------------------------------------------------


def test_anchors_are_registered():
    assert {"hpa-queue", "wva", "dynamo-load", "skyserve"} <= set(STRATEGIES)


@pytest.mark.parametrize("name", ["hpa-queue", "wva", "dynamo-load", "skyserve"])
def test_anchor_runs_a_simulated_trace(name, make_spec, capacity_rps):
    spec = make_spec(engines=1, cold_start_s=60.0, hazard_per_hour=2.0)
    rate = 1.5 * spec.capacity_rps_per_instance  # the first five minutes size a 2-instance start
    n = int(rate * 300)
    reqs = requests(poisson(n, rate, seed=3))
    policy = make_policy(name, reqs, spec, max_instances=8)
    assert policy.name == name
    res = simulate_fleet(reqs, spec, policy, SimConfig(hazard_per_hour=2.0, seed=1))
    check_outcomes(res)
    assert res.completed > 0.9 * res.requests
    assert res.cost_usd > 0
    if name == "skyserve":
        assert res.instances_launched["spot"] > 0


BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "control_anchors.py"
TRACE = shared("traces", "azure_llm_conv_2023.csv")


@pytest.mark.skipif(not TRACE.is_file(), reason="needs ../shared/data/traces/azure_llm_conv_2023.csv")
def test_benchmark_quick_run(capsys):
    spec = importlib.util.spec_from_file_location("control_anchors", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in bench.STRATEGIES:
        assert f"\n{name} " in out
    assert "hybrid is" in out
