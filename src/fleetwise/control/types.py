"""The controller's small interfaces and the records that cross them.

A controller step reads the fleet from an :class:`Actuator` (``observe``), the workers' metrics from a
:class:`MetricsSource` (``sample``), decides with a simulator :class:`~fleetwise.sim.policies.Policy`, writes
its intent to a :class:`Store`, then asks the actuator to make a :class:`FleetPlan` true (``apply``). Every call
is idempotent - the plan says what should exist, not what to do - so a crash between any two lines is
repaired by the next step (Karpenter's reconcile shape).

Times are seconds since the epoch (wall clock) unless a name says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

TIERS = ("reserved", "on_demand", "spot")  # the simulator's roles, in the same order

# Worker states an actuator reports. "pending": asked for, not granted yet (a spot request the cloud has not
# filled); "provisioning": granted and booting (cold start); "serving": answering requests; "terminating":
# asked to stop, not gone yet. Whether a worker is *draining* is the controller's decision (it stops routing
# to it) and lives in the controller's store and plan, not in the actuator.
PENDING, PROVISIONING, SERVING, TERMINATING = "pending", "provisioning", "serving", "terminating"
WORKER_STATES = (PENDING, PROVISIONING, SERVING, TERMINATING)


@dataclass(frozen=True)
class Worker:
    """One replica of the fleet as the actuator sees it.

    Attributes:
        id: stable name (a local worker's id, a Kubernetes pod name).
        pool: the capacity pool it belongs to - an instance offer id such as ``aws:p5.4xlarge``.
        tier: capacity tier it was launched in (``reserved``, ``on_demand``, ``spot``).
        state: one of :data:`WORKER_STATES`.
        url: base URL of its OpenAI-compatible server ("" until known).
        launched_at: when it was asked for (epoch seconds).
    """

    id: str
    pool: str
    tier: str
    state: str
    url: str = ""
    launched_at: float = 0.0


@dataclass(frozen=True)
class FleetPlan:
    """What the controller wants true after a step; applying it twice changes nothing the second time.

    Attributes:
        desired: workers that should exist and take new work, per (pool, tier) - draining ones not counted.
        draining: workers kept running but sent no new work (their in-flight requests finish).
        remove: workers to terminate now (drained, or lost).
    """

    desired: Mapping[tuple[str, str], int]
    draining: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Histogram:
    """A cumulative Prometheus histogram: upper bounds (``+Inf`` last) with cumulative counts, and the sum."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    total: float = 0.0

    @property
    def count(self) -> float:
        return self.counts[-1] if self.counts else 0.0


@dataclass(frozen=True)
class WorkerMetrics:
    """One scrape of one worker, in vLLM's metric names (after the alias table): counters and histograms are
    cumulative since the worker started; gauges are instantaneous. NaN: not exported / not readable.

    Attributes:
        t: when it was scraped (epoch seconds).
        finished: requests finished (``vllm:request_success`` summed over finish reasons).
        prompt_tokens / generation_tokens: ``vllm:prompt_tokens`` / ``vllm:generation_tokens``.
        running / waiting: ``vllm:num_requests_running`` / ``vllm:num_requests_waiting``.
        kv_usage: ``vllm:kv_cache_usage_perc`` (0..1).
        ttft / itl: ``vllm:time_to_first_token_seconds`` / ``vllm:inter_token_latency_seconds`` histograms.
        tpot: ``vllm:request_time_per_output_token_seconds``, each request's mean time per output token (what a
            TPOT SLO is about; vLLM V1 exports it, older engines and SGLang do not: None).
    """

    t: float
    finished: float = math.nan
    prompt_tokens: float = math.nan
    generation_tokens: float = math.nan
    running: float = math.nan
    waiting: float = math.nan
    kv_usage: float = math.nan
    ttft: Histogram | None = None
    itl: Histogram | None = None
    tpot: Histogram | None = None

    @property
    def complete(self) -> bool:
        """Every figure the controller sizes on is present and finite."""
        return all(math.isfinite(v) for v in (self.finished, self.running, self.waiting))


class Actuator(Protocol):
    """Reads and changes the fleet. Implementations: ``local`` (emulated worker processes), ``kubernetes``
    (one Deployment per (pool, tier)), ``webhook`` (POSTs the plan)."""

    name: str

    def observe(self) -> list[Worker]:
        """The workers that exist now, whatever started them (a restarted controller adopts them)."""
        ...

    def apply(self, plan: FleetPlan) -> None:
        """Make ``plan`` true as far as one call can (launch, stop); idempotent.

        Raises:
            ActuatorError: the fleet could not be changed; the next step retries.
        """
        ...


class MetricsSource(Protocol):
    """Where worker metrics come from: each worker's ``/metrics`` scraped directly, or Prometheus."""

    async def sample(self, workers: Sequence[Worker]) -> dict[str, WorkerMetrics]:
        """The latest metrics of each reachable worker, by worker id (unreachable ones are left out)."""
        ...


@dataclass(frozen=True)
class Decision:
    """One recorded decision: what was seen, what was chosen and why, and what it should cost and deliver.

    Attributes:
        reason: short code - ``forecast``, ``slo_burn``, ``queue``, ``scale_down``, ``spot_notice``,
            ``spot_fallback``, ``back_to_spot``, ``hold_stale``, ``reconcile``, ``steady``.
        mode: ``advisory``, ``active`` or ``noop``.
        desired: desired workers per "pool/tier".
        inputs: the observation the decision was made on (rates, queue, latency quantiles, forecast).
    """

    t: float
    loop: str  # "slow" | "fast" | "spot"
    reason: str
    mode: str
    desired: Mapping[str, int]
    usd_per_hour: float
    ttft_p95_ms: float = math.nan
    tpot_p95_ms: float = math.nan
    inputs: Mapping[str, object] = field(default_factory=dict)
    id: int | None = None


class Store(Protocol):
    """Durable controller state: decisions, intents and small named values (SQLite or PostgreSQL)."""

    def record(self, decision: Decision) -> int:
        """Append a decision; returns its id."""
        ...

    def decisions(self, limit: int = 100, since_id: int = 0) -> list[Decision]:
        """The latest decisions, newest first."""
        ...

    def put(self, key: str, value: object) -> None:
        """Save a JSON-serializable value under ``key`` (replacing any), durably, before acting on it."""
        ...

    def get(self, key: str, default: object = None) -> object:
        ...
