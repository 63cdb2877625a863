"""The running controller: observe the live fleet, decide with the simulator's policy, record, act.

One reconcile step (every ``fast_interval_s``; the policy's slow part re-optimizes every ``interval_s``)::

    workers  = actuator.observe()                 # what exists (a restarted controller adopts it)
    metrics  = source.sample(workers)             # each worker's vLLM counters, gauges, histograms
    notices  = poll spot metadata of spot workers # AWS / GCP / Azure formats
    state    = FleetState(...)                    # the same record the simulator gives a policy
    actions  = policy.decide(state)               # Hybrid: forecast + MILP floor, reactive net above it
    plan     = desired per (pool, tier), draining, remove
    store.put("intent", plan)                     # intent first ...
    actuator.apply(plan)                          # ... then act (active mode only)

``desired`` counts workers that exist or are coming and take new work; draining workers are outside it, so a
spot notice (worker -> draining) makes the next apply launch its replacement at once. A spot request not
granted within ``spot_grant_timeout_s`` is withdrawn and replaced on-demand; after ``back_to_spot_s`` one
such fallback per step moves back to spot. A draining worker is removed when its scrape shows no request
running or waiting, or after ``drain_timeout_s`` - but never within ``ROUTER_GRACE_S`` wall seconds of being
marked, nor of this controller's first step: the routers that read ``/api/backends`` (the gateway every
second, the replay every half second) must have seen it leave the list, or they send it requests after it
is gone (Kubernetes' endpoint-propagation delay, the reason for a preStop sleep).

Stale or NaN metrics (a serving worker that did not answer its scrape) hold the fleet: no policy decision,
reason ``hold_stale``; spot notices and drains are still handled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from fleetwise.control.observe import Observation, observe
from fleetwise.control.types import (
    PENDING,
    SERVING,
    TERMINATING,
    TIERS,
    Actuator,
    Decision,
    FleetPlan,
    MetricsSource,
    Store,
    Worker,
)
from fleetwise.errors import ActuatorError, ConfigError

MODES = ("advisory", "active", "noop")
POLICIES = ("hybrid", "rolling", "reactive")
STEP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)  # decision latency histogram
ROUTER_GRACE_S = 2.0  # wall seconds: two polls of the slowest router reading /api/backends (the gateway's)
NOTICE_PATHS = {"aws": "/latest/meta-data/spot/instance-action", "gcp": "/computeMetadata/v1/instance/preempted",
                "azure": "/metadata/scheduledevents"}


@dataclass(frozen=True)
class ControlConfig:
    """What the controller runs and how (times in controlled seconds: emulated ones with ``time_scale``).

    Attributes:
        model, gpu, gpus, precision, engine: the replica every worker is (as ``fleetwise simulate``).
        offer: instance offer whose prices and spot rate apply (default: the cheapest for the replica).
        ttft_ms, tpot_ms: SLO targets at p95.
        mode: ``advisory`` (decide, record, expose; change nothing), ``active`` (also act), ``noop``
            (observe and expose only).
        interval_s: the slow loop's period (forecast + rolling MILP).
        fast_interval_s: the reconcile step's period.
        time_scale: the workers' clock runs this many times faster than the wall clock.
        cooldown_s: no scale-down within this long after a scale-up or of a load seen within it.
        drain_timeout_s: a draining worker is removed after this long even with requests left.
        spot_grant_timeout_s: a spot request not granted by then is replaced with on-demand.
        back_to_spot_s: an on-demand fallback is moved back to spot after this long.
        initial: workers by tier when the store holds no earlier decision.
        max_workers: the most workers the controller asks for.
        policy: ``hybrid`` (forecast floor + reactive net; the default), ``rolling`` (forecast + MILP only) or
            ``reactive`` (thresholds only) - the simulator's policies of the same names.
        budget_usd_per_hour: the desired fleet never costs more per hour (trimmed on-demand first, then spot;
            a spot worker counted at the on-demand price, since its request may fall back).
        notice_kind: spot notice format polled on spot workers (aws, gcp, azure).
        cold_start_s: a worker's start-up time the policy plans launches ahead by (default: the perf
            model's estimate for the replica).
        capacity_rps: requests/s one worker serves within the SLO, the unit the policy sizes in (default: the
            perf model's closed-form goodput at ``mean_isl`` / ``mean_osl``; ``fleetwise plan`` verifies one on
            the workload's length distribution, which heavy-tailed traffic needs).
    """

    model: str = "llama-3.1-8b"
    gpu: str = "h100"
    gpus: int = 1
    precision: str = "fp8"
    engine: str = "vllm"
    offer: str | None = None
    ttft_ms: float = 1000.0
    tpot_ms: float = 50.0
    mode: str = "advisory"
    interval_s: float = 300.0
    fast_interval_s: float = 10.0
    time_scale: float = 1.0
    cooldown_s: float = 300.0
    drain_timeout_s: float = 120.0
    spot_grant_timeout_s: float = 60.0
    back_to_spot_s: float = 1800.0
    initial: tuple[tuple[str, int], ...] = (("on_demand", 1),)
    max_workers: int = 64
    notice_kind: str = "aws"
    cold_start_s: float | None = None
    mean_isl: float = 1000.0
    mean_osl: float = 250.0
    budget_usd_per_hour: float | None = None
    policy: str = "hybrid"
    capacity_rps: float | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"unknown policy '{self.policy}' (one of {', '.join(POLICIES)})")
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode '{self.mode}' (one of {', '.join(MODES)})")
        if self.notice_kind not in NOTICE_PATHS:
            raise ConfigError(f"unknown spot notice kind '{self.notice_kind}' (one of {', '.join(NOTICE_PATHS)})")
        for name in ("interval_s", "fast_interval_s", "time_scale"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"{name.replace('_', ' ')} must be a finite number > 0")
        if self.fast_interval_s > self.interval_s:
            raise ConfigError("the fast interval must not be longer than the slow interval")
        bad = [t for t, n in self.initial if t not in TIERS or n < 0]
        if bad:
            raise ConfigError(f"initial workers: unknown tier or negative count for '{bad[0]}'")
        if self.max_workers < 1:
            raise ConfigError("max workers must be >= 1")
        if self.capacity_rps is not None and not (math.isfinite(self.capacity_rps) and self.capacity_rps > 0):
            raise ConfigError("the capacity per worker must be a finite number > 0 requests/s")
        if self.budget_usd_per_hour is not None and not (math.isfinite(self.budget_usd_per_hour)
                                                         and self.budget_usd_per_hour > 0):
            raise ConfigError("the budget must be a finite number > 0 USD per hour")


@dataclass
class Snapshot:
    """What the API and /metrics show: the last step's view."""

    t: float = math.nan
    workers: list[Worker] = field(default_factory=list)
    desired: dict[str, int] = field(default_factory=dict)
    draining: dict[str, float] = field(default_factory=dict)
    observation: Observation | None = None
    forecast_rps: float = math.nan
    capacity_rps: float = math.nan
    usd_per_hour: float = 0.0
    notices_total: int = 0
    decisions_total: dict[tuple[str, str], int] = field(default_factory=dict)
    actuator_errors: int = 0
    last_step: dict[str, float] = field(default_factory=dict)  # loop -> wall time
    step_buckets: dict[str, list[int]] = field(default_factory=dict)  # loop -> cumulative counts per bound
    step_sum_s: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # per step: t, demand, capacity, cost, desired, p95s
    last_error: str = ""


class Controller:
    """Observe -> decide -> record -> act; see the module docstring. Build with :func:`build_controller`."""

    def __init__(self, config: ControlConfig, actuator: Actuator, source: MetricsSource, store: Store,
                 spec=None, policy=None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.actuator = actuator
        self.source = source
        self.store = store
        self.clock = clock
        self.spec = spec if spec is not None else _fleet_spec(config)
        self.itype = _worker_type(self.spec, config)
        self.capacity_per_worker = config.capacity_rps or \
            self.spec.capacity_rps_per_instance / self.spec.replicas_per_instance
        self.pool = getattr(actuator, "pool", None) or self.spec.offer.id
        initial = dict(config.initial)
        self.policy = policy if policy is not None else _policy(config, max(1, sum(initial.values())))
        self.snapshot = Snapshot()
        self._noticed: set[str] = set()
        self._http = None
        self._external: list = []  # replica changes someone else made (kubectl scale, an HPA)
        self.last_decide_s = math.nan
        self.listed_since = math.nan  # clock() of the first step: /api/backends answers from then on
        self._restore(initial)

    # -- durable state ----------------------------------------------------------------------------------
    def _restore(self, initial: dict[str, int]) -> None:
        """Read the last intent and the demand history (a restarted controller continues where it stopped)."""
        saved = self.store.get("intent") or {}
        self.desired = {t: int(saved.get("desired", {}).get(t, initial.get(t, 0))) for t in TIERS}
        self.draining: dict[str, float] = {k: float(v) for k, v in saved.get("draining", {}).items()}
        self.fallbacks: list[float] = [float(x) for x in saved.get("fallbacks", [])]
        clock = self.store.get("clock")
        if clock is None:
            clock = {"wall0": self.clock()}
            self.store.put("clock", clock)
        self.wall0 = float(clock["wall0"])
        self._samples = {k: _metrics_from(v) for k, v in (self.store.get("samples") or {}).items()}
        policy_state = self.store.get("policy")
        if policy_state and hasattr(self.policy, "load_state"):
            self.policy.load_state(policy_state)  # cooldowns, floor, demand history, the slow loop's schedule
        self.snapshot.notices_total = int(self.store.get("notices_total") or 0)

    def _slow(self):
        """The policy's forecasting part (a Rolling policy, or the slow loop of a Hybrid one), if any."""
        slow = getattr(self.policy, "slow", self.policy)
        return slow if hasattr(slow, "forecast") and hasattr(slow, "_arrivals") else None

    def now(self) -> float:
        """Controlled time: seconds since the controller first started, on the workers' clock."""
        return (self.clock() - self.wall0) * self.config.time_scale

    def _persist(self, remove: set[str]) -> None:
        self.store.put("intent", {"desired": self.desired, "draining": self.draining, "remove": sorted(remove),
                                  "fallbacks": self.fallbacks, "t": self.now()})
        if hasattr(self.policy, "state_dict"):
            self.store.put("policy", self.policy.state_dict())
        # the last scrape of each worker: a restarted controller's first step then has a window to measure
        self.store.put("samples", {k: dataclasses.asdict(m) for k, m in self._samples.items()})

    # -- one step ---------------------------------------------------------------------------------------
    async def step(self) -> Decision | None:
        """One reconcile step; returns the decision recorded (None when nothing was decided)."""
        started = time.perf_counter()
        try:
            workers = await asyncio.to_thread(self.actuator.observe)
        except ActuatorError as exc:
            return self._actuator_failed(exc)
        samples = await self.source.sample([w for w in workers if w.state != PENDING])
        obs = observe(workers, samples, self._samples, self.config.ttft_ms / 1e3, self.config.tpot_ms / 1e3,
                      self.config.time_scale)
        present = {w.id for w in workers}
        self._samples = {k: v for k, v in {**self._samples, **samples}.items() if k in present}
        noticed = await self._poll_notices(workers)
        remove = self._drained(workers, samples) | self._spot_fallback(workers)
        decision = self._decide(workers, obs, noticed)
        if self.config.mode == "active":
            remove |= self._surplus(workers, samples)
        plan = self._plan(remove)
        if self.config.mode != "noop":
            await asyncio.to_thread(self._persist, remove)
        if self.config.mode == "active":
            try:
                await asyncio.to_thread(self.actuator.apply, plan)
            except ActuatorError as exc:
                self._actuator_failed(exc)
            self._external = list(getattr(self.actuator, "external_changes", None) or [])
        self.last_decide_s = time.perf_counter() - started  # observe -> act: the reaction time
        if decision is not None and self.config.mode != "noop":
            decision = await self._record(decision, obs)
        self._expose(workers, obs, decision, time.perf_counter() - started)
        return decision

    def _actuator_failed(self, exc: ActuatorError) -> None:
        self.snapshot.actuator_errors += 1
        self.snapshot.last_error = str(exc)

    async def _poll_notices(self, workers: list[Worker]) -> list[str]:
        """Spot workers whose cloud metadata announces an interruption (newly seen ones)."""
        spot = [w for w in workers if w.tier == "spot" and w.url and w.state != PENDING
                and w.id not in self._noticed and w.id not in self.draining]  # draining: noticed before a restart
        if not spot:
            return []
        got = await asyncio.gather(*(_notice(self._client(), w.url, self.config.notice_kind) for w in spot))
        new = [w.id for w, hit in zip(spot, got) if hit]
        for wid in new:
            self._noticed.add(wid)
            self.draining.setdefault(wid, self.now())
        self.snapshot.notices_total += len(new)
        if new:  # a SQLite/PostgreSQL write: off the event loop
            await asyncio.to_thread(self.store.put, "notices_total", self.snapshot.notices_total)
        return new

    def _client(self):
        """An HTTP client of the running event loop (a controller may be stepped from several loops in tests)."""
        import httpx

        loop = asyncio.get_running_loop()
        if self._http is None or self._http[0] is not loop:
            self._http = (loop, httpx.AsyncClient(timeout=1.0))
        return self._http[1]

    def _drained(self, workers: list[Worker], samples: dict) -> set[str]:
        """Draining workers to remove now: idle or past the drain timeout, once the routers have seen them
        leave the backends list (see the module docstring); and forget those already gone."""
        present = {w.id for w in workers}
        now, out = self.now(), set()
        listed_s = self.clock() - self.listed_since if math.isfinite(self.listed_since) else 0.0
        for wid, since in list(self.draining.items()):
            m = samples.get(wid)
            idle = m is not None and m.complete and m.running + m.waiting == 0
            seen = min((now - since) / self.config.time_scale, listed_s) >= ROUTER_GRACE_S
            if wid not in present:
                del self.draining[wid]
                self._noticed.discard(wid)
            elif seen and (idle or now - since >= self.config.drain_timeout_s):
                out.add(wid)
        return out

    def _surplus(self, workers: list[Worker], samples: dict) -> set[str]:
        """Workers beyond the desired count of their tier, chosen to cost the least to lose: requests not yet
        granted or still booting are withdrawn at once (returned, to remove); serving ones with the fewest
        requests running and waiting are marked draining (no new work; removed once idle, see _drained) -
        but only while more workers serve than are desired in all, so a move between tiers (back to spot)
        drains the old worker once its replacement serves."""
        now, remove = self.now(), set()
        serving = sum(1 for w in workers if w.state == SERVING and w.id not in self.draining)
        spare = serving - sum(self.desired.values())  # never drain below the desired total while others boot
        for tier in TIERS:
            mine = [w for w in workers if w.tier == tier and w.id not in self.draining and w.state != TERMINATING]
            extra = len(mine) - self.desired.get(tier, 0)
            if extra <= 0:
                continue
            def cost_to_lose(w: Worker) -> tuple:
                m = samples.get(w.id)
                busy = m.running + m.waiting if m is not None and m.complete else math.inf
                return ({PENDING: 0, SERVING: 2}.get(w.state, 1), busy, -w.launched_at)
            for w in sorted(mine, key=cost_to_lose)[:extra]:
                if w.state != SERVING:
                    remove.add(w.id)
                elif spare > 0:
                    self.draining[w.id] = now
                    spare -= 1
        return remove

    def _spot_fallback(self, workers: list[Worker]) -> set[str]:
        """Withdraw spot requests not granted in time (replaced on-demand); move old fallbacks back to spot."""
        now, out = self.now(), set()
        for w in workers:
            if w.tier == "spot" and w.state == PENDING and w.id not in self.draining and \
                    (self.clock() - w.launched_at) * self.config.time_scale >= self.config.spot_grant_timeout_s:
                out.add(w.id)
                self.draining[w.id] = now
                self.fallbacks.append(now)
                self._shift("spot", "on_demand")
        if self.fallbacks and now - self.fallbacks[0] >= self.config.back_to_spot_s:
            self.fallbacks.pop(0)
            self._shift("on_demand", "spot")
        return out

    def _shift(self, src: str, dst: str) -> None:
        if self.desired.get(src, 0) > 0:
            self.desired[src] -= 1
            self.desired[dst] = self.desired.get(dst, 0) + 1

    # -- the policy ---------------------------------------------------------------------------------------
    def _decide(self, workers: list[Worker], obs: Observation, noticed: list[str]) -> Decision | None:
        before = dict(self.desired)
        reason, loop = None, "fast"
        if noticed:
            reason, loop = "spot_notice", "spot"
        if self.config.mode == "noop":
            return None
        if self._external:
            return self._rebaseline(workers, obs, before)
        if obs.stale or not math.isfinite(obs.arrivals_rps):
            return self._decision("hold_stale" if obs.stale else reason or "steady", loop, before, obs) \
                if (obs.stale or reason) else None
        state = self._state(workers, obs)
        slow = self._slow()
        next_slow = getattr(slow, "_next_s", None)
        # a fresh policy's first call only sets up its optimizer; a restored one decides on its schedule
        started = getattr(slow, "_opt", None) is not None or bool(getattr(slow, "_next_s", 0.0))
        actions = self.policy.decide(state)
        if slow is not None and started and slow._next_s != next_slow:
            loop = "slow"
            self.snapshot.forecast_rps = _forecast(slow)
        from fleetwise.sim.policies import Launch

        for a in actions:
            n = a.count if isinstance(a, Launch) else -a.count
            self.desired[a.role] = max(0, self.desired.get(a.role, 0) + n)
        self._cap()
        changed = self.desired != before
        if not (changed or loop == "slow" or reason):
            return None
        why = reason or (getattr(self.policy, "reason", "steady") if changed else "forecast")
        return self._decision(why, loop, before, obs)

    def _rebaseline(self, workers: list[Worker], obs: Observation, before: dict[str, int]) -> Decision:
        """Someone else changed the fleet's size: adopt what exists instead of fighting it (reason
        ``reconcile``); the policy decides from there at the next step."""
        # drains this controller chose since (the surplus it saw was theirs) are undone; spot notices stay
        self.draining = {k: v for k, v in self.draining.items() if k in self._noticed}
        live = [w for w in workers if w.id not in self.draining and w.state != TERMINATING]
        self.desired = {t: sum(1 for w in live if w.tier == t) for t in TIERS}
        decision = self._decision("reconcile", "fast", before, obs)
        decision = replace(decision, inputs={**decision.inputs, "external_changes": [list(map(str, c))
                                                                                     for c in self._external]})
        self._external = []
        return decision

    def _cap(self) -> None:
        """Keep the desired fleet within ``max_workers`` and the budget."""
        over = sum(self.desired.values()) - self.config.max_workers
        for tier in ("on_demand", "spot", "reserved"):
            take = min(max(over, 0), self.desired.get(tier, 0))
            self.desired[tier] -= take
            over -= take
        budget = self.config.budget_usd_per_hour
        if budget is None:
            return
        od = self.price("on_demand")
        for tier in ("on_demand", "spot", "reserved"):
            while self.desired.get(tier, 0) > 0 and self._planned_usd_per_hour(od) > budget + 1e-9:
                self.desired[tier] -= 1

    def _planned_usd_per_hour(self, od: float) -> float:
        return sum(n * (od if t == "spot" else self.price(t)) for t, n in self.desired.items())

    def _state(self, workers: list[Worker], obs: Observation):
        from fleetwise.sim.policies import FleetState

        live = [w for w in workers if w.id not in self.draining and w.state != TERMINATING]
        actual = {t: sum(1 for w in live if w.tier == t) for t in TIERS}
        active = self.desired if self.config.mode == "active" else actual  # active: launches asked for are coming
        serving = {t: sum(1 for w in live if w.tier == t and w.state == SERVING) for t in TIERS}
        engines = sum(serving.values()) * self.spec.replica.dp
        ttft_ratio = obs.ttft_p95_s * 1e3 / self.config.ttft_ms if math.isfinite(obs.ttft_p95_s) else math.nan
        decode = obs.tpot_p95_s if math.isfinite(obs.tpot_p95_s) else obs.itl_p95_s  # see observe's docstring
        decode_ratio = decode * 1e3 / self.config.tpot_ms if math.isfinite(decode) else math.nan
        urgent = obs.waiting if obs.waiting and ttft_ratio > 0.5 else 0
        return FleetState(t=self.now(), interval_s=self.config.fast_interval_s, active=dict(active),
                          serving=serving, in_flight=obs.running, queued=obs.waiting,
                          slo_slots=engines * self.spec.engine.slo_batch, arrivals_rps=obs.arrivals_rps,
                          ttft_p95_ms=obs.ttft_p95_s * 1e3, usd_per_hour=self._cost(workers), itype=self.itype,
                          capacity_rps_per_instance=self.capacity_per_worker, ttft_slo_ratio_p95=ttft_ratio,
                          urgent_queued=urgent, tpot_slo_ratio_p95=decode_ratio)

    def _cost(self, workers: list[Worker]) -> float:
        """USD/hour billed now: every worker granted and not gone, draining ones included."""
        return sum(self.price(w.tier) for w in workers if w.state != PENDING)

    def price(self, tier: str) -> float:
        """USD/hour of one worker in a tier (no spot price: spot is billed as on-demand, as a fallback is)."""
        prices = self.itype.usd_per_hour
        return prices.get(tier, prices["on_demand"])

    def _plan(self, remove: set[str]) -> FleetPlan:
        return FleetPlan({(self.pool, t): n for t, n in self.desired.items()},
                         frozenset(self.draining), frozenset(remove))

    def _decision(self, reason: str, loop: str, before: dict[str, int], obs: Observation) -> Decision:
        return Decision(t=self.now(), loop=loop, reason=reason, mode=self.config.mode,
                        desired={f"{self.pool}/{t}": n for t, n in self.desired.items()},
                        usd_per_hour=sum(self.price(t) * n for t, n in self.desired.items()),
                        inputs={"observation": obs.as_dict(), "before": before,
                                "forecast_rps": self.snapshot.forecast_rps,
                                "draining": sorted(self.draining)})

    async def _record(self, decision: Decision, obs: Observation) -> Decision:
        """Add the perf model's expected p95 latency at the observed load, store, count."""
        serving = sum(n for n in self.desired.values())
        load = max(obs.arrivals_rps, self.snapshot.forecast_rps if math.isfinite(self.snapshot.forecast_rps)
                   else 0.0)
        ttft, tpot = await asyncio.to_thread(self._expected, load / serving if serving else math.inf)
        decision = replace(decision, ttft_p95_ms=ttft, tpot_p95_ms=tpot)
        did = await asyncio.to_thread(self.store.record, decision)
        key = (decision.reason, decision.mode)
        self.snapshot.decisions_total[key] = self.snapshot.decisions_total.get(key, 0) + 1
        return replace(decision, id=did)

    def _expected(self, rate_per_worker: float) -> tuple[float, float]:
        """p95 TTFT and TPOT (ms) the perf model expects of one worker at this rate (inf: overloaded)."""
        from fleetwise.plan.search import simulated_latency
        from fleetwise.plan.workload import Workload
        from fleetwise.traffic.lengths import LengthDist

        if not math.isfinite(rate_per_worker):
            return math.inf, math.inf
        if rate_per_worker <= 0:
            return math.nan, math.nan
        wl = Workload("live", LengthDist(self.config.mean_isl), LengthDist(self.config.mean_osl), 1.0)
        return simulated_latency(self.spec.replica, wl, rate_per_worker, self.spec.slo, 300, 0)

    def _expose(self, workers: list[Worker], obs: Observation, decision: Decision | None, took_s: float) -> None:
        s = self.snapshot
        loop = decision.loop if decision is not None and decision.loop == "slow" else "fast"
        s.t, s.workers, s.observation = self.now(), workers, obs
        s.desired, s.draining = dict(self.desired), dict(self.draining)
        serving = sum(1 for w in workers if w.state == SERVING and w.id not in self.draining)
        s.capacity_rps = serving * self.capacity_per_worker
        s.usd_per_hour = self._cost(workers)
        s.last_step[loop] = s.last_step["fast"] = self.clock()
        if not math.isfinite(self.listed_since):
            self.listed_since = s.last_step["fast"]
        counts = s.step_buckets.setdefault(loop, [0] * (len(STEP_BUCKETS_S) + 1))
        for k, bound in enumerate((*STEP_BUCKETS_S, math.inf)):
            counts[k] += took_s <= bound
        s.step_sum_s[loop] = s.step_sum_s.get(loop, 0.0) + took_s
        s.history.append({"t": s.t, "demand_rps": obs.arrivals_rps, "capacity_rps": s.capacity_rps,
                          "forecast_rps": s.forecast_rps, "usd_per_hour": s.usd_per_hour,
                          "ttft_p95_s": obs.ttft_p95_s, "itl_p95_s": obs.itl_p95_s,
                          "desired": sum(self.desired.values()), "serving": serving,
                          "by_tier": {t: sum(1 for w in workers if w.tier == t and w.state != PENDING)
                                      for t in TIERS}})
        del s.history[:-2000]

    # -- loop ---------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Step every ``fast_interval_s`` (controlled time) until ``stop`` is set."""
        period = self.config.fast_interval_s / self.config.time_scale
        while not stop.is_set():
            began = time.monotonic()
            await self.step()
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, period - (time.monotonic() - began)))
            except TimeoutError:
                pass


async def _notice(client, url: str, kind: str) -> bool:
    """Whether the worker's (emulated) cloud metadata announces a spot interruption."""
    import httpx

    headers = {"gcp": {"Metadata-Flavor": "Google"}, "azure": {"Metadata": "true"}}.get(kind, {})
    try:
        resp = await client.get(url.rstrip("/") + NOTICE_PATHS[kind], headers=headers)
    except httpx.HTTPError:
        return False
    if kind == "aws":
        return resp.status_code == 200 and "action" in resp.text
    if kind == "gcp":
        return resp.status_code == 200 and resp.text.strip().upper() == "TRUE"
    try:
        events = resp.json().get("Events", [])
    except ValueError:
        return False
    return any(e.get("EventType") == "Preempt" for e in events)


def _forecast(slow) -> float:
    """The slow loop's demand quantile for the next period (NaN before it has history)."""
    try:
        return float(slow.forecast(1)[0])
    except (ValueError, IndexError, ZeroDivisionError):
        return math.nan


def _policy(config: ControlConfig, initial: int):
    """The simulator's policy of that name, with the controller's periods."""
    from fleetwise.sim.hybrid import Hybrid
    from fleetwise.sim.policies import Reactive
    from fleetwise.sim.rolling import Rolling

    if config.policy == "reactive":
        return Reactive(initial_instances=initial, max_instances=config.max_workers, cooldown_s=config.cooldown_s)
    rolling = Rolling(initial_instances=initial, period_s=config.interval_s)
    return rolling if config.policy == "rolling" else Hybrid(rolling, cooldown_s=config.cooldown_s)


def _metrics_from(saved: dict):
    """A stored scrape back into WorkerMetrics (histograms included; NaN was stored as null)."""
    from fleetwise.control.types import Histogram, WorkerMetrics

    def hist(h):
        return None if h is None else Histogram(tuple(math.inf if b is None else b for b in h["bounds"]),
                                                tuple(h["counts"]), h.get("total") or 0.0)
    scalars = {k: (math.nan if v is None else v) for k, v in saved.items() if k not in ("ttft", "itl", "tpot")}
    return WorkerMetrics(**scalars, ttft=hist(saved.get("ttft")), itl=hist(saved.get("itl")),
                         tpot=hist(saved.get("tpot")))


def _fleet_spec(config: ControlConfig):
    from fleetwise.sim.setup import fleet_spec

    return fleet_spec(config.model, config.gpu, config.gpus, None, config.precision, engine=config.engine,
                      offer=config.offer, ttft_ms=config.ttft_ms, tpot_ms=config.tpot_ms, mean_isl=config.mean_isl,
                      mean_osl=config.mean_osl, cold_start_s=config.cold_start_s)


def _worker_type(spec, config: ControlConfig):
    """The simulator's instance type for one worker (one replica): its share of the offer's prices."""
    from fleetwise.sim.fleet import InstanceType

    share = 1.0 / spec.replicas_per_instance
    prices = {tier: p * share for tier, p in spec.itype.usd_per_hour.items()}
    return InstanceType(spec.offer.id, spec.replica.dp, prices, spec.itype.hazard_per_hour, spec.itype.cold_start_s)
