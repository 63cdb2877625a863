"""Request-level evaluation of operated schedules: replay what each strategy of an ``optimize`` comparison ran
(fleetwise, every baseline, hindsight) through the fleet simulator on requests drawn from the actual series,
and report SLO attainment, p95 TTFT / TPOT and requests served within SLO per dollar next to the fluid model's
unmet demand.

Sampling, bounded by a request budget per strategy and day:

* Windows: each day, ``windows_per_day`` periods are drawn with probability proportional to their demand (with
  replacement, one seeded draw shared by every strategy). Each window starts at its period's start with the
  schedule's instances of that period serving and empty (spot instances the fluid model counts as down in that
  period - the same draw - are left out), and lasts ``min(period, budget / windows / rate)``.
* Arrivals: a Poisson process at the series' rate of that period (the series is constant within a period, so
  the day's inhomogeneous Poisson process is sampled period by period).
* Lengths: the workload optimize plans with (lognormal input / output lengths at the given means).
* Routing: each request goes to offer ``i`` with probability ``n_i c_i / sum_j n_j c_j`` (instances serving
  times capacity per instance: a capacity-weighted balancer); each offer's instances are one simulated fleet
  (:func:`fleetwise.sim.setup.fleet_spec` for the offer's replica configuration) whose router spreads its
  share. With no instance serving, every request of the window misses its SLO.
* Statistics: requests arriving in a window's first ``warmup_s`` (at most half the window) fill the empty
  fleet and are simulated but not counted. Under demand-proportional sampling each window's share of
  requests within SLO estimates the day's (Hansen-Hurwitz): the day's attainment is the mean over its windows,
  with a standard error from their spread; p95 TTFT / TPOT are weighted the same way, over completed requests.
  Over the whole evaluation, days weigh by their demand; requests within SLO = attainment x demanded requests,
  per dollar of the strategy's cost as the fluid evaluation bills it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fleetwise.allocate.evaluate import Evaluation, Schedule, spot_down, spot_uniforms
from fleetwise.errors import ConfigError
from fleetwise.plan.workload import Workload
from fleetwise.sim.core import SimConfig
from fleetwise.sim.policies import StaticSchedule
from fleetwise.sim.requests import PriorityClass, SimRequests
from fleetwise.sim.run import simulate_fleet
from fleetwise.sim.sampling import Sampling
from fleetwise.sim.setup import FleetSpec


@dataclass(frozen=True)
class OfferSetup:
    """The replica configuration behind one capacity offer (what ``CapacityOffer.label`` describes)."""

    model: str
    gpu: str
    gpus: int
    tp: int
    precision: str
    engine: str
    max_batch: int


@dataclass(frozen=True)
class DayRequests:
    """One strategy's day, request by request, next to the fluid model's unmet demand for that day."""

    day: int
    demand_requests: float  # requests the series demanded that day
    requests_simulated: int
    requests_counted: int
    slo_attainment: float  # estimated share of the day's requests served within SLO (NaN: no demand)
    ttft_p95_ms: float  # of completed requests (NaN: none)
    tpot_p95_ms: float
    unmet_demand_fraction: float  # fluid model, whole day
    load: float  # mean over the windows of demand / the capacity the allocator credits the serving instances
    slo_attainment_se: float = math.nan  # standard error from the spread between the windows (NaN: one window)

    def to_dict(self) -> dict:
        return {k: _num(v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class StrategyRequests:
    """One strategy over the evaluated days (figures None when the strategy does not apply)."""

    name: str
    reason: str | None
    cost_usd: float
    unmet_demand_fraction: float  # fluid, whole window
    days: list[DayRequests] = field(default_factory=list)
    slo_attainment: float = math.nan  # demand-weighted over the days
    slo_attainment_se: float = math.nan  # its standard error (sampling of windows; days independent)
    ttft_p95_ms: float = math.nan
    tpot_p95_ms: float = math.nan
    requests_within_slo: float = math.nan  # estimated over the whole window: attainment x demanded requests
    requests_simulated: int = 0

    @property
    def applicable(self) -> bool:
        return self.reason is None

    @property
    def within_slo_per_usd(self) -> float:
        """Requests served within SLO per dollar the schedule costs (the figure users care about)."""
        return self.requests_within_slo / self.cost_usd if self.cost_usd > 0 else math.nan

    def to_dict(self) -> dict:
        out = {"name": self.name, "applicable": self.applicable, "reason": self.reason}
        for k in ("cost_usd", "unmet_demand_fraction", "slo_attainment", "slo_attainment_se", "ttft_p95_ms",
                  "tpot_p95_ms",
                  "requests_within_slo", "within_slo_per_usd", "requests_simulated"):
            out[k] = _num(getattr(self, k)) if self.applicable else None
        out["days"] = [d.to_dict() for d in self.days]
        return out


@dataclass(frozen=True)
class RequestEvaluation:
    """Every strategy replayed request by request, and how the requests were drawn."""

    strategies: list[StrategyRequests]
    sampling: Sampling
    arrivals: str
    lengths: str
    routing: str
    slo: tuple[float, float]  # p95 TTFT, TPOT targets (ms) each request is held to
    wall_s: float
    offer_capacity: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Offer id -> (req/s per instance the allocator credits, the perf model's closed-form goodput per instance
    at the workload's mean lengths and the SLO): where the first is well above the second, schedules that
    load the offer near its credited capacity miss the SLO in the simulator."""

    def overcredited(self, margin: float = 1.1) -> list[tuple[str, float, float]]:
        """Offers credited with more than ``margin`` x the closed-form goodput: (id, credited, closed form)."""
        return [(oid, c, g) for oid, (c, g) in self.offer_capacity.items() if c > margin * g]

    def to_dict(self) -> dict:
        return {"sampling": self.sampling.describe(), "requests_per_day": self.sampling.requests_per_day,
                "windows_per_day": self.sampling.windows_per_day, "warmup_s": self.sampling.warmup_s,
                "seed": self.sampling.seed, "arrivals": self.arrivals, "lengths": self.lengths,
                "routing": self.routing, "slo_ms": {"ttft": self.slo[0], "tpot": self.slo[1]},
                "offer_capacity_rps": [{"offer": oid, "credited": c, "closed_form": g}
                                       for oid, (c, g) in self.offer_capacity.items()],
                "strategies": [s.to_dict() for s in self.strategies]}


@dataclass(frozen=True)
class _Window:
    """Requests of one sampled period, shared by every strategy."""

    period: int
    arrival_s: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    route_u: np.ndarray  # uniforms that pick each request's offer
    counted: np.ndarray  # arrived after the warm-up


def _num(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def offer_setups(candidates, offers, engine: str, catalog: str | None = None) -> dict[str, OfferSetup]:
    """The configuration behind each offer: among a plan's candidates on that offer, the one with the most
    capacity per instance (the rule :func:`fleetwise.allocate.fromplan.offers_from_plan` builds offers by)."""
    from fleetwise.catalog import load_catalog
    from fleetwise.cost import replicas_per_instance

    cat = load_catalog(catalog)
    best: dict[str, tuple[float, object]] = {}
    for c in candidates:
        offer = cat.offer(c.offer)
        cap = c.goodput_rps * replicas_per_instance(offer, c.tp)
        if offer.id not in best or cap > best[offer.id][0]:
            best[offer.id] = (cap, c)
    out = {}
    for o in offers:
        if o.id not in best:
            raise ConfigError(f"offer '{o.id}' has no plan candidate to simulate")
        c = best[o.id][1]
        out[o.id] = OfferSetup(c.model, c.gpu, c.num_gpus, c.tp, c.precision, engine, c.max_batch)
    return out


def _specs(setups: dict[str, OfferSetup], workload: Workload, slo: tuple[float, float]) -> dict[str, FleetSpec]:
    from fleetwise.sim.setup import fleet_spec

    return {oid: fleet_spec(s.model, s.gpu, s.gpus, s.tp, s.precision, engine=s.engine, offer=oid,
                            ttft_ms=slo[0], tpot_ms=slo[1], mean_isl=workload.isl.mean, mean_osl=workload.osl.mean,
                            max_batch=s.max_batch)
            for oid, s in setups.items()}


def _windows(demand_rps: np.ndarray, days: list[np.ndarray], period_s: float, workload: Workload,
             sampling: Sampling) -> list[list[_Window]]:
    """Each day's sampled windows (periods drawn in proportion to demand) with their requests."""
    rng = np.random.default_rng(sampling.seed)
    per_window = sampling.requests_per_day / sampling.windows_per_day
    out = []
    for idx in days:
        d = demand_rps[idx]
        if not d.sum() > 0:
            out.append([])
            continue
        picks = rng.choice(idx, size=sampling.windows_per_day, p=d / d.sum())
        day = []
        for k in picks:
            rate = float(demand_rps[k])
            span = min(period_s, per_window / rate)
            n = min(int(rng.poisson(rate * span)), sampling.requests_per_day // sampling.windows_per_day)
            arrival = np.sort(rng.uniform(0.0, span, n))
            warm = min(sampling.warmup_s, span / 2)
            day.append(_Window(int(k), arrival, workload.isl.sample(n, rng), workload.osl.sample(n, rng),
                               rng.random(n), arrival >= warm))
        out.append(day)
    return out


def _replay_window(w: _Window, serving: np.ndarray, capacity_rps: np.ndarray, specs: list[FleetSpec],
                   slo: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(met, TTFT s, TPOT s) of the window's requests on the instances serving per offer (``serving``: (O, 3)
    reserved, on-demand, spot; ``capacity_rps``: each offer's req/s per instance, as the allocator counts it)."""
    n = len(w.arrival_s)
    ttft, tpot = np.full(n, np.nan), np.full(n, np.nan)
    weight = serving.sum(axis=1) * capacity_rps
    if n == 0 or not weight.sum() > 0:
        return np.zeros(n, dtype=bool), ttft, tpot
    share = np.cumsum(weight) / weight.sum()
    offer = np.minimum(np.searchsorted(share, w.route_u, side="right"), len(specs) - 1)
    cls = (PriorityClass("interactive", *slo),)
    for i, spec in enumerate(specs):
        mine = np.flatnonzero(offer == i)
        if mine.size == 0:
            continue
        counts = {"reserved": int(serving[i, 0]), "on_demand": int(serving[i, 1]), "spot": int(serving[i, 2])}
        reqs = SimRequests(w.arrival_s[mine], w.isl[mine], w.osl[mine], np.zeros(mine.size, dtype=np.int64), cls)
        res = simulate_fleet(reqs, spec, StaticSchedule.fixed(counts, "window"),
                             SimConfig(hazard_per_hour=0.0, spot_availability=1.0))
        ttft[mine], tpot[mine] = res.ttft_s, res.tpot_s
    return (ttft * 1e3 <= slo[0]) & (tpot * 1e3 <= slo[1]), ttft, tpot


def _se(shares: list[float]) -> float:
    """Standard error of the mean of the windows' shares within SLO (the windows are independent draws)."""
    x = np.asarray([v for v in shares if math.isfinite(v)])
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def _weighted_p95(values: np.ndarray, weights: np.ndarray) -> float:
    ok = np.isfinite(values) & (weights > 0)
    if not ok.any():
        return math.nan
    order = np.argsort(values[ok])
    v, cw = values[ok][order], np.cumsum(weights[ok][order])
    return float(v[min(np.searchsorted(cw, 0.95 * cw[-1]), len(v) - 1)])


@dataclass
class _Pool:
    """Counted requests of one strategy, with the weight each stands for."""

    ttft: list[np.ndarray] = field(default_factory=list)
    tpot: list[np.ndarray] = field(default_factory=list)
    weight: list[np.ndarray] = field(default_factory=list)

    def add(self, ttft: np.ndarray, tpot: np.ndarray, weight: float) -> None:
        self.ttft.append(ttft)
        self.tpot.append(tpot)
        self.weight.append(np.full(len(ttft), weight))

    def p95_ms(self) -> tuple[float, float]:
        if not self.weight:
            return math.nan, math.nan
        w = np.concatenate(self.weight)
        return (_weighted_p95(np.concatenate(self.ttft), w) * 1e3, _weighted_p95(np.concatenate(self.tpot), w) * 1e3)


def _serving(schedule: Schedule, down: np.ndarray, k: int) -> np.ndarray:
    """(O, 3) instances serving in period ``k`` per offer: reserved, on-demand, spot up."""
    return np.stack([schedule.reserved_counts(), schedule.on_demand[:, k], schedule.spot[:, k] - down[:, k]],
                    axis=1).round().astype(int)


def _strategy(ev: Evaluation, schedule: Schedule, windows: list[list[_Window]], days: list[np.ndarray],
              demand_rps: np.ndarray, period_s: float, specs: list[FleetSpec], slo: tuple[float, float],
              down: np.ndarray) -> StrategyRequests:
    pool, rows = _Pool(), []
    capacity = np.array([o.capacity_rps for o in schedule.offers])
    for d, (idx, wins) in enumerate(zip(days, windows, strict=True)):
        demand = float(demand_rps[idx].sum() * period_s)
        day_pool, shares, loads, simulated, counted = _Pool(), [], [], 0, 0
        for w in wins:
            serving = _serving(schedule, down, w.period)
            credited = float(serving.sum(axis=1) @ capacity)
            loads.append(demand_rps[w.period] / credited if credited > 0 else math.inf)
            met, ttft, tpot = _replay_window(w, serving, capacity, specs, slo)
            c = w.counted
            simulated, counted = simulated + len(c), counted + int(c.sum())
            shares.append(float(met[c].mean()) if c.any() else math.nan)
            weight = 1.0 / (len(wins) * max(int(c.sum()), 1))  # Hansen-Hurwitz: every window counts alike
            day_pool.add(ttft[c], tpot[c], weight)
            pool.add(ttft[c], tpot[c], weight * demand)
        attain = float(np.nanmean(shares)) if shares and not np.all(np.isnan(shares)) else math.nan
        served = ev.capacity_rps[idx]
        unmet = float(np.maximum(demand_rps[idx] - served, 0).sum() / demand_rps[idx].sum()) if demand > 0 else 0.0
        rows.append(DayRequests(d, demand, simulated, counted, attain, *day_pool.p95_ms(), unmet,
                                float(np.mean(loads)) if loads else math.nan, _se(shares)))
    # Days whose windows counted no request (a trickle of demand) take the attainment of the others.
    known = [r for r in rows if r.demand_requests > 0 and math.isfinite(r.slo_attainment)]
    weight = sum(r.demand_requests for r in known)
    attain = sum(r.slo_attainment * r.demand_requests for r in known) / weight if weight > 0 else math.nan
    within = attain * sum(r.demand_requests for r in rows) if weight > 0 else 0.0
    se = math.sqrt(sum((r.demand_requests * r.slo_attainment_se) ** 2 for r in known)) / weight if weight else math.nan
    return StrategyRequests(ev.name, None, ev.cost_usd, ev.unmet_demand_fraction, rows, attain, se, *pool.p95_ms(),
                            within, sum(r.requests_simulated for r in rows))


def evaluate_requests(comparison, setups: dict[str, OfferSetup], workload: Workload, slo: tuple[float, float], *,
                      cold_start_s: float, spot_seed: int = 0, sampling: Sampling | None = None,
                      progress: Callable[[int, int], None] | None = None) -> RequestEvaluation:
    """Replay every strategy of a :class:`fleetwise.allocate.compare.Comparison` request by request.

    Args:
        setups: offer id -> the replica configuration behind it (:func:`offer_setups`).
        slo: (p95 TTFT, p95 TPOT) targets in ms; each request is within SLO when both of its own are met.
        cold_start_s, spot_seed: what the comparison's fluid evaluation used, so the spot instances it counts as
            down in a period are the ones left out here.
        sampling: windows, request budget, warm-up and seed (default: :class:`Sampling`).
    """
    start = time.perf_counter()
    sampling = sampling or Sampling()
    period_s = comparison.period_h * 3600.0
    demand = np.asarray(comparison.demand_rps, dtype=float)
    per_day = max(1, round(86400.0 / period_s))
    days = [np.arange(a, min(a + per_day, len(demand))) for a in range(0, len(demand), per_day)]
    windows = _windows(demand, days, period_s, workload, sampling)
    evaluations = [comparison.fleetwise, *comparison.baselines, comparison.hindsight]
    spec_cache: dict[str, FleetSpec] = {}
    out = []
    for j, ev in enumerate(evaluations):
        schedule = comparison.schedules.get(ev.name)
        if not ev.applicable or schedule is None:
            out.append(StrategyRequests(ev.name, ev.reason or "no schedule", math.nan, math.nan))
            continue
        missing = {o.id: setups[o.id] for o in schedule.offers if o.id not in spec_cache}
        spec_cache.update(_specs(missing, workload, slo))
        specs = [spec_cache[o.id] for o in schedule.offers]
        O, T = schedule.spot.shape
        down = spot_down(schedule, cold_start_s, spot_uniforms(O, T, spot_seed))
        out.append(_strategy(ev, schedule, windows, days, demand, period_s, specs, slo, down))
        if progress:
            progress(j + 1, len(evaluations))
    lengths = (f"lognormal input (mean {workload.isl.mean:,.0f}, p95 {workload.isl.p95 or workload.isl.mean:,.0f}) "
               f"and output (mean {workload.osl.mean:,.0f}, p95 {workload.osl.p95 or workload.osl.mean:,.0f}) tokens, "
               f"independent: the workload optimize plans with (p95 / mean as in {workload.source or workload.name})")
    credited = {o.id: o.capacity_rps for s in comparison.schedules.values() for o in s.offers}
    capacity = {oid: (credited[oid], spec.capacity_rps_per_instance) for oid, spec in spec_cache.items()}
    return RequestEvaluation(
        out, sampling,
        "Poisson at the series' rate of each sampled period (piecewise constant: the day's inhomogeneous "
        "Poisson process, sampled period by period)", lengths,
        "each request to an offer with probability proportional to its serving instances x capacity each; "
        "within an offer, the simulator's least-work router", slo, time.perf_counter() - start, capacity)
