"""One simulated engine: the arithmetic of decode runs, and agreement with fleetwise.perf's serving simulation
(same continuous batching, chunked prefill and KV reservation) request by request and in its benchmark
percentiles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwise.perf.predict import predict
from fleetwise.perf.serving import Requests, simulate
from fleetwise.sim.core import SimConfig
from fleetwise.sim.engine import steps_done, steps_to_cover
from fleetwise.sim.run import simulate_fleet
from fleetwise.sim.setup import fleet_spec

from .conftest import OFFER
from .helpers import fixed, mixed_lengths, poisson, requests, with_itype

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)


def _run_total(k: int, dt0: float, slope: float) -> float:
    """Seconds of k steps of lengths dt0, dt0 + slope, ... summed one by one."""
    return float(sum(dt0 + slope * i for i in range(k)))


# --- decode-run arithmetic -------------------------------------------------------------------------------


@PROPERTY
@given(wait=st.floats(1e-4, 50.0), dt0=st.floats(1e-3, 0.2), slope=st.sampled_from([0.0, 1e-9, 1e-7, 1e-5, 1e-3]))
def test_steps_to_cover_is_the_fewest_steps_reaching_the_wait(wait, dt0, slope):
    k = steps_to_cover(wait, dt0, slope)
    assert k >= 1
    assert _run_total(k, dt0, slope) >= wait * (1 - 1e-9)
    if k > 1:
        assert _run_total(k - 1, dt0, slope) < wait * (1 + 1e-9)


def test_steps_to_cover_edge_cases():
    assert steps_to_cover(0.0, 0.01, 1e-6) == 1
    assert steps_to_cover(-3.0, 0.01, 0.0) == 1
    assert steps_to_cover(0.05, 0.01, 0.0) == 5  # exactly five steps, not six from rounding
    assert steps_to_cover(0.0500001, 0.01, 0.0) == 6


@PROPERTY
@given(elapsed=st.floats(0.0, 50.0), dt0=st.floats(1e-3, 0.2), slope=st.sampled_from([0.0, 1e-7, 1e-5, 1e-3]),
       k=st.integers(1, 5000))
def test_steps_done_counts_whole_finished_steps(elapsed, dt0, slope, k):
    n = steps_done(elapsed, dt0, slope, k)
    assert 0 <= n <= k
    assert _run_total(n, dt0, slope) <= elapsed * (1 + 1e-9) + 1e-12
    if n < k:
        assert _run_total(n + 1, dt0, slope) > elapsed * (1 - 1e-9) - 1e-12


# --- one engine against fleetwise.perf ----------------------------------------------------------------------

ENGINE_CONFIGS = [
    # (model, gpus, precision, rate, max_batch): dense TP1, KV-bound 70B at TP1 (a few dozen sequences fit),
    # TP2, MoE TP2, and a 16-slot engine (admission limited by batch slots, a long queue)
    ("llama-3.1-8b", 1, "fp8", 20.0, None),
    ("llama-3.1-70b", 1, "fp8", 1.5, None),
    ("llama-3.1-70b", 2, "fp8", 3.0, None),
    ("mixtral-8x7b", 2, "fp8", 6.0, None),
    ("llama-3.1-8b", 1, "fp8", 20.0, 16),
]


@pytest.mark.parametrize("model,gpus,precision,rate,max_batch", ENGINE_CONFIGS)
def test_one_engine_reproduces_perf_serving_request_by_request(model, gpus, precision, rate, max_batch):
    """Mixed lengths, Poisson arrivals: every request's first token and finish match perf.serving.simulate."""
    base = fleet_spec(model, "h100-sxm", gpus, precision=precision, offer=OFFER, max_batch=max_batch)
    spec = with_itype(base, engines=1, cold_start_s=0.0, hazard_per_hour=0.0)
    n = 500
    isl, osl = mixed_lengths(n, seed=5)
    osl[:10] = 1  # single-token outputs finish at their prompt
    t = poisson(n, rate, seed=4)
    ref = simulate(base.replica, Requests(t, isl, osl))
    res = simulate_fleet(requests(t, isl, osl), spec, fixed(on_demand=1), SimConfig())
    assert res.completed == n
    first = res.arrival_s + res.ttft_s - spec.engine.frontend_s
    np.testing.assert_allclose(first, ref.first_token_s, rtol=0, atol=1e-9)
    ref_tpot = np.where(osl > 1, (ref.finish_s - ref.first_token_s) / np.maximum(osl - 1, 1), 0.0)
    np.testing.assert_allclose(res.tpot_s, ref_tpot, rtol=1e-9, atol=1e-12)
    if model == "llama-3.1-70b" and gpus == 1:
        assert ref.mean_batch < 40  # the KV cache, not max_batch, limited the batch: admission was exercised
    if max_batch:
        assert ref.mean_batch > 0.9 * max_batch and np.nanmax(res.ttft_s) > 10.0  # slots full, queue long


@pytest.mark.parametrize("load", [0.3, 0.6, 0.85])
def test_single_engine_matches_perf_predict_at_steady_load(base_spec, capacity_rps, load):
    """Fixed lengths and the same Poisson arrivals as perf's rate mode: TTFT/TPOT p50/p95 and throughput."""
    spec = with_itype(base_spec, engines=1, cold_start_s=0.0, hazard_per_hour=0.0)
    rate, n = load * capacity_rps, 2000
    ref = predict(base_spec.replica, 1000, 250, "rate", rate_qps=rate, num_requests=n)
    res = simulate_fleet(requests(poisson(n, rate, seed=0), 1000, 250), spec, fixed(on_demand=1), SimConfig())
    assert res.completed == n
    assert res.ttft_ms["p50"] == pytest.approx(ref.p50_ttft_ms, rel=0.05)
    assert res.ttft_ms["p95"] == pytest.approx(ref.p95_ttft_ms, rel=0.05)
    assert res.tpot_ms["p50"] == pytest.approx(ref.p50_tpot_ms, rel=0.05)
    assert res.tpot_ms["p95"] == pytest.approx(ref.p95_tpot_ms, rel=0.05)
    # arrivals start at 0 and the run ends at the last completion
    assert res.completed / res.duration_s == pytest.approx(ref.request_throughput, rel=0.05)
    assert res.completed / res.duration_s == pytest.approx(rate, rel=0.1)  # below capacity: it keeps up


def test_round_robin_engines_are_independent_replicas(make_spec):
    """Two engines fed alternately behave exactly like two perf simulations of their halves."""
    spec = make_spec(engines=2)
    n = 400
    isl, osl = mixed_lengths(n, seed=8, max_isl=3000, max_osl=800)
    t = poisson(n, 12.0, seed=9)
    res = simulate_fleet(requests(t, isl, osl), spec, fixed(on_demand=1), SimConfig(router="round-robin"))
    first = res.arrival_s + res.ttft_s - spec.engine.frontend_s
    for half in (slice(0, None, 2), slice(1, None, 2)):
        ref = simulate(spec.replica, Requests(t[half], isl[half], osl[half]))
        np.testing.assert_allclose(first[half], ref.first_token_s, rtol=0, atol=1e-9)


def test_arrival_cuts_a_long_decode_run(make_spec):
    """A prompt arriving while another sequence decodes joins at the end of the step in progress."""
    spec = make_spec()
    res = simulate_fleet(requests([0.0, 10.0], 1000, [20_000, 10]), spec, fixed(on_demand=1), SimConfig())
    assert res.completed == 2
    step = spec.engine.step_model(0, 0.0, 1, 1000 + 20_000)  # an upper bound on a decode step here
    prefill = spec.engine.step_model(1000, 1000 * 1001 / 2, 1, 21_000, 1)
    assert res.ttft_s[1] <= step + prefill + spec.engine.frontend_s + 1e-9
    # the long request still produced 20k tokens at decode speed: it is not slowed by orders of magnitude
    assert res.tpot_s[0] < 2 * step


def test_engines_per_instance_scale_throughput(make_spec, capacity_rps):
    """Past one engine's capacity, a second engine on the instance brings the queue back to nothing."""
    rate, n = 1.5 * capacity_rps, 3000
    t = poisson(n, rate, seed=1)
    one = simulate_fleet(requests(t), make_spec(engines=1), fixed(on_demand=1), SimConfig())
    two = simulate_fleet(requests(t), make_spec(engines=2), fixed(on_demand=1), SimConfig())
    assert one.ttft_ms["p95"] > 20 * two.ttft_ms["p95"]
    assert two.gpu_busy_fraction < one.gpu_busy_fraction <= 1.0 + 1e-9
    assert one.completed == two.completed == n
