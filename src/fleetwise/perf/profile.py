"""Engine profiles: the efficiency factors and scheduler settings of an inference engine.

The physics (FLOPs, bytes, link bandwidth) is the same for every engine; what differs is how close
each engine's kernels get to the datasheet peaks and what its scheduler does. Fitted parameters are
global per engine, never per GPU or per model, so a profile generalizes to hardware it was not
fitted on. Profiles are YAML files; the shipped ones live in ``perf/profiles/``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import ConfigDict, Field, Strict, TypeAdapter, ValidationError

from fleetwise.catalog.loader import read_yaml
from fleetwise.catalog.validation import Fraction, NonNegativeNumber, PositiveInt, first_error
from fleetwise.errors import CatalogError, UnknownNameError

PROFILE_DIR = Path(__file__).parent / "profiles"

# Parameters calibrate() fits, with (lower, upper) bounds that keep them physical.
FITTED_BOUNDS: dict[str, tuple[float, float]] = {
    "gemm_compute_eff": (0.05, 1.0),
    "gemm_bw_eff": (0.05, 1.0),
    "attn_compute_eff": (0.02, 1.0),
    "attn_bw_eff": (0.05, 1.0),
    "link_eff": (0.05, 1.0),
    "allreduce_latency_us": (0.0, 200.0),
    "step_overhead_ms": (0.0, 50.0),
    "per_seq_overhead_us": (0.0, 200.0),
    "frontend_latency_ms": (0.0, 100.0),
}
MAX_BATCH = 100_000
"""Largest max_batch a profile may set: far above any engine's, and offline predictions simulate 3x it."""


def _fitted(name: str) -> Any:
    """The FITTED_BOUNDS of a parameter, as the constraint a profile file is checked against."""
    low, high = FITTED_BOUNDS[name]
    return Field(ge=low, le=high, allow_inf_nan=False, strict=True)


# Profile files are YAML, with real types: a count must be written as a whole number, not `true` or 8.5.
Count = Annotated[PositiveInt, Strict()]


@dataclass(frozen=True)
class EngineProfile:
    """How one engine turns hardware peaks into step times, and how it schedules.

    The annotations carry the rules a profile file must meet (:func:`load_profile_file` checks them);
    profiles built in code, such as the calibrator's candidates, are not checked.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    gemm_compute_eff: Annotated[float, _fitted("gemm_compute_eff")] = 0.6
    """Fraction of dense tensor-core peak that large GEMMs reach."""
    gemm_bw_eff: Annotated[float, _fitted("gemm_bw_eff")] = 0.8
    """Fraction of HBM bandwidth reached while streaming weights (memory-bound GEMMs)."""
    attn_compute_eff: Annotated[float, _fitted("attn_compute_eff")] = 0.4
    """Fraction of dense peak that prefill (flash) attention reaches."""
    attn_bw_eff: Annotated[float, _fitted("attn_bw_eff")] = 0.7
    """Fraction of HBM bandwidth reached while reading the KV cache in decode attention."""
    link_eff: Annotated[float, _fitted("link_eff")] = 0.7
    """Fraction of one-way interconnect bandwidth an all-reduce achieves."""
    allreduce_latency_us: Annotated[float, _fitted("allreduce_latency_us")] = 10.0
    """Fixed latency of one tensor-parallel all-reduce (two per layer)."""
    step_overhead_ms: Annotated[float, _fitted("step_overhead_ms")] = 2.0
    """Fixed cost of one engine iteration: scheduling, kernel launches not hidden by CUDA graphs."""
    per_seq_overhead_us: Annotated[float, _fitted("per_seq_overhead_us")] = 5.0
    """Per-sequence cost of one iteration: sampling, detokenization, bookkeeping."""
    frontend_latency_ms: Annotated[float, _fitted("frontend_latency_ms")] = 5.0
    """Latency a request pays outside the engine loop (HTTP/gRPC, tokenization): adds to TTFT and E2E."""
    max_batch: Annotated[Count, Field(le=MAX_BATCH)] = 2048
    """Upper bound on concurrently running sequences (the engine's max_batch_size)."""
    max_num_tokens: Count = 8192
    """Token budget of one iteration (decode tokens + prefill chunk), i.e. the chunked-prefill size.
    At least 1: with no token a step, no prompt would ever finish."""
    kv_mem_fraction: Annotated[Fraction, Strict()] = 0.9
    """Share of the memory left after weights and workspace that the KV cache gets."""
    workspace_gib: Annotated[NonNegativeNumber, Strict()] = 3.0
    """Per-GPU memory for the CUDA context, activations and communication buffers."""
    kv_block_tokens: Count = 64
    """Tokens per KV-cache block (paged attention)."""
    source: str = "uncalibrated defaults"
    fitted_on: str = ""
    fit_error: dict[str, Annotated[NonNegativeNumber, Strict()]] = field(default_factory=dict)
    """MAPE per validation tier on ``fitted_on`` (after its stated exclusion rules), as the calibrator measured."""
    coverage: dict[str, list[str]] = field(default_factory=dict)
    """What ``fitted_on`` has points for: 'gpu_precision' ('h100-sxm/fp8'), 'model_classes', 'models'."""

    def with_params(self, **params: float) -> EngineProfile:
        """A copy with some parameters changed (used by the calibrator)."""
        return replace(self, **params)

    def fitted_vector(self) -> list[float]:
        return [float(getattr(self, name)) for name in FITTED_BOUNDS]

    def to_yaml(self) -> str:
        data = asdict(self)
        return yaml.safe_dump(data, sort_keys=False)


@lru_cache(maxsize=1)
def _profile_file() -> TypeAdapter[EngineProfile]:
    return TypeAdapter(EngineProfile)


def _from_mapping(data: dict, origin: str) -> EngineProfile:
    try:
        return _profile_file().validate_python(data)
    except ValidationError as exc:
        loc, msg = first_error(exc)
        name = data.get("name")
        entry = name if isinstance(name, str) else None
        raise CatalogError(msg, file=origin, entry=entry, field=loc) from None


def load_profile_file(path: str | Path) -> EngineProfile:
    """Read a profile YAML written by ``fleetwise calibrate``."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise CatalogError("a profile file must be a mapping", file=str(path))
    return _from_mapping(data, str(path))


def engine_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


@lru_cache(maxsize=16)
def get_profile(engine: str) -> EngineProfile:
    """A shipped engine profile by name, or a profile YAML file by path."""
    if engine.endswith((".yaml", ".yml")):
        return load_profile_file(engine)
    path = PROFILE_DIR / f"{engine.lower()}.yaml"
    if not path.exists():
        raise UnknownNameError(f"unknown engine '{engine}' (known: {', '.join(engine_names())}, or a profile .yaml)")
    return load_profile_file(path)
