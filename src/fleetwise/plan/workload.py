"""Workloads for planning: request-length distributions and named built-in examples."""

from __future__ import annotations

from dataclasses import dataclass

from fleetwise.errors import ConfigError
from fleetwise.traffic.lengths import CHAT_INPUT, CHAT_OUTPUT, EmpiricalLengths, LengthDist

__all__ = ["BUILTIN", "LengthDist", "Workload", "get_workload"]


@dataclass(frozen=True)
class Workload:
    """What the replicas must serve: lengths, the request rate, and where the numbers come from."""

    name: str
    isl: LengthDist
    osl: LengthDist
    rate_rps: float
    source: str = ""
    pairs: EmpiricalLengths | None = None
    """Measured (input, output) pairs: simulations sample these instead of the two distributions."""

    def with_overrides(
        self, *, isl: float | None = None, osl: float | None = None, rate_rps: float | None = None
    ) -> Workload:
        """The workload with a new mean input/output length or rate (percentiles scale along)."""

        def scaled(dist: LengthDist, mean: float | None) -> LengthDist:
            if mean is None:
                return dist
            p95 = dist.p95 * mean / dist.mean if dist.p95 else None
            return LengthDist(mean, p95, dist.max_tokens)

        return Workload(
            name=self.name if isl is None and osl is None else f"{self.name} (custom lengths)",
            isl=scaled(self.isl, isl),
            osl=scaled(self.osl, osl),
            rate_rps=rate_rps if rate_rps is not None else self.rate_rps,
            source=self.source,
            pairs=self.pairs if isl is None and osl is None else None,  # measured pairs no longer match new means
        )


# Built-in workloads. Mean and p95 lengths measured on the public traces in shared/data/traces
# (azure_llm_conv_2023.csv: 19,366 requests; azure_llm_code_2023.csv: 8,819; mooncake_conversation.jsonl:
# 12,031), 2026-11-23; rates are illustrative defaults a user overrides with --rate.
BUILTIN: dict[str, Workload] = {
    "chat": Workload(
        "chat",
        isl=CHAT_INPUT,
        osl=CHAT_OUTPUT,
        rate_rps=20.0,
        source="mean/p95 lengths of the Azure LLM conversation trace 2023 (AzurePublicDataset, CC-BY-4.0)",
    ),
    "code": Workload(
        "code",
        isl=LengthDist(2048, 7303, 16384),
        osl=LengthDist(28, 90, 2048),
        rate_rps=5.0,
        source="mean/p95 lengths of the Azure LLM code trace 2023 (AzurePublicDataset, CC-BY-4.0)",
    ),
    "long-context": Workload(
        "long-context",
        isl=LengthDist(12035, 39550, 128000),
        osl=LengthDist(343, 698, 2048),
        rate_rps=2.0,
        source="mean/p95 lengths of the Mooncake conversation trace (kvcache-ai/Mooncake, Apache-2.0)",
    ),
}


def get_workload(name: str) -> Workload:
    try:
        return BUILTIN[name]
    except KeyError:
        raise ConfigError(f"unknown workload '{name}' (built-in: {', '.join(BUILTIN)})") from None
