"""From user-facing names to a simulated fleet: the replica's engines, the instance offer and its prices,
the cold start, the SLO batch and the per-instance capacity estimate policies size against."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fleetwise.allocate.coldstart import DEFAULT_BOOT_S, DEFAULT_LOAD_GB_PER_S, cold_start_from_bytes
from fleetwise.catalog import Offer, load_catalog
from fleetwise.cost import replica_usd_per_hour, replicas_per_instance
from fleetwise.errors import ConfigError, InfeasibleError
from fleetwise.perf.memory import weight_bytes
from fleetwise.perf.replica import Replica, replica_from_names
from fleetwise.perf.steps import StepModel
from fleetwise.plan.search import SLO, screen_goodput, verify_goodput
from fleetwise.plan.workload import Workload
from fleetwise.sim.core import EngineSpec
from fleetwise.sim.fleet import InstanceType
from fleetwise.traffic.lengths import EmpiricalLengths, LengthDist

# Requests per simulation when the capacity is measured on the trace's lengths: five times plan's 400, because
# a trace's heavy tail needs more draws for a stable p95 (each simulation still takes well under a second).
GOODPUT_SAMPLE = 2000


@dataclass(frozen=True)
class FleetSpec:
    """Everything fixed about the fleet: what one instance is, what its engines do, what it costs."""

    replica: Replica
    offer: Offer
    itype: InstanceType
    engine: EngineSpec
    replicas_per_instance: int
    capacity_rps_per_instance: float
    slo: SLO
    capacity_reason: str = ""  # why the capacity at the SLO is zero, when it is

    def describe(self) -> str:
        return (f"{self.replica.label} x{self.replicas_per_instance} per {self.offer.id} "
                f"({self.itype.engines} engines/instance, cold start {self.itype.cold_start_s:.0f} s)")


def pick_offer(gpu: str, gpus: int, *, offer: str | None = None, clouds=(), regions=(), catalog=None,
               want_spot: bool = False) -> Offer:
    """The named offer, else the cheapest on-demand instance per replica with enough of that GPU (among those
    with a spot price when ``want_spot`` and any has one)."""
    cat = catalog or load_catalog()
    if offer:
        chosen = cat.offer(offer)
        if chosen.gpu != cat.gpu(gpu).id or chosen.gpu_count < gpus:
            raise InfeasibleError(f"offer {chosen.id} has {chosen.gpu_count}x{chosen.gpu}; the replica needs "
                                  f"{gpus}x{cat.gpu(gpu).id}")
        return chosen
    fits = [o for o in cat.find_offers(clouds=clouds, regions=regions, gpus=[gpu], tier="on_demand")
            if o.gpu_count >= gpus]
    if not fits:
        raise InfeasibleError(f"no catalog offer has {gpus} or more {cat.gpu(gpu).id} GPUs with an on-demand price"
                              + (f" in {', '.join([*clouds, *regions])}" if clouds or regions else ""))
    if want_spot and any(o.price("spot") is not None for o in fits):
        fits = [o for o in fits if o.price("spot") is not None]
    return min(fits, key=lambda o: (replica_usd_per_hour(o, "on_demand", gpus), o.id))


def spot_clouds(gpu: str, gpus: int, catalog=None) -> list[str]:
    """Clouds with an offer of ``gpus`` or more of the GPU at a spot price (for a hint when the offer has none)."""
    cat = catalog or load_catalog()
    return sorted({o.cloud for o in cat.find_offers(gpus=[gpu], tier="spot") if o.gpu_count >= gpus})


def slo_batch(sm: StepModel, max_batch: int, max_num_tokens: int, kv_tokens: int, isl: float, osl: float,
              tpot_ms: float) -> int:
    """Largest batch whose steady-state step meets the TPOT target (at least 1).

    At a steady batch of b requests each step decodes b tokens and prefills the prompts of the requests that
    replace the finishing ones: b x isl / osl prompt tokens per step on average (within the token budget).
    """
    context = isl + osl / 2.0
    limit = max(1, min(max_batch, int(kv_tokens // max(isl + osl, 1.0))))

    def step_ms(b: int) -> float:
        prefill = min(b * isl / max(osl, 1.0), max(max_num_tokens - b, 0))
        pairs = prefill * isl / 2.0
        return sm(int(prefill), pairs, b, b * context, max(1, round(prefill / max(isl, 1.0)))) * 1e3

    lo, hi = 1, limit
    if step_ms(1) > tpot_ms:
        return 1
    while lo < hi:  # step time grows with the batch
        mid = (lo + hi + 1) // 2
        if step_ms(mid) <= tpot_ms:
            lo = mid
        else:
            hi = mid - 1
    return lo


def engine_spec(replica: Replica, *, mean_isl: float = 1000.0, mean_osl: float = 250.0,
                tpot_ms: float = 50.0) -> EngineSpec:
    """What each engine of a replica is - step model, batch and KV limits, context window, frontend latency -
    for the simulator and the emulated workers alike (one engine definition, one step model)."""
    sm = StepModel(replica)
    kv = replica.memory.kv_capacity_tokens
    return EngineSpec(sm, replica.max_batch, replica.max_num_tokens, kv, replica.profile.kv_block_tokens,
                      slo_batch(sm, replica.max_batch, replica.max_num_tokens, kv, mean_isl, mean_osl, tpot_ms),
                      frontend_s=replica.profile.frontend_latency_ms * 1e-3,
                      kv_bytes_per_token=replica.memory.kv_bytes_per_token,
                      max_context=replica.model.max_context)


def fleet_spec(model: str, gpu: str, gpus: int = 1, tp: int | None = None, precision: str = "bf16", *,
               engine: str = "trtllm", offer: str | None = None, clouds=(), regions=(),
               ttft_ms: float = 1000.0, tpot_ms: float = 50.0, mean_isl: float = 1000.0, mean_osl: float = 250.0,
               cold_start_s: float | None = None, load_gb_per_s: float = DEFAULT_LOAD_GB_PER_S,
               boot_s: float = DEFAULT_BOOT_S, hazard_per_hour: float | None = None,
               max_batch: int | None = None, want_spot: bool = False,
               lengths: tuple[np.ndarray, np.ndarray] | None = None, catalog: str | None = None) -> FleetSpec:
    """Resolve a replica configuration and an instance offer into a fleet the simulator can run.

    The per-instance capacity policies size against is the perf model's closed-form goodput at the SLO for
    the mean lengths; with ``lengths`` (the trace's input / output tokens) it is found by simulating one
    replica on those lengths instead (bisection on the rate, p95 TTFT and TPOT), which heavy-tailed traces
    need - a mean-length estimate over-promises there. Only requests within the model's context window count
    (longer ones are dropped, not served), and the mean lengths are then theirs. ``catalog``: a catalog name or
    directory (see :func:`fleetwise.catalog.load_catalog`; None: the default).
    """
    cat = load_catalog(catalog)
    replica = replica_from_names(model, gpu, gpus, tp, precision, engine, catalog=cat, max_batch=max_batch)
    if lengths is not None:
        lengths = servable(np.asarray(lengths[0]), np.asarray(lengths[1]), replica.model.max_context)
        mean_isl, mean_osl = float(lengths[0].mean()), float(lengths[1].mean())
    chosen = pick_offer(gpu, gpus, offer=offer, clouds=clouds, regions=regions, catalog=cat, want_spot=want_spot)
    per_instance = replicas_per_instance(chosen, gpus)
    if load_gb_per_s <= 0:
        raise ConfigError("model load bandwidth must be > 0 GB/s")
    if cold_start_s is None:
        cold_start_s = cold_start_from_bytes(weight_bytes(replica.model, replica.precision), boot_s=boot_s,
                                             load_gb_per_s=load_gb_per_s)
    if cold_start_s < 0:
        raise ConfigError("cold start must be >= 0 s")
    prices = {"on_demand": chosen.price("on_demand")}
    if chosen.price("spot") is not None:  # no spot price: every spot launch falls back to on-demand
        prices["spot"] = chosen.price("spot")
    reserved = chosen.price("reserved_1y") or chosen.price("reserved_3y")
    prices["reserved"] = reserved if reserved is not None else prices["on_demand"]
    if hazard_per_hour is not None and not hazard_per_hour >= 0:
        raise ConfigError(f"preemption rate must be >= 0 per hour (got {hazard_per_hour:g})")
    hazard = hazard_per_hour if hazard_per_hour is not None else (chosen.hazard_per_hour or 0.0)
    itype = InstanceType(chosen.id, per_instance * replica.dp, prices, hazard, cold_start_s)
    espec = engine_spec(replica, mean_isl=mean_isl, mean_osl=mean_osl, tpot_ms=tpot_ms)
    slo = SLO(ttft_ms, tpot_ms)
    good = screen_goodput(replica, Workload("trace", LengthDist(mean_isl), LengthDist(mean_osl), 1.0), slo)
    if lengths is not None and good.rps > 0:
        pairs = EmpiricalLengths(*lengths)
        wl = Workload("trace", LengthDist(mean_isl), LengthDist(mean_osl), 1.0, pairs=pairs)
        good = verify_goodput(replica, wl, slo, good.rps, GOODPUT_SAMPLE, seed=0)
    return FleetSpec(replica, chosen, itype, espec, per_instance, good.rps * per_instance, slo, good.reason)


def servable(isl: np.ndarray, osl: np.ndarray, max_context: int) -> tuple[np.ndarray, np.ndarray]:
    """The (input, output) pairs that fit the context window (all of them if none does)."""
    fits = isl + osl <= max_context
    return (isl[fits], osl[fits]) if fits.any() else (isl, osl)


def instances_for(rate_rps: float, spec: FleetSpec, headroom: float = 1.0) -> int:
    """Instances needed to serve a rate at the SLO by the capacity estimate (at least 1)."""
    cap = spec.capacity_rps_per_instance
    if not cap > 0:
        why = spec.capacity_reason or "capacity estimate is 0"
        raise InfeasibleError(f"{spec.replica.label} cannot meet p95 TTFT <= {spec.slo.ttft_ms:g} ms and TPOT <= "
                              f"{spec.slo.tpot_ms:g} ms for these requests ({why}); relax --ttft-p95-ms / "
                              "--tpot-p95-ms, use more or faster GPUs, or run a fixed fleet with --replicas")
    return max(1, math.ceil(rate_rps * headroom / cap - 1e-9))
