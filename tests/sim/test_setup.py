"""From names to a simulated fleet: engines per instance, prices, cold start, SLO batch, capacity, errors."""

from __future__ import annotations

import dataclasses
import math

import pytest

from fleetwise.allocate.coldstart import DEFAULT_BOOT_S, DEFAULT_ENGINE_START_S
from fleetwise.catalog import load_catalog
from fleetwise.errors import ConfigError, InfeasibleError
from fleetwise.perf.memory import weight_bytes
from fleetwise.sim.core import SimConfig
from fleetwise.sim.run import simulate_fleet
from fleetwise.sim.setup import fleet_spec, instances_for, pick_offer, slo_batch

from .conftest import OFFER
from .helpers import fixed, poisson, requests, with_itype


def test_fleet_spec_from_the_offer(base_spec):
    cat = load_catalog()
    offer = cat.offer(OFFER)
    s = base_spec
    assert s.offer.id == OFFER and s.replicas_per_instance == offer.gpu_count == 8
    assert s.itype.engines == 8 and s.itype.label == OFFER
    assert s.itype.usd_per_hour["on_demand"] == offer.price("on_demand")
    assert s.itype.usd_per_hour["spot"] == offer.price("spot")
    assert s.itype.usd_per_hour["reserved"] == (offer.price("reserved_1y") or offer.price("reserved_3y"))
    assert s.itype.hazard_per_hour == pytest.approx(offer.hazard_per_hour or 0.0)
    r = s.replica
    assert s.engine.max_batch == r.max_batch and s.engine.max_num_tokens == r.max_num_tokens
    assert s.engine.kv_capacity_tokens == r.memory.kv_capacity_tokens
    assert s.engine.kv_block_tokens == r.profile.kv_block_tokens
    assert s.engine.frontend_s == pytest.approx(r.profile.frontend_latency_ms / 1e3)
    assert s.capacity_rps_per_instance > 0
    assert "8 engines/instance" in s.describe() and OFFER in s.describe()


@pytest.mark.parametrize("model,gpus,tp,engines", [
    ("llama-3.1-70b", 2, None, 4),  # TP2: four engines on eight GPUs
    ("llama-3.1-70b", 4, None, 2),
    ("llama-3.1-8b", 2, 1, 8),  # two data-parallel TP1 groups per replica, four replicas
])
def test_engines_per_instance_are_tensor_parallel_groups(model, gpus, tp, engines):
    s = fleet_spec(model, "h100-sxm", gpus, tp, precision="fp8", offer=OFFER)
    assert s.itype.engines == engines
    assert s.replicas_per_instance == 8 // gpus


def test_default_offer_is_the_cheapest_per_replica():
    cat = load_catalog()
    s = fleet_spec("llama-3.1-8b", "h100-sxm", 2, precision="fp8")
    fits = [o for o in cat.find_offers(gpus=["h100-sxm"], tier="on_demand") if o.gpu_count >= 2]
    best = min(o.price("on_demand") / (o.gpu_count // 2) for o in fits)
    assert s.offer.price("on_demand") / (s.offer.gpu_count // 2) == pytest.approx(best)
    assert pick_offer("h100-sxm", 2).id == s.offer.id


def test_want_spot_picks_the_cheapest_offer_with_a_spot_price():
    cat = load_catalog()
    s = fleet_spec("llama-3.1-8b", "h100-sxm", 1, precision="fp8", want_spot=True)
    assert "spot" in s.itype.usd_per_hour
    with_spot = [o for o in cat.find_offers(gpus=["h100-sxm"], tier="on_demand") if o.price("spot") is not None]
    assert s.offer.price("on_demand") / s.offer.gpu_count == pytest.approx(
        min(o.price("on_demand") / o.gpu_count for o in with_spot))


def test_offer_without_spot_or_reserved_prices():
    s = fleet_spec("llama-3.1-8b", "h100-sxm", 1, precision="fp8", offer="lambda/any/gpu_1x_h100_sxm5")
    assert "spot" not in s.itype.usd_per_hour
    assert s.itype.usd_per_hour["reserved"] == s.itype.usd_per_hour["on_demand"]  # nothing cheaper to reserve
    spec = with_itype(s, cold_start_s=0.0)
    res = simulate_fleet(requests(poisson(50, 2.0)), spec, fixed(spot=1), SimConfig(spot_availability=1.0))
    assert res.spot_fallbacks == 1 and res.cost_by_tier["spot"] == 0 and res.completed == 50


def test_cold_start_from_the_weights(base_spec):
    r = base_spec.replica
    expected = DEFAULT_BOOT_S + weight_bytes(r.model, r.precision) / 1e9 + DEFAULT_ENGINE_START_S
    assert base_spec.itype.cold_start_s == pytest.approx(expected)
    fast = fleet_spec("llama-3.1-8b", "h100-sxm", precision="fp8", offer=OFFER, load_gb_per_s=4.0, boot_s=0.0)
    assert fast.itype.cold_start_s == pytest.approx(weight_bytes(r.model, r.precision) / 4e9 + DEFAULT_ENGINE_START_S)
    given = fleet_spec("llama-3.1-8b", "h100-sxm", precision="fp8", offer=OFFER, cold_start_s=42.0)
    assert given.itype.cold_start_s == 42.0
    big = fleet_spec("llama-3.1-70b", "h100-sxm", 2, precision="fp8", offer=OFFER)
    assert big.itype.cold_start_s > base_spec.itype.cold_start_s + 50  # ~60 GB more to load at 1 GB/s


def _slo_batch(spec, tpot_ms, *, isl=1000.0, osl=250.0, max_batch=2048, kv_tokens=None):
    e = spec.engine
    return slo_batch(e.step_model, max_batch=max_batch, max_num_tokens=e.max_num_tokens,
                     kv_tokens=e.kv_capacity_tokens if kv_tokens is None else kv_tokens, isl=isl, osl=osl,
                     tpot_ms=tpot_ms)


def test_slo_batch_bounds_and_monotonicity(base_spec):
    sm = base_spec.engine.step_model
    context = 1000 + 250 / 2
    kv_limit = base_spec.engine.kv_capacity_tokens // (1000 + 250)
    batches = [_slo_batch(base_spec, tpot) for tpot in (8.0, 15.0, 30.0, 50.0, 100.0)]
    assert batches == sorted(batches) and batches[0] < batches[-1]  # a looser TPOT target allows more
    for tpot, b in zip((8.0, 15.0, 30.0, 50.0, 100.0), batches):
        assert 1 <= b <= kv_limit
        # whatever else the step carries, it decodes the whole batch: that alone must meet the target
        assert sm(0, 0.0, b, b * context) * 1e3 <= tpot
    assert _slo_batch(base_spec, 1.0) == 1  # unreachable target: still one sequence
    assert _slo_batch(base_spec, 1e6, max_batch=16) == 16  # capped by max_batch
    assert _slo_batch(base_spec, 1e6, kv_tokens=12_500) == 10  # and by the KV cache (prompt + output each)
    tight = fleet_spec("llama-3.1-8b", "h100-sxm", precision="fp8", offer=OFFER, tpot_ms=15.0)
    assert tight.engine.slo_batch < base_spec.engine.slo_batch
    assert tight.capacity_rps_per_instance < base_spec.capacity_rps_per_instance


def test_slo_batch_fits_the_kv_reservation(base_spec):
    """The engine reserves prompt + whole output at admission: the SLO slots must be batches it can hold."""
    block = base_spec.engine.kv_block_tokens
    per_request = -(-(1000 + 250) // block) * block
    assert base_spec.engine.slo_batch <= base_spec.engine.kv_capacity_tokens // per_request


def test_instances_for(base_spec):
    cap = base_spec.capacity_rps_per_instance
    assert instances_for(0.0, base_spec) == 1
    assert instances_for(cap, base_spec) == 1
    assert instances_for(cap * 1.01, base_spec) == 2
    assert instances_for(cap * 2, base_spec, headroom=1.5) == 3
    zero = dataclasses.replace(base_spec, capacity_rps_per_instance=0.0)
    with pytest.raises(InfeasibleError, match=r"cannot meet p95 TTFT <= 1000 ms and TPOT <= 50 ms.*--replicas"):
        instances_for(1.0, zero)
    why = dataclasses.replace(zero, capacity_reason="misses the SLO in simulation even at low load")
    with pytest.raises(InfeasibleError, match="even at low load"):
        instances_for(1.0, why)


@pytest.mark.parametrize("args,kwargs,match", [
    (("llama-3.1-8b", "h100-sxm", 2), {"offer": "aws/us-east-1/p5.4xlarge"},
     r"offer aws/us-east-1/p5.4xlarge has 1xh100-sxm; the replica needs 2xh100-sxm"),
    (("llama-3.1-8b", "h100-sxm", 1), {"offer": "aws/us-east-1/g6.xlarge"}, r"has 1xl4; the replica needs 1xh100-sxm"),
    (("llama-3.1-8b", "h100-sxm", 16), {}, "no catalog offer has 16 or more h100-sxm GPUs"),
    (("llama-3.1-70b", "h100-sxm", 1), {"precision": "bf16"}, "exceed h100-sxm's 80 GiB"),
])
def test_infeasible_fleets_say_why(args, kwargs, match):
    with pytest.raises(InfeasibleError, match=match):
        fleet_spec(*args, **{"precision": "fp8", **kwargs})


@pytest.mark.parametrize("kwargs,match", [
    ({"cold_start_s": -1.0}, "cold start"),
    ({"load_gb_per_s": 0.0}, "load bandwidth"),
    ({"ttft_ms": 0.0}, "SLO targets must be > 0 ms"),
    ({"tpot_ms": -5.0}, "SLO targets must be > 0 ms"),
    ({"hazard_per_hour": -1.0}, "preemption rate"),
])
def test_bad_fleet_options_are_rejected(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        fleet_spec("llama-3.1-8b", "h100-sxm", precision="fp8", offer=OFFER, **kwargs)


def test_capacity_estimate_is_close_to_the_simulated_engine(base_spec, capacity_rps):
    """The per-instance capacity policies size against is at most what the engines do when saturated."""
    per_engine = base_spec.capacity_rps_per_instance / base_spec.itype.engines
    assert 0.5 * capacity_rps < per_engine <= capacity_rps * 1.05
    assert not math.isnan(per_engine)


def test_capacity_measured_on_the_trace_lengths_meets_the_slo():
    """With the trace's lengths, the capacity comes from simulation: a fleet loaded to it meets the p95 SLO."""
    import numpy as np

    from fleetwise.sim.core import SimConfig
    from fleetwise.sim.policies import StaticSchedule
    from fleetwise.sim.requests import SimRequests, named_class
    from fleetwise.sim.run import simulate_fleet
    from fleetwise.sim.setup import fleet_spec

    rng = np.random.default_rng(1)
    isl = np.clip(rng.lognormal(np.log(800), 1.0, 5000), 1, 30_000).astype(np.int64)  # heavy-tailed prompts
    osl = np.clip(rng.lognormal(np.log(200), 0.8, 5000), 1, 4000).astype(np.int64)
    kw = {"offer": "aws/us-east-1/p5.4xlarge", "ttft_ms": 1000.0, "tpot_ms": 50.0, "mean_isl": float(isl.mean()),
              "mean_osl": float(osl.mean())}
    spec = fleet_spec("llama-3.1-8b", "h100-sxm", 1, 1, "fp8", lengths=(isl, osl), **kw)
    mean_based = fleet_spec("llama-3.1-8b", "h100-sxm", 1, 1, "fp8", **kw)
    assert spec.capacity_rps_per_instance > 0
    assert spec.capacity_rps_per_instance != mean_based.capacity_rps_per_instance
    rate = 0.9 * spec.capacity_rps_per_instance
    n = int(rate * 120)
    gaps = rng.exponential(1.0 / rate, n)
    idx = rng.integers(0, len(isl), n)
    reqs = SimRequests(np.cumsum(gaps) - gaps[0], isl[idx], osl[idx], np.zeros(n, dtype=np.int64),
                       (named_class("interactive", 1000.0, 50.0),))
    res = simulate_fleet(reqs, spec, StaticSchedule.fixed({"on_demand": 1}), SimConfig())
    assert res.ttft_ms["p95"] <= 1000.0 and res.tpot_ms["p95"] <= 50.0
    assert res.slo_attainment >= 0.95
