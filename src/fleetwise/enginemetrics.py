"""The metric names inference engines export on ``/metrics``, one alias table for all of them, and a reader of
their load gauges - shared by the controller (:mod:`fleetwise.control`) and the gateway (admission).

vLLM renames, from vLLM's own deprecation notes (``vllm/v1/metrics/loggers.py``, 0.10 - 0.11): the V0 names
``vllm:gpu_cache_usage_perc`` became ``vllm:kv_cache_usage_perc`` and ``vllm:time_per_output_token_seconds``
became ``vllm:inter_token_latency_seconds`` (V1 keeps the per-request ``vllm:request_time_per_output_token_seconds``
separately). SGLang exports ``sglang:*`` names; the ones with a vLLM equivalent are aliased too
(``sglang/srt/metrics/collector.py``: ``num_running_reqs``, ``num_queue_reqs``, ``token_usage``,
``time_to_first_token_seconds``, ``inter_token_latency_seconds`` (``time_per_output_token_seconds`` before),
``prompt_tokens_total``, ``generation_tokens_total``, ``num_requests_total``), as of SGLang 0.4.
"""

from __future__ import annotations

# Canonical (vLLM V1) name <- other names that mean the same, newest first.
ALIASES: dict[str, tuple[str, ...]] = {
    "vllm:kv_cache_usage_perc": ("vllm:gpu_cache_usage_perc", "sglang:token_usage"),
    "vllm:inter_token_latency_seconds": ("vllm:time_per_output_token_seconds", "sglang:inter_token_latency_seconds",
                                         "sglang:time_per_output_token_seconds"),
    "vllm:time_to_first_token_seconds": ("sglang:time_to_first_token_seconds",),
    "vllm:num_requests_running": ("sglang:num_running_reqs",),
    "vllm:num_requests_waiting": ("sglang:num_queue_reqs",),
    "vllm:prompt_tokens": ("sglang:prompt_tokens",),
    "vllm:generation_tokens": ("sglang:generation_tokens",),
    "vllm:request_success": ("sglang:num_requests",),
}
CANONICAL: dict[str, str] = {alias: name for name, aliases in ALIASES.items() for alias in aliases}

LOAD_GAUGES = {"vllm:num_requests_running": "running", "vllm:num_requests_waiting": "waiting",
               "vllm:kv_cache_usage_perc": "kv_usage"}
"""The gauges that say how loaded an engine is, by canonical name -> field."""


def canonical(name: str) -> str:
    """The canonical (vLLM V1) name of a metric family; an untyped counter's ``_total`` suffix is dropped."""
    name = CANONICAL.get(name, name)
    if name.endswith("_total"):
        name = CANONICAL.get(name[:-6], name[:-6])
    return name


def load_gauges(text: str) -> dict[str, float]:
    """``running`` and ``waiting`` requests (summed over engines) and ``kv_usage`` (0-1, averaged over engines)
    from a ``/metrics`` text; a gauge the engine does not export is absent.

    Raises:
        ValueError: the text is not the Prometheus exposition format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    kv_parts = 0
    for family in text_string_to_metric_families(text):
        field = LOAD_GAUGES.get(canonical(family.name))
        if field is None:
            continue
        for s in family.samples:
            out[field] = out.get(field, 0.0) + s.value
            kv_parts += field == "kv_usage"
    if kv_parts > 1:
        out["kv_usage"] /= kv_parts
    return out
