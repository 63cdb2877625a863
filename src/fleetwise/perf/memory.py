"""GPU memory of a replica: weights per GPU, KV bytes per token, KV-cache capacity."""

from __future__ import annotations

from dataclasses import dataclass

from fleetwise.catalog.records import GIB, GPU, Model, Precision
from fleetwise.perf import arch
from fleetwise.perf.profile import EngineProfile

# Embedding tables and the LM head stay in 16-bit in FP8/INT8/INT4 checkpoints (TensorRT-LLM and vLLM
# quantize the transformer body only).
EMBEDDING_BYTES = 2.0


@dataclass(frozen=True)
class MemoryPlan:
    """Per-GPU memory budget of one tensor-parallel replica."""

    weight_bytes_per_gpu: float
    kv_bytes_per_token_per_gpu: float
    kv_bytes_per_token: float  # whole model, before sharding
    workspace_bytes_per_gpu: float
    kv_cache_bytes_per_gpu: float
    kv_capacity_tokens: int  # tokens of context the replica can hold at once
    fits: bool
    reason: str = ""

    def max_sequences(self, context_tokens: int, block_tokens: int = 1) -> int:
        """How many sequences of a given context length fit in the KV cache at once."""
        blocks_per_seq = -(-context_tokens // block_tokens)
        return int(self.kv_capacity_tokens // (blocks_per_seq * block_tokens)) if self.fits else 0


def weight_bytes(model: Model, precision: Precision) -> float:
    """Bytes of all weights of the model at a precision (body quantized, embeddings in 16-bit)."""
    pc = arch.param_counts(model)
    body = pc.total - pc.embedding - pc.lm_head
    return body * precision.weight_bytes + (pc.embedding + pc.lm_head) * EMBEDDING_BYTES


def memory_plan(model: Model, gpu: GPU, tp: int, precision: Precision, profile: EngineProfile) -> MemoryPlan:
    """Split memory on each of ``tp`` GPUs between weights, workspace and KV cache."""
    w_gpu = weight_bytes(model, precision) / tp
    kv_token = arch.kv_elements_per_token(model) * precision.kv_bytes
    kv_token_gpu = kv_token * arch.kv_shard_factor(model, tp)
    workspace = profile.workspace_gib * GIB
    free = gpu.memory_bytes - w_gpu - workspace
    kv_bytes = max(0.0, free * profile.kv_mem_fraction)
    capacity = int(kv_bytes // kv_token_gpu)
    reason = ""
    if free <= 0:
        need = (w_gpu + workspace) / GIB
        reason = (
            f"weights {w_gpu / GIB:.1f} GiB + workspace {profile.workspace_gib:.1f} GiB per GPU = {need:.1f} GiB "
            f"exceed {gpu.id}'s {gpu.memory_gib:g} GiB at TP{tp}"
        )
    elif capacity < profile.kv_block_tokens:
        reason = f"only {capacity} tokens of KV cache fit per replica on {gpu.id} at TP{tp}"
    return MemoryPlan(
        weight_bytes_per_gpu=w_gpu,
        kv_bytes_per_token_per_gpu=kv_token_gpu,
        kv_bytes_per_token=kv_token,
        workspace_bytes_per_gpu=workspace,
        kv_cache_bytes_per_gpu=kv_bytes,
        kv_capacity_tokens=capacity,
        fits=not reason,
        reason=reason,
    )
