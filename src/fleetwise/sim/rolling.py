"""The rolling optimizer of :mod:`fleetwise.allocate` as a simulator policy.

Every ``period_s`` the policy forecasts the request rate from what it has observed so far, runs one rolling
MILP step with damping for the fleet's single offer, and moves the spot / on-demand counts towards the step's
decision: launches for the period one cold start ahead, scale-down only of what is not needed now either.

The forecast is the forecast package's persistence model with conformal quantiles once the history holds
enough errors for the quantile (19 for P95: with fewer, the conformal offset is the single worst error seen
and one load step would inflate every later forecast); before that, the highest rate of the last hour plus
``headroom``. Either is capped at the highest rate observed so far plus ``headroom``, and the queue adds the
rate that clears it within one period.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fleetwise.allocate.model import AllocationRules
from fleetwise.allocate.offers import CapacityOffer
from fleetwise.allocate.rolling import RollingConfig, RollingOptimizer, lead_steps
from fleetwise.errors import ConfigError
from fleetwise.forecast.forecaster import QuantileForecaster
from fleetwise.sim.policies import Action, FleetState, to_target
from fleetwise.traffic.records import RateSeries


@dataclass
class Rolling:
    """Forecast + rolling MILP + damping, deciding every ``period_s`` seconds."""

    initial_instances: int = 1
    period_s: float = 300.0
    quantile: float = 0.95
    min_history: int | None = None
    """Periods before the conformal forecaster is trusted (default: enough errors for the quantile)."""
    headroom: float = 0.25
    """Margin over the highest rate observed (before the forecaster is trusted, and as its cap): the same
    25% the allocation's conformal P95 buffer comes to on ServeGen at a 10-minute lead (README)."""
    reserved: int = 0
    config: RollingConfig = field(default_factory=RollingConfig)
    name: str = "rolling"
    _arrivals: list[float] = field(default_factory=list, repr=False)  # requests per control tick
    _opt: RollingOptimizer | None = field(default=None, repr=False)
    _next_s: float = field(default=0.0, repr=False)
    _ticks_per_period: int = field(default=1, repr=False)
    _tick_s: float = field(default=0.0, repr=False)
    _saved_opt: dict | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.period_s <= 0 or not 0 < self.quantile < 1 or self.headroom < 0 or \
                (self.min_history is not None and self.min_history < 2):
            raise ConfigError("rolling policy: period > 0, quantile in (0, 1), headroom >= 0, min history >= 2")
        if self.min_history is None:
            self.min_history = math.ceil(1.0 / (1.0 - self.quantile)) + 1

    def initial(self) -> dict[str, int]:
        n = max(self.initial_instances, self.reserved)
        return {"reserved": self.reserved, "on_demand": n - self.reserved}

    def state_dict(self) -> dict:
        """What a restarted controller needs to continue this policy: the demand history, the schedule and the
        optimizer's commitments, scale-down clock and step count."""
        out = {"arrivals": list(self._arrivals[-20_000:]), "next_s": self._next_s}
        opt = self._opt
        if opt is not None:
            out["optimizer"] = {"committed_spot": [a.tolist() for a in opt.committed_spot],
                                "committed_od": [a.tolist() for a in opt.committed_od],
                                "last_down": opt.last_down.tolist(), "step_index": opt.step_index}
        elif self._saved_opt is not None:
            out["optimizer"] = self._saved_opt
        return out

    def load_state(self, saved: dict) -> None:
        """Continue from :meth:`state_dict`."""
        self._arrivals = [float(x) for x in saved.get("arrivals", [])]
        self._next_s = float(saved.get("next_s", 0.0))
        self._saved_opt = saved.get("optimizer")

    def _restore_optimizer(self, opt: RollingOptimizer) -> None:
        saved, self._saved_opt = self._saved_opt, None
        if not saved or len(saved.get("committed_spot", [])) != opt.lead_steps:
            return  # none, or from another configuration: start from the fleet as it is
        opt.committed_spot = [np.asarray(a, dtype=float) for a in saved["committed_spot"]]
        opt.committed_od = [np.asarray(a, dtype=float) for a in saved["committed_od"]]
        opt.last_down = np.asarray(saved["last_down"], dtype=float)
        opt.step_index = int(saved["step_index"])

    def _optimizer(self, state: FleetState) -> RollingOptimizer:
        it = state.itype
        prices = {tier: it.price(tier) for tier in ("on_demand", "spot") if tier in it.usd_per_hour}
        if self.reserved:
            prices["reserved_1y"] = it.price("reserved")
        if not state.capacity_rps_per_instance > 0:
            raise ConfigError("rolling policy needs the per-instance capacity at the SLO (got none)")
        offer = CapacityOffer(it.label, state.capacity_rps_per_instance, prices, it.hazard_per_hour)
        lead = lead_steps(it.cold_start_s, self.period_s)
        opt = RollingOptimizer([offer], {(it.label, "reserved_1y"): self.reserved} if self.reserved else {},
                               self.period_s / 3600.0, AllocationRules(cold_start_s=it.cold_start_s),
                               self.config, lead)
        start = np.array([float(state.active.get("on_demand", 0))])
        opt.committed_spot = [np.array([float(state.active.get("spot", 0))]) for _ in range(lead)]
        opt.committed_od = [start.copy() for _ in range(lead)]
        self._ticks_per_period = max(1, round(self.period_s / state.interval_s))
        self._tick_s = state.interval_s
        return opt

    def forecast(self, horizon: int, queued: int = 0) -> np.ndarray:
        """Demand quantile (req/s) for the next ``horizon`` periods from the periods observed so far."""
        k = self._ticks_per_period
        full = len(self._arrivals) // k * k
        tick_s = self._tick_s or self.period_s / k
        # Rates over whole groups of k control ticks (k x tick_s seconds, about the period).
        rates = np.asarray(self._arrivals[:full], dtype=float).reshape(-1, k).sum(axis=1) / (k * tick_s)
        latest = self._arrivals[-1] / tick_s if self._arrivals else 0.0
        ceiling = max(rates.max() if len(rates) else 0.0, latest) * (1.0 + self.headroom)
        if len(rates) < self.min_history:
            recent = rates[-max(1, round(3600 / self.period_s)):]  # the last hour: recent enough to track
            out = np.full(horizon, max(recent.max() if len(recent) else 0.0, latest) * (1.0 + self.headroom))
        else:
            series = RateSeries(0.0, k * tick_s, rates)
            fc = QuantileForecaster("persistence").fit(series).predict_quantiles(horizon, [self.quantile])
            out = np.minimum(np.maximum(fc.quantile(self.quantile), 0.0), ceiling)
        return out + queued / self.period_s

    def decide(self, state: FleetState) -> list[Action]:
        if self._opt is not None:  # the tick at the start has no interval behind it
            self._arrivals.append(state.arrivals_rps * state.interval_s)
        if self._opt is None:
            self._opt = self._optimizer(state)
            self._restore_optimizer(self._opt)
            if not self._next_s:  # a fresh start; a restored policy (see load_state) keeps its schedule
                self._next_s = state.t + self.period_s
                return []
        if state.t + 1e-9 < self._next_s:
            return []
        self._next_s += self.period_s
        opt = self._opt
        horizon = max(opt.config.lookahead_steps, opt.lead_steps + 1)
        spot_now, od_now, _ = opt.step(self.forecast(horizon, state.queued))
        spot_ahead, od_ahead = opt.committed_spot[-1][0], opt.committed_od[-1][0]
        target = {"reserved": self.reserved}
        for role, now, ahead in (("spot", spot_now[0], spot_ahead), ("on_demand", od_now[0], od_ahead)):
            active = state.active.get(role, 0)
            target[role] = int(round(ahead)) if active <= ahead else int(round(max(ahead, now)))
        return to_target(state, target)
