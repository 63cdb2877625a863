"""Cold start of a serving instance: boot, model load from weight bytes at a load bandwidth, engine start.

The defaults are assumptions a user should replace with their own measurements (``--cold-start-s``): a GPU
VM boot of about two minutes, weights streamed at 1 GB/s (object storage to host, the common bottleneck),
and about a minute of engine start (CUDA graphs, KV-cache allocation, warm-up).
"""

from __future__ import annotations

from fleetwise.catalog import load_catalog
from fleetwise.errors import ConfigError
from fleetwise.perf.memory import weight_bytes

DEFAULT_BOOT_S = 120.0
DEFAULT_LOAD_GB_PER_S = 1.0
DEFAULT_ENGINE_START_S = 60.0


def cold_start_from_bytes(weights_bytes: float, *, boot_s: float = DEFAULT_BOOT_S,
                          load_gb_per_s: float = DEFAULT_LOAD_GB_PER_S,
                          engine_start_s: float = DEFAULT_ENGINE_START_S) -> float:
    """Seconds from requesting an instance to serving: boot + weight bytes / bandwidth + engine start."""
    if load_gb_per_s <= 0 or boot_s < 0 or engine_start_s < 0:
        raise ConfigError("load bandwidth must be > 0 and boot / engine start times >= 0")
    return boot_s + weights_bytes / (load_gb_per_s * 1e9) + engine_start_s


def cold_start_s(model: str, precision: str, *, boot_s: float = DEFAULT_BOOT_S,
                 load_gb_per_s: float = DEFAULT_LOAD_GB_PER_S, engine_start_s: float = DEFAULT_ENGINE_START_S,
                 catalog: str | None = None) -> float:
    """:func:`cold_start_from_bytes` for a model and precision named in the catalog."""
    cat = load_catalog(catalog)
    return cold_start_from_bytes(weight_bytes(cat.model(model), cat.precision(precision)), boot_s=boot_s,
                                 load_gb_per_s=load_gb_per_s, engine_start_s=engine_start_s)
