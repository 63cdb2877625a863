"""The anchors' scaling rules as simulator policies, for a head-to-head with fleetwise's own controller.

Each class re-implements, from the project's source (cited in its docstring, read 2026-12-07), the rule one
widely used autoscaler applies, mapped onto :class:`~fleetwise.sim.policies.FleetState`:

* :class:`HpaQueue` - KEDA's Prometheus trigger on ``vllm:num_requests_waiting`` (AverageValue target) feeding
  the Kubernetes HPA: its formula, tolerance, default scale-up policies and scale-down stabilization.
* :class:`WvaSaturation` - llm-d's Workload Variant Autoscaler, V1 saturation analyzer: +1 replica when the
  average spare KV / queue capacity is under its trigger, -1 when removing one leaves enough spare.
* :class:`DynamoLoad` - NVIDIA Dynamo's planner, load-based scaling (aggregated mode): +1 when every engine's
  estimated latency is over the SLA, -1 when every one is under 80% of it, nothing while a scale is under way.
* :class:`SkyServeFallback` - SkyPilot's ``FallbackRequestRateAutoscaler``: replicas for the request rate at a
  target QPS per replica, with upscale / downscale delays, spot replicas, base and dynamic on-demand fallback.

Mapping of signals (the simulator exposes fleet totals; with least-work routing every engine carries about
the same load, so a fleet average stands for each replica's value, and "all replicas" / "any replica" rules
reduce to it):

* ``vllm:num_requests_waiting`` per engine = queued latency-sensitive requests / serving engines.
* ``vllm:kv_cache_usage_perc`` is not in FleetState: it is approximated by requests running over the SLO slots
  (``in_flight / slo_slots``, the share of the largest batch that still meets the TPOT target).
* A per-engine latency estimate over its SLA (Dynamo) is approximated by the load over the capacity at the SLO:
  running requests over the SLO slots (decode ITL: Dynamo's estimate takes scheduled and queued decode KV) and the arrival rate over the serving instances' goodput at
  the SLO (prefill TTFT).
* A "replica" of these projects is one engine (a pod); the simulator launches instances of
  ``itype.engines`` engines, so per-replica targets are scaled by the engines per instance and a
  "+1 replica" step is one instance.

The tick at the start of a run has no interval behind it (no arrivals, no load yet), so every anchor skips
it - as the projects do before their first metrics arrive - and the warm starting fleet is not scaled down
on no data. Sub-minute loops (HPA's 15 s sync, SkyServe's 20 s decision interval, Dynamo's 5 s load interval) see one
FleetState per control tick; within a tick they are applied as many times as they would have run, on the
same observation.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from fleetwise.errors import ConfigError
from fleetwise.sim.policies import Action, Drain, FleetState, InstanceBounds, Launch


def _steps(state: FleetState, period_s: float) -> int:
    """How many runs of a loop with this period fit in one control tick (at least one)."""
    return max(1, round(state.interval_s / period_s))


def _engines(state: FleetState) -> int:
    return max(1, state.itype.engines)


def _check_bounds(initial: int, lo: int, hi: int, what: str) -> None:
    if lo < 1 or hi < lo or initial < 1:
        raise ConfigError(f"{what}: need 1 <= min instances <= max instances and >= 1 initial instance")


@dataclass
class _OnDemand(InstanceBounds):
    """An anchor that scales on-demand instances only, within its bounds."""

    def initial(self) -> dict[str, int]:
        return {"on_demand": max(self.initial_instances, self.min_instances)}


def _move_on_demand(state: FleetState, want: int) -> list[Action]:
    """Actions that take the on-demand count to ``want``."""
    have = state.active.get("on_demand", 0)
    if want > have:
        return [Launch("on_demand", want - have)]
    if want < have:
        return [Drain("on_demand", have - want)]
    return []


@dataclass
class HpaQueue(_OnDemand):
    """KEDA (Prometheus trigger on ``vllm:num_requests_waiting``, AverageValue) + Kubernetes HPA, on-demand.

    Rule per HPA sync (every ``sync_period_s``), with U the summed waiting requests and R the current replicas
    (pods created, ready or not): ratio = U / (target x R); within ``tolerance`` of 1 keep R, else
    desired = ceil(U / target), clamped to [min, max]. Scale-up is immediate (stabilization 0) but limited per
    15 s period to max(R + 4, 2 x R) (the two default policies, selectPolicy Max); scale-down takes the highest
    recommendation of the last ``scale_down_window_s`` (300 s) and is otherwise unlimited (100% per 15 s).
    KEDA's ``cooldownPeriod`` only governs scaling to zero, which is not simulated (min 1 instance).

    The target, 5 waiting requests per vLLM replica, is the vLLM production-stack KEDA tutorial's
    ``threshold: '5'``; per instance it is 5 x engines.

    Sources (read 2026-12-07): kubernetes/kubernetes ``pkg/controller/podautoscaler/replica_calculator.go``
    (``GetExternalPerPodMetricReplicas``, ``Tolerances``; master as indexed, v1.33+),
    ``pkg/controller/podautoscaler/horizontal.go`` (``stabilizeRecommendationWithBehaviors``,
    ``convertDesiredReplicasWithBehaviorRate``; commit bba5ea77), ``pkg/apis/autoscaling/v2/defaults.go``
    (scale-up 4 pods / 100% per 15 s, scale-down 100% per 15 s; window from the controller's 5-minute
    ``--horizontal-pod-autoscaler-downscale-stabilization``); kedacore/keda 8b4f083c (2026-08-20)
    ``pkg/scalers/scaler.go`` ``GetMetricTargetType`` (AverageValue by default),
    ``pkg/scalers/prometheus_scaler.go`` (``threshold``); vllm-project/production-stack
    ``docs/source/use_cases/autoscaling-keda.rst`` (183a136a: query ``vllm:num_requests_waiting``, threshold 5).
    """

    target_waiting_per_replica: float = 5.0
    tolerance: float = 0.1
    sync_period_s: float = 15.0
    scale_up_pods: int = 4
    scale_up_percent: float = 100.0
    scale_down_window_s: float = 300.0
    name: str = "hpa-queue"
    _recs: deque | None = field(default=None, repr=False)  # (t, recommendation); None before the first tick

    def __post_init__(self) -> None:
        _check_bounds(self.initial_instances, self.min_instances, self.max_instances, "hpa-queue")
        if not (self.target_waiting_per_replica > 0 and self.tolerance >= 0 and self.sync_period_s > 0):
            raise ConfigError("hpa-queue: target > 0, tolerance >= 0 and sync period > 0 needed")

    def recommend(self, state: FleetState) -> int:
        """HPA's replica count for the metric, before stabilization and rate limits."""
        current = max(state.total_active, 1)
        waiting = state.sensitive[1]
        target = self.target_waiting_per_replica * _engines(state)
        ratio = waiting / (target * current)
        desired = current if abs(1.0 - ratio) <= self.tolerance else math.ceil(waiting / target - 1e-9)
        return min(max(desired, self.min_instances), self.max_instances)

    def stabilize(self, t: float, current: int, desired: int) -> int:
        """Scale-up at once (window 0); scale-down to no less than the highest recommendation in the window."""
        if self._recs is None:  # a new HPA records the current size as its first recommendation
            self._recs = deque([(t, current)])
        self._recs.append((t, desired))
        while self._recs and self._recs[0][0] < t - self.scale_down_window_s:
            self._recs.popleft()
        highest = max(r for _, r in self._recs)
        return desired if desired >= current else min(current, highest)

    def limit_up(self, current: int, steps: int) -> int:
        """The most replicas ``steps`` 15-second periods of the default scale-up policies allow."""
        n = current
        for _ in range(steps):
            n = max(n + self.scale_up_pods, math.ceil(n * (1 + self.scale_up_percent / 100.0)))
        return n

    def decide(self, state: FleetState) -> list[Action]:
        current = state.total_active
        if self._recs is None:  # the first tick: no metric yet
            self.stabilize(state.t, current, current)
            return []
        want = self.stabilize(state.t, current, self.recommend(state))
        if want > current:
            want = min(want, self.limit_up(current, _steps(state, self.sync_period_s)))
        return _move_on_demand(state, state.active.get("on_demand", 0) + want - current)


@dataclass
class WvaSaturation(_OnDemand):
    """llm-d Workload Variant Autoscaler, V1 saturation analyzer (one variant, on-demand).

    Every ``reconcile_s`` (GLOBAL_OPT_INTERVAL, 60 s): a replica is saturated when its KV usage >=
    ``kv_threshold`` (0.80) or its waiting queue >= ``queue_threshold`` (5). Over the non-saturated replicas
    the average spare KV (threshold - usage) and spare queue are taken (0 when none is non-saturated); scale
    up by one replica when spare KV < ``kv_spare_trigger`` (0.10) or spare queue < ``queue_spare_trigger``
    (3). Scale down by one when at least two replicas are non-saturated and spreading their load over one
    replica fewer still leaves both spares at or above their triggers. No decision while the variant is in
    transition (replicas still starting). The desired count goes to an HPA with stabilization 0 (the chart's
    ``hpa.yaml``), so it is applied as is.

    KV usage is approximated by ``in_flight / slo_slots`` (module docstring); one replica step is one
    instance, and the scale-down check removes that instance's engines.

    Sources (read 2026-12-07): llm-d-incubation/workload-variant-autoscaler ``internal/saturation/analyzer.go``
    (36587f8c: ``analyzeVariant``, ``shouldScaleUp``, ``isScaleDownSafe``, ``CalculateSaturationTargets``),
    ``internal/config/saturation_scaling.go`` (46f514d8: V1 defaults 0.80 / 5 / 0.10 / 3), the capacity
    analyzer's ``MinNonSaturatedReplicasForScaleDown = 2``, ``config/manager/configmap.yaml`` (56a651b0,
    2025-10-29: ``GLOBAL_OPT_INTERVAL: "60s"``), ``charts/workload-variant-autoscaler/templates/hpa.yaml``.
    """

    kv_threshold: float = 0.80
    queue_threshold: float = 5.0
    kv_spare_trigger: float = 0.10
    queue_spare_trigger: float = 3.0
    min_non_saturated: int = 2
    reconcile_s: float = 60.0
    name: str = "wva"
    _next_s: float = field(default=-math.inf, repr=False)

    def __post_init__(self) -> None:
        _check_bounds(self.initial_instances, self.min_instances, self.max_instances, "wva")
        if not 0 <= self.kv_spare_trigger <= self.kv_threshold <= 1 or self.queue_threshold < 0:
            raise ConfigError("wva: need 0 <= kv spare trigger <= kv threshold <= 1 and queue threshold >= 0")

    def per_replica(self, state: FleetState) -> tuple[float, float, int]:
        """(KV usage proxy, waiting requests, replicas) of the average serving engine."""
        in_flight, queued, _ = state.sensitive
        engines = sum(state.serving.values()) * _engines(state)
        if not engines or not state.slo_slots:
            return math.inf, math.inf, 0
        return in_flight / state.slo_slots, queued / engines, engines

    def spare(self, kv: float, queue: float) -> tuple[float, float]:
        """Average spare (KV, queue) over the non-saturated replicas (0, 0 when every one is saturated)."""
        if kv >= self.kv_threshold or queue >= self.queue_threshold:
            return 0.0, 0.0
        return self.kv_threshold - kv, self.queue_threshold - queue

    def should_scale_up(self, kv: float, queue: float) -> bool:
        spare_kv, spare_queue = self.spare(kv, queue)
        return spare_kv < self.kv_spare_trigger or spare_queue < self.queue_spare_trigger

    def scale_down_safe(self, kv: float, queue: float, replicas: int, removed: int) -> bool:
        """Whether spreading the load over ``removed`` replicas fewer keeps both spares above their triggers."""
        spare_kv, spare_queue = self.spare(kv, queue)
        non_saturated = replicas if spare_kv > 0 or spare_queue > 0 else 0
        if non_saturated < self.min_non_saturated or non_saturated - removed < 1:
            return False
        grow = non_saturated / (non_saturated - removed)
        kv_after = (self.kv_threshold - spare_kv) * grow
        queue_after = (self.queue_threshold - spare_queue) * grow
        return (self.kv_threshold - kv_after >= self.kv_spare_trigger
                and self.queue_threshold - queue_after >= self.queue_spare_trigger)

    def decide(self, state: FleetState) -> list[Action]:
        if self._next_s == -math.inf:  # the first tick: no metrics yet
            self._next_s = state.t + min(self.reconcile_s, state.interval_s)
            return []
        if state.t + 1e-9 < self._next_s:
            return []
        self._next_s = state.t + self.reconcile_s
        n = state.total_active
        if n != sum(state.serving.values()):  # in transition: replicas still starting
            return []
        kv, queue, replicas = self.per_replica(state)
        want = n
        if self.should_scale_up(kv, queue):
            want = n + 1
        elif n > 1 and self.scale_down_safe(kv, queue, replicas, _engines(state)):
            want = n - 1
        want = min(max(want, self.min_instances), self.max_instances)
        return _move_on_demand(state, state.active.get("on_demand", 0) + want - n)


@dataclass
class DynamoLoad(_OnDemand):
    """NVIDIA Dynamo planner, load-based scaling in aggregated mode (SLA target), on-demand.

    Every ``adjustment_interval_s`` (5 s): per engine, estimate the next TTFT and ITL from its load; if every
    engine's estimate is above the SLA (either TTFT or ITL), add one worker; if there is more than one worker
    and every estimate is below ``scaling_down_sensitivity`` (80%) of the SLA for both, remove one. Nothing
    is decided while a scale is under way (expected workers != ready workers), so a scale-up adds one worker
    per cold start. Dynamo's estimates come from an online regression on forward-pass metrics; here the
    estimate over the SLA is the load over the capacity at the SLO (module docstring): running and queued
    requests over the SLO slots for ITL, and the arrival rate over the serving instances' goodput at the SLO
    (``capacity_rps_per_instance``) for TTFT. A scale-down within a tick re-evaluates with the load spread
    over the remaining workers, as the next 5-second interval would. Throughput-based scaling (the
    predictive floor, off in load mode) and the default ``max_gpu_budget`` of 8 GPUs are not applied.

    Sources (read 2026-12-07): ai-dynamo/dynamo ``components/src/dynamo/planner/core/load_scaling.py``
    (936d8195: ``_advance_load_agg``, ``_scale_decision``), ``components/src/dynamo/planner/config/defaults.py``
    (bb6bb8ff: ``load_adjustment_interval = 5``, ``load_scaling_down_sensitivity = 80``, ``min_endpoint = 1``),
    ``components/src/dynamo/planner/core/state_machine.py`` (``_scaling_in_progress``).
    """

    adjustment_interval_s: float = 5.0
    scaling_down_sensitivity: float = 0.8
    name: str = "dynamo-load"
    _observed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        _check_bounds(self.initial_instances, self.min_instances, self.max_instances, "dynamo-load")
        if not (0 < self.scaling_down_sensitivity <= 1 and self.adjustment_interval_s > 0):
            raise ConfigError("dynamo-load: sensitivity in (0, 1] and adjustment interval > 0 needed")

    def estimates(self, state: FleetState, workers: int) -> tuple[float, float]:
        """(TTFT, ITL) estimates over their SLA of each engine with the load spread over ``workers``
        instances (inf when nothing serves)."""
        serving = sum(state.serving.values())
        if not workers or not serving or not state.slo_slots:
            return math.inf, math.inf
        in_flight, queued, arrivals = state.sensitive
        itl = (in_flight + queued) / (state.slo_slots / serving * workers)  # scheduled + queued decode KV
        cap = state.capacity_rps_per_instance
        ttft = arrivals / (cap * workers) if cap > 0 else itl
        return ttft, itl

    def decide(self, state: FleetState) -> list[Action]:
        if not self._observed:  # the first tick: no forward-pass metrics yet
            self._observed = True
            return []
        n = state.total_active
        if n != sum(state.serving.values()):  # scaling in progress: observe only
            return []
        if max(self.estimates(state, n)) > 1.0:
            want = n + 1
        else:
            want = n
            for _ in range(_steps(state, self.adjustment_interval_s)):
                if want <= 1 or max(self.estimates(state, want)) >= self.scaling_down_sensitivity:
                    break
                want -= 1
        want = min(max(want, self.min_instances), self.max_instances)
        return _move_on_demand(state, state.active.get("on_demand", 0) + want - n)


@dataclass
class SkyServeFallback:
    """SkyPilot SkyServe ``FallbackRequestRateAutoscaler``: spot replicas with on-demand fallback.

    Target replicas = ceil(QPS over the last 60 s / ``target_qps_per_replica``), clamped to [min, max], moved
    with hysteresis: every 20-second decision interval a higher target increments an upscale counter (a lower
    one a downscale counter, an equal one resets both); the target changes only after
    ``upscale_delay_s`` / 20 (= 15) or ``downscale_delay_s`` / 20 (= 60) consecutive intervals. Then spot
    replicas (alive, counting those provisioning) are moved to target - ``base_ondemand_fallback_replicas``,
    and on-demand replicas to the base plus, with ``dynamic_ondemand_fallback``, the spot replicas wanted but
    not ready (provisioning, not fulfilled or preempted). When a spot replica becomes ready the on-demand
    fallback for it is scaled down.

    A replica here is one instance; ``target_qps_per_replica`` is set (by ``make_policy``) to the instance's
    goodput at the SLO, ``capacity_rps_per_instance``, so it sizes on the same physics as the other policies.
    Base 1 + dynamic fallback is SkyServe's documented spot-serving example. A preempted spot instance's
    replacement is launched by the simulator at the notice (as SkyServe's replica manager relaunches it).

    Sources (read 2026-12-07): skypilot-org/skypilot ``sky/serve/autoscalers.py`` (4b81f5d0:
    ``RequestRateAutoscaler._set_target_num_replica_with_hysteresis``, ``_cal_target_num_replicas_based_on_qps``,
    ``FallbackRequestRateAutoscaler.evaluate_scaling``), ``sky/serve/constants.py`` (6c4a9281: QPS window 60 s,
    decision interval 20 s, upscale delay 300 s, downscale delay 1200 s).
    """

    target_qps_per_replica: float = 1.0  # first: SkyServe's spec names it first, and callers pass it so
    initial_instances: int = 1
    min_instances: int = 1
    max_instances: int = 1000
    base_ondemand_fallback_replicas: int = 1
    dynamic_ondemand_fallback: bool = True
    upscale_delay_s: float = 300.0
    downscale_delay_s: float = 1200.0
    decision_interval_s: float = 20.0
    name: str = "skyserve"
    _target: int = field(default=0, repr=False)
    _up: int = field(default=0, repr=False)
    _down: int = field(default=0, repr=False)
    _observed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        _check_bounds(self.initial_instances, self.min_instances, self.max_instances, "skyserve")
        if not (self.target_qps_per_replica > 0 and self.base_ondemand_fallback_replicas >= 0
                and self.decision_interval_s > 0):
            raise ConfigError("skyserve: target QPS per replica > 0, base fallback >= 0, decision interval > 0")
        self._target = min(max(self.initial_instances, self.min_instances), self.max_instances)

    def initial(self) -> dict[str, int]:
        base = min(self.base_ondemand_fallback_replicas, self._target)
        return {"spot": self._target - base, "on_demand": base}

    def qps_target(self, state: FleetState) -> int:
        """Replicas for the last window's request rate at the target QPS per replica."""
        n = math.ceil(state.sensitive[2] / self.target_qps_per_replica - 1e-9)
        return min(max(n, self.min_instances), self.max_instances)

    def hysteresis(self, wanted: int) -> None:
        """One decision interval of SkyServe's upscale / downscale counters."""
        up = int(self.upscale_delay_s / self.decision_interval_s)
        down = int(self.downscale_delay_s / self.decision_interval_s)
        if wanted > self._target:
            self._up, self._down = self._up + 1, 0
            if self._up >= up:
                self._up, self._target = 0, wanted
        elif wanted < self._target:
            self._up, self._down = 0, self._down + 1
            if self._down >= down:
                self._down, self._target = 0, wanted
        else:
            self._up = self._down = 0

    def decide(self, state: FleetState) -> list[Action]:
        if not self._observed:  # the first tick: the QPS window is empty
            self._observed = True
            return []
        wanted = self.qps_target(state)
        for _ in range(_steps(state, self.decision_interval_s)):
            self.hysteresis(wanted)
        spot_want = max(self._target - self.base_ondemand_fallback_replicas, 0)
        od_want = self.base_ondemand_fallback_replicas
        if self.dynamic_ondemand_fallback:
            # Not clamped, as in SkyServe: ready spot above the spot target lowers the on-demand count too.
            od_want += spot_want - state.serving.get("spot", 0)
        actions: list[Action] = []
        spot = state.active.get("spot", 0)
        if spot_want > spot:
            actions.append(Launch("spot", spot_want - spot))
        elif spot_want < spot:
            actions.append(Drain("spot", spot - spot_want))
        return actions + _move_on_demand(state, max(od_want, 0))
