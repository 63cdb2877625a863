"""Train on history, operate on what followed: fleetwise (forecast quantile + MILP + rolling) against the
baselines and the hindsight optimum, all scored by :func:`fleetwise.allocate.evaluate.evaluate`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fleetwise.allocate.baselines import (
    all_on_demand_peak,
    all_reserved_peak,
    percentile_heuristic,
    reactive_on_demand,
    score_baselines,
)
from fleetwise.allocate.evaluate import Evaluation, Schedule, evaluate, spot_uniforms
from fleetwise.allocate.evidence import ReservationEvidence, reservation_evidence
from fleetwise.allocate.model import Allocation, AllocationRules, plan_allocation, servable_rps
from fleetwise.allocate.offers import CapacityOffer
from fleetwise.allocate.rolling import CountChange, RollingConfig, lead_steps, operate
from fleetwise.errors import ConfigError
from fleetwise.forecast import QuantileForecaster
from fleetwise.forecast.backtest import DEFAULT_WINDOW_DAYS
from fleetwise.forecast.models import ffill
from fleetwise.forecast.rolling import series_roller
from fleetwise.traffic.records import RateSeries


@dataclass
class Comparison:
    """Every strategy on the same actual demand."""

    period_h: float
    demand_rps: np.ndarray
    reservation_plan: Allocation  # fleetwise's reservations, planned on the forecast
    fleetwise: Evaluation
    hindsight: Evaluation
    hindsight_plan: Allocation
    baselines: list[Evaluation]  # in a fixed order; one the offers cannot express is marked not applicable
    schedules: dict[str, Schedule] = field(default_factory=dict)
    actions: list[CountChange] = field(default_factory=list)
    step_ms: tuple[float, float] = (0.0, 0.0)  # median and max rolling-step time
    evidence: list[ReservationEvidence] = field(default_factory=list)  # per reservation, from the training days

    @property
    def ratio_to_hindsight(self) -> float:
        return self.fleetwise.cost_usd / self.hindsight.cost_usd if self.hindsight.cost_usd else float("nan")


def rolling_forecasts(series: RateSeries, train_steps: int, n_steps: int, lookahead: int, quantile: float,
                      method: str = "auto") -> np.ndarray:
    """(n_steps, lookahead) forecast quantile paths, one per operating step, each from data before it."""
    roller = series_roller(series, train_steps, lookahead, [quantile], DEFAULT_WINDOW_DAYS)
    origins = np.arange(train_steps, train_steps + n_steps)
    paths = roller.auto(origins) if method == "auto" else roller.paths(method, origins)
    qi = int(np.flatnonzero(np.isclose(paths.quantiles, quantile))[0])
    out = paths.values[:, qi, :]
    # Where a method had no forecast (too little history), fall back to the last value seen.
    last = ffill(series.values)[origins - 1]
    return np.where(np.isfinite(out), out, last[:, None])


# Quantile paths are not scenarios: a P10 path puts every period at its own 10th percentile at once, which
# overstates how far a whole week's level can move and under-reserves (measured: 3 instead of 4 on ServeGen,
# 2 instead of 3 on a smooth synthetic week). The median, scaled by the rolling buffer, is the default.
SCENARIO_QUANTILES = (0.5,)


def plan_reservations(history: RateSeries, offers: list[CapacityOffer], n_periods: int,
                      rules: AllocationRules, quantiles: tuple[float, ...] = SCENARIO_QUANTILES, buffer: float = 1.0) -> Allocation:
    """Reservations that minimize the average cost over forecast scenarios (the quantile paths, equally
    weighted): the scenarios are laid end to end as one demand series with each period weighted 1/S, so the
    reservation is shared and paid once while spot / on-demand adapt per scenario. Unused reservations are
    pure waste and missing ones cost only the spot / on-demand premium; averaging over scenarios prices
    that asymmetry instead of betting on the median. ``buffer`` scales the scenarios to the capacity the
    rolling layer will actually run (it provisions a short-term quantile, not the median)."""
    forecaster = QuantileForecaster().fit(history)
    fc = forecaster.predict_quantiles(n_periods, quantiles)
    demand = np.concatenate([fc.quantile(q) for q in quantiles]) * buffer
    return plan_allocation(offers, demand, history.period_s / 3600 / len(quantiles), rules)


def short_term_buffer(history: RateSeries, quantile: float, lead_steps: int) -> float:
    """How much capacity the rolling layer carries above typical demand: the ratio of the forecast quantile
    to the median over the first lead steps, as calibrated on the history (>= 1)."""
    steps = max(lead_steps + 1, 2)
    fc = QuantileForecaster().fit(history).predict_quantiles(steps, (0.5, quantile))
    mid, high = fc.quantile(0.5), fc.quantile(quantile)
    return float(max(1.0, np.mean(high / np.maximum(mid, 1e-9))))


def eval_window(series: RateSeries, train_days: float, eval_days: float) -> tuple[int, int]:
    """(training, operating) steps of the series, or a ConfigError when they do not fit in it."""
    for name, days in (("training", train_days), ("evaluation", eval_days)):
        if not math.isfinite(days):  # NaN and inf would reach int(round(...))
            raise ConfigError(f"the {name} days must be a finite number (got {days:g})")
    per_day = series.steps_per_day
    train, n_eval = int(round(train_days * per_day)), int(round(eval_days * per_day))
    if train < 2 or train + n_eval > len(series) or n_eval < 1:
        raise ConfigError(f"the series has {len(series) / per_day:.1f} days; {train_days:g} training + "
                          f"{eval_days:g} evaluation days do not fit")
    return train, n_eval


def compare(series: RateSeries, offers: list[CapacityOffer], *, train_days: float, eval_days: float,
            quantile: float = 0.95, scenario_quantiles: tuple[float, ...] = SCENARIO_QUANTILES,
            rules: AllocationRules = AllocationRules(),
            rolling: RollingConfig = RollingConfig(), seed: int = 0, progress=None,
            oracle_forecast: bool = False) -> Comparison:
    """Fit on the first ``train_days``, operate over the next ``eval_days`` against the actual series.

    ``oracle_forecast`` hands the rolling layer the actual future instead of forecasts (reservations are still
    planned on the forecast): a diagnostic of how much of the gap to hindsight is forecast error."""
    train, n_eval = eval_window(series, train_days, eval_days)
    period_h = series.period_s / 3600
    history = _filled(series.values[:train])
    actual = _filled(series.values[train : train + n_eval], fallback=history)
    # 1. Reservations: sized on the capacity the rolling layer will run (median forecast x its short-term
    #    buffer); more scenario quantiles turn this into a sample-average approximation.
    lead = lead_steps(rules.cold_start_s, series.period_s)
    history_series = series.slice(0, train)
    plan = plan_reservations(history_series, offers, n_eval, rules, scenario_quantiles,
                             short_term_buffer(history_series, quantile, lead))
    reserved = {k: v for k, v in plan.reserved.items() if v > 0}
    # 2. Rolling: every step, the newest forecast quantile over the look-ahead, counts committed ahead.
    lookahead = rolling.lookahead_steps + 2
    if oracle_forecast:
        future = np.concatenate([actual, np.repeat(actual[-1], lookahead)])
        paths = np.lib.stride_tricks.sliding_window_view(future, lookahead)[:n_eval]
    else:
        paths = rolling_forecasts(series, train, n_eval, lookahead, quantile)
    mid = (len(scenario_quantiles) // 2) * n_eval  # the first period of the median scenario
    initial = (plan.spot[:, mid], plan.on_demand[:, mid])
    schedule, actions, opt = operate(offers, reserved, paths, period_h, rules, rolling, initial=initial,
                                     progress=progress)
    u = spot_uniforms(len(offers), n_eval, seed)
    ev = lambda s: evaluate(s, actual, period_h, cold_start_s=rules.cold_start_s, uniforms=u)
    # Hindsight serves all the demand the availability caps allow (a spike beyond them is unmet for everyone).
    hindsight_plan = plan_allocation(offers, np.minimum(actual, servable_rps(offers, rules) * (1 - 1e-9)),
                                     period_h, rules)
    hindsight = Schedule("hindsight optimum", offers, hindsight_plan.reserved, hindsight_plan.spot,
                         hindsight_plan.on_demand)
    peak = float(history.max())
    baselines, built = score_baselines([
        lambda: all_on_demand_peak(offers, peak, n_eval),
        lambda: all_reserved_peak(offers, peak, n_eval),
        lambda: reactive_on_demand(offers, actual, lead, history_rps=history),
        lambda: percentile_heuristic(offers, history, n_eval, rules.cold_start_s),
    ], ev)
    times = np.array(opt.solve_times_s) * 1000
    return Comparison(
        period_h, actual, plan, ev(schedule), ev(hindsight), hindsight_plan, baselines,
        {s.name: s for s in (schedule, hindsight, *built)}, actions,
        (float(np.median(times)), float(times.max())) if times.size else (0.0, 0.0),
        reservation_evidence(reserved, offers, series.values[:train], series.period_s),
    )


def _filled(values: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """Missing bins (gaps) filled by the last known value, so they neither cost nor count as unmet."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ConfigError("no known demand values in the window")
    first = finite[0] if fallback is None else fallback[np.isfinite(fallback)][-1]
    return np.nan_to_num(ffill(values), nan=first)
