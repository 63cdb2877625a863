"""An in-memory fleet for tests and benchmarks (Karpenter ships a fake cloud provider the same way): an
actuator whose workers exist as soon as a plan asks for them, and a metrics source that makes their counters
grow at a set request rate with a set TTFT."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from fleetwise.control.types import PENDING, SERVING, FleetPlan, Histogram, Worker, WorkerMetrics
from fleetwise.errors import ActuatorError

TTFT_BOUNDS_S = (0.1, 0.5, 1.0, 2.5, 5.0, math.inf)


class FakeActuator:
    """Workers appear serving (spot ones pending while ``grant_spot`` is False) as soon as a plan asks for
    them and vanish when removed; every plan is kept in ``plans``. ``fail = True`` makes calls raise."""

    name = "fake"

    def __init__(self, pool: str = "p", grant_spot: bool = True) -> None:
        self.pool = pool
        self.workers: dict[str, Worker] = {}
        self.plans: list[FleetPlan] = []
        self.grant_spot = grant_spot
        self.fail = False
        self._n = 0

    def observe(self) -> list[Worker]:
        if self.fail:
            raise ActuatorError("fake: cloud API down")
        for wid, w in list(self.workers.items()):  # spot capacity granted since
            if w.state == PENDING and self.grant_spot:
                self.workers[wid] = Worker(wid, w.pool, w.tier, SERVING, f"http://fake/{wid}", w.launched_at)
        return list(self.workers.values())

    def apply(self, plan: FleetPlan) -> None:
        if self.fail:
            raise ActuatorError("fake: cloud API down")
        self.plans.append(plan)
        for wid in plan.remove:
            self.workers.pop(wid, None)
        for (pool, tier), want in plan.desired.items():
            have = [w for w in self.workers.values() if w.tier == tier and w.id not in plan.draining]
            for _ in range(want - len(have)):
                self._n += 1
                wid = f"{tier}-{self._n}"
                ok = tier != "spot" or self.grant_spot
                self.workers[wid] = Worker(wid, pool, tier, SERVING if ok else PENDING,
                                           f"http://fake/{wid}" if ok else "", 0.0)


class SyntheticSource:
    """Metrics of every serving worker: ``rps`` requests/s spread over them (counted per ``step_s`` of the
    clock), all with TTFT ``ttft_s``; ``waiting`` queued on each; workers in ``silent`` do not answer."""

    def __init__(self, clock: Callable[[], float], step_s: float = 10.0) -> None:
        self.clock = clock
        self.step_s = step_s
        self.rps = 0.0
        self.ttft_s = 0.05
        self.waiting = 0
        self.silent: set[str] = set()
        self._totals: dict[str, float] = {}

    async def sample(self, workers: Sequence[Worker]) -> dict[str, WorkerMetrics]:
        serving = [w for w in workers if w.state == SERVING]
        out = {}
        for w in serving:
            if w.id in self.silent:
                continue
            total = self._totals.get(w.id, 0.0) + self.rps * self.step_s / len(serving)
            self._totals[w.id] = total
            counts = tuple(total if self.ttft_s <= b else 0.0 for b in TTFT_BOUNDS_S)
            out[w.id] = WorkerMetrics(t=self.clock(), finished=total, prompt_tokens=total * 1000,
                                      generation_tokens=total * 250, running=0.0, waiting=float(self.waiting),
                                      kv_usage=0.1, ttft=Histogram(TTFT_BOUNDS_S, counts, total * self.ttft_s))
        return out


class ManualClock:
    """A clock tests advance by hand."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
