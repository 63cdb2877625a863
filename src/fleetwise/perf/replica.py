"""A replica configuration, checked for feasibility and reduced to the constants step times need."""

from __future__ import annotations

from dataclasses import dataclass

from fleetwise.catalog import Catalog, load_catalog
from fleetwise.catalog.records import GPU, Model, Precision
from fleetwise.errors import ConfigError, InfeasibleError
from fleetwise.perf import arch
from fleetwise.perf.memory import EMBEDDING_BYTES, MemoryPlan, memory_plan
from fleetwise.perf.profile import EngineProfile, get_profile

ACTIVATION_BYTES = 2.0  # all-reduces move bf16 activations


@dataclass(frozen=True)
class Replica:
    """One serving replica: ``tp`` GPUs in tensor parallel; ``num_gpus // tp`` such groups serve in
    data parallel (pipeline parallelism is not modelled)."""

    model: Model
    gpu: GPU
    num_gpus: int
    tp: int
    precision: Precision
    profile: EngineProfile
    memory: MemoryPlan
    max_batch: int
    max_num_tokens: int
    # Per-GPU constants of the step-time model.
    linear_flops_per_token: float
    lm_head_flops_per_token: float
    dense_weight_bytes: float  # weights every step reads: attention, dense FFN, shared experts, LM head
    expert_weight_bytes: float  # all routed experts (read only where a token is routed)
    experts_per_token: int
    num_experts: int
    attn_flops_per_token_context: float
    gemm_flops_per_s: float
    attn_flops_per_s: float
    allreduce_bytes_per_token: float

    @property
    def dp(self) -> int:
        return self.num_gpus // self.tp

    @property
    def label(self) -> str:
        par = f"TP{self.tp}" + (f"xDP{self.dp}" if self.dp > 1 else "")
        return f"{self.model.id} on {self.num_gpus}x{self.gpu.id} {par} {self.precision.id}"


def check_precision(gpu: GPU, precision: Precision) -> str:
    """Why a precision cannot run on a GPU, or '' when it can."""
    if gpu.generation not in precision.native_generations:
        return f"{precision.id} is not supported natively on {gpu.id} ({gpu.generation})"
    if gpu.flops_per_s(precision.compute_dtype) is None and precision.compute_dtype != "fp16":
        return f"{gpu.id} has no {precision.compute_dtype} tensor-core figure"
    return ""


def check_parallelism(model: Model, num_gpus: int, tp: int) -> str:
    """Why a GPU count / TP degree is invalid for a model, or '' when it is valid."""
    if tp < 1 or num_gpus < 1:
        return f"--gpus and --tp must be >= 1 (got gpus={num_gpus}, tp={tp})"
    if num_gpus % tp:
        return f"{num_gpus} GPUs cannot be split into TP{tp} groups"
    if model.num_attention_heads % tp:
        return f"TP{tp} does not divide {model.num_attention_heads} attention heads"
    return ""


def _compute_peak(gpu: GPU, dtype: str) -> float:
    peak = gpu.flops_per_s(dtype) or gpu.flops_per_s("bf16") or gpu.flops_per_s("fp16")
    assert peak is not None  # the catalog schema requires a bf16 or fp16 figure
    return peak


def build_replica(
    model: Model,
    gpu: GPU,
    num_gpus: int,
    tp: int,
    precision: Precision,
    profile: EngineProfile,
    *,
    max_batch: int | None = None,
    max_num_tokens: int | None = None,
) -> Replica:
    """Validate a configuration and precompute its step-time constants.

    Raises:
        InfeasibleError: the precision is unsupported, the parallelism invalid, or it does not fit.
    """
    bad = check_parallelism(model, num_gpus, tp)
    if bad and (tp < 1 or num_gpus < 1):
        raise ConfigError(bad)
    reason = bad or check_precision(gpu, precision)
    if reason:
        raise InfeasibleError(reason)
    mem = memory_plan(model, gpu, tp, precision, profile)
    if mem.reason:
        raise InfeasibleError(mem.reason)
    if max_batch is not None and max_batch < 1:
        raise ConfigError("max batch must be >= 1")
    batch_cap = min(max_batch or profile.max_batch, profile.max_batch)
    budget = profile.max_num_tokens if max_num_tokens is None else max_num_tokens
    for name, value in (("max_batch", batch_cap), ("max_num_tokens", budget)):
        if value < 1:  # a step that admits no sequence, or no token, never finishes a request
            raise ConfigError(f"must be >= 1 (got {value})", field=name)
    pc = arch.param_counts(model)
    expert_bytes = pc.expert_ffn * precision.weight_bytes
    body_bytes = (pc.total - pc.embedding - pc.lm_head) * precision.weight_bytes
    lm_head_bytes = model.vocab_size * model.hidden_size * EMBEDDING_BYTES
    attn_dtype = "fp8" if precision.kv_bytes <= 1 and gpu.flops_per_s("fp8") else "bf16"
    return Replica(
        model=model,
        gpu=gpu,
        num_gpus=num_gpus,
        tp=tp,
        precision=precision,
        profile=profile,
        memory=mem,
        max_batch=batch_cap,
        max_num_tokens=budget,
        linear_flops_per_token=arch.linear_flops_per_token(model) / tp,
        lm_head_flops_per_token=arch.lm_head_flops_per_token(model) / tp,
        dense_weight_bytes=(body_bytes - expert_bytes + lm_head_bytes) / tp,
        expert_weight_bytes=expert_bytes / tp,
        experts_per_token=model.moe.experts_per_token if model.moe else 0,
        num_experts=model.moe.num_experts if model.moe else 0,
        attn_flops_per_token_context=arch.attention_flops_per_token_context(model) / tp,
        gemm_flops_per_s=_compute_peak(gpu, precision.compute_dtype),
        attn_flops_per_s=_compute_peak(gpu, attn_dtype),
        allreduce_bytes_per_token=model.hidden_size * ACTIVATION_BYTES,
    )


def replica_from_names(
    model: str,
    gpu: str,
    num_gpus: int = 1,
    tp: int | None = None,
    precision: str = "bf16",
    engine: str = "trtllm",
    *,
    catalog: Catalog | None = None,
    max_batch: int | None = None,
) -> Replica:
    """Build a replica from user-facing names (aliases and Hugging Face ids resolve)."""
    cat = catalog or load_catalog()
    return build_replica(
        cat.model(model),
        cat.gpu(gpu),
        num_gpus,
        num_gpus if tp is None else tp,
        cat.precision(precision),
        get_profile(engine),
        max_batch=max_batch,
    )
