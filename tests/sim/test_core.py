"""The fleet simulator's event loop: request outcomes, determinism, queueing, spot notices and drain strategies,
priority preemption, and the errors a run reports."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from fleetwise.errors import ConfigError
from fleetwise.sim.core import DONE, DRAINS, OPEN, ROUTERS, SimConfig, Simulator
from fleetwise.sim.fleet import TERMINATED
from fleetwise.sim.policies import Launch, Reactive, StaticSchedule
from fleetwise.sim.requests import PriorityClass, SimRequests
from fleetwise.sim.results import simulation_result
from fleetwise.sim.run import simulate_fleet
from fleetwise.traffic.load import load_trace
from fleetwise.traffic.records import RequestTrace
from tests.shared_data import shared

from .helpers import (
    INTERACTIVE,
    TWO_CLASSES,
    check_outcomes,
    fixed,
    mixed_lengths,
    poisson,
    requests,
)

AZURE_CODE = shared("traces", "azure_llm_code_2023.csv")


def run_sim(reqs, spec, policy, config: SimConfig | None = None):
    """simulate_fleet, keeping the simulator so tests can look at per-request and per-engine state."""
    sim = Simulator(reqs, spec.itype, spec.engine, policy, config or SimConfig(), spec.capacity_rps_per_instance)
    log = sim.run()
    return sim, simulation_result(sim, log, policy.name)


def _mixed_two_class_requests(n: int, rate: float, seed: int) -> SimRequests:
    isl, osl = mixed_lengths(n, seed, max_isl=6000, max_osl=3000)
    cls = np.random.default_rng(seed + 1).choice(2, n, p=[0.6, 0.4])
    return requests(poisson(n, rate, seed=seed + 2), isl, osl, cls, TWO_CLASSES)


def _engines_released(sim: Simulator) -> list[str]:
    """Engines still holding KV cache, slots or work once no request is in flight."""
    bad = []
    for inst in sim.instances:
        for e in inst.engines:
            left = (e.kv_cap - e.kv_free, e.slots, e.work, e.n_dec, e.ctx_sum, sum(e.class_count), len(e.prefill))
            if any(left):
                bad.append(f"instance {inst.id} ({inst.state}) engine {e.id}: {left}")
    return bad


# --- conservation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("drain", DRAINS)
def test_every_request_ends_in_one_state_under_heavy_preemption(make_spec, drain, router):
    """Spot fleet losing an instance every few minutes, two priority classes, every drain strategy and router."""
    spec = make_spec(engines=2, cold_start_s=60.0, hazard_per_hour=20.0)
    n = 2000
    reqs = _mixed_two_class_requests(n, 6.0, seed=0)
    cfg = SimConfig(drain=drain, router=router, seed=1, spot_availability=1.0)
    sim, res = run_sim(reqs, spec, fixed(spot=2), cfg)
    check_outcomes(res)
    assert res.preemptions >= 3  # the scenario really is preemption-heavy
    assert res.completed == n  # the default 30-minute tail is plenty
    assert all(s == DONE for s in sim.state)
    assert not _engines_released(sim)  # no KV cache, slot or work left behind by removals
    assert sim.qlen == 0 and not any(sim.queues)
    events = res.preemption_events
    assert len(events) == res.preemptions
    if drain == "migrate":
        assert sum(e["kept"] for e in events) == 0 and res.migrated > 0
    if drain == "requeue":
        assert sum(e["kept"] + e["migrated"] for e in events) == 0 and res.migrated == 0
    if drain == "drain":
        assert sum(e["kept"] for e in events) > 0
    # events count moves, the summary counts requests moved at least once
    assert sum(e["migrated"] for e in events) >= res.migrated
    assert res.spot_fallbacks == 0
    # every notice launched a replacement (preempted provisioning ones included)
    assert res.instances_launched["spot"] == 2 + sum(1 for e in events if e["state"] in ("serving", "provisioning"))


@pytest.mark.parametrize("drain", DRAINS)
def test_short_tail_leaves_requests_unfinished(make_spec, capacity_rps, drain):
    spec = make_spec(engines=1, cold_start_s=30.0, hazard_per_hour=20.0)
    n = 1500
    t = poisson(n, 1.5 * capacity_rps, seed=2)
    cfg = SimConfig(drain=drain, tail_s=2.0, seed=3, spot_availability=1.0)
    sim, res = run_sim(requests(t), spec, fixed(spot=1, on_demand=1), cfg)
    check_outcomes(res)
    assert res.unfinished > 0 and res.completed > 0
    assert res.unfinished == sum(1 for s in sim.state if s == OPEN)
    assert res.duration_s == pytest.approx(t[-1] + 2.0)


def test_no_instances_leaves_everything_unfinished(make_spec):
    spec = make_spec()
    res = simulate_fleet(requests(poisson(50, 5.0)), spec, fixed(), SimConfig(tail_s=10.0))
    check_outcomes(res)
    assert res.unfinished == 50 and res.completed == 0
    assert res.cost_usd == 0.0 and math.isnan(res.ttft_ms["p50"])


def test_engines_release_everything_after_priority_preemption(make_spec, capacity_rps):
    spec = make_spec(engines=2)
    reqs = _mixed_two_class_requests(3000, 3.0 * capacity_rps, seed=4)
    sim, res = run_sim(reqs, spec, fixed(on_demand=1))
    check_outcomes(res)
    assert res.requeued > 0 and res.completed == 3000
    assert not _engines_released(sim)


def test_instance_lifecycle(make_spec, capacity_rps):
    """Provisioning for the cold start, then serving, then draining until empty, then terminated."""
    cold = 45.0
    spec = make_spec(cold_start_s=cold, hazard_per_hour=30.0)
    quiet = poisson(60, 1.0)
    burst = poisson(int(1.5 * capacity_rps * 120), 1.5 * capacity_rps, seed=1, start=quiet[-1])
    t = np.r_[quiet, burst, poisson(600, 1.0, seed=2, start=burst[-1])]
    cfg = SimConfig(control_interval_s=30.0, spot_availability=1.0, seed=4)
    sim, res = run_sim(requests(t), spec, Reactive(initial_instances=1, cooldown_s=60.0, spot_fraction=0.5), cfg)
    check_outcomes(res)
    assert res.completed == res.requests
    assert len(sim.instances) >= 3 and any(i.state == TERMINATED for i in sim.instances)
    for inst in sim.instances:
        warm = inst.requested_s == 0.0 and inst.ready_s == 0.0  # the initial fleet
        assert warm or inst.ready_s == pytest.approx(inst.requested_s + cold)
        if inst.engines:  # it reached serving
            assert len(inst.engines) == spec.itype.engines
            assert inst.end_s is None or inst.end_s >= inst.ready_s
        if inst.state == TERMINATED:
            assert inst.end_s is not None and inst.end_s >= inst.requested_s
            assert inst.in_flight() == 0
        else:
            assert inst.end_s is None
    # billing follows the lifecycle: requested until terminated (or the end of the run)
    total = sum(inst.billed_s(res.duration_s) * spec.itype.price(inst.tier) for inst in sim.instances) / 3600
    assert total == pytest.approx(res.cost_usd, rel=1e-12)


# --- determinism ---------------------------------------------------------------------------------------------


def _spot_run(make_spec, seed: int):
    spec = make_spec(engines=1, cold_start_s=60.0, hazard_per_hour=20.0)
    n = 1500
    isl, osl = mixed_lengths(n, 1, max_osl=1500)
    cfg = SimConfig(seed=seed, spot_availability=0.8, router="p2c")
    return simulate_fleet(requests(poisson(n, 5.0, seed=0), isl, osl), spec, fixed(spot=2), cfg)


def test_same_seed_same_result(make_spec):
    a, b = _spot_run(make_spec, 0), _spot_run(make_spec, 0)
    assert a.preemptions > 0
    np.testing.assert_array_equal(a.ttft_s, b.ttft_s)
    np.testing.assert_array_equal(a.tpot_s, b.tpot_s)
    assert a.cost_usd == b.cost_usd
    assert a.preemption_events == b.preemption_events
    assert a.to_dict(timeline=True) | {"wall_s": 0} == b.to_dict(timeline=True) | {"wall_s": 0}


def test_different_seeds_differ_under_spot_preemption(make_spec):
    a, b = _spot_run(make_spec, 0), _spot_run(make_spec, 1)
    assert a.preemption_events != b.preemption_events
    assert a.cost_usd != b.cost_usd
    assert not np.array_equal(a.ttft_s, b.ttft_s, equal_nan=True)


# --- queueing ------------------------------------------------------------------------------------------------


def test_ttft_flat_below_capacity(make_spec, capacity_rps):
    spec = make_spec()
    p95 = {}
    for load in (0.05, 0.25, 0.5):
        res = simulate_fleet(requests(poisson(1500, load * capacity_rps, seed=0)), spec, fixed(on_demand=1))
        assert res.completed == 1500
        p95[load] = res.ttft_ms["p95"]
    assert p95[0.05] <= p95[0.25] <= p95[0.5] <= 2.0 * p95[0.05]


def test_ttft_grows_without_bound_past_capacity(make_spec, capacity_rps):
    spec = make_spec()
    rate = 1.3 * capacity_rps
    p95 = []
    for n in (1000, 2000, 4000, 8000):
        res = simulate_fleet(requests(poisson(n, rate, seed=0)), spec, fixed(on_demand=1))
        assert res.completed == n
        p95.append(res.ttft_ms["p95"])
    assert all(b > 1.5 * a for a, b in itertools.pairwise(p95))  # roughly linear in the trace length
    assert p95[-1] > 30_000  # tens of seconds: the queue, not the engine
    # the backlog drains at the engine's capacity
    assert 8000 / res.duration_s == pytest.approx(capacity_rps, rel=0.1)


# --- spot notices and drain strategies ------------------------------------------------------------------------

# Instance 0 is the spot one; requests alternate between the two instances (least work, ties to the first).
# Four long requests (60k output tokens, several minutes) start at t=0, four short ones (5k tokens, ~30 s)
# at t=15; the notice comes at t=20 and the cloud takes the spot instance at t=140.
NOTICE_T = 20.0
DRAIN_T = np.r_[np.linspace(0, 1, 4), np.linspace(15, 16, 4)]
DRAIN_OSL = np.r_[np.full(4, 60_000), np.full(4, 5_000)]


def _drain_run(make_spec, drain: str, cold: float = 200.0, **cfg):
    spec = make_spec(cold_start_s=cold)
    config = SimConfig(drain=drain, preemption_times_s=(NOTICE_T,), **{"spot_availability": 1.0, **cfg})
    return spec, simulate_fleet(requests(DRAIN_T, 1000, DRAIN_OSL), spec, fixed(spot=1, on_demand=1), config)


def test_requeue_restarts_everything_on_the_preempted_instance(make_spec):
    _, res = _drain_run(make_spec, "requeue")
    check_outcomes(res)
    (ev,) = res.preemption_events
    assert ev["instance"] == 0 and ev["t_s"] == NOTICE_T
    assert ev["requeued"] == 4 and ev["migrated"] == 0 and ev["kept"] == 0
    assert res.requeued == 4 and res.migrated == 0 and res.completed == 8


def test_migrate_moves_everything_to_the_instance_with_room(make_spec):
    _, res = _drain_run(make_spec, "migrate")
    check_outcomes(res)
    (ev,) = res.preemption_events
    assert ev["migrated"] == 4 and ev["requeued"] == 0 and ev["kept"] == 0
    assert res.migrated == 4 and res.requeued == 0 and res.completed == 8


def test_drain_keeps_what_finishes_in_time_and_migrates_the_rest(make_spec):
    _, res = _drain_run(make_spec, "drain")
    check_outcomes(res)
    (ev,) = res.preemption_events
    assert ev["kept"] == 2  # the two short requests on the spot instance finish within the warning
    assert ev["migrated"] == 2  # the two long ones would not
    assert ev["requeued"] == 0  # nothing was left when the cloud took the instance
    assert res.migrated == 2 and res.requeued == 0 and res.completed == 8


def test_migration_keeps_generated_tokens(make_spec):
    """Migrated long requests resume; requeued ones redo ~20 s of output, so the run ends later."""
    _, migrated = _drain_run(make_spec, "migrate")
    _, requeued = _drain_run(make_spec, "requeue")
    assert migrated.duration_s + 10.0 < requeued.duration_s


def test_notice_launches_a_replacement(make_spec):
    cold = 200.0
    spec, res = _drain_run(make_spec, "drain", cold=cold)
    assert res.instances_launched == {"reserved": 0, "on_demand": 1, "spot": 2}
    ticks = {k.t: k for k in res.timeline}
    assert ticks[0.0].serving["spot"] == 1
    assert ticks[60.0].serving["spot"] == 0 and ticks[60.0].provisioning["spot"] == 1
    assert ticks[180.0].provisioning["spot"] == 1  # still cold at 20 + 200 s
    assert ticks[240.0].serving["spot"] == 1 and ticks[240.0].provisioning["spot"] == 0
    # spot billing: the first instance until it emptied (at most the 2-minute warning after the notice),
    # the replacement from the notice to the end
    price, end = spec.itype.price("spot"), res.duration_s
    low = (NOTICE_T + (end - NOTICE_T)) * price / 3600
    high = (NOTICE_T + 120.0 + (end - NOTICE_T)) * price / 3600
    assert low <= res.cost_by_tier["spot"] <= high


def test_spot_unavailable_falls_back_to_on_demand(make_spec):
    spec = make_spec(hazard_per_hour=60.0)  # a spot machine would be lost within about a minute
    cfg = SimConfig(spot_availability=0.0)
    res = simulate_fleet(requests(poisson(200, 5.0)), spec, fixed(spot=1), cfg)
    assert res.spot_fallbacks == 1
    assert res.cost_by_tier["on_demand"] > 0 and res.cost_by_tier["spot"] == 0
    assert res.instances_launched == {"reserved": 0, "on_demand": 1, "spot": 0}
    assert res.preemptions == 0  # an on-demand machine is not taken back
    assert res.timeline[0].serving["spot"] == 1  # still counted in its role


def test_replacement_falls_back_to_on_demand(make_spec):
    """With a coin-flip spot market some run gets the first spot instance but not its replacement."""
    spec = make_spec(cold_start_s=30.0)
    seen = False
    for seed in range(40):
        cfg = SimConfig(spot_availability=0.5, preemption_times_s=(20.0,), seed=seed)
        res = simulate_fleet(requests(poisson(100, 2.0)), spec, fixed(spot=1), cfg)
        check_outcomes(res)
        if res.preemptions == 1:  # the first launch was spot
            assert res.spot_fallbacks in (0, 1)
            if res.spot_fallbacks == 1:
                # the fallback is retried on spot at later ticks, so more spot launches may follow
                assert res.instances_launched["on_demand"] == 1 and res.instances_launched["spot"] >= 1
                assert res.cost_by_tier["on_demand"] > 0 and res.cost_by_tier["spot"] > 0
                seen = True
    assert seen


def test_requeued_work_goes_to_an_idle_instance(make_spec):
    """Work requeued at a notice is offered to serving engines at once, not only at their next step end."""
    spec = make_spec(cold_start_s=300.0)
    # request 0 (long) lands on the spot instance, request 1 on the on-demand one, which is then idle
    t = [0.0, 0.0, 100.0, 150.0]
    cfg = SimConfig(drain="requeue", preemption_times_s=(50.0,), spot_availability=1.0)
    res = simulate_fleet(requests(t, 1000, [20_000, 10, 10, 10]), spec, fixed(spot=1, on_demand=1), cfg)
    assert res.requeued == 1 and res.completed == 4
    # the on-demand instance has room: nothing should wait for the replacement (ready at t=350)
    assert np.all(res.ttft_s[2:] < 1.0), res.ttft_s
    finish0 = res.ttft_s[0] + res.tpot_s[0] * (20_000 - 1)  # arrival 0
    assert finish0 < 350.0  # restarted at the notice on the on-demand instance


def test_preempted_provisioning_instance_is_replaced(make_spec):
    """The schedule wants a spot instance from 50 s; with a 100 s cold start it is requested at t=0 and still
    provisioning when the replayed notice comes at t=30: it is cancelled and a replacement requested at once."""
    spec = make_spec(cold_start_s=100.0)
    pol = StaticSchedule([0.0, 50.0], [{"on_demand": 1}, {"on_demand": 1, "spot": 1}])
    cfg = SimConfig(preemption_times_s=(30.0,), spot_availability=1.0)
    res = simulate_fleet(requests(poisson(300, 2.0)), spec, pol, cfg)
    check_outcomes(res)
    (ev,) = res.preemption_events
    assert ev["state"] == "provisioning" and ev["t_s"] == 30.0
    assert ev["kept"] == ev["migrated"] == ev["requeued"] == 0
    assert res.instances_launched["spot"] == 2
    # billed 0-30 s for the cancelled one, 30 s to the end for the replacement: one spot instance throughout
    assert res.cost_by_tier["spot"] == pytest.approx(spec.itype.price("spot") * res.duration_s / 3600, rel=1e-12)


# --- priorities ----------------------------------------------------------------------------------------------


def test_interactive_preempts_batch_on_a_saturated_fleet(make_spec, capacity_rps):
    spec = make_spec()
    n = 3000
    t = poisson(n, 1.6 * capacity_rps, seed=0)
    trace = RequestTrace(t, np.full(n, 1000), np.full(n, 250))
    reqs = SimRequests.from_trace(trace, TWO_CLASSES, (0.5, 0.5), seed=0)
    sim, res = run_sim(reqs, spec, fixed(on_demand=1))
    check_outcomes(res)
    inter, batch = res.by_class
    assert (inter.name, batch.name) == ("interactive", "batch")
    assert inter.ttft_ms["p95"] * 10 < batch.ttft_ms["p50"]
    assert inter.ttft_ms["p95"] < INTERACTIVE.ttft_ms  # interactive barely queues at all
    assert res.requeued > 0  # batch work made room for interactive arrivals
    requeued = np.frombuffer(bytes(sim.requeued), dtype=np.uint8) > 0
    assert np.all(reqs.cls[requeued] == 1)  # only batch requests are ever preempted
    assert batch.completed == batch.requests  # and all of it still completes once arrivals stop
    # the same load in one class: nothing is preempted, everyone queues alike
    same = simulate_fleet(SimRequests.from_trace(trace, (INTERACTIVE,)), spec, fixed(on_demand=1))
    assert same.requeued == 0
    assert same.ttft_ms["p95"] > 10 * inter.ttft_ms["p95"]


def test_batch_is_served_when_capacity_is_idle(make_spec):
    """Batch requests alone on an idle fleet start at once."""
    spec = make_spec()
    reqs = requests(poisson(200, 2.0), cls=np.ones(200), classes=TWO_CLASSES)
    res = simulate_fleet(reqs, spec, fixed(on_demand=1))
    assert res.completed == 200 and res.requeued == 0
    assert res.by_class[0].name == "batch" and res.by_class[0].ttft_ms["p95"] < 200.0


def test_max_wait_drops_only_the_class_that_has_it(make_spec, capacity_rps):
    spec = make_spec()
    impatient = PriorityClass("batch", 3_600_000.0, math.inf, max_wait_s=5.0)
    n = 3000
    cls = np.random.default_rng(0).choice(2, n)
    reqs = requests(poisson(n, 2.0 * capacity_rps), cls=cls, classes=(INTERACTIVE, impatient))
    res = simulate_fleet(reqs, spec, fixed(on_demand=1))
    check_outcomes(res)
    assert res.dropped_by_reason.get("queue_timeout", 0) > 0
    inter = res.by_class[0]
    assert inter.completed == inter.requests  # no max_wait: never dropped


def _preemption_scenario(make_spec, max_wait_s):
    """Batch requests fill the KV cache at t~0 (all admitted at once); at t=60 a short interactive burst
    preempts some of them. The burst is done within seconds, so no batch request waits long in the queue."""
    spec = make_spec()
    nb = spec.engine.kv_capacity_tokens // (20_000 + 12_000 + 64)  # all fit (blocks rounded up)
    t = np.r_[np.linspace(0, 1, nb), 60 + np.linspace(0, 1, 10)]
    cls = np.r_[np.ones(nb), np.zeros(10)]
    isl = np.full(nb + 10, 20_000)
    osl = np.r_[np.full(nb, 12_000), np.full(10, 200)]
    batch = PriorityClass("batch", 3_600_000.0, math.inf, max_wait_s=max_wait_s)
    return spec, requests(t, isl, osl, cls, (INTERACTIVE, batch))


def test_preempted_batch_requests_resume_with_their_tokens(make_spec):
    spec, reqs = _preemption_scenario(make_spec, None)
    sim, res = run_sim(reqs, spec, fixed(on_demand=1))
    check_outcomes(res)
    assert res.requeued > 0 and res.completed == res.requests
    victims = np.flatnonzero(np.frombuffer(bytes(sim.requeued), dtype=np.uint8))
    assert np.all(reqs.cls[victims] == 1)
    # they were decoding for a minute: the output so far is kept (re-prefilled), not regenerated
    assert all(sim.carry[v] > 1000 for v in victims)
    first_tokens = res.arrival_s[victims] + res.ttft_s[victims]
    assert np.all(first_tokens < 60.0)  # their first token is the one from before the preemption
    # victims finish with the other batch requests: redoing ~2000 tokens alone at the end would take >= 10 s
    finish = res.arrival_s + res.ttft_s + res.tpot_s * (reqs.osl - 1)
    others = (reqs.cls == 1) & ~np.isin(np.arange(len(reqs)), victims)
    assert finish[victims].max() < finish[others].max() + 8.0


def test_preempted_requests_are_not_dropped_for_queue_time_they_did_not_spend(make_spec):
    spec, reqs = _preemption_scenario(make_spec, 30.0)
    res = simulate_fleet(reqs, spec, fixed(on_demand=1))
    assert res.requeued > 0
    assert res.dropped == 0, res.dropped_by_reason


def test_preemption_only_when_it_makes_room(make_spec):
    spec = make_spec()
    cap = spec.engine.kv_capacity_tokens
    per = 20_000 + 12_000  # 500 blocks of 64
    ni = cap // per - 3  # interactive requests filling most of the cache, then one batch request
    free = cap - (ni + 1) * per
    big = free + per + 6_400  # fits the cache, but not even with the batch request evicted
    assert big <= cap
    t = np.r_[np.linspace(0, 1, ni), 2.0, 5.0]
    isl = np.r_[np.full(ni + 1, 20_000), big - 10_000]
    osl = np.r_[np.full(ni + 1, 12_000), 10_000]
    cls = np.r_[np.zeros(ni), 1, 0]
    res = simulate_fleet(requests(t, isl, osl, cls, TWO_CLASSES), spec, fixed(on_demand=1))
    assert res.completed == ni + 2
    assert res.requeued == 0
    assert res.ttft_s[ni] < 30.0  # the batch request was admitted at once and kept its place


# --- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options,match", [
    ({"router": "random"}, "unknown router 'random'"),
    ({"drain": "evict"}, "unknown drain strategy 'evict'"),
    ({"control_interval_s": 0.0}, "control interval"),
    ({"control_interval_s": -60.0}, "control interval"),
    ({"warning_s": -1.0}, "warning"),
    ({"tail_s": -1.0}, "tail"),
    ({"spot_availability": 1.5}, "spot availability"),
    ({"spot_availability": -0.1}, "spot availability"),
    ({"hazard_per_hour": -1.0}, "preemption rate"),
])
def test_bad_config_is_rejected(options, match):
    with pytest.raises(ConfigError, match=match):
        SimConfig(**options)


def test_negative_replay_time_is_rejected():
    with pytest.raises(ConfigError):
        SimConfig(preemption_times_s=(-5.0,))


def test_request_larger_than_the_context_window_is_dropped(make_spec):
    spec = make_spec()
    ctx = spec.engine.max_context
    reqs = requests([0.0, 1.0], [ctx - 9, ctx - 10], [10, 10])
    res = simulate_fleet(reqs, spec, fixed(on_demand=1))
    check_outcomes(res)
    assert res.dropped_by_reason == {"exceeds_context": 1} and res.completed == 1
    assert np.isnan(res.ttft_s[0]) and np.isfinite(res.ttft_s[1])


def test_request_larger_than_the_kv_cache_is_dropped(make_spec):
    spec = make_spec()
    spec = replace(spec, engine=replace(spec.engine, max_context=1 << 40))  # only the KV cache limits here
    cap = spec.engine.kv_capacity_tokens
    block = spec.engine.kv_block_tokens
    fits = (cap // block) * block - 10  # prompt + 10 output tokens round up to exactly the usable blocks
    reqs = requests([0.0, 1.0, 2.0], [cap + 1, fits, 1000], [10, 10, 10])
    res = simulate_fleet(reqs, spec, fixed(on_demand=1))
    check_outcomes(res)
    assert res.dropped == 1 and res.dropped_by_reason == {"exceeds_kv_cache": 1}
    assert np.isnan(res.ttft_s[0]) and np.all(np.isfinite(res.ttft_s[1:]))


@pytest.mark.parametrize("arrival,isl,cls", [
    pytest.param([0.0, 5.0, 1.0], [100, 100, 100], [0, 0, 0], id="unsorted"),
    pytest.param([0.0, 1.0], [100, 100, 100], [0, 0], id="lengths"),
    pytest.param([0.0, 1.0], [100, 100], [0, 3], id="class-index"),
])
def test_malformed_requests_are_rejected(make_spec, arrival, isl, cls):
    with pytest.raises(ConfigError):  # when built or at the latest when simulated
        reqs = SimRequests(np.array(arrival), np.array(isl), np.full(len(isl), 10), np.array(cls), (INTERACTIVE,))
        simulate_fleet(reqs, make_spec(), fixed(on_demand=1))


def test_policy_with_a_bad_action_is_rejected(make_spec):
    class Broken:
        name = "broken"

        def initial(self):
            return {"on_demand": 1}

        def decide(self, state):
            return [Launch("gpu", 1)]

    with pytest.raises(ConfigError, match="bad action"):
        simulate_fleet(requests([0.0, 1.0]), make_spec(), Broken())


def test_progress_reports_fractions_of_the_trace(make_spec):
    seen: list[float] = []
    simulate_fleet(requests(poisson(500, 10.0)), make_spec(), fixed(on_demand=1), progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == 1.0 and all(0 < f <= 1 for f in seen)


# --- real traffic --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not AZURE_CODE.exists(), reason=f"sample data {AZURE_CODE} is not available")
def test_azure_code_trace_through_a_small_fleet(make_spec):
    trace = load_trace(AZURE_CODE)
    reqs = SimRequests.from_trace(trace, TWO_CLASSES, (0.7, 0.3), seed=0)
    res = simulate_fleet(reqs, make_spec(engines=2, cold_start_s=120.0, hazard_per_hour=5.0),
                         fixed(on_demand=1, spot=1), SimConfig(seed=0))
    check_outcomes(res)
    assert res.requests == len(trace) > 8000
    assert res.completed == res.requests  # ~2.6 req/s of ~2k-token prompts is light for four H100 engines
    assert res.by_class[0].ttft_ms["p50"] < 500.0
    assert res.duration_s >= trace.duration_s


def test_on_demand_fallbacks_return_to_spot(make_spec):
    """A fallback is retried on spot each tick and drained once a spot instance serves: no drift to on-demand."""
    spec = make_spec(cold_start_s=60.0, hazard_per_hour=0.5)
    cfg = SimConfig(spot_availability=0.5, seed=3)
    res = simulate_fleet(requests(poisson(3000, 0.2)), spec, fixed(spot=4), cfg)
    check_outcomes(res)
    assert res.spot_fallbacks > 0
    end = res.timeline[-1]
    assert end.serving["spot"] + end.provisioning["spot"] >= 3  # the spot slots are still (mostly) spot slots
    assert res.cost_by_tier["spot"] > res.cost_by_tier["on_demand"]


def test_reserved_capacity_released_and_reacquired_is_billed_once(make_spec):
    spec = make_spec(cold_start_s=0.0)
    pol = StaticSchedule([0.0, 1200.0, 2400.0], [{"reserved": 1}, {"on_demand": 1}, {"reserved": 1}])
    res = simulate_fleet(requests(poisson(500, 0.15)), spec, pol, SimConfig())
    price = spec.itype.price("reserved")
    assert res.cost_by_tier["reserved"] == pytest.approx(res.duration_s * price / 3600, rel=1e-12)


def _one_migration(make_spec, kv_gbps: float):
    """One long request decoding on a spot instance; the notice at 30 s migrates it to the on-demand one."""
    spec = make_spec(cold_start_s=600.0)
    cfg = SimConfig(drain="migrate", preemption_times_s=(30.0,), spot_availability=1.0,
                    kv_transfer_gb_per_s=kv_gbps)
    # request 0 is routed to the first engine (spot, launched first); request 1 keeps the other one warm
    reqs = requests([0.0, 0.0], [8000, 10], [20_000, 1])
    return spec, simulate_fleet(reqs, spec, fixed(spot=1, on_demand=1), cfg)


def test_kv_transfer_moves_the_cache_instead_of_re_prefilling(make_spec):
    _spec, moved = _one_migration(make_spec, kv_gbps=25.0)
    _, refilled = _one_migration(make_spec, kv_gbps=0.0)
    for res in (moved, refilled):
        check_outcomes(res)
        assert res.completed == 2 and res.migrated == 1
    assert moved.kv_transfers == 1 and refilled.kv_transfers == 0
    # the re-prefill of ~8,000 + generated tokens costs more than moving their KV at 25 GB/s
    assert moved.tpot_s[0] < refilled.tpot_s[0]


def test_kv_transfer_time_follows_bytes_over_bandwidth(make_spec):
    spec, slow = _one_migration(make_spec, kv_gbps=0.01)  # 10 MB/s: the cache takes a while to arrive
    _, fast = _one_migration(make_spec, kv_gbps=100.0)
    assert slow.kv_transfers == fast.kv_transfers == 1
    context_bytes_low = 8000 * spec.engine.kv_bytes_per_token  # at least the prompt's KV moves
    delay_low = context_bytes_low / 0.01e9
    finish_slow = slow.ttft_s[0] + slow.tpot_s[0] * 19_999
    finish_fast = fast.ttft_s[0] + fast.tpot_s[0] * 19_999
    assert finish_slow - finish_fast >= 0.95 * delay_low
    delay_high = (8000 + 20_000) * spec.engine.kv_bytes_per_token / 0.01e9  # prompt + every output token
    assert finish_slow - finish_fast <= delay_high


def test_negative_kv_bandwidth_is_rejected():
    with pytest.raises(ConfigError, match="KV transfer"):
        SimConfig(kv_transfer_gb_per_s=-1.0)
