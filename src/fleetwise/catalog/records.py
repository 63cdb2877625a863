"""Catalog records: immutable facts about GPUs, models, precisions and instance offers.

Every record carries ``source`` (where the number comes from) and ``as_of`` (when it was true).
Units live in field names; memory sizes are GiB (what the driver reports, which is what datasheets
call "GB" for HBM parts), bandwidths are decimal GB/s or TB/s as the datasheets give them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

GIB = 1024**3

# Monthly interruption-frequency buckets of the AWS Spot Advisor, mapped to the bucket midpoint
# (">20%" has no upper edge; 25% is used). Converted to an hourly hazard by spot_hazard_per_hour().
SPOT_BUCKET_MONTHLY_RATE = {"<5%": 0.025, "5-10%": 0.075, "10-15%": 0.125, "15-20%": 0.175, ">20%": 0.25}
HOURS_PER_MONTH = 730.0


def hazard_from_monthly_fraction(p_month: float) -> float:
    """Hourly hazard rate for a constant-hazard process that interrupts p_month of instances a month."""
    return -math.log(1.0 - p_month) / HOURS_PER_MONTH


@dataclass(frozen=True)
class GPU:
    """One accelerator type, with dense (non-sparse) datasheet throughput."""

    id: str
    name: str
    vendor: str
    generation: str  # ampere | ada | hopper | blackwell | cdna3
    memory_gib: float
    hbm_bandwidth_tbps: float
    tflops: dict[str, float]  # dense TFLOPS (or TOPS for int8) per dtype: bf16, fp16, fp8, int8, fp4
    interconnect: str  # nvlink | pcie | infinity-fabric
    interconnect_bandwidth_gbps: float  # bidirectional per-GPU total, as datasheets state it
    source: str
    as_of: str
    aliases: tuple[str, ...] = ()
    tdp_w: float | None = None
    notes: str = ""

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.hbm_bandwidth_tbps * 1e12

    @property
    def link_bytes_per_s_one_way(self) -> float:
        """Per-direction interconnect bandwidth, which is what a ring all-reduce step uses."""
        return self.interconnect_bandwidth_gbps * 1e9 / 2.0

    def flops_per_s(self, dtype: str) -> float | None:
        """Dense peak for a compute dtype, or None when the GPU has no native support for it."""
        value = self.tflops.get(dtype)
        return None if value is None else value * 1e12


@dataclass(frozen=True)
class MoE:
    """Mixture-of-experts structure of the FFN layers."""

    num_experts: int
    experts_per_token: int
    expert_intermediate_size: int
    num_shared_experts: int = 0
    first_dense_layers: int = 0  # leading layers with a dense FFN of intermediate_size


@dataclass(frozen=True)
class MLA:
    """Multi-head latent attention (DeepSeek-V2/V3): the KV cache holds a compressed latent."""

    kv_lora_rank: int
    q_lora_rank: int | None
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class Model:
    """A transformer's architecture, enough to count parameters, FLOPs and KV-cache bytes."""

    id: str
    hf_id: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool
    attention: str  # mha | gqa | mla
    max_context: int
    published_params_b: float
    source: str
    as_of: str
    aliases: tuple[str, ...] = ()
    moe: MoE | None = None
    mla: MLA | None = None
    published_active_params_b: float | None = None
    notes: str = ""


@dataclass(frozen=True)
class QualityDelta:
    """A published accuracy drop of one precision for some models, relative to their released format (bf16, or
    FP8 for models released in FP8)."""

    models: tuple[str, ...]  # model ids it was measured on; "*" = every model (the bf16/fp16 reference)
    drop_pct: float  # percentage points of recovery lost (100 - recovery %); negative when the quantized model scored higher
    basis: str  # what was measured: benchmark averages and the recovery figures they gave
    source: str
    as_of: str

    def covers(self, model_id: str) -> bool:
        return model_id in self.models or "*" in self.models


@dataclass(frozen=True)
class Precision:
    """A weight / activation / KV-cache numeric format and where it runs natively."""

    id: str
    weight_bytes: float  # bytes per weight including quantization scales
    compute_dtype: str  # which GPU.tflops entry the GEMMs run at
    kv_dtype: str
    kv_bytes: float
    native_generations: tuple[str, ...]  # GPU generations with hardware support
    source: str
    as_of: str
    aliases: tuple[str, ...] = ()
    quality_delta: str = ""  # published accuracy change vs bf16, with its source (prose)
    notes: str = ""
    quality: tuple[QualityDelta, ...] = ()  # the figures plan filters on, per model

    def quality_for(self, model_id: str) -> QualityDelta | None:
        """The published quality figure for a model (an exact model entry before a "*" one), or None."""
        exact = [q for q in self.quality if model_id in q.models]
        return (exact or [q for q in self.quality if "*" in q.models] or [None])[0]


TIERS = ("on_demand", "reserved_1y", "reserved_3y", "spot")


@dataclass(frozen=True)
class Offer:
    """A rentable instance: GPU type x count in a cloud region, with its price per capacity tier."""

    id: str
    cloud: str
    region: str
    instance_type: str
    gpu: str  # GPU id (resolved at load time)
    gpu_count: int
    price_usd_per_hour: dict[str, float]  # tier -> USD/hour for the whole instance
    source: str
    as_of: str
    spot_interruption_bucket: str | None = None  # AWS Spot Advisor monthly bucket, e.g. "<5%"
    spot_hazard_per_hour: float | None = None  # explicit hazard overrides the bucket
    aliases: tuple[str, ...] = ()
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def price(self, tier: str) -> float | None:
        """USD/hour in a capacity tier, or None when the tier is not offered."""
        return self.price_usd_per_hour.get(tier)

    @property
    def hazard_per_hour(self) -> float | None:
        """Hourly spot-interruption hazard: explicit, else derived from the monthly bucket."""
        if self.spot_hazard_per_hour is not None:
            return self.spot_hazard_per_hour
        if self.spot_interruption_bucket in SPOT_BUCKET_MONTHLY_RATE:
            return hazard_from_monthly_fraction(SPOT_BUCKET_MONTHLY_RATE[self.spot_interruption_bucket])
        return None
