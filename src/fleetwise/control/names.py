"""Metric names: the vLLM names the controller reads (with one alias table for vLLM's renames) and the
``fleetwise_*`` names it exports on ``/metrics`` (alert rules and the Grafana dashboard use these).

vLLM renames, from vLLM's own deprecation notes (``vllm/v1/metrics/loggers.py``, 0.10 - 0.11): the V0 names
``vllm:gpu_cache_usage_perc`` became ``vllm:kv_cache_usage_perc`` and ``vllm:time_per_output_token_seconds``
became ``vllm:inter_token_latency_seconds`` (V1 keeps the per-request ``vllm:request_time_per_output_token_seconds``
separately). SGLang exports ``sglang:*`` names; the ones with a vLLM equivalent are aliased too
(``sglang/srt/metrics/collector.py``: ``num_running_reqs``, ``num_queue_reqs``, ``token_usage``,
``time_to_first_token_seconds``, ``inter_token_latency_seconds`` (``time_per_output_token_seconds`` before),
``prompt_tokens_total``,
``generation_tokens_total``, ``num_requests_total``), as of SGLang 0.4.
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

# What the controller exports (label names in the comments).
DESIRED_REPLICAS = "fleetwise_desired_replicas"  # {pool, tier} workers the controller wants taking new work
CURRENT_REPLICAS = "fleetwise_current_replicas"  # {pool, tier, state} workers by actuator state (+ "draining")
FLEET_COST = "fleetwise_fleet_cost_usd_per_hour"  # billed rate of every live worker, draining ones included
BUDGET = "fleetwise_budget_usd_per_hour"  # the configured cap (absent: none)
SPOT_NOTICES = "fleetwise_spot_notices_total"  # {pool} spot interruption notices seen
DECISIONS = "fleetwise_decisions_total"  # {reason, mode}
ACTUATOR_ERRORS = "fleetwise_actuator_errors_total"  # failed observe/apply calls (retried next step)
DEMAND_RPS = "fleetwise_demand_requests_per_second"  # observed arrival rate (emulated time with --time-scale)
FORECAST_RPS = "fleetwise_forecast_requests_per_second"  # {quantile} the slow loop's forecast, next period
CAPACITY_RPS = "fleetwise_capacity_requests_per_second"  # serving workers x per-worker goodput at the SLO
TTFT_P95 = "fleetwise_ttft_p95_seconds"  # over the fast loop's window, from the workers' histograms
ITL_P95 = "fleetwise_itl_p95_seconds"
SLO_ATTAINMENT = "fleetwise_slo_attainment_ratio"  # {metric=ttft|itl} share within target over the window
SLO_TARGET = "fleetwise_slo_target_seconds"  # {metric=ttft|itl}
LAST_STEP = "fleetwise_last_step_timestamp_seconds"  # {loop=slow|fast} wall time the loop last completed
STEP_SECONDS = "fleetwise_step_duration_seconds"  # {loop} histogram: decision latency
