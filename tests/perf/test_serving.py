"""The continuous-batching simulation and the benchmark modes built on it."""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.errors import ConfigError, InfeasibleError
from fleetwise.perf.predict import arrivals, predict
from fleetwise.perf.serving import Requests, SimResult, simulate
from fleetwise.perf.steps import prefill_pairs, step_time

BLOCK = 64  # TEST_PROFILE.kv_block_tokens


@pytest.fixture(scope="module")
def l8(make_replica):
    return make_replica("llama-3.1-8b", "h100", precision="fp8")


@pytest.fixture(scope="module")
def l70_kv_bound(make_replica):
    """70B fp8 on a single H100: ~8 GiB of KV cache, a few dozen long sequences at most."""
    return make_replica("llama-3.1-70b", "h100", precision="fp8")


def _mixed_workload(n: int, seed: int, arrival_s: np.ndarray | None = None) -> Requests:
    rng = np.random.default_rng(seed)
    isl = rng.integers(1, 3000, n)
    osl = rng.integers(1, 1500, n)
    osl[:5] = 1  # single-token outputs finish at their first token
    rng.shuffle(osl)
    t = np.zeros(n) if arrival_s is None else arrival_s
    return Requests(arrival_s=t, isl=isl, osl=osl)


def _check_every_request_finishes_once(res: SimResult, work: Requests, replica, max_concurrent: int) -> None:
    n = len(work)
    assert len(res.first_token_s) == len(res.finish_s) == n
    for arr in (res.arrival_s, res.first_token_s, res.finish_s, res.itl_s, res.itl_weight):
        assert np.all(np.isfinite(arr)), "NaN/inf timing: a request never finished"
    assert np.all(res.first_token_s >= res.arrival_s)
    assert np.all(res.finish_s >= res.first_token_s)
    single = res.osl <= 1
    assert np.array_equal(res.finish_s[single], res.first_token_s[single])
    assert np.all(res.finish_s[~single] > res.first_token_s[~single])
    # Every output token after the first comes from exactly one decode slot: no request decodes
    # past its length or twice per step, and none is dropped.
    assert res.itl_weight.sum() == pytest.approx(float((np.maximum(work.osl, 1) - 1).sum()), abs=0.5)
    assert np.all(res.itl_s > 0)
    span = float(res.finish_s.max() - res.arrival_s.min())
    assert 0 < res.busy_s <= span * (1 + 1e-9)
    assert 0 < res.mean_batch <= max_concurrent + 1e-9
    # KV-cache admission: requests between first token and finish are all resident at once.
    need = -(-(work.isl + np.maximum(work.osl, 1)) // BLOCK) * BLOCK
    for t in np.unique(res.first_token_s):
        live = (res.first_token_s <= t) & (res.finish_s > t)
        assert need[live].sum() <= replica.memory.kv_capacity_tokens
        assert live.sum() <= max_concurrent


def test_offline_mixed_lengths_all_finish(l8):
    work = _mixed_workload(300, seed=1)
    res = simulate(l8, work)
    _check_every_request_finishes_once(res, work, l8, l8.max_batch)
    assert res.mean_batch > 50  # everything queued at t=0 runs in large batches


def test_rate_mixed_lengths_all_finish(l8):
    work = _mixed_workload(300, seed=2, arrival_s=arrivals(300, 20.0, "poisson", seed=2))
    res = simulate(l8, work)
    _check_every_request_finishes_once(res, work, l8, l8.max_batch)


def test_kv_bound_offline_all_finish(l70_kv_bound):
    work = _mixed_workload(150, seed=3)
    res = simulate(l70_kv_bound, work)
    _check_every_request_finishes_once(res, work, l70_kv_bound, l70_kv_bound.max_batch)


@pytest.mark.parametrize("k", [1, 7, 32])
def test_closed_loop_keeps_k_outstanding(l8, k):
    work = _mixed_workload(120, seed=4)
    res = simulate(l8, work, closed_loop=k)
    _check_every_request_finishes_once(res, work, l8, k)
    # The first k are released at t=0; each later one exactly when an earlier one finishes.
    assert np.all(res.arrival_s[:k] == 0.0)
    finishes = set(res.finish_s.tolist())
    assert all(a in finishes for a in res.arrival_s[k:].tolist())
    if k > 1:
        assert res.mean_batch > 0.5 * k


@pytest.mark.parametrize("b", [1, 8])
def test_static_batches_run_one_after_another(l8, b):
    work = _mixed_workload(40, seed=5)
    res = simulate(l8, work, static_batch=b)
    _check_every_request_finishes_once(res, work, l8, b)
    for start in range(b, 40, b):
        prev, cur = slice(start - b, start), slice(start, start + b)
        assert res.first_token_s[cur].min() > res.finish_s[prev].max()
    # Prompts of one batch are prefilled together (no token budget): one shared first-token time.
    assert np.unique(res.first_token_s[:b]).size == 1


@pytest.mark.parametrize(
    ("mode", "kwargs"),
    [
        ("offline", {"num_requests": 200}),
        ("rate", {"rate_qps": 15.0, "num_requests": 200}),
        ("concurrency", {"concurrency": 16, "num_requests": 200}),
        ("static", {"batch": 16}),
    ],
)
def test_predict_modes_mixed_lengths(l8, mode, kwargs):
    rng = np.random.default_rng(6)
    n = kwargs.get("num_requests") or kwargs["batch"]
    isl, osl = rng.integers(1, 2000, n), rng.integers(1, 800, n)
    m = predict(l8, isl, osl, mode, **kwargs)
    values = np.array(list(m.to_dict().values()), dtype=float)
    assert np.all(np.isfinite(values))
    assert m.num_requests == n
    assert m.output_throughput == pytest.approx(osl.sum() / m.duration_s, rel=1e-9)
    assert m.total_token_throughput == pytest.approx((isl.sum() + osl.sum()) / m.duration_s, rel=1e-9)
    assert m.request_throughput == pytest.approx(n / m.duration_s, rel=1e-9)
    assert 0.0 < m.mean_ttft_ms <= m.mean_e2e_ms
    if mode in ("rate", "concurrency"):  # the serving frontend adds 5 ms (TEST_PROFILE)
        assert m.mean_ttft_ms > 5.0
    assert m.p50_ttft_ms <= m.p90_ttft_ms <= m.p95_ttft_ms <= m.p99_ttft_ms
    assert m.p50_itl_ms <= m.p90_itl_ms <= m.p95_itl_ms <= m.p99_itl_ms
    assert m.mean_itl_ms > 0 and m.mean_tpot_ms > 0
    if mode == "concurrency":
        assert m.mean_batch <= 16
    if mode == "static":
        assert m.mean_batch <= 16


def test_same_seed_same_metrics(l8):
    a = predict(l8, 512, 128, "rate", rate_qps=30, num_requests=200, seed=11)
    b = predict(l8, 512, 128, "rate", rate_qps=30, num_requests=200, seed=11)
    c = predict(l8, 512, 128, "rate", rate_qps=30, num_requests=200, seed=12)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()
    offline = predict(l8, 256, 64, "offline", num_requests=200)
    assert offline == predict(l8, 256, 64, "offline", num_requests=200)


def test_poisson_arrivals(l8):
    t = arrivals(20_000, 50.0, "poisson", seed=0)
    assert t[0] == 0.0 and np.all(np.diff(t) >= 0)
    assert np.mean(np.diff(t)) == pytest.approx(1 / 50, rel=0.03)
    assert np.allclose(arrivals(5, 4.0, "constant"), [0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ConfigError):
        arrivals(5, 0.0)
    with pytest.raises(ConfigError):
        arrivals(5, 1.0, "bursty")


def test_light_load_ttft_close_to_unloaded(l8):
    isl, osl = 512, 256
    # Static/offline are engine-level numbers without the serving frontend; rate mode adds it.
    unloaded = predict(l8, isl, osl, "static", batch=1).mean_ttft_ms + 5.0
    offline = predict(l8, isl, osl, "offline", num_requests=200)
    capacity = offline.request_throughput
    light = predict(l8, isl, osl, "rate", rate_qps=0.2 * capacity, num_requests=200, arrival="constant")
    very_light = predict(l8, isl, osl, "rate", rate_qps=0.005 * capacity, num_requests=50, arrival="constant")
    assert very_light.mean_ttft_ms == pytest.approx(unloaded, rel=0.02)
    assert unloaded * 0.99 <= light.mean_ttft_ms <= 1.5 * unloaded
    assert light.mean_batch < 0.3 * offline.mean_batch
    assert light.request_throughput == pytest.approx(0.2 * capacity, rel=0.1)


def test_overload_ttft_grows_without_bound(make_replica):
    r = make_replica("llama-3.1-70b", "h100", 4, precision="fp8")
    isl, osl = 512, 256
    capacity = predict(r, isl, osl, "offline", num_requests=200).request_throughput
    short = predict(r, isl, osl, "rate", rate_qps=2 * capacity, num_requests=200, arrival="constant")
    long = predict(r, isl, osl, "rate", rate_qps=2 * capacity, num_requests=400, arrival="constant")
    unloaded = predict(r, isl, osl, "static", batch=1).mean_ttft_ms
    assert short.mean_ttft_ms > 5 * unloaded
    assert long.mean_ttft_ms > 1.5 * short.mean_ttft_ms
    # Served throughput cannot exceed capacity, however fast requests arrive.
    assert long.request_throughput <= capacity * 1.05


def test_overload_queue_grows_when_kv_binds(l70_kv_bound):
    r = l70_kv_bound
    capacity = predict(r, 128, 4096, "offline", num_requests=100).request_throughput
    short = predict(r, 128, 4096, "rate", rate_qps=2 * capacity, num_requests=100, arrival="constant")
    long = predict(r, 128, 4096, "rate", rate_qps=2 * capacity, num_requests=200, arrival="constant")
    assert long.mean_ttft_ms > 1.6 * short.mean_ttft_ms


def test_static_batch1_ttft_is_one_prefill_step(l8):
    isl = 2048
    m = predict(l8, isl, 64, "static", batch=1)
    prefill = float(step_time(l8, isl, prefill_pairs(isl, 0), 0, 0, 1))
    # Static batching is an engine-level benchmark: no frontend latency.
    assert m.mean_ttft_ms == pytest.approx(prefill * 1e3, rel=1e-9)
    # A lone request in rate mode pays the same prefill plus the 5 ms frontend.
    lone = predict(l8, isl, 64, "rate", rate_qps=0.1, num_requests=1)
    assert lone.mean_ttft_ms == pytest.approx(prefill * 1e3 + 5.0, rel=1e-9)
    # By hand: GEMMs (2048 x 13.96 GFLOP + 1.05 GFLOP LM head) / (1979 TFLOPS x 0.6) = 24.08 ms,
    # attention 2048*2049/2 pairs x 524288 FLOP / (1979 TFLOPS x 0.4) = 1.39 ms, + 2 ms + 5 us.
    assert prefill * 1e3 == pytest.approx(24.076 + 1.390 + 2.0 + 0.005, rel=1e-3)
    # ITL of a lone sequence is one decode step at its growing context.
    lo = float(step_time(l8, 0, 0.0, 1, isl + 1))
    hi = float(step_time(l8, 0, 0.0, 1, isl + 63))
    assert lo * 1e3 <= m.mean_itl_ms <= hi * 1e3


def test_chunked_prefill_of_a_long_prompt(l8):
    """A 20k-token prompt runs as 8192 + 8192 + 3616 token chunks (max_num_tokens 8192)."""
    res = simulate(l8, Requests(np.zeros(1), np.array([20_000]), np.array([2])))
    chunks = [(8192, 0), (8192, 8192), (3616, 16384)]
    t_first = sum(float(step_time(l8, c, prefill_pairs(c, s), 0, 0, 1)) for c, s in chunks)
    assert res.first_token_s[0] == pytest.approx(t_first, rel=1e-9)
    t_done = t_first + float(step_time(l8, 0, 0.0, 1, 20_001))
    assert res.finish_s[0] == pytest.approx(t_done, rel=1e-9)


def test_kv_capacity_caps_the_batch(l70_kv_bound):
    r = l70_kv_bound
    fits = r.memory.max_sequences(128 + 4096, BLOCK)
    assert 5 <= fits <= 40
    m = predict(r, 128, 4096, "offline", num_requests=100)
    assert m.mean_batch <= fits
    assert m.mean_batch > 0.7 * fits
    assert m.mean_batch < 0.05 * r.max_batch


def test_request_longer_than_kv_capacity_is_infeasible(l70_kv_bound):
    cap = l70_kv_bound.memory.kv_capacity_tokens
    with pytest.raises(InfeasibleError, match="KV cache"):
        predict(l70_kv_bound, cap, 100, "offline", num_requests=10)
    with pytest.raises(InfeasibleError, match="KV cache"):
        predict(l70_kv_bound, cap - 50, 100, "rate", rate_qps=1.0, num_requests=10)
    # Just fitting is fine.
    fine = (cap // BLOCK) * BLOCK - 10
    assert predict(l70_kv_bound, fine, 10, "offline", num_requests=3).num_requests == 3


@pytest.mark.parametrize(
    ("mode", "kwargs", "match"),
    [
        ("burst", {}, "unknown mode"),
        ("rate", {}, "needs a request rate"),
        ("static", {}, "needs a batch size"),
        ("concurrency", {}, "needs a concurrency"),
    ],
)
def test_predict_option_errors(l8, mode, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        predict(l8, 128, 128, mode, num_requests=10, **kwargs)


def test_predict_rejects_empty_lengths(l8):
    with pytest.raises(ConfigError, match=">= 1 token"):
        predict(l8, 0, 128, "offline", num_requests=10)


def test_arrival_during_long_decode_is_admitted_at_next_step_boundary(make_replica):
    """Regression: a multi-step decode run must stop at the first step boundary after an arrival,
    accounting for steps lengthening as context grows (it overshot by ~194 ms here)."""
    r = make_replica("llama-3.1-8b", "h100", precision="bf16")
    work = Requests(np.array([0.0, 20.0]), np.array([100, 100]), np.array([8000, 10]))
    res = simulate(r, work)
    # Reference: step request 0 one decode iteration at a time until the clock passes t=20 s.
    t, ctx = float(step_time(r, 100, prefill_pairs(100, 0), 0, 0, 1)), 101
    while t < 20.0:
        t += float(step_time(r, 0, 0.0, 1, ctx))
        ctx += 1
    expected_first = t + float(step_time(r, 100, prefill_pairs(100, 0), 1, ctx, 1))
    # Expected 20.0092 s (TTFT 9.2 ms); the overshooting run gave 20.2032 s (TTFT 203 ms).
    assert res.first_token_s[1] == pytest.approx(expected_first, abs=1e-3)


def test_array_isl_with_scalar_osl(l8):
    """Regression: per-request input lengths with one output length (used to fail to broadcast)."""
    isl = np.random.default_rng(0).integers(10, 2000, 100)
    m = predict(l8, isl, 128, "offline")
    assert m.num_requests == 100
    assert m.output_throughput * m.duration_s == pytest.approx(100 * 128, rel=1e-9)
    assert m.total_token_throughput * m.duration_s == pytest.approx(isl.sum() + 100 * 128, rel=1e-9)
    r = predict(l8, 256, np.full(50, 64), "rate", rate_qps=5.0, num_requests=500)
    assert r.num_requests == 50  # the arrays, not num_requests, set the count


def test_per_request_lengths_must_match(l8):
    with pytest.raises(ConfigError, match="same count"):
        predict(l8, np.full(10, 128), np.full(11, 128), "offline")


def test_static_mode_with_per_request_lengths(l8):
    try:
        m = predict(l8, np.full(10, 128), np.full(10, 64), "static", batch=4)
    except ConfigError:
        return  # refusing clearly is acceptable too
    assert m.num_requests == 10
    assert m.mean_batch <= 4
