"""Step-time roofline: each component against numbers worked out by hand.

Profile (conftest.TEST_PROFILE): gemm_compute_eff 0.6, gemm_bw_eff 0.8, attn_compute_eff 0.4,
attn_bw_eff 0.7, link_eff 0.7, all-reduce latency 10 us, step overhead 2 ms, 5 us per sequence.
H100 SXM: 3.35 TB/s, 989.5 dense bf16 TFLOPS, NVLink 900 GB/s bidirectional (450 one way).
L40S: 0.864 TB/s, PCIe 64 GB/s bidirectional (32 one way).
"""

from __future__ import annotations

import numpy as np
import pytest

from fleetwise.perf.steps import (
    StepModel,
    allreduce_time,
    attention_time,
    experts_touched_fraction,
    gemm_time,
    prefill_pairs,
    step_time,
)

# Llama-3.1-8B: 32 layers, hidden 4096, 32 heads / 8 KV heads of 128, FFN 14336, vocab 128256.
L8_ATTENTION = 32 * (4096 * 4096 * 2 + 2 * 4096 * 8 * 128)
L8_FFN = 32 * 3 * 4096 * 14336
L8_NORMS = (2 * 32 + 1) * 4096
L8_LM_HEAD = 128256 * 4096
L8_BODY = L8_ATTENTION + L8_FFN + L8_NORMS
L8_BF16_READ_BYTES = L8_BODY * 2 + L8_LM_HEAD * 2  # every decode step streams body + LM head
L8_LINEAR_FLOPS = 2 * (L8_ATTENTION + L8_FFN)  # per token
L8_LM_HEAD_FLOPS = 2 * L8_LM_HEAD  # per generated token
L8_ATTN_FLOPS_PER_PAIR = 4 * 32 * 32 * 128  # QK^T and PV, all layers
L8_KV_BF16 = 2 * 32 * 8 * 128 * 2

H100_BW = 3.35e12
H100_BF16 = 989.5e12
H100_FP8 = 1979e12


@pytest.fixture(scope="module")
def l8(make_replica):
    return make_replica("llama-3.1-8b", "h100", precision="bf16")


def test_replica_constants_match_hand_arithmetic(l8):
    assert l8.dense_weight_bytes == pytest.approx(L8_BF16_READ_BYTES, rel=1e-12)
    assert L8_BF16_READ_BYTES == 15_009_849_344
    assert l8.expert_weight_bytes == 0
    assert l8.linear_flops_per_token == pytest.approx(L8_LINEAR_FLOPS, rel=1e-12)
    assert l8.lm_head_flops_per_token == pytest.approx(L8_LM_HEAD_FLOPS, rel=1e-12)
    assert l8.attn_flops_per_token_context == pytest.approx(L8_ATTN_FLOPS_PER_PAIR, rel=1e-12)
    assert l8.gemm_flops_per_s == H100_BF16
    assert l8.allreduce_bytes_per_token == 4096 * 2


def test_decode_one_sequence_gemm_is_memory_bound(l8):
    t = float(gemm_time(l8, 1, 1))
    memory = L8_BF16_READ_BYTES / (H100_BW * 0.8)
    compute = (L8_LINEAR_FLOPS + L8_LM_HEAD_FLOPS) / (H100_BF16 * 0.6)
    assert memory > 100 * compute  # deep in the memory-bound regime
    assert t == pytest.approx(memory, rel=1e-9)
    assert t == pytest.approx(5.6007e-3, rel=1e-4)


def test_prefill_4096_gemm_is_compute_bound(l8):
    t = float(gemm_time(l8, 4096, 1))  # one sequence: the LM head runs for its last token only
    compute = (4096 * L8_LINEAR_FLOPS + L8_LM_HEAD_FLOPS) / (H100_BF16 * 0.6)
    memory = L8_BF16_READ_BYTES / (H100_BW * 0.8)
    assert compute > 10 * memory
    assert t == pytest.approx(compute, rel=1e-9)
    assert t == pytest.approx(0.09630, rel=1e-3)


def test_gemm_crossover_near_the_ridge_point(l8):
    """Memory-bound below roughly peak*eff_c / (bw*eff_b) * bytes/flop tokens, compute-bound above."""
    ridge = (L8_BF16_READ_BYTES / (H100_BW * 0.8)) * (H100_BF16 * 0.6) / L8_LINEAR_FLOPS
    below, above = int(ridge * 0.8), int(ridge * 1.25)
    mem = L8_BF16_READ_BYTES / (H100_BW * 0.8)
    assert float(gemm_time(l8, below, 0)) == pytest.approx(mem, rel=1e-12)
    assert float(gemm_time(l8, above, 0)) > mem * 1.2


def test_prefill_attention_is_quadratic_flops(l8):
    pairs = prefill_pairs(4096, 0)
    assert pairs == 4096 * 4097 / 2
    t = float(attention_time(l8, pairs, 0))
    assert t == pytest.approx(pairs * L8_ATTN_FLOPS_PER_PAIR / (H100_BF16 * 0.4), rel=1e-9)
    assert t == pytest.approx(0.011114, rel=1e-3)
    # A chunk after 1000 cached tokens attends to them too.
    assert prefill_pairs(100, 1000) == 100 * 1000 + 100 * 101 / 2


def test_decode_attention_reads_the_kv_cache(l8):
    t = float(attention_time(l8, 0, 1000))
    assert L8_KV_BF16 == 131_072
    assert t == pytest.approx(1000 * L8_KV_BF16 / (H100_BW * 0.7), rel=1e-9)


def test_decode_attention_fp8_kv_halves_the_bytes(make_replica, l8):
    fp8 = make_replica("llama-3.1-8b", "h100", precision="fp8")
    half = 0.5 * float(attention_time(l8, 0, 5000))
    assert float(attention_time(fp8, 0, 5000)) == pytest.approx(half, rel=1e-9)


def test_step_time_sums_its_components(l8):
    t = float(step_time(l8, 0, 0.0, 1, 1000))
    expected = (
        L8_BF16_READ_BYTES / (H100_BW * 0.8)
        + 1000 * L8_KV_BF16 / (H100_BW * 0.7)
        + 2e-3  # step overhead
        + 5e-6  # one sequence
    )
    assert t == pytest.approx(expected, rel=1e-9)
    assert t == pytest.approx(7.6616e-3, rel=1e-4)


def test_step_time_prefill_plus_decode(l8):
    pairs = prefill_pairs(4096, 0)
    t = float(step_time(l8, 4096, pairs, 10, 10 * 2000, prefill_seqs=1))
    tokens = 4096 + 10
    gemm = max(
        (tokens * L8_LINEAR_FLOPS + 11 * L8_LM_HEAD_FLOPS) / (H100_BF16 * 0.6),
        L8_BF16_READ_BYTES / (H100_BW * 0.8),
    )
    attn = pairs * L8_ATTN_FLOPS_PER_PAIR / (H100_BF16 * 0.4) + 20_000 * L8_KV_BF16 / (H100_BW * 0.7)
    assert t == pytest.approx(gemm + attn + 2e-3 + 11 * 5e-6, rel=1e-9)


def test_step_time_broadcasts_over_arrays(l8):
    seqs = np.array([1, 8, 64, 256])
    t = step_time(l8, 0, 0.0, seqs, seqs * 1000)
    assert t.shape == (4,)
    for i, s in enumerate(seqs):
        assert t[i] == pytest.approx(float(step_time(l8, 0, 0.0, int(s), int(s) * 1000)), rel=1e-12)
    assert np.all(np.diff(t) > 0)


def test_allreduce_zero_at_tp1(l8):
    assert float(allreduce_time(l8, 1000)) == 0.0
    arr = allreduce_time(l8, np.array([1, 10, 100]))
    assert np.all(arr == 0.0) and arr.shape == (3,)


def test_allreduce_hand_computed_and_pcie_slower_than_nvlink(make_replica):
    h100 = make_replica("llama-3.1-8b", "h100", 2, precision="bf16")
    l40s = make_replica("llama-3.1-8b", "l40s", 2, precision="bf16")
    size = 4096 * 2 * 1000  # bf16 activations of 1000 tokens
    # Two all-reduces per layer; ring moves 2(t-1)/t of the data at TP2 = 1x.
    t_h100 = 2 * 32 * (10e-6 + size / (450e9 * 0.7))
    t_l40s = 2 * 32 * (10e-6 + size / (32e9 * 0.7))
    assert float(allreduce_time(h100, 1000)) == pytest.approx(t_h100, rel=1e-9)
    assert float(allreduce_time(l40s, 1000)) == pytest.approx(t_l40s, rel=1e-9)
    assert float(allreduce_time(l40s, 1000)) > 5 * float(allreduce_time(h100, 1000))


def test_allreduce_ring_factor_grows_with_tp(make_replica):
    tp2 = make_replica("llama-3.1-70b", "h100", 2, precision="fp8")
    tp8 = make_replica("llama-3.1-70b", "h100", 8, precision="fp8")
    size = 8192 * 2 * 4096
    expected8 = 2 * 80 * (10e-6 + 2 * 7 / 8 * size / (450e9 * 0.7))
    assert float(allreduce_time(tp8, 4096)) == pytest.approx(expected8, rel=1e-9)
    assert float(allreduce_time(tp8, 4096)) > float(allreduce_time(tp2, 4096))


def test_moe_touched_expert_fraction(make_replica, l8):
    mix = make_replica("mixtral-8x7b", "h100", precision="fp8")
    assert mix.num_experts == 8 and mix.experts_per_token == 2
    assert float(experts_touched_fraction(mix, 1)) == pytest.approx(2 / 8, rel=1e-12)
    assert float(experts_touched_fraction(mix, 2)) == pytest.approx(1 - (6 / 8) ** 2, rel=1e-12)
    assert float(experts_touched_fraction(mix, 100)) == pytest.approx(1.0, abs=1e-10)
    assert float(experts_touched_fraction(mix, 0)) == 0.0
    fr = experts_touched_fraction(mix, np.arange(1, 64))
    assert np.all(np.diff(fr) > 0) and np.all(fr <= 1.0)
    assert experts_touched_fraction(l8, 100) == 0.0  # dense model


def test_moe_decode_reads_only_routed_experts(make_replica):
    mix = make_replica("mixtral-8x7b", "h100", precision="fp8")
    # Mixtral: 32 layers x 8 experts x 3 x 4096 x 14336 expert weights, fp8 = 1 byte each.
    experts = 32 * 8 * 3 * 4096 * 14336
    assert mix.expert_weight_bytes == pytest.approx(experts, rel=1e-12)
    bw = H100_BW * 0.8
    one = float(gemm_time(mix, 1, 1))
    assert one == pytest.approx((mix.dense_weight_bytes + experts * 2 / 8) / bw, rel=1e-9)
    everything = (mix.dense_weight_bytes + experts) / bw
    assert one < 0.35 * everything
    # A large prefill touches every expert: the memory floor is the whole model.
    t_mem_big = (mix.dense_weight_bytes + experts * float(experts_touched_fraction(mix, 4096))) / bw
    assert t_mem_big == pytest.approx(everything, rel=1e-9)


def test_fp8_gemm_uses_fp8_peak(make_replica):
    r = make_replica("llama-3.1-8b", "h100", precision="fp8")
    assert r.gemm_flops_per_s == H100_FP8
    assert r.attn_flops_per_s == H100_FP8  # fp8 KV -> fp8 attention on Hopper
    t = float(gemm_time(r, 8192, 0))
    assert t == pytest.approx(8192 * L8_LINEAR_FLOPS / (H100_FP8 * 0.6), rel=1e-9)


# --- StepModel: the scalar form the fleet simulator calls once per iteration -------------------------------

STEP_MODEL_CONFIGS = [
    # (model, gpu, num_gpus, precision): dense and MoE, TP1 and TP>1 over NVLink and PCIe, MLA.
    ("llama-3.1-8b", "h100", 1, "fp8"),
    ("llama-3.1-8b", "l40s", 2, "bf16"),
    ("llama-3.1-70b", "h100", 4, "bf16"),
    ("mixtral-8x7b", "h100", 1, "fp8"),
    ("mixtral-8x7b", "h100", 2, "bf16"),
    ("deepseek-v3", "h200", 8, "fp8"),
]


@pytest.mark.parametrize("model,gpu,n,precision", STEP_MODEL_CONFIGS)
def test_step_model_equals_step_time(make_replica, model, gpu, n, precision):
    r = make_replica(model, gpu, n, precision=precision)
    sm = StepModel(r)
    rng = np.random.default_rng(7)
    k = 300
    p_tokens = rng.integers(0, 16_384, k)
    p_tokens[:40] = 0  # decode-only steps
    p_seqs = np.where(p_tokens > 0, rng.integers(1, 9, k), 0)
    context_before = rng.integers(0, 32_000, k)
    pairs = prefill_pairs(p_tokens, context_before).astype(float)
    d_seqs = rng.integers(0, 1024, k)
    d_seqs[40:60] = 0  # prefill-only steps
    d_seqs[60:80] = rng.integers(1, 4, 20)  # tiny batches: MoE touches few experts
    ctx = d_seqs * rng.integers(1, 16_000, k)
    expected = step_time(r, p_tokens, pairs, d_seqs, ctx, p_seqs)
    got = np.array([sm(int(a), float(b), int(c), float(d), int(e))
                    for a, b, c, d, e in zip(p_tokens, pairs, d_seqs, ctx, p_seqs)])
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    # the empty step and one decode token, as plain scalars
    assert sm(0, 0.0, 0, 0.0) == pytest.approx(float(step_time(r, 0, 0.0, 0, 0)), rel=1e-12)
    assert sm(0, 0.0, 1, 100.0) == pytest.approx(float(step_time(r, 0, 0.0, 1, 100)), rel=1e-12)


@pytest.mark.parametrize("model,gpu,n,precision", STEP_MODEL_CONFIGS)
def test_step_model_context_coefficient_is_the_decode_slope(make_replica, model, gpu, n, precision):
    """A decode step grows by ctx_coef per token of context: what the simulator's decode runs assume."""
    r = make_replica(model, gpu, n, precision=precision)
    sm = StepModel(r)
    for seqs, ctx in [(1, 100), (64, 64 * 2000), (512, 512 * 3000)]:
        slope = float(step_time(r, 0, 0.0, seqs, ctx + seqs)) - float(step_time(r, 0, 0.0, seqs, ctx))
        assert sm.ctx_coef * seqs == pytest.approx(slope, rel=1e-9)
    assert sm.ctx_coef > 0
