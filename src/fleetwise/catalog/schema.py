"""Pydantic schemas for catalog files: validate what users write, then build frozen records."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from fleetwise.catalog import records
from fleetwise.catalog.validation import NonNegativeInt, NonNegativeNumber, PositiveInt, PositiveNumber

BytesPerValue = Annotated[PositiveNumber, Field(le=4)]


def _iso(value: object) -> object:
    """YAML reads an unquoted 2025-01-01 as a date: keep it as the ISO string."""
    return value.isoformat() if hasattr(value, "isoformat") else value


class _Strict(BaseModel):
    """YAML has real types: a number must be written as a number (``true`` is not 1, ``"80"`` is not 80)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _at_most(limit_field: str, *, divides: bool = False):
    """A validator: this count is at most ``limit_field`` (and, with ``divides``, divides it evenly)."""

    def check(cls, value: int, info: ValidationInfo) -> int:
        limit = info.data.get(limit_field)
        if limit is None:  # that field failed its own check, which is reported first
            return value
        if value > limit:
            raise ValueError(f"must be at most {limit_field} ({limit})")
        if divides and limit % value:
            raise ValueError(f"must divide {limit_field} ({limit}) evenly")
        return value

    return classmethod(check)


class _Entry(_Strict):
    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="Where the numbers come from (URL or document).")
    as_of: str = Field(min_length=4, description="Date the numbers were true, ISO format.")
    aliases: list[str] = Field(default_factory=list)
    notes: str = ""

    _as_of = field_validator("as_of", mode="before")(classmethod(lambda cls, value: _iso(value)))


class GPUEntry(_Entry):
    name: str
    vendor: Literal["nvidia", "amd"]
    generation: Literal["ampere", "ada", "hopper", "blackwell", "cdna3"]
    memory_gib: PositiveNumber
    hbm_bandwidth_tbps: PositiveNumber
    tflops: dict[Literal["bf16", "fp16", "fp8", "int8", "fp4"], PositiveNumber]
    interconnect: Literal["nvlink", "pcie", "infinity-fabric"]
    interconnect_bandwidth_gbps: PositiveNumber
    tdp_w: PositiveNumber | None = None

    @field_validator("tflops")
    @classmethod
    def _bf16_or_fp16(cls, value: dict[str, float]) -> dict[str, float]:
        if "bf16" not in value and "fp16" not in value:
            raise ValueError("needs at least a bf16 or fp16 figure")
        return value

    def to_record(self) -> records.GPU:
        data = self.model_dump()
        data["aliases"] = tuple(self.aliases)
        return records.GPU(**data)


class MoEEntry(_Strict):
    num_experts: int = Field(gt=1)
    experts_per_token: PositiveInt
    expert_intermediate_size: PositiveInt
    num_shared_experts: NonNegativeInt = 0
    first_dense_layers: NonNegativeInt = 0

    _experts_per_token = field_validator("experts_per_token")(_at_most("num_experts"))


class MLAEntry(_Strict):
    kv_lora_rank: PositiveInt
    q_lora_rank: PositiveInt | None = None
    qk_rope_head_dim: PositiveInt
    qk_nope_head_dim: PositiveInt
    v_head_dim: PositiveInt


class ModelEntry(_Entry):
    hf_id: str
    num_layers: PositiveInt
    hidden_size: PositiveInt
    num_attention_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    intermediate_size: PositiveInt
    vocab_size: PositiveInt
    tied_embeddings: bool
    attention: Literal["mha", "gqa", "mla"]
    max_context: PositiveInt
    published_params_b: PositiveNumber
    published_active_params_b: PositiveNumber | None = None
    moe: MoEEntry | None = None
    mla: MLAEntry | None = None

    # Grouped-query attention: each KV head serves an equal group of query heads.
    _kv_heads = field_validator("num_kv_heads")(_at_most("num_attention_heads", divides=True))

    def to_record(self) -> records.Model:
        data = self.model_dump(exclude={"moe", "mla"})
        data["aliases"] = tuple(self.aliases)
        moe = records.MoE(**self.moe.model_dump()) if self.moe else None
        mla = records.MLA(**self.mla.model_dump()) if self.mla else None
        return records.Model(**data, moe=moe, mla=mla)


class QualityEntry(_Strict):
    """A published quality figure: the accuracy drop (percentage points of recovery) on some models."""

    models: list[str] = Field(min_length=1, description='Model ids it was measured on; "*" for every model.')
    drop_pct: float = Field(ge=-100, le=100, allow_inf_nan=False, description="100 - recovery %, as published.")
    basis: str = Field(min_length=1, description="What was measured, with the published figures.")
    source: str = Field(min_length=1)
    as_of: str = Field(min_length=4)

    _as_of = field_validator("as_of", mode="before")(classmethod(lambda cls, value: _iso(value)))

    def to_record(self) -> records.QualityDelta:
        data = self.model_dump()
        data["models"] = tuple(m.lower() for m in self.models)
        return records.QualityDelta(**data)


class PrecisionEntry(_Entry):
    weight_bytes: BytesPerValue
    compute_dtype: Literal["bf16", "fp16", "fp8", "int8", "fp4"]
    kv_dtype: str
    kv_bytes: BytesPerValue
    native_generations: list[Literal["ampere", "ada", "hopper", "blackwell", "cdna3"]]
    quality_delta: str = ""
    quality: list[QualityEntry] = Field(default_factory=list)

    def to_record(self) -> records.Precision:
        data = self.model_dump(exclude={"quality"})
        data["aliases"] = tuple(self.aliases)
        data["native_generations"] = tuple(self.native_generations)
        return records.Precision(**data, quality=tuple(q.to_record() for q in self.quality))


class PriceEntry(_Strict):
    on_demand: NonNegativeNumber | None = None
    reserved_1y: NonNegativeNumber | None = None
    reserved_3y: NonNegativeNumber | None = None
    spot: NonNegativeNumber | None = None


class OfferEntry(_Entry):
    cloud: str
    region: str
    instance_type: str
    gpu: str
    gpu_count: PositiveInt
    price_usd_per_hour: PriceEntry
    spot_interruption_bucket: Literal["<5%", "5-10%", "10-15%", "15-20%", ">20%"] | None = None
    spot_hazard_per_hour: NonNegativeNumber | None = None
    extra: dict[str, str] = Field(default_factory=dict)

    @field_validator("price_usd_per_hour")
    @classmethod
    def _some_price(cls, value: PriceEntry) -> PriceEntry:
        if all(getattr(value, tier) is None for tier in records.TIERS):
            raise ValueError("needs at least one tier price")
        return value

    def to_record(self, gpu_id: str) -> records.Offer:
        data = self.model_dump(exclude={"price_usd_per_hour", "gpu"})
        data["aliases"] = tuple(self.aliases)
        prices = {k: v for k, v in self.price_usd_per_hour.model_dump().items() if v is not None}
        return records.Offer(**data, gpu=gpu_id, price_usd_per_hour=prices)


class CatalogFile(BaseModel):
    """One YAML file: any subset of the four sections."""

    model_config = ConfigDict(extra="forbid")

    gpus: list[dict] = Field(default_factory=list)
    models: list[dict] = Field(default_factory=list)
    precisions: list[dict] = Field(default_factory=list)
    offers: list[dict] = Field(default_factory=list)


SECTIONS: dict[str, type[_Entry]] = {
    "gpus": GPUEntry,
    "models": ModelEntry,
    "precisions": PrecisionEntry,
    "offers": OfferEntry,
}
