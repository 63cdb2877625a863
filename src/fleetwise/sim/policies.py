"""Policies in the loop: one interface, ``decide(state) -> actions``, called every control interval.

* :class:`StaticSchedule` - instance counts by role over time (a fixed fleet is a one-row schedule);
  launches ahead by the cold start so capacity is serving when the schedule says.
* :class:`Reactive` - scale up on an SLO violation, a queue or high utilization, down on low utilization,
  with a scale-down cooldown.
* :class:`Budget` - reactive within a USD/hour budget: the instances billed at any moment (reserved ones held
  included) never cost more; a fleet found over it is drained back under.
* :class:`Rolling` (in :mod:`fleetwise.sim.rolling`) - the rolling MILP of :mod:`fleetwise.allocate`.

Utilization is the larger of (a) requests in the system over the fleet's *SLO slots* (the largest batch per
engine whose decode step still meets the TPOT target, times the serving engines) and (b) the arrival rate over
the serving instances' goodput at the SLO from the perf model - physics, not a guessed threshold.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Protocol

from fleetwise.errors import ConfigError, InfeasibleError
from fleetwise.sim.fleet import ROLES, InstanceType


@dataclass(frozen=True)
class Launch:
    """Request ``count`` new instances in a role (spot falls back to on-demand when unavailable)."""

    role: str
    count: int


@dataclass(frozen=True)
class Drain:
    """Stop routing to ``count`` instances of a role and terminate each once its requests finish."""

    role: str
    count: int


Action = Launch | Drain


@dataclass(frozen=True)
class FleetState:
    """What a policy sees at a control tick."""

    t: float
    interval_s: float
    active: dict[str, int]  # provisioning + serving, by role
    serving: dict[str, int]
    in_flight: int
    queued: int
    slo_slots: int  # engines serving x SLO batch per engine
    arrivals_rps: float  # over the last interval
    ttft_p95_ms: float  # of first tokens in the last interval (nan if none)
    usd_per_hour: float  # instances billed now (draining ones included), at their billed tiers
    itype: InstanceType
    capacity_rps_per_instance: float
    ttft_slo_ratio_p95: float = math.nan  # p95 over the interval of TTFT / the target of each request's class
    urgent_queued: int = 0  # queued for at least half their class's TTFT target
    load: tuple[int, int, float] | None = None
    """(in flight, queued, arrivals req/s) of the latency-sensitive classes (TTFT target <= 1 min): the load a
    policy must size for - batch and background work fill idle capacity instead (None: all requests)."""
    tpot_slo_ratio_p95: float = math.nan
    """p95 over the interval of TPOT / the target of each request's class, of requests that finished in it."""
    draining_usd_per_hour: float = 0.0
    """The part of ``usd_per_hour`` spent on instances already draining (billed until their requests end)."""

    @property
    def sensitive(self) -> tuple[int, int, float]:
        return self.load if self.load is not None else (self.in_flight, self.queued, self.arrivals_rps)

    @property
    def utilization(self) -> float:
        """Latency-sensitive load over serving capacity: the larger of requests in the system over the SLO slots
        and the arrival rate over the serving instances' rate at the SLO (concurrency alone misses prefill-bound
        load)."""
        in_flight, queued, arrivals = self.sensitive
        serving = sum(self.serving.values())
        if not self.slo_slots or not serving:
            return math.inf if (in_flight or queued or arrivals) else 0.0
        util = (in_flight + queued) / self.slo_slots
        if self.capacity_rps_per_instance > 0:
            util = max(util, arrivals / (serving * self.capacity_rps_per_instance))
        return util

    @property
    def total_active(self) -> int:
        return sum(self.active.values())


class Policy(Protocol):
    """A scaling policy. One with a ``usd_per_hour`` attribute (see :func:`spend_cap`) caps the fleet's spend
    rate, and the simulator's own launches (a spot instance's replacement, a retry at spot) respect it too."""

    name: str

    def initial(self) -> dict[str, int]:
        """Instances by role already serving when the trace starts."""
        ...

    def decide(self, state: FleetState) -> list[Action]:
        """Scaling actions at a control tick."""
        ...


def spend_cap(policy: Policy) -> float:
    """The most USD per hour the policy lets the fleet cost at once (inf: no cap)."""
    return getattr(policy, "usd_per_hour", math.inf)


def to_target(state: FleetState, target: dict[str, int]) -> list[Action]:
    """Actions that move the active count of every role to ``target``."""
    actions: list[Action] = []
    for role in ROLES:
        diff = target.get(role, 0) - state.active.get(role, 0)
        if diff > 0:
            actions.append(Launch(role, diff))
        elif diff < 0:
            actions.append(Drain(role, -diff))
    return actions


@dataclass
class StaticSchedule:
    """Instance counts by role from given times on (seconds from the trace start); the first row is warm."""

    times_s: list[float]
    counts: list[dict[str, int]]
    name: str = "static"

    def __post_init__(self) -> None:
        if not self.times_s or len(self.times_s) != len(self.counts):
            raise ConfigError("a schedule needs at least one row, with counts for every time")
        if any(b <= a for a, b in zip(self.times_s, self.times_s[1:])):
            raise ConfigError("schedule times must increase")
        for row in self.counts:
            bad = [r for r, n in row.items() if r not in ROLES or n < 0]
            if bad:
                raise ConfigError(f"schedule: unknown role or negative count for {bad[0]} (roles: {', '.join(ROLES)})")

    @classmethod
    def fixed(cls, counts: dict[str, int], name: str = "static") -> StaticSchedule:
        return cls([0.0], [counts], name)

    def at(self, t: float) -> dict[str, int]:
        i = bisect.bisect_right(self.times_s, t) - 1
        return self.counts[max(i, 0)]

    def peak(self, t0: float, t1: float) -> dict[str, int]:
        """Most instances of each role the schedule asks for at any time in [t0, t1]."""
        i0 = max(bisect.bisect_right(self.times_s, t0) - 1, 0)
        i1 = max(bisect.bisect_right(self.times_s, t1) - 1, 0)
        rows = self.counts[i0:i1 + 1]
        return {r: max(row.get(r, 0) for row in rows) for r in ROLES}

    def initial(self) -> dict[str, int]:
        return dict(self.at(0.0))

    def decide(self, state: FleetState) -> list[Action]:
        # Launch now for anything that must serve before the next tick's launches could be ready; drain only
        # what is needed neither now nor then.
        ahead = self.peak(state.t, state.t + state.itype.cold_start_s + state.interval_s - 1e-9)
        now = self.at(state.t)
        target = {r: max(ahead.get(r, 0), now.get(r, 0)) if state.active.get(r, 0) > ahead.get(r, 0)
                  else ahead.get(r, 0) for r in ROLES}
        return to_target(state, target)


@dataclass
class InstanceBounds:
    """Instances a scaling policy starts with and stays within (every threshold policy has them)."""

    initial_instances: int = 1
    min_instances: int = 1
    max_instances: int = 1000


@dataclass
class Reactive(InstanceBounds):
    """Threshold autoscaling on utilization of the SLO slots, queueing and the observed TTFT.

    Scale up (by the step needed to bring utilization back to ``target``, plus what clears the queue within a
    cold start) when requests have queued for half their TTFT target, the last interval's p95 of TTFT over
    target exceeded 1, or utilization exceeds ``high``; scale down by one instance when utilization stays
    below ``low`` for ``cooldown_s``. New capacity is on-demand, or spot for ``spot_fraction`` of launches.

    The thresholds are conventional settings, not fitted: a 0.7 target leaves 30% headroom for growth during
    a cold start, and 0.85 / 0.4 sit far enough apart that adding or removing one instance of a few does not
    cross the other threshold.
    """

    target: float = 0.7
    high: float = 0.85
    low: float = 0.4
    up_cooldown_s: float = 0.0
    cooldown_s: float = 300.0
    spot_fraction: float = 0.0
    reserved: int = 0
    name: str = "reactive"
    _last_up: float = field(default=-math.inf, repr=False)
    _last_change: float = field(default=-math.inf, repr=False)
    _launched: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.low < self.target < self.high:
            raise ConfigError("reactive thresholds must satisfy 0 < low < target < high")
        if not 0 <= self.spot_fraction <= 1:
            raise ConfigError("spot fraction must be within [0, 1]")
        if self.min_instances < 0 or self.max_instances < max(self.min_instances, 1):
            raise ConfigError("need 0 <= min instances <= max instances, max >= 1")

    def initial(self) -> dict[str, int]:
        n = max(self.initial_instances, self.min_instances, self.reserved)
        spot = round((n - self.reserved) * self.spot_fraction)
        return {"reserved": self.reserved, "spot": spot, "on_demand": n - self.reserved - spot}

    def state_dict(self) -> dict:
        """The clocks of the cooldowns and the launch count (a restarted controller continues them)."""
        return {"last_up": _finite_or_none(self._last_up), "last_change": _finite_or_none(self._last_change),
                "launched": self._launched}

    def load_state(self, saved: dict) -> None:
        self._last_up = _float_or(saved.get("last_up"), -math.inf)
        self._last_change = _float_or(saved.get("last_change"), -math.inf)
        self._launched = int(saved.get("launched", 0))

    def wanted(self, state: FleetState) -> int:
        """Instances the thresholds ask for (before caps). Capacity still provisioning counts as coming, so a
        slow cold start does not trigger a launch at every tick."""
        n = state.total_active
        serving = sum(state.serving.values())
        util = state.utilization
        violated = state.urgent_queued > 0 or state.ttft_slo_ratio_p95 > 1.0
        if violated or util > self.high:
            if not math.isfinite(util):
                return n + 1 if n == serving else n
            return max(n + 1 if n == serving else n, self._size(state))
        if util < self.low and n == serving and state.t - self._last_change >= self.cooldown_s:
            return n - 1 if math.ceil(serving * util / self.target - 1e-9) < n else n
        return n

    def _size(self, state: FleetState) -> int:
        """Instances for the load at the target utilization, plus those that clear the queue within a cold start
        (a backlog is work to drain, not concurrency to hold)."""
        in_flight, queued, arrivals = state.sensitive
        serving = sum(state.serving.values())
        slots = state.slo_slots / serving if serving else 0.0
        need = in_flight / slots if slots else 0.0
        cap = state.capacity_rps_per_instance
        if cap > 0:
            need = max(need, arrivals / cap)
            need += queued / (cap * max(state.itype.cold_start_s, state.interval_s))
        elif slots:
            need += queued / slots
        return math.ceil(need / self.target - 1e-9)

    def decide(self, state: FleetState) -> list[Action]:
        return self._actions(state, state.total_active, self._want(state))

    def _want(self, state: FleetState) -> int:
        """Instances wanted within the bounds; the cooldown runs from the start (no scale-down on no data)."""
        if self._last_change == -math.inf:
            self._last_change = state.t
        return min(max(self.wanted(state), self.min_instances, self.reserved), self.max_instances)

    def _actions(self, state: FleetState, n: int, want: int) -> list[Action]:
        if want > n:
            if state.t - self._last_up < self.up_cooldown_s:
                return []
            self._last_up = self._last_change = state.t
            actions: list[Action] = []
            for _ in range(want - n):
                self._launched += 1
                spot = math.floor(self._launched * self.spot_fraction) > math.floor((self._launched - 1) * self.spot_fraction)
                actions.append(Launch("spot" if spot else "on_demand", 1))
            return actions
        if want < n:
            self._last_change = state.t
            for role in ("on_demand", "spot"):
                if state.active.get(role, 0) > 0:
                    return [Drain(role, 1)]
        return []


@dataclass
class Budget(Reactive):
    """Reactive autoscaling within ``usd_per_hour``: the instances billed at any moment, reserved ones held
    included, never cost more.

    Launches are priced at on-demand (a spot launch can fall back to it) and instances still draining count
    until they end, so a launch never takes the spend rate over the budget. A fleet found over it (started too
    big, or priced up) is drained back under, on-demand first; the drained instances finish their requests
    first, so the spend rate is back under once those end. Size the starting fleet with :func:`fit_budget`.
    """

    usd_per_hour: float = math.inf
    name: str = "budget"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.usd_per_hour > 0:
            raise ConfigError(f"the budget must be > 0 USD per hour (got {self.usd_per_hour:g})")

    def decide(self, state: FleetState) -> list[Action]:
        over = state.usd_per_hour - state.draining_usd_per_hour - self.usd_per_hour
        if over > 1e-9 * self.usd_per_hour:
            return self._shed(state, over)
        n, want = state.total_active, self._want(state)
        if want > n and math.isfinite(self.usd_per_hour):
            # A spot launch can fall back to on-demand: budget every launch at the on-demand price.
            price = state.itype.price("on_demand")
            room = math.floor((self.usd_per_hour - state.usd_per_hour) / price + 1e-9)
            want = n + max(0, min(want - n, room))
        return self._actions(state, n, want)

    def _shed(self, state: FleetState, over_usd_per_hour: float) -> list[Action]:
        """Drains that take the spend rate under the budget: on-demand first (each saves the most); a spot
        instance is counted at the spot price, though the simulator drains on-demand fallbacks first."""
        self._last_change = state.t
        actions: list[Action] = []
        od = state.itype.price("on_demand")
        for role, price in (("on_demand", od), ("spot", state.itype.usd_per_hour.get("spot", od))):
            count = min(state.active.get(role, 0), math.ceil(over_usd_per_hour / price - 1e-9))
            if count > 0:
                actions.append(Drain(role, count))
                over_usd_per_hour -= count * price
            if over_usd_per_hour <= 1e-9 * self.usd_per_hour:
                break
        return actions


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _float_or(x, default: float) -> float:
    return default if x is None else float(x)


def fit_budget(usd_per_hour: float, itype: InstanceType, reserved: int = 0, wanted: int = 1) -> int:
    """Instances (reserved included) to start a budget policy with: up to ``wanted``, within the budget.

    Raises:
        ConfigError: the reserved instances alone cost more than the budget (they are billed all run).
        InfeasibleError: the budget buys no instance at all.
    """
    res, od = itype.price("reserved"), itype.price("on_demand")
    held = reserved * res
    if held > usd_per_hour * (1 + 1e-9):
        most = math.floor(usd_per_hour / res + 1e-9)
        raise ConfigError(f"--reserved {reserved} costs ${held:,.2f}/h ({reserved} x ${res:,.2f}/h, billed for "
                          f"the whole run), more than --budget-usd-per-hour {usd_per_hour:g}: hold fewer "
                          f"(--reserved {most} fits) or raise the budget")
    more = math.floor((usd_per_hour - held) / od + 1e-9)
    if reserved + more < 1:
        hint = f", or hold one reserved at ${res:,.2f}/h with --reserved 1" if res <= usd_per_hour else ""
        raise InfeasibleError(f"--budget-usd-per-hour {usd_per_hour:g} buys no instance: the cheapest this policy "
                              f"launches, one {itype.label} on demand, costs ${od:,.2f}/h (raise the budget{hint}, "
                              "or pick a cheaper --offer or --gpu)")
    return reserved + max(0, min(wanted - reserved, more))
