"""Named strategies for ``fleetwise simulate`` / ``compare``, and schedule files for the static policy.

Every dynamic strategy starts from a warm fleet sized for the trace's first five minutes (the same for all,
so none gets hindsight the others lack); ``static-peak`` is sized for the busiest five minutes, in hindsight,
as a peak-provisioned fleet is in practice.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.sim.anchors import DynamoLoad, HpaQueue, SkyServeFallback, WvaSaturation
from fleetwise.sim.core import SimConfig
from fleetwise.sim.fleet import ROLES
from fleetwise.sim.hybrid import Hybrid
from fleetwise.sim.policies import Budget, Policy, Reactive, StaticSchedule, fit_budget
from fleetwise.sim.requests import SimRequests
from fleetwise.sim.results import SimulationResult
from fleetwise.sim.rolling import Rolling
from fleetwise.sim.run import simulate_fleet
from fleetwise.sim.setup import FleetSpec, instances_for
from fleetwise.traffic.tabular import csv_records, utf8_text

SIZING_WINDOW_S = 300.0  # rates over 5 minutes: short enough to see bursts, long enough to be more than noise
MAX_SCHEDULE_INSTANCES = 10_000  # instances of one role a schedule may ask for at one time


def window_rates(requests: SimRequests, window_s: float = SIZING_WINDOW_S) -> np.ndarray:
    """Arrival rate (req/s) in consecutive windows of the trace."""
    end = float(requests.arrival_s[-1]) if len(requests) else 0.0
    edges = np.arange(0.0, end + window_s, window_s)
    if len(edges) < 2:
        edges = np.array([0.0, window_s])
    return np.histogram(requests.arrival_s, bins=edges)[0] / window_s


def split_spot(n: int, spot_fraction: float, reserved: int = 0) -> dict[str, int]:
    """``n`` instances: ``reserved`` of them reserved, ``spot_fraction`` of the rest on spot."""
    if not 0 <= spot_fraction <= 1:
        raise ConfigError("spot fraction must be within [0, 1]")
    rest = max(n - reserved, 0)
    spot = math.floor(rest * spot_fraction + 0.5)  # half rounds up
    return {"reserved": reserved, "on_demand": rest - spot, "spot": spot}


@dataclass(frozen=True)
class Sizing:
    """What a named strategy is built from: the fleet, the instances the trace's first and busiest five minutes
    need at the SLO, and the user's options."""

    spec: FleetSpec
    first: int
    peak: int
    spot_fraction: float = 0.5
    reserved: int = 0
    budget_usd_per_hour: float | None = None
    max_instances: int = 1000


def _static(s: Sizing, name: str) -> Policy:
    return StaticSchedule.fixed(split_spot(s.peak, s.spot_fraction if name == "static-spot" else 0.0, s.reserved),
                                name)


def _reactive(s: Sizing, name: str) -> Policy:
    return Reactive(initial_instances=s.first, reserved=s.reserved, max_instances=s.max_instances,
                    spot_fraction=s.spot_fraction if name == "reactive-spot" else 0.0, name=name)


def _budget(s: Sizing, name: str) -> Policy:
    if s.budget_usd_per_hour is None:
        raise ConfigError("the budget strategy needs a USD/hour budget (--budget-usd-per-hour)")
    # Within the budget from the start: what it would not buy later, it must not start with either.
    start = fit_budget(s.budget_usd_per_hour, s.spec.itype, s.reserved, max(s.first, s.reserved))
    return Budget(initial_instances=start, reserved=s.reserved, max_instances=s.max_instances,
                  usd_per_hour=s.budget_usd_per_hour, name=name)


def _rolling(s: Sizing, name: str) -> Policy:
    return Rolling(initial_instances=s.first, reserved=s.reserved)


def _hybrid(s: Sizing, name: str) -> Policy:
    return Hybrid(Rolling(initial_instances=s.first, reserved=s.reserved))


def _anchor(cls: type) -> Callable[[Sizing, str], Policy]:
    def build(s: Sizing, name: str) -> Policy:
        return cls(initial_instances=s.first, max_instances=max(s.max_instances, s.first))
    return build


def _skyserve(s: Sizing, name: str) -> Policy:
    return SkyServeFallback(target_qps_per_replica=s.spec.capacity_rps_per_instance, initial_instances=s.first,
                            max_instances=max(s.max_instances, s.first))


# Every named strategy of ``fleetwise simulate --policy`` / ``compare --strategies``: name -> builder.
STRATEGIES: dict[str, Callable[[Sizing, str], Policy]] = {
    "static-peak": _static, "static-spot": _static, "reactive": _reactive, "reactive-spot": _reactive,
    "budget": _budget, "rolling": _rolling, "hybrid": _hybrid, "hpa-queue": _anchor(HpaQueue),
    "wva": _anchor(WvaSaturation), "dynamo-load": _anchor(DynamoLoad), "skyserve": _skyserve,
}


def make_policy(name: str, requests: SimRequests, spec: FleetSpec, *, spot_fraction: float = 0.5,
                reserved: int = 0, budget_usd_per_hour: float | None = None, max_instances: int = 1000) -> Policy:
    """A strategy by name, sized from the trace and the per-instance capacity at the SLO."""
    rates = window_rates(requests)
    sizing = Sizing(spec, instances_for(rates[0], spec), instances_for(rates.max(), spec), spot_fraction, reserved,
                    budget_usd_per_hour, max_instances)
    build = STRATEGIES.get(name)
    if build is None:
        raise ConfigError(f"unknown strategy '{name}' (one of {', '.join(STRATEGIES)})")
    return build(sizing, name)


def compare_strategies(requests: SimRequests, spec: FleetSpec, names: list[str], config: SimConfig | None = None,
                       progress: Callable[[str, float], None] | None = None, **policy_opts) -> list[SimulationResult]:
    """Run every named strategy on the same requests, fleet and seed (default options: ``SimConfig()``)."""
    policies = [make_policy(n, requests, spec, **policy_opts) for n in names]  # validate all before running
    out = []
    for policy in policies:
        cb = (lambda f, n=policy.name: progress(n, f)) if progress else None
        out.append(simulate_fleet(requests, spec, policy, config, cb))
    return out


def _nonneg(value: str, where: str, field: str) -> float:
    try:
        n = float(value)
    except ValueError:
        raise InputFormatError(f"{where}: field '{field}': '{value}' is not a number") from None
    if not 0 <= n < math.inf:
        raise InputFormatError(f"{where}: field '{field}': must be a finite number >= 0 (got {value})")
    return n


def _count(value: str, where: str, field: str) -> int:
    return _bounded(_nonneg(value, where, field), where, field)


def _bounded(n: float, where: str, field: str) -> int:
    """A count of instances, rounded up, within :data:`MAX_SCHEDULE_INSTANCES`."""
    if n > MAX_SCHEDULE_INSTANCES:
        raise InputFormatError(f"{where}: field '{field}': {n:,.6g} instances is more than the simulator runs "
                               f"(at most {MAX_SCHEDULE_INSTANCES:,})")
    return math.ceil(n - 1e-9)


def read_preemptions(path: str | Path) -> tuple[float, ...]:
    """Spot notice times to replay: one number of seconds per line (a header and # comments are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: preemption file not found")
    times = []
    with utf8_text(path) as handle:
        for i, line in enumerate(handle, start=1):
            cell = line.split("#")[0].strip().split(",")[0].strip()
            if cell and cell.lower() not in ("t_s", "time_s", "time"):
                times.append(_nonneg(cell, f"{path}: line {i}", "time"))
    return tuple(sorted(times))


def read_schedule(path: str | Path, instance: tuple[str, int] | None = None) -> StaticSchedule:
    """A static schedule from a CSV (``time_s`` + any of ``reserved``, ``on_demand``, ``spot`` instance counts)
    or from ``fleetwise optimize --json`` output (its instance counts summed over offers and read as instances
    of the simulated type; reservations held throughout).

    Every row must have a cell for every column (an empty cell is 0 instances), and at most
    :data:`MAX_SCHEDULE_INSTANCES` of a role.

    Args:
        instance: (GPU id, GPU count) of the simulated instance type. An optimize schedule's counts are then
            converted by GPUs (two 1-GPU instances = one 2-GPU instance) and must use the same GPU type.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: schedule file not found")
    if path.suffix.lower() == ".json":
        return _schedule_from_optimize(path, instance)
    with utf8_text(path) as handle:
        try:
            records = list(csv_records(handle))
        except csv.Error as exc:
            raise InputFormatError(f"{path}: not a readable CSV file ({exc})") from None
    if len(records) < 2:
        raise InputFormatError(f"{path}: no schedule rows")
    header = [h.strip() for h in records[0][1]]
    if "time_s" not in header or not set(header) & set(ROLES):
        raise InputFormatError(f"{path}: needs a time_s column and at least one of {', '.join(ROLES)}")
    twice = [h for h in dict.fromkeys(header) if h and header.count(h) > 1]
    if twice:
        raise InputFormatError(f"{path}: line 1: field '{twice[0]}': the header names it "
                               f"{header.count(twice[0])} times")
    times, counts = [], []
    for line, cells, _ in records[1:]:
        where = f"{path}: line {line}"
        if len(cells) != len(header):
            more = "more" if len(cells) > len(header) else "fewer"
            raise InputFormatError(f"{where}: {len(cells)} cells, {more} than the header's {len(header)} columns")
        row = {k: v.strip() for k, v in zip(header, cells, strict=True) if k}
        times.append(_nonneg(row["time_s"], where, "time_s"))
        counts.append({r: _count(row[r] or "0", where, r) for r in ROLES if r in row})
    try:
        return StaticSchedule(times, counts, "schedule")
    except ConfigError as exc:
        raise InputFormatError(f"{path}: {exc}") from None


def _offer_weights(offer_ids, path: Path, instance: tuple[str, int] | None,
                   used: np.ndarray | None = None) -> np.ndarray:
    """Simulated instances per instance of each schedule offer (by GPU count; the GPU type of every offer the
    schedule uses must match; unused offers weigh nothing)."""
    if not isinstance(offer_ids, list) or not offer_ids:
        raise InputFormatError(f"{path}: schedule.offers must list the offer ids, as 'fleetwise optimize --json' "
                               "writes")
    if instance is None:
        return np.ones(len(offer_ids))
    from fleetwise.catalog import load_catalog
    from fleetwise.errors import UnknownNameError

    cat = load_catalog()
    gpu, count = instance
    weights = []
    for k, oid in enumerate(offer_ids):
        if used is not None and not used[k]:
            weights.append(0.0)
            continue
        try:
            offer = cat.offer(str(oid))
        except UnknownNameError:
            raise InputFormatError(f"{path}: schedule offer '{oid}' is not in the catalog") from None
        if offer.gpu != gpu:
            raise InputFormatError(f"{path}: schedule offer '{oid}' has {offer.gpu} GPUs but the simulated fleet "
                                   f"runs {gpu} (simulate with --gpu {offer.gpu} --offer {oid})")
        weights.append(offer.gpu_count / count)
    return np.array(weights)


def _offer_rows(sched: dict, tier: str, path: Path) -> np.ndarray:
    """(offers, periods) instance counts of one tier; every count finite and >= 0."""
    try:
        arr = np.asarray(sched[tier], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise InputFormatError(f"{path}: schedule.{tier} must be a list of per-offer lists of counts, as "
                               "'fleetwise optimize --json' writes") from None
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InputFormatError(f"{path}: schedule.{tier} must be a non-empty list of per-offer lists of counts")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputFormatError(f"{path}: schedule.{tier} has a missing, infinite or negative count")
    return arr


def _schedule_from_optimize(path: Path, instance: tuple[str, int] | None) -> StaticSchedule:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sched = data["schedule"]
        period_s = float(sched["period_h"]) * 3600.0
        offer_ids = sched.get("offers")
        reservations = [(str(r["offer"]), int(r["count"])) for r in data.get("reservations", [])]
    except (ValueError, KeyError, TypeError, OverflowError, AttributeError) as exc:
        raise InputFormatError(f"{path}: not a 'fleetwise optimize --json' output (missing or bad {exc})") from None
    if not (period_s > 0 and math.isfinite(period_s)) or any(n < 0 for _, n in reservations):
        raise InputFormatError(f"{path}: schedule.period_h must be > 0 and reservation counts >= 0")
    raw_spot, raw_od = _offer_rows(sched, "spot", path), _offer_rows(sched, "on_demand", path)
    if not isinstance(offer_ids, list) or len(offer_ids) != raw_spot.shape[0] or raw_od.shape != raw_spot.shape:
        raise InputFormatError(f"{path}: schedule.offers, schedule.spot and schedule.on_demand must have one row "
                               "per offer and the same periods")
    reserved_ids = {oid for oid, n in reservations if n > 0}
    used = (raw_spot.sum(axis=1) > 0) | (raw_od.sum(axis=1) > 0) | np.array([str(o) in reserved_ids
                                                                               for o in offer_ids])
    weights = _offer_weights(offer_ids, path, instance, used)
    extra = [oid for oid in reserved_ids if oid not in map(str, offer_ids)]
    by_id = dict(zip(map(str, offer_ids), weights)) | dict(zip(extra, _offer_weights(extra, path, instance)
                                                               if extra else []))
    reserved = _bounded(sum(n * by_id[oid] for oid, n in reservations if n > 0), str(path), "reservations")
    spot, od = weights @ raw_spot, weights @ raw_od
    times = [k * period_s for k in range(len(spot))]
    counts = [{"reserved": reserved, "spot": _bounded(s, f"{path}: period {k}", "spot"),
               "on_demand": _bounded(d, f"{path}: period {k}", "on_demand")}
              for k, (s, d) in enumerate(zip(spot, od))]
    return StaticSchedule(times, counts, "schedule")


def fleet_policy(requests: SimRequests, spec: FleetSpec, *, replicas: int | None = None,
                 schedule: str | Path | None = None, policy: str | None = None, spot_fraction: float | None = None,
                 reserved: int = 0, budget_usd_per_hour: float | None = None) -> Policy:
    """What drives the fleet in ``fleetwise simulate``: a fixed fleet of ``replicas`` (rounded up to whole
    instances, ``spot_fraction`` of them on spot, default none), a ``schedule`` file (a CSV of instance counts,
    or ``fleetwise optimize --json`` output re-read for this instance type), or a named strategy
    (``spot_fraction`` of its launches on spot, default half); with none of the three, ``static-peak``.

    Raises:
        ConfigError: more than one of the three, an unknown strategy, or a budget without the budget strategy.
    """
    given = [n for n, v in (("replicas", replicas), ("schedule", schedule), ("policy", policy)) if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give one of replicas, schedule, policy (got {' and '.join(given)})")
    if policy is not None and policy not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{policy}' (one of {', '.join(STRATEGIES)})")
    if (policy == "budget") != (budget_usd_per_hour is not None):
        raise ConfigError("a USD/hour budget goes with the budget strategy, and the budget strategy needs one")
    if schedule is not None:
        instance = (spec.offer.gpu, spec.offer.gpu_count) if Path(schedule).suffix.lower() == ".json" else None
        return read_schedule(schedule, instance)
    if replicas is not None:
        n = math.ceil(replicas / spec.replicas_per_instance)
        return StaticSchedule.fixed(split_spot(max(n, reserved), spot_fraction or 0.0, reserved),
                                    f"{replicas} replicas")
    return make_policy(policy or "static-peak", requests, spec,
                       spot_fraction=0.5 if spot_fraction is None else spot_fraction, reserved=reserved,
                       budget_usd_per_hour=budget_usd_per_hour)
