"""Plan ahead on a forecast (no evaluation): reservations and the per-period schedule for the next horizon."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fleetwise.allocate.baselines import (
    all_on_demand_peak,
    all_reserved_peak,
    percentile_heuristic,
    score_baselines,
)
from fleetwise.allocate.evaluate import Evaluation, evaluate, spot_uniforms
from fleetwise.allocate.evidence import ReservationEvidence, reservation_evidence
from fleetwise.allocate.model import Allocation, AllocationRules, plan_allocation
from fleetwise.allocate.offers import CapacityOffer
from fleetwise.errors import ConfigError
from fleetwise.forecast import QuantileForecaster
from fleetwise.traffic.records import RateSeries


@dataclass
class ForwardPlan:
    allocation: Allocation  # its demand_rps is the forecast quantile planned for
    baselines: list[Evaluation]  # one the offers cannot express is marked not applicable
    method: str
    evidence: list[ReservationEvidence] = field(default_factory=list)  # per reservation, from the series


def plan_forward(series: RateSeries, offers: list[CapacityOffer], horizon_steps: int, *, quantile: float = 0.95,
                 rules: AllocationRules = AllocationRules()) -> ForwardPlan:
    """Forecast the next ``horizon_steps`` periods at ``quantile`` and allocate against them; baselines are
    priced on the same forecast."""
    if horizon_steps < 1:
        raise ConfigError("the planning horizon must cover at least one period")
    fc = QuantileForecaster().fit(series)
    path = fc.predict_quantiles(horizon_steps, (quantile,)).quantile(quantile)
    period_h = series.period_s / 3600
    alloc = plan_allocation(offers, path, period_h, rules)
    history = series.values[np.isfinite(series.values)]
    u = spot_uniforms(len(offers), horizon_steps)
    peak = float(path.max())
    baselines, _ = score_baselines([
        lambda: all_on_demand_peak(offers, peak, horizon_steps),
        lambda: all_reserved_peak(offers, peak, horizon_steps),
        lambda: percentile_heuristic(offers, history, horizon_steps, rules.cold_start_s),
    ], lambda b: evaluate(b, path, period_h, cold_start_s=rules.cold_start_s, uniforms=u))
    evidence = reservation_evidence(alloc.reserved, offers, series.values, series.period_s)
    return ForwardPlan(alloc, baselines, fc.chosen or "auto", evidence)
