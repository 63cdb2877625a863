"""What a request costs: USD per 1M input and output tokens per model, from the config or from the fleet.

From the fleet (``fleet: {model: {gpu, gpus, precision, engine, offer}}`` in ``gateway.yaml``): one replica's
USD/hour on demand (its share of the instance offer) over the tokens it moves per hour at the SLO - the perf
model's goodput (requests/s at p95 TTFT 1 s / TPOT 50 ms for 1,000-in / 250-out requests) times the request's
tokens. One blended price per token, input and output alike: the GPU-hour is shared by both, and how to split
it is a pricing choice, not a measurement. A model with neither costs 0 (its tokens are still metered).
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetwise.gateway.config import GatewayFile

MEAN_ISL, MEAN_OSL = 1000.0, 250.0  # the request shape the fleet-derived price assumes


@dataclass(frozen=True)
class Price:
    input_usd_per_1m: float
    output_usd_per_1m: float
    source: str = "config"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_usd_per_1m + completion_tokens * self.output_usd_per_1m) / 1e6


FREE = Price(0.0, 0.0, "none")


def prices_from(cfg: GatewayFile) -> dict[str, Price]:
    """Config prices, else fleet-derived ones, by model."""
    out = {m: Price(p.input, p.output, "config") for m, p in cfg.prices_usd_per_1m_tokens.items()}
    for model, fleet in cfg.fleet.items():
        if model not in out:
            out[model] = fleet_price(model, fleet.gpu, fleet.gpus, fleet.precision, fleet.engine, fleet.offer)
    return out


def fleet_price(model: str, gpu: str, gpus: int = 1, precision: str = "fp8", engine: str = "vllm",
                offer: str | None = None) -> Price:
    """The blended USD per 1M tokens of one replica at its goodput (see the module docstring)."""
    from fleetwise.cost import usd_per_million
    from fleetwise.sim.setup import fleet_spec

    spec = fleet_spec(model, gpu, gpus, None, precision, engine=engine, offer=offer, mean_isl=MEAN_ISL,
                      mean_osl=MEAN_OSL)
    per_replica_usd_h = spec.itype.price("on_demand") / spec.replicas_per_instance
    rps = spec.capacity_rps_per_instance / spec.replicas_per_instance
    usd = usd_per_million(per_replica_usd_h, rps * (MEAN_ISL + MEAN_OSL))
    return Price(usd, usd, f"fleet:{spec.replica.label} on {spec.offer.id}")
