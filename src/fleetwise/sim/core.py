"""The fleet simulator's event loop: arrivals, engine steps, control ticks, cold starts and spot preemption.

Every request ends in exactly one state - completed, dropped (with a reason) or unfinished when the run
stops - and may on the way be migrated (kept its generated tokens, re-prefilled its context elsewhere) or
requeued (preempted by a higher class, or restarted from its prompt). Events at equal times run in the
order they were scheduled; randomness (spot losses, fallbacks, routing choices) comes from one seed.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Callable, Sequence


from fleetwise.allocate.offers import WARNING_S
from fleetwise.errors import ConfigError
from fleetwise.perf.steps import StepModel
from fleetwise.sim.engine import Engine
from fleetwise.sim.fleet import DRAINING, PROVISIONING, ROLES, SERVING, TERMINATED, Instance, InstanceType
from fleetwise.sim.policies import Drain, FleetState, Launch, Policy, spend_cap
from fleetwise.sim.requests import PriorityClass, SimRequests

STEP, TICK, READY, NOTICE, KILL, REPLAY = range(6)
ROUTERS = ("least-work", "round-robin", "p2c")
DRAINS = ("drain", "migrate", "requeue")
# 'drain' keeps a request only if its remaining tokens at the current step time fit in this share of the notice:
# the batch shrinks as others leave (steps get faster) but new prompts no longer arrive, so 10% is slack for
# estimation error, not a measured figure.
DRAIN_MARGIN = 0.9
LATENCY_SENSITIVE_MS = 60_000.0  # classes with a TTFT target up to a minute drive scaling
MAX_HAZARD_PER_HOUR = 60.0  # a mean spot lifetime of one minute; beyond it nothing meaningful is simulated
OPEN, DONE, DROPPED = 0, 1, 2


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
        n = len(requests)
        self.arrival = requests.arrival_s.tolist()
        self.isl = requests.isl.tolist()
        self.osl = requests.osl.tolist()
        self.cls = requests.cls.tolist()
        block = spec.kv_block_tokens
        self._kvn = (-(-(requests.isl + requests.osl) // block) * block).tolist()
        self.first = [math.nan] * n
        self.finish = [math.nan] * n
        self.state = bytearray(n)
        self.carry = [0] * n
        self.assigned_work = [0] * n
        self.migrated = bytearray(n)
        self.requeued = bytearray(n)
        self.enqueued_at = [0.0] * n
        self.queues = [deque() for _ in self.classes]
        self.qlen = 0
        self.open = n
        self.heap: list = []
        self.seq = 0
        self.rng = random.Random(config.seed)  # spot losses and fallbacks
        self.route_rng = random.Random(config.seed + 1)  # so the router choice does not move the spot draws
        self.serving: list[Engine] = []
        self.instances: list[Instance] = []  # every instance ever launched (the log keeps them)
        self.live: list[Instance] = []  # not terminated: what ticks, drains and bills look at
        self.closed_usd = 0.0  # non-reserved instances already terminated
        self.reserved_peak = 0  # reservations held: the most reserved instances alive at once
        self.log = RunLog(instances=self.instances)
        self.hazard = itype.hazard_per_hour if config.hazard_per_hour is None else config.hazard_per_hour
        if not 0 <= self.hazard <= MAX_HAZARD_PER_HOUR:
            raise ConfigError(f"preemption rate must be >= 0 and <= {MAX_HAZARD_PER_HOUR:g} per instance-hour "
                              f"(got {self.hazard:g})")
        self._rr = 0
        self.kv_transfers = 0
        self._records: dict[int, dict] = {}
        self._eid = 0
        self._tick_arrivals = 0
        self._tick_ttft: list[float] = []
        self._tick_slo: list[float] = []  # TTFT / its class's target, for policies
        self._tick_tpot_slo: list[float] = []  # TPOT / its class's target, of requests finished this tick
        self._ttft_target = [c.ttft_ms for c in requests.classes]
        self._tpot_target = [c.tpot_ms for c in requests.classes]
        self._sensitive = [c.ttft_ms <= LATENCY_SENSITIVE_MS for c in requests.classes]
        self._tick_sensitive = 0
        self._progress = progress
        self.t = 0.0
        self._route = {"least-work": self._least_work, "round-robin": self._round_robin,
                       "p2c": self._two_choices}[config.router]

    # -- public ----------------------------------------------------------------------------------------
    def kv_need(self, rid: int) -> int:
        return self._kvn[rid]

    def push_step(self, t: float, engine: Engine) -> None:
        self.seq += 1
        heappush(self.heap, (t, self.seq, STEP, engine, engine.version))

    def _push(self, t: float, kind: int, obj) -> None:
        self.seq += 1
        heappush(self.heap, (t, self.seq, kind, obj, 0))

    def run(self) -> RunLog:
        """Run to the end of the trace plus the tail; returns the log (outcomes stay on the simulator)."""
        for role, count in self.policy.initial().items():
            for _ in range(count):
                self.launch(role, 0.0, warm=True)
        self._push(0.0, TICK, None)
        for t in self.cfg.preemption_times_s or ():
            self._push(float(t), REPLAY, None)
        arrival, heap = self.arrival, self.heap
        n = len(arrival)
        stop = (arrival[-1] if n else 0.0) + self.cfg.tail_s
        i = 0
        every = max(n // 100, 1)
        while True:
            ta = arrival[i] if i < n else math.inf
            if heap and heap[0][0] <= ta:
                t, _, kind, obj, ver = heappop(heap)
                if t > stop:
                    self.t = stop
                    break
                self.t = t
                if kind == STEP:
                    if obj.version == ver:
                        obj.step_end(t)
                else:
                    self._event(kind, obj, t)
            elif i < n:
                self.t = ta
                self._arrive(i, ta)
                i += 1
                if self._progress is not None and i % every == 0:
                    self._progress(i / n)
            else:
                break
            if i >= n and not self.open:
                break
        self.log.end_s = max(self.t, arrival[-1] if n else 0.0)
        if self._progress is not None:
            self._progress(1.0)
        return self.log

    # -- requests --------------------------------------------------------------------------------------
    def _arrive(self, rid: int, t: float) -> None:
        self._tick_arrivals += 1
        if self._sensitive[self.cls[rid]]:
            self._tick_sensitive += 1
        if self.isl[rid] + self.osl[rid] > self.spec.max_context:
            self._drop(rid, "exceeds_context")
            return
        if self._kvn[rid] > self.spec.kv_capacity_tokens:
            self._drop(rid, "exceeds_kv_cache")
            return
        if self.qlen and self._waiting_at_or_above(self.cls[rid]):
            self._enqueue(rid, t)
            return
        e = self._route(rid)
        if e is not None:
            self._dispatch(e, rid, t)
        elif not (self.multi and self._preempt_for(rid, t)):
            self._enqueue(rid, t)

    def _waiting_at_or_above(self, c: int) -> bool:
        return any(self.queues[j] for j in range(c + 1))

    def _dispatch(self, e: Engine, rid: int, t: float) -> None:
        gen = self.carry[rid]
        total = self.isl[rid] + gen
        work = total + self.osl[rid] - gen
        self.assigned_work[rid] = work
        e.assign(rid, total, gen, self._kvn[rid], work, self.cls[rid], t)

    def _enqueue(self, rid: int, t: float, front: bool = False) -> None:
        q = self.queues[self.cls[rid]]
        if front:
            q.appendleft(rid)
        else:
            q.append(rid)
        self.enqueued_at[rid] = t
        self.qlen += 1

    def pull(self, e: Engine, t: float) -> None:
        """An engine with room takes queued requests, highest class first, FIFO within a class."""
        while self.qlen:
            for c, q in enumerate(self.queues):
                if q:
                    break
            rid = q[0]
            wait = self.classes[c].max_wait_s
            # Work already started elsewhere (migrated, requeued) is never timed out: its client is streaming.
            if wait is not None and t - self.enqueued_at[rid] > wait and not (self.migrated[rid] or self.requeued[rid]):
                q.popleft()
                self.qlen -= 1
                self._drop(rid, "queue_timeout")
                continue
            if not e.has_room(self._kvn[rid]):
                return
            q.popleft()
            self.qlen -= 1
            self._dispatch(e, rid, t)

    def _preempt_for(self, rid: int, t: float) -> bool:
        """Make room for a request by requeueing lower-class work (recompute: generated tokens are kept)."""
        c, need = self.cls[rid], self._kvn[rid]
        for e in self.serving:
            if not e.could_make_room(c, need):
                continue
            victims = []
            while not e.has_room(need):
                v = e.victim(c)
                if v is None:
                    break
                victims.append((v, e.remove(v, t)))
            for v, gen in reversed(victims):
                self.requeued[v] = min(self.requeued[v] + 1, 255)
                self.carry[v] = gen
                self._enqueue(v, t, front=True)
            if e.has_room(need):
                self._dispatch(e, rid, t)
                return True
        return False

    def complete(self, rid: int, t: float) -> None:
        self.finish[rid] = t
        self.state[rid] = DONE
        self.open -= 1
        if self.osl[rid] > 1 and self.first[rid] == self.first[rid]:
            tpot_ms = (t - self.first[rid]) / (self.osl[rid] - 1) * 1e3
            self._tick_tpot_slo.append(tpot_ms / self._tpot_target[self.cls[rid]])

    def first_token(self, rid: int, t: float) -> None:
        if self.first[rid] != self.first[rid]:
            self.first[rid] = t
            ttft = t - self.arrival[rid] + self.spec.frontend_s
            self._tick_ttft.append(ttft)
            self._tick_slo.append(ttft * 1e3 / self._ttft_target[self.cls[rid]])

    def _drop(self, rid: int, reason: str) -> None:
        self.state[rid] = DROPPED
        self.log.drop_reasons[rid] = reason
        self.open -= 1

    # -- routing ---------------------------------------------------------------------------------------
    def _least_work(self, rid: int) -> Engine | None:
        need = self._kvn[rid]
        best, best_work = None, math.inf
        for e in self.serving:
            if e.work < best_work and e.slots < e.max_batch and e.kv_free >= need:
                best, best_work = e, e.work
        return best

    def _round_robin(self, rid: int) -> Engine | None:
        need, engines = self._kvn[rid], self.serving
        n = len(engines)
        for k in range(n):
            e = engines[(self._rr + k) % n]
            if e.has_room(need):
                self._rr = (self._rr + k + 1) % n
                return e
        return None

    def _two_choices(self, rid: int) -> Engine | None:
        need, engines = self._kvn[rid], self.serving
        if len(engines) >= 2:
            a, b = self.route_rng.sample(engines, 2)
            ok = [e for e in (a, b) if e.has_room(need)]
            if ok:
                return min(ok, key=lambda e: e.work)
        return self._least_work(rid)

    # -- instances -------------------------------------------------------------------------------------
    def launch(self, role: str, t: float, warm: bool = False, tier: str | None = None) -> Instance:
        """Request an instance; spot falls back to on-demand when the spot launch is not fulfilled."""
        if tier is None and role == "spot" and ("spot" not in self.itype.usd_per_hour
                                                or self.rng.random() >= self.cfg.spot_availability):
            tier = "on_demand"
            self.log.spot_fallbacks += 1
        elif tier is None:
            tier = role
        ready = t if warm else t + self.itype.cold_start_s
        inst = Instance(len(self.instances), role, tier, t, ready, self)
        self.instances.append(inst)
        self.live.append(inst)
        if role == "reserved":
            self.reserved_peak = max(self.reserved_peak, sum(i.role == "reserved" for i in self.live))
        if tier == "spot" and self.hazard > 0 and self.cfg.preemption_times_s is None:
            kill = t + self.rng.expovariate(self.hazard / 3600.0)
            self._push(max(t, kill - self.cfg.warning_s), NOTICE, inst)
        if warm:
            self._ready(inst, t)
        else:
            self._push(ready, READY, inst)
        return inst

    def _ready(self, inst: Instance, t: float) -> None:
        if inst.state != PROVISIONING:
            return
        inst.state = SERVING
        spec = self.spec
        for _ in range(self.itype.engines):
            e = Engine(self._eid, inst, self, spec.step_model, max_batch=spec.max_batch,
                       budget=spec.max_num_tokens, kv_cap=spec.kv_capacity_tokens,
                       classes=len(self.classes))
            self._eid += 1
            inst.engines.append(e)
            self.serving.append(e)
        for e in inst.engines:
            self.pull(e, t)
        old = inst.replaces
        if old is not None and old.state == SERVING:  # a spot instance took over from an on-demand fallback
            self.drain(old, t)

    def _stop_serving(self, inst: Instance) -> None:
        for e in inst.engines:
            e.serving = False
        self.serving = [e for e in self.serving if e.serving]

    def drain(self, inst: Instance, t: float) -> None:
        """Scale-down: cancel a provisioning instance, or stop routing to a serving one and let it empty."""
        if inst.state == PROVISIONING:
            self.terminate(inst, t)
        elif inst.state == SERVING:
            inst.state = DRAINING
            self._stop_serving(inst)
            if not inst.in_flight():
                self.terminate(inst, t)

    def terminate(self, inst: Instance, t: float) -> None:
        inst.state = TERMINATED
        inst.end_s = t
        self.live.remove(inst)
        if inst.role != "reserved":
            self.closed_usd += inst.cost_usd(t)

    def _rebalance(self, t: float) -> None:
        """Give each on-demand fallback of a spot slot one more try at spot per tick; the fallback drains once
        the spot instance serves (otherwise a long run drifts to on-demand prices)."""
        if "spot" not in self.itype.usd_per_hour:
            return
        for old in [i for i in self.live if i.role == "spot" and i.tier == "on_demand" and i.state == SERVING]:
            if any(i.replaces is old for i in self.live):
                continue
            # Both are billed while the spot instance boots: retry only if the budget has room for that.
            if not self._affordable(self.itype.price("spot")):
                continue
            if self.rng.random() < self.cfg.spot_availability:
                new = self.launch("spot", t, tier="spot")
                new.replaces = old

    def _notice(self, inst: Instance, t: float) -> None:
        """Two-minute warning: stop routing, apply the drain strategy, request a replacement at once."""
        if inst.state in (TERMINATED,) or inst.preempted:
            return
        inst.preempted = True
        record = {"t_s": t, "instance": inst.id, "state": inst.state, "kept": 0, "migrated": 0, "requeued": 0}
        self.log.preemptions.append(record)
        self._records[inst.id] = record
        was_active = inst.state in (PROVISIONING, SERVING)
        if inst.state == PROVISIONING:
            self.terminate(inst, t)
        elif inst.state in (SERVING, DRAINING):
            inst.state = DRAINING
            self._stop_serving(inst)
            self._apply_drain(inst, t, record)
            self._push(t + self.cfg.warning_s, KILL, inst)
        # A lost retry-on-spot leaves its fallback serving instead. The notified instance is billed until it
        # is reclaimed, so a replacement that would break the budget waits for the policy's next tick.
        if was_active and inst.replaces is None and self._affordable(self.itype.price("on_demand")):
            self.launch(inst.role, t)

    def usd_per_hour(self) -> float:
        """What the instances billed now cost per hour, each at its tier."""
        return sum(self.itype.price(i.tier) for i in self.live)

    def _affordable(self, price_usd_per_hour: float) -> bool:
        """Whether one more instance at this price keeps the fleet within the policy's spend cap."""
        cap = self.cap_usd_per_hour
        return cap == math.inf or self.usd_per_hour() + price_usd_per_hour <= cap * (1 + 1e-9)

    def _apply_drain(self, inst: Instance, t: float, record: dict) -> None:
        items = [(left, gen, rid, e) for e in inst.engines for rid, gen, left in e.progress(t)]
        strategy = self.cfg.drain
        if strategy == "migrate":
            items.sort(key=lambda x: x[0])  # closest to completion first
        for left, gen, rid, e in items:
            decoding = rid in e.dec
            if strategy == "drain" and decoding and left * e.estimated_step_s() <= DRAIN_MARGIN * self.cfg.warning_s:
                record["kept"] += 1
                continue
            gen = e.remove(rid, t)
            if strategy == "requeue":
                record["requeued"] += 1
                self._requeue(rid, t)
            else:
                record["migrated"] += 1
                self._migrate(rid, gen, t, source=inst, had_kv=decoding)
        self._offer_queue(t)
        if not inst.in_flight():
            self.terminate(inst, t)

    def _migrate(self, rid: int, gen: int, t: float, source: Instance | None = None, had_kv: bool = False) -> None:
        """Move a request elsewhere keeping its output so far. The target receives the KV cache over the network
        (``kv_transfer_gb_per_s``) when the source is still up and the request was decoding; otherwise it
        re-prefills prompt + output."""
        self.migrated[rid] = min(self.migrated[rid] + 1, 255)
        self.carry[rid] = gen
        e = None if self.qlen and self._waiting_at_or_above(self.cls[rid] - 1) else self._route(rid)
        if e is None:
            self._enqueue(rid, t, front=True)
            return
        bandwidth = self.cfg.kv_transfer_gb_per_s * 1e9 if source is not None and had_kv else 0.0
        if bandwidth > 0 and self.spec.kv_bytes_per_token > 0:
            context = self.isl[rid] + gen
            ready = t + context * self.spec.kv_bytes_per_token / bandwidth
            work = self.osl[rid] - gen
            self.assigned_work[rid] = work
            self.kv_transfers += 1
            e.assign_transfer(rid, gen, context, ready, self._kvn[rid], work, self.cls[rid], t)
        else:
            self._dispatch(e, rid, t)

    def _requeue(self, rid: int, t: float) -> None:
        """Restart from the prompt: output so far is discarded, so the first token is measured again."""
        self.requeued[rid] = min(self.requeued[rid] + 1, 255)
        self.carry[rid] = 0
        self.first[rid] = math.nan
        self._enqueue(rid, t, front=True)

    def _kill(self, inst: Instance, t: float) -> None:
        if inst.state == TERMINATED:
            return
        record = self._records[inst.id]
        for e in inst.engines:
            for rid, _, _ in e.progress(t):
                gen = e.remove(rid, t)
                if self.cfg.drain == "requeue":  # KV is gone: restart, or re-prefill the output the client has
                    record["requeued"] += 1
                    self._requeue(rid, t)
                else:
                    record["migrated"] += 1
                    self._migrate(rid, gen, t)
            e.version += 1  # cancel its scheduled step
            e.busy_until = -1.0
        self.terminate(inst, t)
        self._offer_queue(t)

    def _offer_queue(self, t: float) -> None:
        """Let every serving engine with room take queued work now (requeues do not wait for a step end)."""
        for e in self.serving:
            if not self.qlen:
                return
            if e.slots < e.max_batch:
                self.pull(e, t)

    def _replay_notice(self, t: float) -> None:
        spot = [i for i in self.live if i.tier == "spot" and i.state in (SERVING, PROVISIONING)
                and not i.preempted]
        if spot:
            self._notice(min(spot, key=lambda i: i.requested_s), t)

    # -- control ---------------------------------------------------------------------------------------
    def _event(self, kind: int, obj, t: float) -> None:
        if kind == TICK:
            self._tick(t)
        elif kind == READY:
            self._ready(obj, t)
        elif kind == NOTICE:
            self._notice(obj, t)
        elif kind == KILL:
            self._kill(obj, t)
        elif kind == REPLAY:
            self._replay_notice(t)

    def fleet_state(self, t: float) -> FleetState:
        interval = self.cfg.control_interval_s
        active = dict.fromkeys(ROLES, 0)
        serving = dict.fromkeys(ROLES, 0)
        usd = draining = 0.0
        in_flight = 0
        for inst in self.live:
            usd += self.itype.price(inst.tier)  # draining instances are billed too
            if inst.state == DRAINING:
                draining += self.itype.price(inst.tier)
            if inst.state in (SERVING, DRAINING):
                in_flight += inst.in_flight()
            if inst.state == SERVING or (inst.state == PROVISIONING and inst.replaces is None):
                active[inst.role] += 1
                if inst.state == SERVING:
                    serving[inst.role] += 1
        return FleetState(
            t=t, interval_s=interval, active=active, serving=serving, in_flight=in_flight, queued=self.qlen,
            slo_slots=len(self.serving) * self.spec.slo_batch, arrivals_rps=self._tick_arrivals / interval,
            ttft_p95_ms=_p95(self._tick_ttft, 1e3), usd_per_hour=usd, itype=self.itype,
            capacity_rps_per_instance=self.capacity_rps,
            ttft_slo_ratio_p95=_p95(self._tick_slo), urgent_queued=self._urgent_queued(t),
            tpot_slo_ratio_p95=_p95(self._tick_tpot_slo),
            load=self._sensitive_load(interval) if self.multi else None, draining_usd_per_hour=draining,
        )

    def _sensitive_load(self, interval: float) -> tuple[int, int, float]:
        classes = [c for c, s in enumerate(self._sensitive) if s]
        in_flight = sum(e.class_count[c] for i in self.live for e in i.engines for c in classes)
        queued = sum(len(self.queues[c]) for c in classes)
        return in_flight, queued, self._tick_sensitive / interval

    def _urgent_queued(self, t: float) -> int:
        """Queued requests that have waited half their class's TTFT target (batch work waits by design)."""
        n = 0
        for c, q in enumerate(self.queues):
            limit = self._ttft_target[c] / 2e3  # half the target: late enough to matter, early enough to act
            if q and math.isfinite(limit):
                n += sum(1 for rid in q if t - self.enqueued_at[rid] >= limit)
        return n

    def _tick(self, t: float) -> None:
        state = self.fleet_state(t)
        provisioning = {r: state.active[r] - state.serving[r] for r in ROLES}
        self.log.ticks.append(Tick(t, state.serving, provisioning, state.arrivals_rps, state.in_flight,
                                   state.queued, state.ttft_p95_ms, self.cost_so_far(t)))
        self._tick_arrivals = 0
        self._tick_sensitive = 0
        self._tick_ttft = []
        self._tick_slo = []
        self._tick_tpot_slo = []
        for action in self.policy.decide(state):
            self._act(action, t)
        self._rebalance(t)
        self._push(t + self.cfg.control_interval_s, TICK, None)

    def _act(self, action, t: float) -> None:
        if action.role not in ROLES or action.count < 0:
            raise ConfigError(f"policy {self.policy.name}: bad action {action}")
        if isinstance(action, Launch):
            for _ in range(action.count):
                self.launch(action.role, t)
        elif isinstance(action, Drain):
            mine = [i for i in self.live if i.role == action.role and i.state in (PROVISIONING, SERVING)]
            # Cancel instances still provisioning first, then on-demand fallbacks, then the least busy.
            mine.sort(key=lambda i: (i.state == SERVING, i.tier == i.role, i.in_flight()))
            for inst in mine[: action.count]:
                self.drain(inst, t)

    def cost_so_far(self, t: float) -> float:
        """USD billed up to ``t``: the reservations held (the most reserved instances alive at once) for all of
        it, other instances from request to termination."""
        usd = self.closed_usd + self.reserved_peak * t * self.itype.price("reserved") / 3600.0
        for inst in self.live:
            if inst.role != "reserved":
                usd += inst.cost_usd(t)
        return usd


def _p95(values: list[float], scale: float = 1.0) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(int(0.95 * len(ordered)), len(ordered) - 1)] * scale
