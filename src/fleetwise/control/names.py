"""Metric names: the ``fleetwise_*`` names the controller exports on ``/metrics`` (alert rules and the Grafana
dashboard use these), and the engine names it reads (vLLM, SGLang, with one alias table for their renames:
:mod:`fleetwise.enginemetrics`).
"""

from __future__ import annotations

from fleetwise.enginemetrics import ALIASES, CANONICAL

__all__ = ["ALIASES", "CANONICAL"]

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
