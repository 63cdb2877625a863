"""The run summary: costs by tier and per token, SLO attainment and goodput, percentiles, the timeline."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fleetwise.sim.core import SimConfig
from fleetwise.sim.policies import StaticSchedule
from fleetwise.sim.requests import PriorityClass
from fleetwise.sim.run import simulate_fleet

from .helpers import INTERACTIVE, TWO_CLASSES, check_outcomes, fixed, mixed_lengths, poisson, requests


@pytest.fixture(scope="module")
def mixed_run(make_spec, capacity_rps):
    """Reserved + on-demand + spot (losing instances), two classes, some requests dropped and some unfinished."""
    spec = make_spec(engines=1, cold_start_s=30.0, hazard_per_hour=40.0)
    n = 2500
    isl, osl = mixed_lengths(n, 3, max_isl=3000, max_osl=1200)
    isl[5] = spec.engine.kv_capacity_tokens  # cannot fit anywhere: dropped
    osl[:50] = 1
    osl[-5:] = 50_000  # still generating when the 20 s tail ends: unfinished
    cls = np.random.default_rng(4).choice(2, n, p=[0.7, 0.3])
    reqs = requests(poisson(n, 0.5 * capacity_rps, seed=5), isl, osl, cls, TWO_CLASSES)
    cfg = SimConfig(seed=2, spot_availability=1.0, tail_s=20.0)
    res = simulate_fleet(reqs, spec, fixed(reserved=1, on_demand=1, spot=1), cfg)
    return spec, reqs, res


def test_mixed_run_is_a_real_mix(mixed_run):
    _, _, res = mixed_run
    check_outcomes(res)
    assert res.completed > 0 and res.dropped >= 1 and res.unfinished > 0 and res.preemptions > 0
    assert all(res.cost_by_tier[tier] > 0 for tier in ("reserved", "on_demand", "spot"))


def test_cost_by_tier_sums_to_the_cost(mixed_run):
    _, _, res = mixed_run
    assert set(res.cost_by_tier) == {"reserved", "on_demand", "spot"}
    assert sum(res.cost_by_tier.values()) == pytest.approx(res.cost_usd, rel=1e-12)
    # the reserved and on-demand instances are never taken away: billed for the whole run
    spec = mixed_run[0]
    hours = res.duration_s / 3600
    assert res.cost_by_tier["reserved"] == pytest.approx(spec.itype.price("reserved") * hours, rel=1e-12)
    assert res.cost_by_tier["on_demand"] == pytest.approx(spec.itype.price("on_demand") * hours, rel=1e-12)
    # spot: never more than one instance serving at a time, plus overlaps of at most a warning + cold start
    spot_price = spec.itype.price("spot")
    assert res.cost_by_tier["spot"] >= spot_price * hours * (1 - 1e-12)
    assert res.cost_by_tier["spot"] <= spot_price * (res.duration_s + res.preemptions * 120.0) / 3600 * (1 + 1e-12)


def test_cost_per_token(mixed_run):
    _, reqs, res = mixed_run
    done = np.isfinite(res.ttft_s)
    tokens = float((reqs.isl[done] + reqs.osl[done]).sum())
    assert res.usd_per_1m_tokens == pytest.approx(res.cost_usd / tokens * 1e6, rel=1e-12)
    assert res.usd_per_1m_output_tokens == pytest.approx(res.cost_usd / float(reqs.osl[done].sum()) * 1e6, rel=1e-12)


def test_slo_attainment_is_the_share_meeting_both_targets(mixed_run):
    _, reqs, res = mixed_run
    ttft_lim = np.array([c.ttft_ms for c in reqs.classes])[reqs.cls] / 1e3
    tpot_lim = np.array([c.tpot_ms for c in reqs.classes])[reqs.cls] / 1e3
    with np.errstate(invalid="ignore"):
        met = (res.ttft_s <= ttft_lim) & (res.tpot_s <= tpot_lim)  # NaN (dropped, unfinished) never meets
    assert 0.0 < res.slo_attainment < 1.0
    assert res.slo_attainment == pytest.approx(met.sum() / res.requests, rel=1e-12)
    for stats in res.by_class:
        c = [k.name for k in reqs.classes].index(stats.name)
        mask = reqs.cls == c
        assert stats.requests == int(mask.sum())
        assert stats.completed == int(np.isfinite(res.ttft_s[mask]).sum())
        assert stats.slo_attainment == pytest.approx(met[mask].sum() / mask.sum(), rel=1e-12)
        assert 0.0 <= stats.slo_attainment <= 1.0
    assert res.goodput_rps == pytest.approx(met.sum() / res.duration_s, rel=1e-12)
    good_tokens = float((reqs.isl[met] + reqs.osl[met]).sum())
    assert res.goodput_tokens_per_s == pytest.approx(good_tokens / res.duration_s, rel=1e-12)


def test_percentiles_and_per_request_latencies(mixed_run):
    spec, reqs, res = mixed_run
    done = np.isfinite(res.ttft_s)
    for q in (50, 95, 99):
        assert res.ttft_ms[f"p{q}"] == pytest.approx(np.percentile(res.ttft_s[done] * 1e3, q), rel=1e-12)
        multi = done & (reqs.osl > 1)
        assert res.tpot_ms[f"p{q}"] == pytest.approx(np.percentile(res.tpot_s[multi] * 1e3, q), rel=1e-12)
    # TTFT includes the frontend latency; a single-token output has no inter-token time
    assert np.all(res.ttft_s[done] >= spec.engine.frontend_s)
    single = done & (reqs.osl == 1)
    assert single.any() and np.all(res.tpot_s[single] == 0.0)


def test_timeline(mixed_run):
    _, _, res = mixed_run
    times = [k.t for k in res.timeline]
    assert times[0] == 0.0 and np.allclose(np.diff(times), 60.0)
    costs = [k.cost_usd for k in res.timeline]
    assert costs[0] == 0.0 and all(b >= a for a, b in itertools.pairwise(costs))
    assert costs[-1] <= res.cost_usd * (1 + 1e-12)
    assert all(k.serving["reserved"] == 1 and k.serving["on_demand"] == 1 for k in res.timeline)
    assert all(k.queued >= 0 and k.in_flight >= 0 for k in res.timeline)


def test_to_dict(mixed_run):
    _, _, res = mixed_run
    d = res.to_dict()
    assert d["requests"] == res.requests and d["cost_usd"] == res.cost_usd
    assert "timeline" not in d and len(d["by_class"]) == 2
    full = res.to_dict(timeline=True)
    assert len(full["timeline"]) == len(res.timeline) and full["preemption_events"] == res.preemption_events


def test_reserved_is_billed_for_the_whole_run_even_when_added_late(make_spec):
    spec = make_spec(cold_start_s=60.0)
    pol = StaticSchedule([0.0, 300.0], [{"on_demand": 1}, {"on_demand": 1, "reserved": 1}])
    res = simulate_fleet(requests(poisson(3000, 5.0)), spec, pol, SimConfig())
    hours = res.duration_s / 3600
    assert res.instances_launched["reserved"] == 1
    assert res.cost_by_tier["reserved"] == pytest.approx(spec.itype.price("reserved") * hours, rel=1e-12)


def test_idle_and_saturated_busy_fraction(make_spec, capacity_rps):
    spec = make_spec()
    idle = simulate_fleet(requests(poisson(200, 0.05)), spec, fixed(on_demand=1))  # one request every 20 s
    busy = simulate_fleet(requests(poisson(3000, 2.0 * capacity_rps)), spec, fixed(on_demand=1))
    assert 0.0 < idle.gpu_busy_fraction < 0.2
    assert 0.95 < busy.gpu_busy_fraction <= 1.0 + 1e-9


def test_busy_fraction_never_exceeds_one_when_the_run_stops_mid_step(make_spec):
    spec = make_spec()
    res = simulate_fleet(requests(poisson(400, 200.0), 8000, 100), spec, fixed(on_demand=1), SimConfig(tail_s=0.05))
    assert res.unfinished > 0
    assert res.gpu_busy_fraction <= 1.0 + 1e-9


def test_no_completions_means_infinite_cost_per_token(make_spec):
    res = simulate_fleet(requests([0.0], 1000, 10_000), make_spec(), fixed(on_demand=1), SimConfig(tail_s=1.0))
    assert res.completed == 0 and res.unfinished == 1
    assert res.cost_usd > 0 and math.isinf(res.usd_per_1m_tokens) and res.slo_attainment == 0.0


def test_requests_with_unreachable_targets_never_count_as_met(make_spec):
    strict = PriorityClass("strict", 1.0, 0.001)  # 1 ms TTFT: below the frontend latency alone
    res = simulate_fleet(requests(poisson(100, 2.0), classes=(strict,)), make_spec(), fixed(on_demand=1))
    assert res.completed == 100 and res.slo_attainment == 0.0 and res.goodput_rps == 0.0
    loose = simulate_fleet(requests(poisson(100, 2.0), classes=(INTERACTIVE,)), make_spec(), fixed(on_demand=1))
    assert loose.slo_attainment == 1.0
