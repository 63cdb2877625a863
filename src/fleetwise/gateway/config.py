"""``gateway.yaml``: backends by model, prices, routes, tenants, cache and limits - validated with pydantic,
every error one line naming the file, the line and the field::

    backends: {llama-3.1-8b: [http://127.0.0.1:8001], llama-3.1-70b: [http://127.0.0.1:8002]}
    prices_usd_per_1m_tokens: {llama-3.1-8b: {input: 0.05, output: 0.20}}   # else derived from the fleet:
    fleet: {llama-3.1-70b: {gpu: h100, gpus: 2, precision: fp8}}
    routes: {auto: {cheap: llama-3.1-8b, strong: llama-3.1-70b, threshold: 0.42}}
    tenants:
      - {name: acme, api_keys: [sk-acme-1], budget_usd_per_day: 50, priority: interactive, cache_scope: acme}
    cache: {ttl_s: 3600, max_entries: 10000}

API keys may be given in clear (``api_keys``) or as SHA-256 hex digests (``api_key_hashes``); only the
digests are kept in memory. With no tenant declared the gateway is open (every request is tenant
``anonymous``, no budget).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleetwise.catalog.validation import (
    NonNegativeNumber,
    PositiveNumber,
    first_error,
    read_yaml_with_nodes,
    yaml_line,
)
from fleetwise.errors import ConfigError
from fleetwise.gateway.backends import (
    DEFAULT_MAX_KV_USAGE,
    DEFAULT_MAX_WAITING,
    DEFAULT_SATURATION_TOKENS,
    DEFAULT_SCRAPE_INTERVAL_S,
    Saturation,
)
from fleetwise.gateway.types import PRIORITIES, Tenant

Url = Annotated[str, Field(pattern=r"^https?://[^\s/]+(:\d+)?(/.*)?$")]
HexDigest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
DEFAULT_MAX_BODY_BYTES = 16 << 20  # 16 MiB, as the emulated workers and vLLM's default request limit


def hash_key(key: str) -> str:
    """The SHA-256 hex digest an API key is stored and compared as."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Prices(_Strict):
    input: NonNegativeNumber
    output: NonNegativeNumber


class Route(_Strict):
    """A virtual model: requests for it go to ``strong`` when the router's score >= ``threshold``."""

    cheap: str
    strong: str
    threshold: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.5
    scorer: Literal["features", "classifier"] = "features"
    classifier: str | None = None
    """With ``scorer: classifier``: the JSON a ClassifierScorer was saved to (trained on your labeled requests)."""

    @model_validator(mode="after")
    def _classifier_file(self) -> Route:
        if (self.scorer == "classifier") != (self.classifier is not None):
            raise ValueError("scorer: classifier needs classifier: PATH (and a classifier file needs that scorer)")
        return self


class TenantEntry(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    api_keys: list[Annotated[str, Field(min_length=8)]] = []
    api_key_hashes: list[HexDigest] = []
    budget_usd_per_day: PositiveNumber | None = None
    budget_usd_per_month: PositiveNumber | None = None
    rate_limit_rps: PositiveNumber | None = None
    priority: Literal["realtime", "interactive", "batch", "background"] = "interactive"
    cache_scope: Annotated[str, Field(max_length=128)] | None = None

    def tenant(self) -> Tenant:
        hashes = frozenset(self.api_key_hashes) | {hash_key(k) for k in self.api_keys}
        return Tenant(self.name, hashes, self.budget_usd_per_day, self.budget_usd_per_month, self.rate_limit_rps,
                      self.priority, self.cache_scope or self.name)


class FleetEntry(_Strict):
    """The replica a model runs on, to derive its price per token from the fleet (see gateway.pricing)."""

    gpu: str
    gpus: Annotated[int, Field(ge=1, le=64)] = 1
    precision: str = "fp8"
    engine: str = "vllm"
    offer: str | None = None


class CacheEntry(_Strict):
    ttl_s: PositiveNumber = 3600.0
    max_entries: Annotated[int, Field(ge=0, le=10_000_000)] = 10_000


class SaturationEntry(_Strict):
    """When a backend is saturated, for admission (see :mod:`fleetwise.gateway.backends`)."""

    tokens_per_backend: Annotated[int, Field(ge=1)] = DEFAULT_SATURATION_TOKENS
    """Outstanding prompt + max_tokens the gateway has sent a backend and not seen finish."""
    max_waiting: Annotated[float, Field(ge=0)] = DEFAULT_MAX_WAITING
    """Requests queued in the engine (vllm:num_requests_waiting, sglang:num_queue_reqs)."""
    max_kv_usage: Annotated[float, Field(gt=0, le=1)] = DEFAULT_MAX_KV_USAGE
    """KV-cache usage, 0-1 (vllm:kv_cache_usage_perc, sglang:token_usage)."""
    scrape_interval_s: Annotated[float, Field(ge=0, le=3600)] = DEFAULT_SCRAPE_INTERVAL_S
    """How often each backend's /metrics is read; 0: never (outstanding tokens alone)."""

    def limits(self) -> Saturation:
        return Saturation(self.tokens_per_backend, self.max_waiting, self.max_kv_usage, self.scrape_interval_s)


class GatewayFile(_Strict):
    backends: dict[str, list[Url]] = {}
    prices_usd_per_1m_tokens: dict[str, Prices] = {}
    fleet: dict[str, FleetEntry] = {}
    routes: dict[str, Route] = {}
    tenants: list[TenantEntry] = []
    cache: CacheEntry = CacheEntry()
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = DEFAULT_MAX_BODY_BYTES
    upstream_timeout_s: PositiveNumber = 600.0
    controller: Url | None = None
    single_flight: bool = True
    """Identical deterministic requests in flight share one upstream call (off: each goes upstream)."""
    default_max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    """Output tokens a request without max_tokens is budgeted for (its worst case is reserved before dispatch)."""
    saturation: SaturationEntry = SaturationEntry()

    @field_validator("backends")
    @classmethod
    def _some_url(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        empty = [m for m, urls in v.items() if not urls]
        if empty:
            raise ValueError(f"model '{empty[0]}' lists no backend URL")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> GatewayFile:
        names = [t.name for t in self.tenants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tenant '{twice[0]}' is declared twice")
        keys = [h for t in self.tenants for h in t.tenant().key_hashes]
        if len(keys) != len(set(keys)):
            raise ValueError("one API key is given to two tenants")
        for name, route in self.routes.items():
            if name in self.backends:
                raise ValueError(f"route '{name}' has the name of a backend model")
            missing = [m for m in (route.cheap, route.strong) if self.backends and m not in self.backends]
            if missing:
                raise ValueError(f"route '{name}' sends to '{missing[0]}', which has no backend")
        return self


def load_gateway_file(path: str | Path) -> GatewayFile:
    """Read and validate a ``gateway.yaml``.

    Raises:
        ConfigError: one line naming the file, the line and the field.
    """
    path = Path(path)
    data, node = read_yaml_with_nodes(path, ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping (backends, tenants, ...)", file=str(path), line=1)
    try:
        return GatewayFile.model_validate(data)
    except ValidationError as exc:
        field, message = first_error(exc)
        raise ConfigError(message, file=str(path), line=yaml_line(node, exc.errors()[0]["loc"]),
                          field=field) from None


def priority_rank(priority: str) -> int:
    """0 for the most urgent class."""
    return PRIORITIES.index(priority)
