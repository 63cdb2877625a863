"""``control.yaml``: the controller's options in a file (``fleetwise control --config FILE``).

Keys are the command's long option names with ``_`` for ``-`` (``fast_interval``, ``ttft_p95_ms``, ...), and
``initial`` is a mapping of tier to workers. An option given on the command line wins over the file. Errors
name the file, the line and the field::

    mode: active
    actuator: kubernetes
    namespace: llm
    model: llama-3.1-70b
    gpu: h100
    gpus: 2
    offer: aws/us-east-1/p5.48xlarge
    ttft_p95_ms: 800
    initial: {on_demand: 2, spot: 2}
    budget_usd_per_hour: 120
    store: postgresql://fleetwise@db/fleetwise
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetwise.catalog.validation import (
    NonNegativeInt,
    PositiveInt,
    PositiveNumber,
    first_error,
    read_yaml_with_nodes,
    yaml_line,
)
from fleetwise.errors import ConfigError

Port = Annotated[int, Field(ge=0, le=65535)]


class ControlFile(BaseModel):
    """What ``control.yaml`` may hold (every key optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mode: Literal["advisory", "active", "noop"] | None = None
    actuator: Literal["local", "kubernetes", "webhook"] | None = None
    policy: Literal["hybrid", "rolling", "reactive"] | None = None
    metrics: str | None = None
    model: str | None = None
    gpu: str | None = None
    gpus: PositiveInt | None = None
    precision: str | None = None
    engine: str | None = None
    offer: str | None = None
    ttft_p95_ms: PositiveNumber | None = None
    tpot_p95_ms: PositiveNumber | None = None
    interval: Annotated[float, Field(ge=1, le=86400, allow_inf_nan=False)] | None = None
    fast_interval: Annotated[float, Field(ge=0.1, le=3600, allow_inf_nan=False)] | None = None
    time_scale: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] | None = None
    initial: dict[Literal["reserved", "on_demand", "spot"], NonNegativeInt] | None = None
    max_workers: Annotated[int, Field(ge=1, le=10_000)] | None = None
    budget_usd_per_hour: PositiveNumber | None = None
    cold_start_s: Annotated[float, Field(ge=0, le=86400, allow_inf_nan=False)] | None = None
    capacity_rps: PositiveNumber | None = None
    store: str | None = None
    webhook_url: str | None = None
    namespace: str | None = None
    fleet: str | None = None
    host: str | None = None
    port: Port | None = None


def load_control_file(path: str | Path) -> dict:
    """The options a ``control.yaml`` sets (keys as :class:`ControlFile`; ``initial`` as ``TIER=N,...``).

    Raises:
        ConfigError: the file is missing, not YAML, or a key is unknown or out of range (file, line, field).
    """
    path = Path(path)
    data, node = read_yaml_with_nodes(path, ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of option: value", file=str(path), line=1)
    try:
        parsed = ControlFile.model_validate(data)
    except ValidationError as exc:
        field, message = first_error(exc)
        raise ConfigError(message, file=str(path), line=yaml_line(node, exc.errors()[0]["loc"][:1]),
                          field=field) from None
    out = parsed.model_dump(exclude_none=True)
    if "initial" in out:
        out["initial"] = ",".join(f"{tier}={n}" for tier, n in out["initial"].items())
    return out
