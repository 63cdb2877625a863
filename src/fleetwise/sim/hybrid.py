"""The live controller's policy, runnable in the simulator: a forecast floor with a reactive safety net above it.

* **Slow loop** (:class:`~fleetwise.sim.rolling.Rolling`, every ``period_s``): forecast -> rolling MILP ->
  damped spot / on-demand counts. Its decision is a *floor*: the fleet never shrinks below it.
* **Fast loop** (every control tick): when requests queue for half their TTFT target, the window's p95 TTFT
  or TPOT (ITL live) breaks its target, or utilization passes ``high``, add on-demand capacity at once (sized like
  :class:`~fleetwise.sim.policies.Reactive`: the load at ``target`` utilization plus what clears the queue
  within a cold start). Capacity above the floor is removed only after
  ``cooldown_s`` without a scale-up, and only down to what would still hold the highest load seen over that
  cooldown at ``target`` utilization (so a lull between bursts does not drop what the next burst
  needs).

Where the anchors differ: Dynamo's planner also pairs a slow throughput loop with a fast load loop, but both
only react (no reserved / spot / on-demand prices, ±1 steps); AIBrix's KPA and KEDA react only; SkyServe
falls back to on-demand but sizes by a fixed QPS per replica. Here the slow loop prices the tiers and
forecasts, the fast loop covers what the forecast missed, and both size from the perf model's goodput.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from fleetwise.errors import ConfigError
from fleetwise.sim.fleet import ROLES
from fleetwise.sim.policies import Action, Drain, FleetState, Launch, Reactive
from fleetwise.sim.rolling import Rolling


@dataclass
class Hybrid:
    """Forecast floor (``slow``) + reactive safety net above it; see the module docstring."""

    slow: Rolling = field(default_factory=Rolling)
    target: float = 0.7
    high: float = 0.85
    cooldown_s: float = 300.0
    name: str = "hybrid"
    _floor: dict[str, int] = field(default_factory=dict, repr=False)
    _needs: deque = field(default_factory=deque, repr=False)  # (t, instances the load needed at target)
    _last_up: float = field(default=-math.inf, repr=False)
    reason: str = field(default="steady", repr=False)
    """Why the last decision was made (``forecast``, ``slo_burn``, ``queue``, ``load``, ``scale_down``,
    ``steady``): the controller records it with the decision."""

    def __post_init__(self) -> None:
        if not 0 < self.target < self.high:
            raise ConfigError("hybrid policy: need 0 < target < high utilization")
        if self.cooldown_s < 0:
            raise ConfigError("hybrid policy: cooldown must be >= 0 s")
        self._sizer = Reactive(target=self.target, high=self.high, low=self.target / 2)

    def initial(self) -> dict[str, int]:
        self._floor = dict(self.slow.initial())
        return dict(self._floor)

    @property
    def floor(self) -> dict[str, int]:
        """The slow loop's latest decision, by role."""
        return dict(self._floor)

    def state_dict(self) -> dict:
        """What a restarted controller needs to continue: the floor, the cooldown's clock and the load seen
        within it, and the slow loop's history and schedule."""
        return {"slow": self.slow.state_dict(), "floor": dict(self._floor),
                "last_up": self._last_up if math.isfinite(self._last_up) else None,
                "needs": [list(x) for x in self._needs]}

    def load_state(self, saved: dict) -> None:
        self.slow.load_state(saved.get("slow", {}))
        self._floor = {str(k): int(v) for k, v in saved.get("floor", {}).items()}
        last_up = saved.get("last_up")
        self._last_up = -math.inf if last_up is None else float(last_up)
        self._needs = deque((float(t), int(n)) for t, n in saved.get("needs", []))

    def decide(self, state: FleetState) -> list[Action]:
        self.reason = "steady"
        before = self.slow._next_s
        slow_actions = self.slow.decide(state)
        if self.slow._next_s != before or not self._floor:  # the slow loop decided (possibly "no change")
            self._floor = _apply(state.active, slow_actions)
            if slow_actions:
                self.reason = "forecast"
        need = self._need(state)
        target = dict(self._floor)
        extra = max(0, need - sum(target.values()))
        target["on_demand"] = target.get("on_demand", 0) + extra
        return self._actions(state, target)

    def _need(self, state: FleetState) -> int:
        """Instances to hold now: the load's need at target utilization, kept for the cooldown; more at once
        when the SLO burns, requests queue, or utilization passes ``high``."""
        serving = sum(state.serving.values())
        util = state.utilization
        now = math.ceil(serving * util / self.target - 1e-9) if math.isfinite(util) else 0
        provisioning = state.total_active > serving
        burning = state.ttft_slo_ratio_p95 > 1.0 or state.tpot_slo_ratio_p95 > 1.0
        if state.urgent_queued > 0 or burning or util > self.high:
            self.reason = "queue" if state.urgent_queued > 0 else "slo_burn" if burning else "load"
            sized = self._sizer._size(state) if math.isfinite(util) else 0
            now = max(now, sized, state.total_active + (0 if provisioning else 1))
        self._needs.append((state.t, now))
        while self._needs and self._needs[0][0] < state.t - self.cooldown_s:
            self._needs.popleft()
        return max(n for _, n in self._needs)

    def _actions(self, state: FleetState, target: dict[str, int]) -> list[Action]:
        actions: list[Action] = []
        grow = {r: target.get(r, 0) - state.active.get(r, 0) for r in ROLES}
        for role in ROLES:
            if grow[role] > 0:
                actions.append(Launch(role, grow[role]))
        if actions:
            self._last_up = state.t
            return actions
        if state.t - self._last_up < self.cooldown_s:
            return []
        for role in ("on_demand", "spot"):  # on-demand first: it costs the most
            if grow[role] < 0:
                actions.append(Drain(role, -grow[role]))
        if actions and self.reason == "steady":
            self.reason = "scale_down"
        return actions


def _apply(active: dict[str, int], actions: list[Action]) -> dict[str, int]:
    """The counts by role after ``actions``."""
    out = {r: active.get(r, 0) for r in ROLES}
    for a in actions:
        out[a.role] += a.count if isinstance(a, Launch) else -a.count
    return out
