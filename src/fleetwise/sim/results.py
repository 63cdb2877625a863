"""What a simulated run measured: request outcomes, latency percentiles per class, SLO attainment, cost by
tier and per token, GPU busy time, and the timeline - every request counted in exactly one final state."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from fleetwise.sim.billing import SECONDS_PER_HOUR
from fleetwise.sim.core import RunLog, Simulator, Tick
from fleetwise.sim.dispatch import DONE, DROPPED, OPEN
from fleetwise.sim.fleet import ROLES


def _pcts(x: np.ndarray) -> dict[str, float]:
    if len(x) == 0:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan}
    p = np.percentile(x, [50, 95, 99])
    return {"p50": float(p[0]), "p95": float(p[1]), "p99": float(p[2])}


@dataclass(frozen=True)
class ClassStats:
    name: str
    requests: int
    completed: int
    ttft_ms: dict[str, float]
    tpot_ms: dict[str, float]
    slo_attainment: float


@dataclass
class SimulationResult:
    """Summary of one run; arrays hold per-request outcomes (NaN where not reached)."""

    strategy: str
    requests: int
    completed: int
    dropped: int
    dropped_by_reason: dict[str, int]
    unfinished: int
    migrated: int
    requeued: int
    ttft_ms: dict[str, float]
    tpot_ms: dict[str, float]
    slo_attainment: float
    by_class: list[ClassStats]
    cost_usd: float
    cost_by_tier: dict[str, float]
    usd_per_1m_tokens: float
    usd_per_1m_output_tokens: float
    goodput_rps: float
    goodput_tokens_per_s: float
    gpu_busy_fraction: float
    duration_s: float
    instances_launched: dict[str, int]
    preemptions: int
    spot_fallbacks: int
    kv_transfers: int
    timeline: list[Tick] = field(repr=False)
    preemption_events: list[dict] = field(repr=False)
    arrival_s: np.ndarray = field(repr=False)
    ttft_s: np.ndarray = field(repr=False)
    tpot_s: np.ndarray = field(repr=False)
    wall_s: float = 0.0
    budget_usd_per_hour: float | None = None  # the policy's spend cap, if it has one
    usd_per_hour_mean: float = math.nan  # cost over the run's duration
    usd_per_hour_peak: float = math.nan  # the most the instances billed at one moment cost (reservations included)

    def to_dict(self, timeline: bool = False) -> dict:
        out = {k: getattr(self, k) for k in (
            "strategy", "requests", "completed", "migrated", "requeued", "dropped", "dropped_by_reason", "unfinished",
            "ttft_ms", "tpot_ms", "slo_attainment", "cost_usd", "cost_by_tier", "usd_per_1m_tokens",
            "usd_per_1m_output_tokens", "goodput_rps", "goodput_tokens_per_s", "gpu_busy_fraction", "duration_s",
            "instances_launched", "preemptions", "spot_fallbacks", "kv_transfers", "budget_usd_per_hour",
            "usd_per_hour_mean", "usd_per_hour_peak")}  # not wall_s: same seed, same JSON
        out["by_class"] = [vars(c) for c in self.by_class]
        if timeline:
            out["timeline"] = [vars(t) for t in self.timeline]
            out["preemption_events"] = self.preemption_events
        return out


def peak_usd_per_hour(sim: Simulator, end_s: float) -> float:
    """The highest spend rate of the run: the reservations held plus the other instances billed at the same
    moment (per-second billing, so an instance cancelled at its launch time costs nothing)."""
    return sim.ledger.peak_usd_per_hour(sim.instances, end_s)


def simulation_result(sim: Simulator, log: RunLog, strategy: str, wall_s: float = 0.0) -> SimulationResult:
    """Reduce a finished simulator to its outcome summary."""
    reqs = sim.reqs
    n = len(reqs)
    state = np.frombuffer(bytes(sim.state), dtype=np.uint8)
    first = np.asarray(sim.first, dtype=float)
    finish = np.asarray(sim.finish, dtype=float)
    arrival = reqs.arrival_s
    osl = reqs.osl
    done = state == DONE
    ttft = np.where(done, first - arrival + sim.spec.frontend_s, np.nan)
    tpot = np.where(done & (osl > 1), (finish - first) / np.maximum(osl - 1, 1), np.nan)
    tpot = np.where(done & (osl == 1), 0.0, tpot)
    ttft_lim = np.array([c.ttft_ms for c in reqs.classes])[reqs.cls] / 1e3
    tpot_lim = np.array([c.tpot_ms for c in reqs.classes])[reqs.cls] / 1e3
    met = done & (ttft <= ttft_lim) & (tpot <= tpot_lim)
    end = log.end_s
    by_tier = sim.ledger.by_tier(log.instances, end, ROLES)
    launched = dict.fromkeys(ROLES, 0)
    for inst in log.instances:
        launched[inst.tier] += 1
    cost = sum(by_tier.values())
    tokens = float((reqs.isl[done] + osl[done]).sum())
    out_tokens = float(osl[done].sum())
    busy = serving = 0.0
    for inst in log.instances:
        if inst.engines:
            up = (inst.end_s if inst.end_s is not None else end) - inst.ready_s
            serving += up * len(inst.engines)
            busy += sum(e.busy_s for e in inst.engines)
    classes = []
    for c, pc in enumerate(reqs.classes):
        m = reqs.cls == c
        k = int(m.sum())
        if k:
            classes.append(ClassStats(pc.name, k, int((done & m).sum()), _pcts(ttft[m & done] * 1e3),
                                      _pcts(tpot[m & done & (osl > 1)] * 1e3), float(met[m].sum() / k)))
    reasons = Counter(log.drop_reasons.values())
    return SimulationResult(
        strategy=strategy, requests=n, completed=int(done.sum()), dropped=int((state == DROPPED).sum()),
        dropped_by_reason=dict(reasons), unfinished=int((state == OPEN).sum()),
        migrated=int(np.count_nonzero(np.frombuffer(bytes(sim.migrated), dtype=np.uint8))),
        requeued=int(np.count_nonzero(np.frombuffer(bytes(sim.requeued), dtype=np.uint8))),
        ttft_ms=_pcts(ttft[done] * 1e3), tpot_ms=_pcts(tpot[done & (osl > 1)] * 1e3),
        slo_attainment=float(met.sum() / n) if n else math.nan, by_class=classes,
        cost_usd=cost, cost_by_tier=by_tier,
        usd_per_1m_tokens=cost / tokens * 1e6 if tokens else math.inf,
        usd_per_1m_output_tokens=cost / out_tokens * 1e6 if out_tokens else math.inf,
        goodput_rps=float(met.sum() / end) if end > 0 else 0.0,
        goodput_tokens_per_s=float((reqs.isl[met] + osl[met]).sum() / end) if end > 0 else 0.0,
        gpu_busy_fraction=busy / serving if serving > 0 else 0.0, duration_s=end,
        instances_launched=launched, preemptions=len(log.preemptions), spot_fallbacks=log.spot_fallbacks,
        kv_transfers=sim.kv_transfers,
        timeline=log.ticks, preemption_events=log.preemptions, arrival_s=arrival, ttft_s=ttft, tpot_s=tpot,
        wall_s=wall_s, budget_usd_per_hour=None if math.isinf(sim.cap_usd_per_hour) else sim.cap_usd_per_hour,
        usd_per_hour_mean=cost / end * SECONDS_PER_HOUR if end > 0 else 0.0, usd_per_hour_peak=peak_usd_per_hour(sim, end),
    )
