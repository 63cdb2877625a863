"""Memory plan: weights per GPU, KV bytes per token, KV capacity, infeasible configurations.

Expected values are computed by hand from the architectures in the catalog (config.json numbers),
not from the functions under test.
"""

from __future__ import annotations

import math

import pytest

from fleetwise.catalog.records import GIB
from fleetwise.errors import FleetwiseError, InfeasibleError
from fleetwise.perf import arch
from fleetwise.perf.memory import memory_plan, weight_bytes
from fleetwise.perf.profile import get_profile
from fleetwise.perf.replica import replica_from_names

# Llama-3.1-70B: 80 layers, hidden 8192, 64 heads / 8 KV heads of 128, FFN 28672, vocab 128256.
L70_ATTENTION = 80 * (8192 * 8192 * 2 + 2 * 8192 * 8 * 128)  # q, o + k, v
L70_FFN = 80 * 3 * 8192 * 28672  # gate, up, down
L70_EMBED = 128256 * 8192  # input embedding; the untied LM head is the same size
L70_NORMS = (2 * 80 + 1) * 8192
L70_BODY = L70_ATTENTION + L70_FFN + L70_NORMS
L70_KV_PER_TOKEN_BF16 = 2 * 80 * 8 * 128 * 2  # K and V, layers, KV heads, head dim, bytes


def test_hand_computed_llama70b_param_counts(cat):
    pc = arch.param_counts(cat.model("llama-3.1-70b"))
    assert pc.attention == L70_ATTENTION == 12_079_595_520
    assert pc.dense_ffn == L70_FFN == 56_371_445_760
    assert pc.embedding == pc.lm_head == L70_EMBED == 1_050_673_152
    assert pc.norms == L70_NORMS
    assert pc.expert_ffn == pc.shared_ffn == 0
    assert pc.total == L70_BODY + 2 * L70_EMBED == 70_553_706_496


def test_llama70b_bf16_tp4_on_h100_weights_per_gpu(cat, profile):
    plan = memory_plan(cat.model("llama-3.1-70b"), cat.gpu("h100-sxm"), 4, cat.precision("bf16"), profile)
    expected = (L70_BODY * 2 + 2 * L70_EMBED * 2) / 4
    assert expected == 35_276_853_248
    assert plan.weight_bytes_per_gpu == pytest.approx(expected, rel=1e-12)


def test_llama70b_fp8_weights_keep_embeddings_in_16_bit(cat):
    got = weight_bytes(cat.model("llama-3.1-70b"), cat.precision("fp8"))
    assert got == pytest.approx(L70_BODY * 1 + 2 * L70_EMBED * 2, rel=1e-12)
    assert got == pytest.approx(72_655_052_800, rel=1e-12)


def test_llama70b_kv_bytes_per_token(cat, profile):
    assert L70_KV_PER_TOKEN_BF16 == 327_680
    plan = memory_plan(cat.model("llama-3.1-70b"), cat.gpu("h100-sxm"), 4, cat.precision("bf16"), profile)
    assert plan.kv_bytes_per_token == 327_680
    assert plan.kv_bytes_per_token_per_gpu == 327_680 / 4
    fp8 = memory_plan(cat.model("llama-3.1-70b"), cat.gpu("h100-sxm"), 4, cat.precision("fp8"), profile)
    assert fp8.kv_bytes_per_token == 163_840  # fp8 KV cache: 1 byte per element


def test_llama70b_bf16_tp4_kv_capacity_and_max_sequences(cat, profile):
    plan = memory_plan(cat.model("llama-3.1-70b"), cat.gpu("h100-sxm"), 4, cat.precision("bf16"), profile)
    weights_gpu = 35_276_853_248
    free = 80 * GIB - weights_gpu - 3 * GIB
    expected = math.floor(free * 0.9 / (327_680 / 4))
    assert expected == 520_765
    assert plan.fits and plan.reason == ""
    assert plan.workspace_bytes_per_gpu == 3 * GIB
    assert plan.kv_cache_bytes_per_gpu == pytest.approx(free * 0.9, rel=1e-12)
    assert plan.kv_capacity_tokens == 520_765
    assert plan.max_sequences(2048) == 520_765 // 2048 == 254
    # 1000 tokens occupy 16 blocks of 64 = 1024 token slots.
    assert plan.max_sequences(1000, block_tokens=64) == 520_765 // 1024 == 508
    assert plan.max_sequences(1024, block_tokens=64) == 508


def test_shipped_profile_kv_capacity_follows_its_own_parameters(cat):
    """Whatever the calibrator writes, capacity = floor((HBM - weights - workspace) * fraction / kv)."""
    prof = get_profile("trtllm")
    r = replica_from_names("llama-3.1-70b", "h100", 4, precision="bf16")
    free = 80 * GIB - 35_276_853_248 - prof.workspace_gib * GIB
    assert r.memory.kv_capacity_tokens == math.floor(free * prof.kv_mem_fraction / 81_920)


@pytest.mark.parametrize(
    ("model", "gpu", "num_gpus", "weights_gib"),
    [
        ("llama-3.1-405b", "a10g", 1, None),
        # 70B bf16 on one H100: (68,452,360,192 * 2 + 2 * 1,050,673,152 * 2) B = 131.4 GiB > 80 GiB.
        ("llama-3.1-70b", "h100", 1, "131.4 GiB"),
    ],
)
def test_config_that_does_not_fit_raises_infeasible(make_replica, model, gpu, num_gpus, weights_gib):
    with pytest.raises(InfeasibleError) as info:
        make_replica(model, gpu, num_gpus, precision="bf16")
    msg = str(info.value)
    assert "GiB" in msg
    assert "\n" not in msg
    if weights_gib:
        assert weights_gib in msg


def test_memory_plan_reports_not_fitting_without_raising(cat, profile):
    plan = memory_plan(cat.model("llama-3.1-70b"), cat.gpu("h100-sxm"), 1, cat.precision("bf16"), profile)
    assert not plan.fits
    assert plan.kv_capacity_tokens == 0
    assert plan.max_sequences(100) == 0


def test_weights_fit_but_kv_cache_too_small_is_infeasible(make_replica, profile):
    tiny_kv = profile.with_params(kv_mem_fraction=1e-9)
    with pytest.raises(InfeasibleError, match="tokens of KV cache"):
        make_replica("llama-3.1-8b", "h100", profile=tiny_kv)


def test_kv_shard_factor_replicates_heads_beyond_kv_head_count(cat):
    l405 = cat.model("llama-3.1-405b")  # 8 KV heads
    assert arch.kv_shard_factor(l405, 1) == 1.0
    assert arch.kv_shard_factor(l405, 4) == 1 / 4
    assert arch.kv_shard_factor(l405, 8) == 1 / 8
    assert arch.kv_shard_factor(l405, 16) == 1 / 8  # 16 ranks, 8 heads: every head held twice
    qwen7 = cat.model("qwen2.5-7b")  # 4 KV heads
    assert arch.kv_shard_factor(qwen7, 2) == 1 / 2
    assert arch.kv_shard_factor(qwen7, 4) == 1 / 4
    assert arch.kv_shard_factor(qwen7, 7) == 1 / 4


def test_kv_bytes_per_gpu_with_tp_beyond_kv_heads(make_replica):
    # Llama-3.1-405B: 126 layers, hidden 16384, 128 heads / 8 KV heads, FFN 53248, vocab 128256.
    total = (
        126 * (16384 * 16384 * 2 + 2 * 16384 * 8 * 128)
        + 126 * 3 * 16384 * 53248
        + (2 * 126 + 1) * 16384
        + 2 * 128256 * 16384
    )
    assert total == 405_853_388_800  # the HF safetensors count
    r = make_replica("llama-3.1-405b", "h100", 16, precision="bf16")
    whole = 2 * 126 * 8 * 128 * 2
    assert r.memory.kv_bytes_per_token == whole == 516_096
    assert r.memory.kv_bytes_per_token_per_gpu == whole / 8  # not / 16: each KV head is on 2 ranks
    assert r.memory.weight_bytes_per_gpu == pytest.approx(total * 2 / 16, rel=1e-12)
    free = 80 * GIB - total * 2 / 16 - 3 * GIB
    assert r.memory.kv_capacity_tokens == math.floor(free * 0.9 / (whole / 8))


def test_mla_kv_per_token_not_split_by_tp(cat, profile, make_replica):
    ds = cat.model("deepseek-v3")
    assert arch.kv_elements_per_token(ds) == 61 * (512 + 64) == 35_136
    assert arch.kv_shard_factor(ds, 8) == 1.0
    plan = memory_plan(ds, cat.gpu("h200"), 8, cat.precision("bf16"), profile)
    assert plan.kv_bytes_per_token == 61 * (512 + 64) * 2
    r = make_replica("deepseek-v3", "h200", 8, precision="fp8")
    assert r.memory.kv_bytes_per_token == 61 * (512 + 64) * 1
    assert r.memory.kv_bytes_per_token_per_gpu == r.memory.kv_bytes_per_token


@pytest.mark.parametrize(("gpu", "precision"), [("a100-80gb", "fp8"), ("a10g", "fp8"), ("h100", "fp4")])
def test_unsupported_precision_rejected(make_replica, gpu, precision):
    with pytest.raises(InfeasibleError, match="not supported") as info:
        make_replica("llama-3.1-8b", gpu, precision=precision)
    assert isinstance(info.value, FleetwiseError)


def test_invalid_parallelism_rejected(make_replica):
    with pytest.raises(InfeasibleError, match="cannot be split"):
        make_replica("llama-3.1-8b", "h100", 3, tp=2)
    with pytest.raises(InfeasibleError, match="attention heads"):
        make_replica("qwen2.5-7b", "h100", 8, tp=8)  # 28 heads
