"""Engine profiles: the efficiency factors and scheduler settings of an inference engine.

The physics (FLOPs, bytes, link bandwidth) is the same for every engine; what differs is how close
each engine's kernels get to the datasheet peaks and what its scheduler does. Fitted parameters are
global per engine, never per GPU or per model, so a profile generalizes to hardware it was not
fitted on. Profiles are YAML files; the shipped ones live in ``perf/profiles/``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path

import yaml

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


@dataclass(frozen=True)
class EngineProfile:
    """How one engine turns hardware peaks into step times, and how it schedules."""

    name: str
    gemm_compute_eff: float = 0.6
    """Fraction of dense tensor-core peak that large GEMMs reach."""
    gemm_bw_eff: float = 0.8
    """Fraction of HBM bandwidth reached while streaming weights (memory-bound GEMMs)."""
    attn_compute_eff: float = 0.4
    """Fraction of dense peak that prefill (flash) attention reaches."""
    attn_bw_eff: float = 0.7
    """Fraction of HBM bandwidth reached while reading the KV cache in decode attention."""
    link_eff: float = 0.7
    """Fraction of one-way interconnect bandwidth an all-reduce achieves."""
    allreduce_latency_us: float = 10.0
    """Fixed latency of one tensor-parallel all-reduce (two per layer)."""
    step_overhead_ms: float = 2.0
    """Fixed cost of one engine iteration: scheduling, kernel launches not hidden by CUDA graphs."""
    per_seq_overhead_us: float = 5.0
    """Per-sequence cost of one iteration: sampling, detokenization, bookkeeping."""
    frontend_latency_ms: float = 5.0
    """Latency a request pays outside the engine loop (HTTP/gRPC, tokenization): adds to TTFT and E2E."""
    max_batch: int = 2048
    """Upper bound on concurrently running sequences (the engine's max_batch_size)."""
    max_num_tokens: int = 8192
    """Token budget of one iteration (decode tokens + prefill chunk), i.e. the chunked-prefill size."""
    kv_mem_fraction: float = 0.9
    """Share of the memory left after weights and workspace that the KV cache gets."""
    workspace_gib: float = 3.0
    """Per-GPU memory for the CUDA context, activations and communication buffers."""
    kv_block_tokens: int = 64
    """Tokens per KV-cache block (paged attention)."""
    source: str = "uncalibrated defaults"
    fitted_on: str = ""
    fit_error: dict[str, float] = field(default_factory=dict)

    def with_params(self, **params: float) -> EngineProfile:
        """A copy with some parameters changed (used by the calibrator)."""
        return replace(self, **params)

    def fitted_vector(self) -> list[float]:
        return [float(getattr(self, name)) for name in FITTED_BOUNDS]

    def to_yaml(self) -> str:
        data = asdict(self)
        return yaml.safe_dump(data, sort_keys=False)


def _from_mapping(data: dict, origin: str) -> EngineProfile:
    known = {f.name for f in fields(EngineProfile)}
    unknown = set(data) - known
    if unknown:
        raise CatalogError("unknown field", file=origin, entry=str(data.get("name", "?")), field=sorted(unknown)[0])
    if "name" not in data:
        raise CatalogError("missing required field", file=origin, field="name")
    for key, (low, high) in FITTED_BOUNDS.items():
        value = data.get(key)
        if value is not None and not (isinstance(value, int | float) and low <= value <= high):
            raise CatalogError(f"must be a number in [{low}, {high}]", file=origin, entry=data["name"], field=key)
    return EngineProfile(**data)


def load_profile_file(path: str | Path) -> EngineProfile:
    """Read a profile YAML written by ``fleetwise calibrate``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read ({exc.strerror})", file=str(path)) from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"not valid YAML ({exc})", file=str(path)) from None
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
