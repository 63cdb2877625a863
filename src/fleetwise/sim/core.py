"""The fleet simulator: one run's configuration, and the :class:`Simulator` that wires its parts together and
runs the control loop (a policy's decision every control interval).

The parts, one module each: the event loop (:mod:`~fleetwise.sim.events`), the request side - queues,
admission, migration (:mod:`~fleetwise.sim.dispatch`), routers (:mod:`~fleetwise.sim.routers`), the engines'
batching step model (:mod:`~fleetwise.sim.engine`), instance lifecycle - launch, cold start, drain, spot
preemption (:mod:`~fleetwise.sim.lifecycle`) and billing (:mod:`~fleetwise.sim.billing`).

Every request ends in exactly one state - completed, dropped (with a reason) or unfinished when the run
stops. Events at equal times run in the order they were scheduled; randomness (spot losses, fallbacks,
routing choices) comes from one seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fleetwise.allocate.offers import WARNING_S
from fleetwise.errors import ConfigError
from fleetwise.perf.steps import StepModel
from fleetwise.sim.billing import Ledger
from fleetwise.sim.dispatch import DONE, DROPPED, LATENCY_SENSITIVE_MS, OPEN, Dispatcher
from fleetwise.sim.events import KILL, NOTICE, READY, REPLAY, STEP, TICK, EventQueue, run_loop
from fleetwise.sim.fleet import DRAINING, PROVISIONING, ROLES, SERVING, Instance, InstanceType
from fleetwise.sim.lifecycle import DRAIN_MARGIN, DRAINS, Lifecycle
from fleetwise.sim.policies import Drain, FleetState, Launch, Policy, spend_cap
from fleetwise.sim.requests import PriorityClass, SimRequests
from fleetwise.sim.routers import ROUTERS, make_router

__all__ = [  # DONE, ROUTERS, DRAINS... are re-exported: tests and callers import them from here
    "DONE", "DRAINS", "DRAIN_MARGIN", "DROPPED", "KILL", "LATENCY_SENSITIVE_MS", "MAX_HAZARD_PER_HOUR", "NOTICE",
    "OPEN", "READY", "REPLAY", "ROUTERS", "STEP", "TICK", "EngineSpec", "RunLog", "SimConfig", "Simulator", "Tick",
]

MAX_HAZARD_PER_HOUR = 60.0  # a mean spot lifetime of one minute; beyond it nothing meaningful is simulated


@dataclass(frozen=True)
class EngineSpec:
    """What every engine of the fleet is: its step-time model and batch / KV limits."""

    step_model: StepModel
    max_batch: int
    max_num_tokens: int
    kv_capacity_tokens: int
    kv_block_tokens: int
    slo_batch: int  # largest batch whose steady-state step meets the TPOT target
    max_context: int = 1 << 62  # the model's context window (prompt + output)
    frontend_s: float = 0.0  # serving-frontend latency added to every TTFT (as fleetwise perf does)
    kv_bytes_per_token: float = 0.0  # whole model: what a KV transfer moves per token of context


@dataclass(frozen=True)
class SimConfig:
    """Options of one simulated run (times in seconds)."""

    router: str = "least-work"
    drain: str = "drain"
    """On a 2-minute notice: 'drain' keeps requests that will finish in time and migrates the rest;
    'migrate' moves all, closest to completion first; 'requeue' restarts all from their prompt."""
    control_interval_s: float = 60.0
    spot_availability: float = 0.9
    """Probability that a spot launch is fulfilled; otherwise it falls back to on-demand (an assumption: no
    public data gives launch-success rates; set it from your own fleet's history)."""
    hazard_per_hour: float | None = None
    """Spot interruptions per instance-hour (default: the instance type's)."""
    preemption_times_s: tuple[float, ...] | None = None
    """Replay: notices at these times, each taking the oldest serving spot instance (instead of sampling)."""
    warning_s: float = WARNING_S
    tail_s: float = 1800.0
    """How long after the last arrival the run continues before leftovers count as unfinished (half an hour:
    long enough for any backlog a fleet that keeps up could hold; a run that needs more is overloaded)."""
    seed: int = 0
    kv_transfer_gb_per_s: float = 0.0
    """Network bandwidth for moving a migrating request's KV cache to another node (e.g. RDMA/EFA); 0 = the
    target re-prefills prompt + output instead. (Every migration here crosses nodes: a spot reclaim takes the
    whole node, so no target shares the source's GPU interconnect.)"""

    def __post_init__(self) -> None:
        if self.router not in ROUTERS:
            raise ConfigError(f"unknown router '{self.router}' (one of {', '.join(ROUTERS)})")
        if self.drain not in DRAINS:
            raise ConfigError(f"unknown drain strategy '{self.drain}' (one of {', '.join(DRAINS)})")
        if self.control_interval_s <= 0 or self.warning_s < 0 or self.tail_s < 0:
            raise ConfigError("control interval must be > 0; warning and tail >= 0 seconds")
        if not (self.kv_transfer_gb_per_s >= 0 and math.isfinite(self.kv_transfer_gb_per_s)):
            raise ConfigError("KV transfer bandwidth must be >= 0 GB/s")
        if not 0 <= self.spot_availability <= 1:
            raise ConfigError("spot availability must be within [0, 1]")
        if self.hazard_per_hour is not None and not 0 <= self.hazard_per_hour <= MAX_HAZARD_PER_HOUR:
            raise ConfigError(f"preemption rate must be >= 0 and <= {MAX_HAZARD_PER_HOUR:g} per instance-hour (at "
                              "higher rates most spot instances are lost before they boot)")
        if self.preemption_times_s is not None and any(not (t >= 0 and math.isfinite(t))
                                                       for t in self.preemption_times_s):
            raise ConfigError("replayed preemption times must be finite and >= 0 seconds")


@dataclass
class Tick:
    """One row of the timeline (state at a control tick)."""

    t: float
    serving: dict[str, int]
    provisioning: dict[str, int]
    arrivals_rps: float
    in_flight: int
    queued: int
    ttft_p95_ms: float
    cost_usd: float


@dataclass
class RunLog:
    """What happened besides per-request outcomes."""

    ticks: list[Tick] = field(default_factory=list)
    preemptions: list[dict] = field(default_factory=list)
    instances: list[Instance] = field(default_factory=list)
    spot_fallbacks: int = 0
    end_s: float = 0.0
    drop_reasons: dict[int, str] = field(default_factory=dict)


def _part(part: str, name: str) -> property:
    """A read-only attribute of the simulator that one of its parts holds."""
    return property(lambda self: getattr(getattr(self, part), name), doc=f"``{part}.{name}``")


class Simulator:
    """Replays requests through a fleet driven by a policy. Build one per run; call :meth:`run`."""

    def __init__(self, requests: SimRequests, itype: InstanceType, spec: EngineSpec, policy: Policy,
                 config: SimConfig = SimConfig(), capacity_rps_per_instance: float = math.nan,
                 progress: Callable[[float], None] | None = None) -> None:
        self.reqs = requests
        self.itype, self.spec, self.policy, self.cfg = itype, spec, policy, config
        self.cap_usd_per_hour = spend_cap(policy)
        self.capacity_rps = capacity_rps_per_instance
        self.classes: Sequence[PriorityClass] = requests.classes
        self.multi = len(self.classes) > 1
        self.hazard = itype.hazard_per_hour if config.hazard_per_hour is None else config.hazard_per_hour
        if not 0 <= self.hazard <= MAX_HAZARD_PER_HOUR:
            raise ConfigError(f"preemption rate must be >= 0 and <= {MAX_HAZARD_PER_HOUR:g} per instance-hour "
                              f"(got {self.hazard:g})")
        self.log = RunLog()
        self.events = EventQueue()
        self.ledger = Ledger(itype)
        router = make_router(config.router, random.Random(config.seed + 1))  # the router does not move spot draws
        self.dispatch = Dispatcher(requests, spec, router, self.events.push_step, self.log.drop_reasons,
                                   config.kv_transfer_gb_per_s)
        self.fleet = Lifecycle(itype, spec, config, self.hazard, random.Random(config.seed), self.events,
                               self.dispatch, self.ledger, self.log, self.cap_usd_per_hour)
        self._progress = progress

    # -- what a finished run is read by (simulation_result, tests), held by its parts ------------------------
    instances = _part("fleet", "instances")  # every instance ever launched
    live = _part("fleet", "live")  # instances not terminated
    reserved_peak = _part("ledger", "reserved_peak")
    state = _part("dispatch", "state")  # per request: OPEN, DONE or DROPPED
    first = _part("dispatch", "first")  # per request: time of its first token (NaN if none)
    finish = _part("dispatch", "finish")
    carry = _part("dispatch", "carry")  # per request: output tokens kept when it last moved
    migrated = _part("dispatch", "migrated")
    requeued = _part("dispatch", "requeued")
    queues = _part("dispatch", "queues")
    qlen = _part("dispatch", "qlen")
    kv_transfers = _part("dispatch", "kv_transfers")

    # -- the run ---------------------------------------------------------------------------------------
    def run(self) -> RunLog:
        """Run to the end of the trace plus the tail; returns the log (outcomes stay on the simulator)."""
        for role, count in self.policy.initial().items():
            for _ in range(count):
                self.fleet.launch(role, 0.0, warm=True)
        self.events.push(0.0, TICK)
        for t in self.cfg.preemption_times_s or ():
            self.events.push(float(t), REPLAY)
        arrival = self.dispatch.arrival
        last = arrival[-1] if arrival else 0.0
        d = self.dispatch
        end = run_loop(self.events, arrival, last + self.cfg.tail_s, d.arrive, self._event, d.open_requests,
                       self._progress)
        self.log.end_s = max(end, last)
        return self.log

    def _event(self, kind: int, obj, t: float) -> None:
        if kind == TICK:
            self._tick(t)
        elif kind == READY:
            self.fleet.ready(obj, t)
        elif kind == NOTICE:
            self.fleet.notice(obj, t)
        elif kind == KILL:
            self.fleet.kill(obj, t)
        elif kind == REPLAY:
            self.fleet.replay_notice(t)

    # -- control ---------------------------------------------------------------------------------------
    def fleet_state(self, t: float) -> FleetState:
        """What the policy sees at a tick: instances by role and state, load, latency and spend."""
        interval = self.cfg.control_interval_s
        active = dict.fromkeys(ROLES, 0)
        serving = dict.fromkeys(ROLES, 0)
        in_flight = 0
        live = self.fleet.live
        for inst in live:
            if inst.state in (SERVING, DRAINING):
                in_flight += inst.in_flight()
            if inst.state == SERVING or (inst.state == PROVISIONING and inst.replaces is None):
                active[inst.role] += 1
                if inst.state == SERVING:
                    serving[inst.role] += 1
        d = self.dispatch
        return FleetState(
            t=t, interval_s=interval, active=active, serving=serving, in_flight=in_flight, queued=d.qlen,
            slo_slots=len(d.serving) * self.spec.slo_batch, arrivals_rps=d.tick_arrivals / interval,
            ttft_p95_ms=_p95(d.tick_ttft, 1e3), usd_per_hour=self.ledger.usd_per_hour(live), itype=self.itype,
            capacity_rps_per_instance=self.capacity_rps,
            ttft_slo_ratio_p95=_p95(d.tick_slo), urgent_queued=d.urgent_queued(t),
            tpot_slo_ratio_p95=_p95(d.tick_tpot_slo),
            load=self._sensitive_load(interval) if self.multi else None,
            draining_usd_per_hour=self.ledger.usd_per_hour(i for i in live if i.state == DRAINING),  # billed too
        )

    def _sensitive_load(self, interval: float) -> tuple[int, int, float]:
        classes = self.dispatch.sensitive_classes()
        in_flight = sum(e.class_count[c] for i in self.fleet.live for e in i.engines for c in classes)
        queued = sum(len(self.dispatch.queues[c]) for c in classes)
        return in_flight, queued, self.dispatch.tick_sensitive / interval

    def _tick(self, t: float) -> None:
        state = self.fleet_state(t)
        provisioning = {r: state.active[r] - state.serving[r] for r in ROLES}
        self.log.ticks.append(Tick(t, state.serving, provisioning, state.arrivals_rps, state.in_flight,
                                   state.queued, state.ttft_p95_ms, self.cost_so_far(t)))
        self.dispatch.reset_tick()
        for action in self.policy.decide(state):
            self._act(action, t)
        self.fleet.rebalance(t)
        self.events.push(t + self.cfg.control_interval_s, TICK)

    def _act(self, action, t: float) -> None:
        if action.role not in ROLES or action.count < 0:
            raise ConfigError(f"policy {self.policy.name}: bad action {action}")
        if isinstance(action, Launch):
            for _ in range(action.count):
                self.fleet.launch(action.role, t)
        elif isinstance(action, Drain):
            self.fleet.drain_count(action.role, action.count, t)

    def cost_so_far(self, t: float) -> float:
        """USD billed up to ``t``: the reservations held (the most reserved instances alive at once) for all of
        it, other instances from request to termination."""
        return self.ledger.cost_so_far(t, self.fleet.live)

    def usd_per_hour(self) -> float:
        """What the instances billed now cost per hour, each at its tier."""
        return self.ledger.usd_per_hour(self.fleet.live)


def _p95(values: list[float], scale: float = 1.0) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(int(0.95 * len(ordered)), len(ordered) - 1)] * scale
