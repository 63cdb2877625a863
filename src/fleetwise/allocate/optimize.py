"""``fleetwise optimize`` as one library call: replica configurations planned for the workload, the capacity offers
they give, the cold start, then either a forward plan on the forecast or, with a training and an evaluation
window, every strategy operated against the actual series (and, optionally, replayed request by request).

    from fleetwise.allocate import optimize

    result = optimize(series, model="llama-3.1-8b", clouds=["aws"], train_days=3, eval_days=1)
    result.comparison.fleetwise.cost_usd, result.comparison.hindsight.cost_usd

Everything that can be checked without planning is checked first, so a bad window or horizon fails in
milliseconds rather than after the replica-configuration search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from fleetwise.allocate.model import AllocationRules
from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.sim.sampling import DEFAULT_REQUESTS_PER_DAY, DEFAULT_WINDOWS_PER_DAY

if TYPE_CHECKING:
    from fleetwise.allocate.compare import Comparison
    from fleetwise.allocate.forecast_plan import ForwardPlan
    from fleetwise.allocate.offers import CapacityOffer
    from fleetwise.plan.search import PlanResult
    from fleetwise.plan.workload import Workload
    from fleetwise.sim.evaluate import RequestEvaluation
    from fleetwise.traffic.records import RateSeries

EVALUATE_MODES = ("fluid", "requests")
"""'fluid' scores each schedule by capacity against demand per period; 'requests' also replays every strategy's
operated schedule through the fleet simulator (:func:`fleetwise.sim.evaluate.evaluate_requests`)."""
PHASES = ("offers", "forward", "operate", "replay")
"""What ``progress`` reports, in order: planning replica configurations and offers; then either forecasting and
allocating ahead ('forward'), or forecasting, allocating and operating over the evaluation window ('operate',
counted in rolling steps) and, with ``evaluate='requests'``, replaying the schedules ('replay', in strategies)."""
DEFAULT_HORIZON_S = 30 * 86400.0
MAX_HORIZON_STEPS = 10_000
"""Periods planned ahead: 30 days of 5-minute periods (8,640) already take ~40 s and 3 GB to forecast."""

Progress = Callable[[str, float, float | None], None]
"""``progress(phase, done, total)``: a phase of :data:`PHASES` starts with ``(phase, 0, None)``; phases that count
their work then report ``(phase, done, total)``."""


@dataclass(frozen=True)
class OptimizeResult:
    """What :func:`optimize` found: the offers and the plan behind them, the rules (cold start included) the
    allocation ran with, and either the forward plan or the comparison (plus its request-by-request replay)."""

    offers: list[CapacityOffer]
    planned: PlanResult  # the replica-configuration plan the offers come from
    rules: AllocationRules  # as the allocation used them; cold_start_s is the estimate when none was given
    cold_start_estimated: bool
    forward: ForwardPlan | None = None  # without a training / evaluation window
    comparison: Comparison | None = None  # with one
    requests: RequestEvaluation | None = None  # with evaluate='requests'

    @property
    def cold_start_s(self) -> float:
        return self.rules.cold_start_s


def optimize(series: RateSeries, *, model: str = "llama-3.1-8b", isl: float = 1155.0, osl: float = 211.0,
             ttft_ms: float = 1000.0, tpot_ms: float = 50.0, catalog: str | None = None,
             clouds: Sequence[str] = (), regions: Sequence[str] = (), gpus: Sequence[str] = (),
             offers_top: int = 6, fine_fraction: float | None = None, rate_rps: float | None = None,
             spot_cap: int | None = None, on_demand_cap: int | None = None, reserved_cap: int | None = None,
             cold_start_s: float | None = None, max_spot_share: float = 0.7, min_nonspot_share: float = 0.3,
             quantile: float = 0.95, up: int = 2, down: int = 1, horizon_steps: int | None = None,
             train_days: float | None = None, eval_days: float | None = None, evaluate: str = "fluid",
             requests_per_day: int = DEFAULT_REQUESTS_PER_DAY, windows_per_day: int = DEFAULT_WINDOWS_PER_DAY,
             seed: int = 0, oracle_forecast: bool = False, progress: Progress | None = None,
             on_cold_start: Callable[[float], None] | None = None) -> OptimizeResult:
    """Plan the offers for ``model`` on the workload of ``series`` and allocate reserved / spot / on-demand
    capacity over time.

    Without ``train_days`` / ``eval_days``: forecast the next ``horizon_steps`` periods (default: 30 days' worth)
    at ``quantile`` and allocate against them (:func:`fleetwise.allocate.forecast_plan.plan_forward`). With them:
    fit on the first ``train_days``, operate over the next ``eval_days`` against the actual series, next to the
    baselines and the hindsight optimum (:func:`fleetwise.allocate.compare.compare`); ``evaluate='requests'``
    also replays every strategy request by request (``requests_per_day`` / ``windows_per_day``, from ``seed``).

    Args:
        isl, osl, ttft_ms, tpot_ms: mean input / output tokens and the p95 SLO targets the configurations meet.
        clouds, regions, gpus, catalog: which offers compete (empty: all of the catalog).
        offers_top, fine_fraction, spot_cap, on_demand_cap, reserved_cap: how many of the cheapest offers per
            req/s to consider, the small-offer rule and per-offer availability caps
            (:func:`fleetwise.allocate.fromplan.offers_from_plan`; ``fine_fraction`` None is its default).
        rate_rps: the request rate the configurations are planned at (default: the series' mean).
        cold_start_s: instance boot + model load + engine start; None estimates it from the model's weights at
            the offers' precisions (:func:`fleetwise.allocate.coldstart.cold_start_s`) and passes the estimate
            to ``on_cold_start`` before the allocation starts.
        up, down: rolling damping, most instances added / removed per offer and step.
        oracle_forecast: diagnostic, with a window: the rolling layer sees the actual future (see compare()).
        progress: ``progress(phase, done, total)``, see :data:`PHASES`.

    Raises:
        ConfigError: a knob out of range, a window that does not fit in the series or a horizon too long, before
            any planning.
        InputFormatError: a series without a single known value.
    """
    from fleetwise.allocate.rolling import RollingConfig

    window = _check_mode(train_days, eval_days, evaluate, catalog)
    sampling = None
    if evaluate == "requests":
        from fleetwise.sim.sampling import Sampling

        sampling = Sampling(requests_per_day, windows_per_day, seed=seed)
    _check_knobs(quantile, offers_top, cold_start_s, rate_rps)
    rules = AllocationRules(max_spot_share=max_spot_share, min_nonspot_share=min_nonspot_share,
                            cold_start_s=0.0 if cold_start_s is None else cold_start_s)
    rolling = RollingConfig(up=up, down=down)
    if not np.isfinite(series.values).any():  # the mean rate below would be NaN
        raise InputFormatError("no known demand values (every bin is missing)")
    if window:
        from fleetwise.allocate.compare import eval_window

        eval_window(series, train_days, eval_days)
    else:
        horizon_steps = _check_horizon(series, horizon_steps)
    mean_rps = float(np.nanmean(series.values))
    workload = _workload(isl, osl, mean_rps if rate_rps is None else rate_rps)
    report = progress or (lambda phase, done, total: None)

    report("offers", 0, None)
    offers, planned = _offers(model, workload, (ttft_ms, tpot_ms), catalog, clouds, regions, gpus, offers_top,
                              fine_fraction, _caps(spot_cap, on_demand_cap, reserved_cap))
    if cold_start_s is None:
        from fleetwise.allocate.coldstart import cold_start_s as estimate

        rules = replace(rules, cold_start_s=max(estimate(model, o.precision or "bf16", catalog=catalog)
                                                for o in offers))
        if on_cold_start is not None:
            on_cold_start(rules.cold_start_s)
    result = OptimizeResult(offers, planned, rules, cold_start_s is None)
    if not window:
        from fleetwise.allocate.forecast_plan import plan_forward

        report("forward", 0, None)
        return replace(result, forward=plan_forward(series, offers, horizon_steps, quantile=quantile, rules=rules))
    from fleetwise.allocate.compare import compare

    report("operate", 0, None)
    cmp = compare(series, offers, train_days=train_days, eval_days=eval_days, quantile=quantile, rules=rules,
                  rolling=rolling, seed=seed, oracle_forecast=oracle_forecast,
                  progress=lambda k, n: report("operate", k, n))
    requests = None
    if sampling is not None:
        from fleetwise.sim.evaluate import evaluate_requests, offer_setups

        report("replay", 0, None)
        setups = offer_setups(planned.candidates, offers, planned.request.engine, catalog)
        requests = evaluate_requests(cmp, setups, workload, (ttft_ms, tpot_ms), cold_start_s=rules.cold_start_s,
                                     spot_seed=seed, sampling=sampling, progress=lambda k, n: report("replay", k, n))
    return replace(result, comparison=cmp, requests=requests)


def _check_mode(train_days: float | None, eval_days: float | None, evaluate: str, catalog: str | None) -> bool:
    """Whether a training / evaluation window is given, or a ConfigError for a mode that cannot run."""
    if evaluate not in EVALUATE_MODES:
        raise ConfigError(f"the evaluation must be one of {', '.join(EVALUATE_MODES)} (got '{evaluate}')")
    if (train_days is None) != (eval_days is None):
        raise ConfigError("the training and evaluation days go together (train_days and eval_days)")
    window = train_days is not None
    if evaluate == "requests" and not window:
        raise ConfigError("the request-by-request evaluation replays the operated schedules: it needs training "
                          "and evaluation days")
    if evaluate == "requests" and catalog is not None:
        raise ConfigError("the request-by-request evaluation simulates the offers of the built-in catalog (or "
                          "FLEETWISE_CATALOG); it cannot take another catalog")
    return window


def _check_knobs(quantile: float, offers_top: int, cold_start_s: float | None, rate_rps: float | None) -> None:
    if not 0 < quantile < 1:
        raise ConfigError(f"the demand quantile must lie strictly between 0 and 1 (got {quantile:g})")
    if offers_top < 1:
        raise ConfigError(f"at least one offer must be considered (got {offers_top})")
    if cold_start_s is not None and not (math.isfinite(cold_start_s) and cold_start_s >= 0):
        raise ConfigError(f"the cold start must be a finite number of seconds >= 0 (got {cold_start_s:g})")
    if rate_rps is not None and not (math.isfinite(rate_rps) and rate_rps > 0):
        raise ConfigError(f"the planned request rate must be a finite number of req/s > 0 (got {rate_rps:g})")


def _check_horizon(series: RateSeries, steps: int | None) -> int:
    """The periods to plan ahead: ``steps``, or 30 days' worth of the series' periods when None."""
    if steps is None:
        steps = max(1, math.ceil(DEFAULT_HORIZON_S / series.period_s - 1e-9))
    if steps < 1:
        raise ConfigError(f"the planning horizon must cover at least one period (got {steps})")
    if steps > MAX_HORIZON_STEPS:
        raise ConfigError(f"the planning horizon is {steps:,} periods of {series.period_s:g} s; at most "
                          f"{MAX_HORIZON_STEPS:,} periods ahead (a shorter horizon, or longer periods)")
    return int(steps)


def _workload(isl: float, osl: float, rate: float) -> Workload:
    """The workload the offers are planned with (and the request-by-request replay draws its lengths from)."""
    from fleetwise.plan.workload import BUILTIN

    return BUILTIN["chat"].with_overrides(isl=isl, osl=osl, rate_rps=max(rate, 1e-3))


def _caps(spot: int | None, on_demand: int | None, reserved: int | None) -> dict[str, int]:
    caps = {"spot": spot, "on_demand": on_demand, "reserved_1y": reserved, "reserved_3y": reserved}
    return {k: v for k, v in caps.items() if v is not None}


def _offers(model: str, workload: Workload, slo: tuple[float, float], catalog: str | None, clouds: Sequence[str],
            regions: Sequence[str], gpus: Sequence[str], top: int, fine_fraction: float | None,
            caps: dict[str, int]) -> tuple[list[CapacityOffer], PlanResult]:
    from fleetwise.allocate.fromplan import FINE_FRACTION, offers_from_plan
    from fleetwise.plan.search import SLO, PlanRequest, plan

    req = PlanRequest([model], workload, SLO(*slo), clouds=list(clouds), regions=list(regions), gpus=list(gpus),
                      catalog=catalog)
    result = plan(req)
    fine = FINE_FRACTION if fine_fraction is None else fine_fraction
    return offers_from_plan(result, top=top, catalog=catalog, max_instances=caps, fine_fraction=fine), result
