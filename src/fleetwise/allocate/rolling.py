"""Rolling re-optimization: every step, re-solve a short look-ahead with reservations fixed, on the newest
forecast, and commit the counts for the first period not yet committed (cold starts mean the next
``lead_steps`` periods are already decided). Damping (+up/-down per offer and tier per step), a scale-down
cooldown and a per-start penalty keep the fleet from flapping."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from fleetwise.allocate.evaluate import Schedule
from fleetwise.allocate.model import AllocationRules, Damping, solve
from fleetwise.allocate.offers import CapacityOffer
from fleetwise.errors import ConfigError, SolverError


def lead_steps(cold_start_s: float, period_s: float) -> int:
    """Periods a decision must be made ahead so a new instance is serving when its period starts (>= 1)."""
    return max(1, math.ceil(cold_start_s / period_s - 1e-9))


@dataclass(frozen=True)
class RollingConfig:
    lookahead_steps: int = 6
    step_time_limit_s: float = 0.08
    """HiGHS time limit per step, so a whole step (model build ~5 ms + solve) stays within 100 ms. At the limit
    the best plan found is used (on ServeGen with 12 offers, 1-in-20 steps get there, at no measurable cost);
    if none is found, the step holds the current counts (``held_steps`` counts such steps)."""
    up: int = 2
    down: int = 1
    cooldown_steps: int = 3
    shortfall_penalty: float = 20.0
    """Shortfall price as a multiple of the dearest on-demand USD per req/s-hour: capacity is never 'free' to
    skip, but an unreachable spike does not make the step infeasible. It is raised, when demand is small next
    to an instance, to twice the cheapest instance-hour per req/s of the smallest demand, so capacity within
    reach is always bought rather than left short."""

    def __post_init__(self) -> None:
        if self.lookahead_steps < 1 or self.up < 0 or self.down < 0 or self.cooldown_steps < 0:
            raise ConfigError("look-ahead must be >= 1 step; damping and cooldown must be >= 0")


@dataclass
class CountChange:
    """A scaling action: change the count of one offer in one tier, effective ``at_step``."""

    at_step: int
    offer: str
    tier: str
    delta: int


@dataclass
class RollingOptimizer:
    """Stateful controller. ``step(forecast)`` -> actions for the first uncommitted period."""

    offers: list[CapacityOffer]
    reserved: dict[tuple[str, str], int]
    period_h: float
    rules: AllocationRules = AllocationRules()
    config: RollingConfig = RollingConfig()
    lead_steps: int = 1
    committed_spot: list[np.ndarray] = field(default_factory=list)  # per future period, (O,)
    committed_od: list[np.ndarray] = field(default_factory=list)
    last_down: np.ndarray | None = None  # (O, 2) step of the last scale-down (spot, on-demand)
    step_index: int = 0
    solve_times_s: list[float] = field(default_factory=list)
    held_steps: int = 0

    def __post_init__(self) -> None:
        O = len(self.offers)
        if not self.committed_spot:
            self.committed_spot = [np.zeros(O) for _ in range(self.lead_steps)]
            self.committed_od = [np.zeros(O) for _ in range(self.lead_steps)]
        self.last_down = np.full((O, 2), -10**9)
        od_rate = max(max(o.prices.values()) / o.capacity_rps for o in self.offers)
        self._penalty = self.config.shortfall_penalty * od_rate
        # A step needs a good answer inside the control interval, not a proof: 1% gap, short time limit.
        self._step_rules = replace(self.rules, time_limit_s=self.config.step_time_limit_s, mip_rel_gap=0.01)
        flexible = [p for o in self.offers for t, p in o.prices.items() if t in ("spot", "on_demand")]
        self._cheapest_h = min(flexible, default=0.0)  # USD per hour of the cheapest instance a step can add

    def _step_penalty(self, demand: np.ndarray) -> float:
        positive = demand[demand > 0]
        floor = 2.0 * self._cheapest_h / positive.min() if positive.size else 0.0
        return max(self._penalty, floor)

    def step(self, forecast_rps: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[CountChange]]:
        """Serve period ``step_index`` with the counts committed for it; decide period step_index + lead.

        ``forecast_rps`` covers periods step_index .. step_index + lookahead - 1 (the quantile to cover).
        Returns the counts serving now (spot, on-demand) and the actions just decided.
        """
        start = time.perf_counter()
        H = max(self.config.lookahead_steps, self.lead_steps + 1)
        demand = np.resize(np.asarray(forecast_rps, dtype=float), H)  # repeats a short path, cuts a long one
        k = self.step_index
        cooling = (k - self.last_down) <= self.config.cooldown_steps
        # The first `lead` periods are committed: solve from the last committed one onwards.
        init_s, init_d = self.committed_spot[-1], self.committed_od[-1]
        damping = Damping(self.config.up, self.config.down, init_s, init_d, no_scale_down=cooling)
        need = np.maximum(demand[self.lead_steps:], 0.0)
        try:
            alloc = solve(self.offers, need, self.period_h, self._step_rules, reserved_fixed=self.reserved,
                          damping=damping, soft_demand_penalty=self._step_penalty(need))
            new_s, new_d = alloc.spot[:, 0], alloc.on_demand[:, 0]
        except SolverError:  # no plan within the time limit: keep what runs (always allowed by the damping)
            self.held_steps += 1
            new_s, new_d = init_s.copy(), init_d.copy()
        actions = []
        for i, o in enumerate(self.offers):
            for j, (tier, new, old) in enumerate((("spot", new_s, init_s), ("on_demand", new_d, init_d))):
                delta = int(round(new[i] - old[i]))
                if delta:
                    actions.append(CountChange(k + self.lead_steps, o.id, tier, delta))
                if delta < 0:
                    self.last_down[i, j] = k
        serving = (self.committed_spot.pop(0), self.committed_od.pop(0))
        self.committed_spot.append(new_s.copy())
        self.committed_od.append(new_d.copy())
        self.step_index += 1
        self.solve_times_s.append(time.perf_counter() - start)
        return serving[0], serving[1], actions


def operate(offers: list[CapacityOffer], reserved: dict[tuple[str, str], int], forecasts: np.ndarray,
            period_h: float, rules: AllocationRules = AllocationRules(),
            config: RollingConfig = RollingConfig(), initial: tuple[np.ndarray, np.ndarray] | None = None,
            progress=None) -> tuple[Schedule, list[CountChange], RollingOptimizer]:
    """Run the rolling optimizer over ``forecasts`` (steps x lookahead quantile paths, one per step).

    ``initial`` is the (spot, on-demand) fleet already running (and committed for the lead time).
    """
    lead = lead_steps(rules.cold_start_s, period_h * 3600)
    opt = RollingOptimizer(offers, reserved, period_h, rules, config, lead)
    if initial is not None:
        opt.committed_spot = [initial[0].astype(float).copy() for _ in range(lead)]
        opt.committed_od = [initial[1].astype(float).copy() for _ in range(lead)]
    n = len(forecasts)
    spot, od = np.zeros((len(offers), n)), np.zeros((len(offers), n))
    actions: list[CountChange] = []
    for k in range(n):
        s, d, acts = opt.step(forecasts[k])
        spot[:, k], od[:, k] = s, d
        actions.extend(acts)
        if progress and k % 50 == 0:
            progress(k, n)
    return Schedule("fleetwise (forecast + MILP + rolling)", offers, dict(reserved), spot, od), actions, opt
