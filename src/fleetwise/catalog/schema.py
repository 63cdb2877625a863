"""Pydantic schemas for catalog files: validate what users write, then build frozen records."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fleetwise.catalog import records

PositiveFloat = float


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="Where the numbers come from (URL or document).")
    as_of: str = Field(min_length=4, description="Date the numbers were true, ISO format.")
    aliases: list[str] = Field(default_factory=list)
    notes: str = ""

    @field_validator("as_of", mode="before")
    @classmethod
    def _date_to_str(cls, value: object) -> object:
        return value.isoformat() if hasattr(value, "isoformat") else value


class GPUEntry(_Entry):
    name: str
    vendor: Literal["nvidia", "amd"]
    generation: Literal["ampere", "ada", "hopper", "blackwell", "cdna3"]
    memory_gib: float = Field(gt=0)
    hbm_bandwidth_tbps: float = Field(gt=0)
    tflops: dict[Literal["bf16", "fp16", "fp8", "int8", "fp4"], float]
    interconnect: Literal["nvlink", "pcie", "infinity-fabric"]
    interconnect_bandwidth_gbps: float = Field(gt=0)
    tdp_w: float | None = Field(default=None, gt=0)

    @field_validator("tflops")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        if "bf16" not in value and "fp16" not in value:
            raise ValueError("needs at least a bf16 or fp16 figure")
        for key, number in value.items():
            if number <= 0:
                raise ValueError(f"{key} must be > 0")
        return value

    def to_record(self) -> records.GPU:
        data = self.model_dump()
        data["aliases"] = tuple(self.aliases)
        return records.GPU(**data)


class MoEEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_experts: int = Field(gt=1)
    experts_per_token: int = Field(gt=0)
    expert_intermediate_size: int = Field(gt=0)
    num_shared_experts: int = Field(default=0, ge=0)
    first_dense_layers: int = Field(default=0, ge=0)


class MLAEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kv_lora_rank: int = Field(gt=0)
    q_lora_rank: int | None = Field(default=None, gt=0)
    qk_rope_head_dim: int = Field(gt=0)
    qk_nope_head_dim: int = Field(gt=0)
    v_head_dim: int = Field(gt=0)


class ModelEntry(_Entry):
    hf_id: str
    num_layers: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    tied_embeddings: bool
    attention: Literal["mha", "gqa", "mla"]
    max_context: int = Field(gt=0)
    published_params_b: float = Field(gt=0)
    published_active_params_b: float | None = Field(default=None, gt=0)
    moe: MoEEntry | None = None
    mla: MLAEntry | None = None

    def to_record(self) -> records.Model:
        data = self.model_dump(exclude={"moe", "mla"})
        data["aliases"] = tuple(self.aliases)
        moe = records.MoE(**self.moe.model_dump()) if self.moe else None
        mla = records.MLA(**self.mla.model_dump()) if self.mla else None
        return records.Model(**data, moe=moe, mla=mla)


class PrecisionEntry(_Entry):
    weight_bytes: float = Field(gt=0, le=4)
    compute_dtype: Literal["bf16", "fp16", "fp8", "int8", "fp4"]
    kv_dtype: str
    kv_bytes: float = Field(gt=0, le=4)
    native_generations: list[Literal["ampere", "ada", "hopper", "blackwell", "cdna3"]]
    quality_delta: str = ""

    def to_record(self) -> records.Precision:
        data = self.model_dump()
        data["aliases"] = tuple(self.aliases)
        data["native_generations"] = tuple(self.native_generations)
        return records.Precision(**data)


class PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    on_demand: float | None = Field(default=None, ge=0)
    reserved_1y: float | None = Field(default=None, ge=0)
    reserved_3y: float | None = Field(default=None, ge=0)
    spot: float | None = Field(default=None, ge=0)


class OfferEntry(_Entry):
    cloud: str
    region: str
    instance_type: str
    gpu: str
    gpu_count: int = Field(gt=0)
    price_usd_per_hour: PriceEntry
    spot_interruption_bucket: Literal["<5%", "5-10%", "10-15%", "15-20%", ">20%"] | None = None
    spot_hazard_per_hour: float | None = Field(default=None, ge=0)
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
