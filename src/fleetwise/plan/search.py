"""Configuration search: the cheapest replica configuration and offer that serve a workload within SLO.

Candidates are model x offer (GPU type, instance, region) x tensor-parallel degree x precision x
batch cap. Each distinct performance configuration is screened with the closed-form steady state
(:mod:`fleetwise.perf.analytic`) to find its goodput, the highest request rate whose p95/p99 TTFT
and TPOT meet the SLO. The best candidates are then re-checked with the event simulation
(:mod:`fleetwise.perf.serving`) on sampled request lengths, and the ranking uses the simulated goodput
wherever it exists. Replicas are packed onto whole instances, which are paid for whole.

Headroom and redundancy: each replica runs at most at ``max_load`` x its goodput and there are at least
``min_replicas``. Library defaults (1 replica, load 1.0, no quality limit) keep the pure cheapest-capacity answer
that allocation and simulation callers build on; ``fleetwise plan`` passes the ``OPERATOR_*`` values, which
are what a service should deploy. Every candidate carries its published quality drop and the confidence of its
performance prediction (:mod:`fleetwise.plan.qualify`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from fleetwise.catalog import Catalog, Offer, load_catalog
from fleetwise.cost import HOURS_PER_MONTH, check_tier, replicas_per_instance, usd_per_million
from fleetwise.errors import ConfigError, InfeasibleError
from fleetwise.perf.analytic import batch_cap, max_rate, steady_state
from fleetwise.perf.predict import arrivals, serving_metrics
from fleetwise.perf.profile import get_profile
from fleetwise.perf.replica import Replica, build_replica
from fleetwise.perf.serving import Requests, simulate
from fleetwise.plan.confidence import profile_coverage
from fleetwise.plan.qualify import Annotation, Judge, check_filters
from fleetwise.plan.workload import Workload

DEFAULT_TPS = (1, 2, 4, 8)
DEFAULT_BATCH_CAPS = (16, 32, 64, 128, 256, 512, 1024)
_GRID = np.geomspace(0.005, 1.0, 48)

OPERATOR_MIN_REPLICAS = 2
"""The service survives the loss of one replica (a node failure, a spot reclaim, a rolling restart)."""
OPERATOR_MAX_LOAD = 0.8
"""Goodput is the rate at which the SLO percentile just holds: at 80% of it, a 25% burst above the planned rate
(or the error of the performance model) still fits before latency breaks the SLO."""
OPERATOR_MAX_QUALITY_DROP_PCT = 1.0
"""At most 1 percentage point of published accuracy recovery lost against the bf16 model."""


@dataclass(frozen=True)
class SLO:
    """Latency targets at a percentile (95 or 99)."""

    ttft_ms: float
    tpot_ms: float
    percentile: int = 95

    def __post_init__(self) -> None:
        if self.ttft_ms <= 0 or self.tpot_ms <= 0:
            raise ConfigError("SLO targets must be > 0 ms")
        if self.percentile not in (50, 90, 95, 99):
            raise ConfigError("SLO percentile must be 50, 90, 95 or 99")


@dataclass(frozen=True)
class PlanRequest:
    """Everything a plan needs; every field has the default a user would expect."""

    models: Sequence[str]
    workload: Workload
    slo: SLO
    tier: str = "on_demand"
    clouds: Sequence[str] = ()
    regions: Sequence[str] = ()
    gpus: Sequence[str] = ()
    precisions: Sequence[str] = ()  # empty: every precision in the catalog
    tps: Sequence[int] = DEFAULT_TPS
    batch_caps: Sequence[int] = DEFAULT_BATCH_CAPS
    engine: str = "trtllm"
    catalog: str | None = None
    overhead_pct: float = 0.0  # networking, storage etc. on top of the GPU bill (monthly figure only)
    verify_top: int = 6
    sim_requests: int = 1000  # measured per verification: at 400 the p95 of chat lengths read ~9% high
    seed: int = 0
    min_replicas: int = 1  # the CLI passes OPERATOR_MIN_REPLICAS
    max_load: float = 1.0  # fraction of goodput each replica may run at; the CLI passes OPERATOR_MAX_LOAD
    max_quality_drop_pct: float | None = None  # None: no quality filter; the CLI passes OPERATOR_MAX_QUALITY_DROP_PCT
    confidence: str = "any"  # measured | interpolated | any: the least-known prediction kept


@dataclass(frozen=True)
class PerfKey:
    model: str
    gpu: str
    tp: int
    precision: str
    max_batch: int


@dataclass
class Goodput:
    """Goodput of one performance configuration and its latency at that load."""

    rps: float  # per replica
    slo_ttft_ms: float  # TTFT at the SLO's percentile (p95 unless SLO.percentile says otherwise), at that load
    slo_tpot_ms: float
    verified: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Candidate:
    """A ranked answer: configuration, offer, how many, what it costs, the latency it gives."""

    model: str
    gpu: str
    num_gpus: int
    tp: int
    precision: str
    max_batch: int
    offer: str
    cloud: str
    region: str
    instance_type: str
    tier: str
    goodput_rps: float
    replicas: int
    instances: int
    usd_per_hour: float
    usd_per_1m_output_tokens: float
    usd_per_1m_total_tokens: float
    slo_ttft_ms: float  # TTFT at the SLO's percentile (request.slo.percentile), at the goodput rate
    slo_tpot_ms: float
    verified: bool
    usd_per_month: float = 0.0  # instances running all month, plus the request's overhead percentage
    load_per_replica: float = 0.0  # planned rate / (replicas x goodput)
    survives_one_loss: bool = False  # after losing one replica, the rest still carry the rate within goodput
    survives_instance_loss: bool = False  # the same after losing one whole instance (all replicas on it)
    quality_drop_pct: float | None = None  # published accuracy drop vs bf16; None = no published figure
    quality_source: str = ""
    quality_as_of: str = ""
    confidence: str = ""  # measured | interpolated | extrapolated (see fleetwise.plan.confidence)
    error_band_pct: float | None = None  # relative error of the latency prediction, %; None = unknown
    error_band_source: str = ""

    @property
    def label(self) -> str:
        return f"{self.model} {self.gpu} TP{self.tp} {self.precision} batch<={self.max_batch}"


@dataclass(frozen=True)
class Rejected:
    config: str
    reason: str


@dataclass
class PlanResult:
    request: PlanRequest
    candidates: list[Candidate]
    rejected: list[Rejected]
    evaluated: int  # candidate configurations considered (offer x config)
    elapsed_s: float
    pareto: list[int] = field(default_factory=list)  # indices into candidates
    all_batch_caps: list[Candidate] = field(default_factory=list)  # before keeping the best cap per offer

    @property
    def best(self) -> Candidate:
        return self.candidates[0]


def _quantile(slo: SLO) -> float:
    return slo.percentile / 100.0


def screen_goodput(replica: Replica, wl: Workload, slo: SLO) -> Goodput:
    """Goodput per replica from the closed-form steady state (fast, approximate)."""
    return screen_goodputs([replica], wl, slo)[0]


def screen_goodputs(replicas: Sequence[Replica], wl: Workload, slo: SLO) -> list[Goodput]:
    """:func:`screen_goodput` of replicas that differ only in their batch cap, in one fixed-point solve over
    every cap's grid of rates (the step time does not depend on the cap; only what is feasible does)."""
    tops = [max_rate(r, wl.isl.mean, wl.osl.mean) for r in replicas]
    widest = max(replicas, key=lambda r: r.max_batch)
    rates = np.concatenate([max(top, 1e-12) * _GRID for top in tops])
    ss = steady_state(widest, wl.isl.mean, wl.osl.mean, rates, _quantile(slo))
    meets = ss.feasible & (ss.ttft_q_ms <= slo.ttft_ms) & (ss.tpot_q_ms <= slo.tpot_ms)
    out = []
    for k, (replica, top) in enumerate(zip(replicas, tops, strict=True)):
        part = slice(k * len(_GRID), (k + 1) * len(_GRID))
        if top <= 0:
            out.append(Goodput(0.0, math.inf, math.inf, reason="no room for a single request of mean length"))
            continue
        ok = meets[part] & (ss.batch[part] <= batch_cap(replica, wl.isl.mean, wl.osl.mean))
        ttft, tpot = ss.ttft_q_ms[part], ss.tpot_q_ms[part]
        if not ok.any():
            out.append(Goodput(
                0.0, float(ttft[0]), float(tpot[0]),
                reason=f"misses the SLO even at low load (p{slo.percentile} TTFT {ttft[0]:.0f} ms, "
                f"TPOT {tpot[0]:.1f} ms)"))
            continue
        i = int(np.flatnonzero(ok).max())
        out.append(Goodput(float(rates[part][i]), float(ttft[i]), float(tpot[i])))
    return out


def _sample(wl: Workload, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified lengths: a verification's verdict then turns on the load, not on how many long requests
    one seed happened to draw."""
    rng = np.random.default_rng(seed)
    if wl.pairs is not None:
        return wl.pairs.sample_pairs(n, rng, stratified=True)
    return wl.isl.sample(n, rng, stratified=True), wl.osl.sample(n, rng, stratified=True)


WARMUP_LIFETIMES = 2.0
"""Requests arriving in the first two request lifetimes at the SLO (TTFT target + mean output x TPOT target) are
simulated but not measured: the batch starts empty and fills over about one lifetime."""
MIN_WARMUP_S = 5.0
MAX_UTILIZATION = 0.95
"""No rate above 95% of the replica's saturated throughput counts as goodput: its queue takes minutes to settle
(``relaxation_s``), so a finite simulation cannot show its steady state, and any burst breaks it."""
SATURATION_BATCHES = 8  # a saturated run serves this many full batches of requests (at least 400)


def warmup_s(wl: Workload, slo: SLO) -> float:
    """Seconds of arrivals simulated before the measured ones (see ``WARMUP_LIFETIMES``)."""
    lifetime = slo.ttft_ms / 1e3 + wl.osl.mean * slo.tpot_ms / 1e3
    return max(MIN_WARMUP_S, WARMUP_LIFETIMES * lifetime)


def relaxation_s(rate: float, capacity: float) -> float:
    """How long a queue at utilization rate/capacity takes to forget its start: the M/M/1 relaxation time
    1 / (mu (1 - sqrt(rho))^2) (Morse 1955; Kleinrock, Queueing Systems vol. 1, 1975). A batching replica
    has many servers and settles faster, so this over-estimates, on the safe side."""
    rho = rate / capacity
    if rho >= 1:
        return math.inf
    return 1.0 / (capacity * (1.0 - math.sqrt(rho)) ** 2)


def saturated_rps(replica: Replica, wl: Workload, seed: int) -> float:
    """Requests/s the replica completes when it always has work (a closed loop at its batch cap), measured
    between the first and the last quarter of the completions."""
    concurrent = min(replica.max_batch, replica.memory.kv_capacity_tokens / (wl.isl.mean + wl.osl.mean))
    n = max(400, math.ceil(SATURATION_BATCHES * concurrent))
    isl, osl = _sample(wl, n, seed)
    if (isl + osl > replica.memory.kv_capacity_tokens).any():
        return 0.0
    res = simulate(replica, Requests(np.zeros(n), isl, osl), closed_loop=replica.max_batch)
    done = np.sort(res.finish_s)
    k = n // 4
    span = done[n - k - 1] - done[k]
    return (n - 2 * k) / span * replica.dp if span > 0 else math.inf


def simulated_latency(replica: Replica, wl: Workload, rate: float, slo: SLO, n: int, seed: int,
                      warmup: float = 0.0) -> tuple[float, float]:
    """p-th percentile TTFT and TPOT (ms) of the replica at a rate, by event simulation.

    With ``warmup`` seconds the run holds that much more traffic first, left out of the percentiles, and the
    measured window lasts at least as long again: ``n`` requests or more. A rate above the replica's capacity
    then shows as a queue that grows through the window, not as the short burst an empty replica absorbs.
    """
    per_group = rate / replica.dp
    measured = max(n, math.ceil(per_group * warmup))
    total = measured + math.ceil(per_group * warmup)
    isl, osl = _sample(wl, total, seed)
    cap = replica.memory.kv_capacity_tokens
    keep = isl + osl <= cap  # a request larger than the KV cache cannot run on this replica at all
    if not keep.all():
        return math.inf, math.inf
    res = simulate(replica, Requests(arrivals(total, per_group, "poisson", seed), isl, osl))
    if total > measured:
        res = res.tail(measured)
    m = serving_metrics(res, replica.dp, replica.profile.frontend_latency_ms)
    q = slo.percentile
    return getattr(m, f"p{q}_ttft_ms"), getattr(m, f"p{q}_tpot_ms")


def verify_goodput(replica: Replica, wl: Workload, slo: SLO, guess: float, n: int, seed: int) -> Goodput:
    """Goodput per replica by simulation: the highest rate, at most ``MAX_UTILIZATION`` of the saturated
    throughput, whose p-th percentile TTFT and TPOT meet the SLO over ``n`` or more requests measured after a
    warm-up of two request lifetimes or two relaxation times, whichever is longer. From the screened guess,
    step up or down by 20% until the verdict changes, then bisect to 5%."""
    capacity = saturated_rps(replica, wl, seed)
    if capacity <= 0:
        return Goodput(0.0, math.inf, math.inf, verified=True, reason="a sampled request does not fit the KV cache")
    top = MAX_UTILIZATION * capacity
    lifetimes = warmup_s(wl, slo)

    def meets(rate: float) -> tuple[bool, float, float]:
        if rate > top * (1 + 1e-9):
            return False, math.nan, math.nan
        warm = max(lifetimes, 2.0 * relaxation_s(rate, capacity))
        ttft, tpot = simulated_latency(replica, wl, rate, slo, n, seed, warm)
        return ttft <= slo.ttft_ms and tpot <= slo.tpot_ms, ttft, tpot

    guess = min(max(guess, 1e-3), top)
    ok, ttft, tpot = meets(guess)
    last = (ttft, tpot)
    if ok:
        lo, best, hi = guess, (guess, ttft, tpot), None
        while hi is None:  # the screen is a lower bound as often as not
            up = min(lo * 1.2, top)
            if up <= lo:
                return Goodput(float(best[0]), best[1], best[2], verified=True)
            ok, ttft, tpot = meets(up)
            if ok:
                lo, best = up, (up, ttft, tpot)
            else:
                hi = up
    else:
        hi, lo, best = guess, 0.0, None
        for _ in range(12):  # down to 0.8**12 = 7% of the guess
            probe = hi * 0.8
            ok, ttft, tpot = meets(probe)
            last = (ttft, tpot)
            if ok:
                lo, best = probe, (probe, ttft, tpot)
                break
            hi = probe
        if best is None:
            return Goodput(0.0, *last, verified=True, reason="misses the SLO in simulation even at low load")
    while hi / lo > 1.05:
        mid = math.sqrt(lo * hi)
        ok, ttft, tpot = meets(mid)
        if ok:
            lo, best = mid, (mid, ttft, tpot)
        else:
            hi = mid
    return Goodput(float(best[0]), best[1], best[2], verified=True)


def replicas_needed(rate_rps: float, goodput_rps: float, min_replicas: int = 1, max_load: float = 1.0) -> int:
    """max(min_replicas, ceil(rate / (max_load x goodput))): enough replicas that none runs above max_load."""
    return max(min_replicas, 1, math.ceil(rate_rps / (max_load * goodput_rps) - 1e-9))


def survives_loss(rate_rps: float, goodput_rps: float, replicas: int, lost: int = 1) -> bool:
    """Do ``replicas - lost`` replicas still carry the rate within their goodput?"""
    left = replicas - lost
    return left >= 1 and rate_rps <= left * goodput_rps * (1 + 1e-9)


def _annotated(c: Candidate, ann: Annotation | None) -> Candidate:
    if ann is None:
        return c
    q = ann.quality
    return replace(
        c, quality_drop_pct=q.drop_pct if q else None, quality_source=q.source if q else "",
        quality_as_of=q.as_of if q else "", confidence=ann.confidence,
        error_band_pct=None if ann.error_band is None else round(100 * ann.error_band, 1),
        error_band_source=ann.error_band_source,
    )


def _price_candidate(key: PerfKey, offer: Offer, g: Goodput, req: PlanRequest) -> Candidate | None:
    per_instance = replicas_per_instance(offer, key.tp)
    price = offer.price(req.tier)
    if g.rps <= 0 or per_instance == 0 or price is None:
        return None
    rate = req.workload.rate_rps
    replicas = replicas_needed(rate, g.rps, req.min_replicas, req.max_load)
    instances = math.ceil(replicas / per_instance)
    usd_hour = instances * price
    return Candidate(
        model=key.model, gpu=key.gpu, num_gpus=key.tp, tp=key.tp, precision=key.precision,
        max_batch=key.max_batch, offer=offer.id, cloud=offer.cloud, region=offer.region,
        instance_type=offer.instance_type, tier=req.tier, goodput_rps=g.rps, replicas=replicas,
        instances=instances, usd_per_hour=usd_hour,
        usd_per_1m_output_tokens=usd_per_million(usd_hour, rate * req.workload.osl.mean),
        usd_per_1m_total_tokens=usd_per_million(usd_hour, rate * (req.workload.isl.mean + req.workload.osl.mean)),
        slo_ttft_ms=g.slo_ttft_ms, slo_tpot_ms=g.slo_tpot_ms, verified=g.verified,
        usd_per_month=usd_hour * HOURS_PER_MONTH * (1 + req.overhead_pct / 100.0),
        load_per_replica=rate / (replicas * g.rps), survives_one_loss=survives_loss(rate, g.rps, replicas),
        survives_instance_loss=survives_loss(rate, g.rps, replicas, min(replicas, per_instance)),
    )


def pareto_front(cands: Sequence[Candidate]) -> list[int]:
    """Indices of candidates no other candidate beats on cost, TTFT and TPOT at once."""
    pts = np.array([[c.usd_per_hour, c.slo_ttft_ms, c.slo_tpot_ms] for c in cands])
    front = []
    for i, p in enumerate(pts):
        dominated = np.any(np.all(pts <= p, axis=1) & np.any(pts < p, axis=1))
        if not dominated:
            front.append(i)
    return front


def _configs(req: PlanRequest, cat: Catalog, offers: list[Offer]):
    models = [cat.model(m) for m in req.models]
    precisions = [cat.precision(p) for p in req.precisions] if req.precisions else list(cat.precisions.values())
    gpu_counts: dict[str, set[int]] = {}
    for offer in offers:
        gpu_counts.setdefault(offer.gpu, set()).add(offer.gpu_count)
    for model in models:
        for gpu_id, counts in gpu_counts.items():
            for tp in req.tps:
                if not any(c >= tp for c in counts):
                    continue
                for precision in precisions:
                    yield model, cat.gpus[gpu_id], tp, precision


def plan(req: PlanRequest, progress: Callable[[str], None] | None = None) -> PlanResult:
    """Rank every candidate configuration by the cost of serving the workload within the SLO.

    Raises:
        InfeasibleError: no offer matches the filters, or no candidate meets the SLO (the message
            summarizes why the candidates failed).
    """
    start = time.perf_counter()
    cat = load_catalog(req.catalog)
    profile = get_profile(req.engine)
    if req.workload.rate_rps <= 0:
        raise ConfigError("rate must be > 0 requests/s")
    _check_headroom(req)
    check_tier(req.tier)
    offers = cat.find_offers(clouds=req.clouds, regions=req.regions, gpus=req.gpus, tier=req.tier)
    if not offers:
        raise InfeasibleError(f"no instance offer matches the filters with a {req.tier} price")
    by_gpu: dict[str, list[Offer]] = {}
    for offer in offers:
        by_gpu.setdefault(offer.gpu, []).append(offer)
    rejected: list[Rejected] = []
    screened: dict[PerfKey, tuple[Replica, Goodput]] = {}
    judge = Judge(profile, profile_coverage(profile, req.catalog), {cat.precision(p).id for p in req.precisions},
                  req.max_quality_drop_pct, req.confidence)
    evaluated = 0
    for model, gpu, tp, precision in _configs(req, cat, offers):
        n_offers = sum(1 for o in by_gpu[gpu.id] if o.gpu_count >= tp)
        label = f"{model.id} {gpu.id} TP{tp} {precision.id}"
        why = judge(model, gpu, precision)[1]
        if why:
            rejected.append(Rejected(label, why))
            evaluated += n_offers * len(req.batch_caps)
            continue
        try:
            build_replica(model, gpu, tp, tp, precision, profile)  # reject once per config, with the reason
        except InfeasibleError as exc:
            rejected.append(Rejected(label, str(exc)))
            evaluated += n_offers * len(req.batch_caps)
            continue
        evaluated += n_offers * len(req.batch_caps)
        replicas = [build_replica(model, gpu, tp, tp, precision, profile, max_batch=cap) for cap in req.batch_caps]
        for cap, replica, g in zip(req.batch_caps, replicas, screen_goodputs(replicas, req.workload, req.slo),
                                   strict=True):
            if g.rps <= 0:
                rejected.append(Rejected(f"{label} batch<={cap}", g.reason))
            screened[PerfKey(model.id, gpu.id, tp, precision.id, cap)] = (replica, g)
    if progress:
        progress(f"screened {len(screened)} configurations on {len(offers)} offers")
    priced: dict = {}
    screens = {k: g for k, (_, g) in screened.items()}  # the screen's own figures, before any verification
    cands, every = _rank(screened, by_gpu, req, judge.notes, priced)
    for _ in range(8):  # verify the leaders by simulation until the top of the ranking is verified
        todo = [c for c in cands[: req.verify_top] if not c.verified]
        if not todo:
            break
        keys = sorted({PerfKey(c.model, c.gpu, c.tp, c.precision, c.max_batch) for c in todo},
                      key=lambda k: (k.model, k.gpu, k.tp, k.precision, k.max_batch))
        guesses = {c: _start_guess(c, screened, screens) for c in keys}  # from the verifications before this round
        for c in keys:
            replica = screened[c][0]
            screened[c] = (replica, verify_goodput(replica, req.workload, req.slo, guesses[c], req.sim_requests,
                                                   req.seed))
            if progress:
                progress(f"verified {c.model} {c.gpu} TP{c.tp} {c.precision} batch<={c.max_batch}")
        cands, every = _rank(screened, by_gpu, req, judge.notes, priced)
    if not cands:
        raise InfeasibleError(_why_none(rejected, req))
    result = PlanResult(req, cands, _dedupe(rejected), evaluated, time.perf_counter() - start)
    result.pareto = pareto_front(cands)
    result.all_batch_caps = every
    return result


def _start_guess(key: PerfKey, screened: dict, screens: dict) -> float:
    """Where verification of ``key`` starts: its screen, scaled by the verified / screened ratio of the nearest
    verified batch cap of the same configuration. The screen errs alike across caps (on TPOT-bound
    configurations it over-estimates by up to half), so the search then starts near its answer: fewer
    simulations. The ranking itself uses the screens as they are."""
    g = screened[key][1]
    known = [(k.max_batch, v.rps / screens[k].rps) for k, (_, v) in screened.items()
             if v.verified and screens[k].rps > 0
             and (k.model, k.gpu, k.tp, k.precision) == (key.model, key.gpu, key.tp, key.precision)]
    if not known or g.rps <= 0:
        return g.rps
    return g.rps * min(known, key=lambda cr: (abs(math.log(cr[0] / key.max_batch)), cr[0]))[1]


def _cost_order(c: Candidate) -> tuple:
    """Cheapest first; at equal cost the verified, better-known, higher-quality, higher-goodput one."""
    known = ("measured", "interpolated", "extrapolated", "").index(c.confidence)
    drop = math.inf if c.quality_drop_pct is None else c.quality_drop_pct
    return (round(c.usd_per_hour, 6), not c.verified, known, drop, -c.goodput_rps, c.num_gpus)


def _check_headroom(req: PlanRequest) -> None:
    if isinstance(req.min_replicas, bool) or not isinstance(req.min_replicas, int) or req.min_replicas < 1:
        raise ConfigError(f"min_replicas must be a whole number >= 1 (got {req.min_replicas})")
    if not 0 < req.max_load <= 1:
        raise ConfigError(f"max_load must be > 0 and <= 1, a fraction of goodput (got {req.max_load})")
    check_filters(req.max_quality_drop_pct, req.confidence)


def _rank(screened, by_gpu, req: PlanRequest, notes=None, priced=None) -> tuple[list[Candidate], list[Candidate]]:
    """Every (configuration, offer) priced and ranked; ``priced`` (a dict kept across calls) holds each
    configuration's candidates until its goodput changes (a verification)."""
    priced = {} if priced is None else priced
    cands = []
    for key, (_, g) in screened.items():
        hit = priced.get(key)
        if hit is None or hit[0] is not g:
            ann = (notes or {}).get((key.model, key.gpu, key.precision))
            mine = [_annotated(c, ann) for c in (_price_candidate(key, o, g, req) for o in by_gpu[key.gpu])
                    if c is not None]
            hit = priced[key] = (g, mine)
        cands.extend(hit[1])
    cands.sort(key=_cost_order)
    # The batch cap is a tuning knob: keep the best cap for each configuration on each offer.
    best: dict[tuple, Candidate] = {}
    for c in cands:
        best.setdefault((c.model, c.gpu, c.tp, c.precision, c.offer), c)
    return list(best.values()), cands


def _dedupe(rejected: list[Rejected]) -> list[Rejected]:
    seen, out = set(), []
    for r in rejected:
        if r.config not in seen:
            seen.add(r.config)
            out.append(r)
    return out


def _cut(text: str, limit: int = 160) -> str:
    """``text`` cut at a word boundary within ``limit`` characters, with '...' when cut."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + "..."


def _why_none(rejected: list[Rejected], req: PlanRequest) -> str:
    reasons: dict[str, list] = {}  # reasons alike but for their numbers and names -> [count, first example]
    for r in rejected:
        kind = re.sub(r"[\d.]+", "#", r.reason.split(" (")[0])
        entry = reasons.setdefault(kind, [0, f"{r.config}: {r.reason}"])
        entry[0] += 1
    top = "; ".join(_cut(example) + (f" (and {n - 1} more like it)" if n > 1 else "")
                    for n, example in sorted(reasons.values(), key=lambda e: -e[0])[:3])
    return (
        f"no configuration serves {', '.join(req.models)} within p{req.slo.percentile} TTFT {req.slo.ttft_ms:g} ms "
        f"/ TPOT {req.slo.tpot_ms:g} ms ({top})"
    )
