"""Named strategies for ``fleetwise simulate`` / ``compare``, and schedule files for the static policy.

Every dynamic strategy starts from a warm fleet sized for the trace's first five minutes (the same for all,
so none gets hindsight the others lack); ``static-peak`` is sized for the busiest five minutes, in hindsight,
as a peak-provisioned fleet is in practice.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np

from fleetwise.errors import ConfigError, InputFormatError
from fleetwise.sim.core import SimConfig
from fleetwise.sim.fleet import ROLES
from fleetwise.sim.policies import Budget, Policy, Reactive, StaticSchedule
from fleetwise.sim.requests import SimRequests
from fleetwise.sim.results import SimulationResult
from fleetwise.sim.rolling import Rolling
from fleetwise.sim.run import simulate_fleet
from fleetwise.sim.setup import FleetSpec, instances_for

STRATEGIES = ("static-peak", "static-spot", "reactive", "reactive-spot", "budget", "rolling")
SIZING_WINDOW_S = 300.0


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


def make_policy(name: str, requests: SimRequests, spec: FleetSpec, *, spot_fraction: float = 0.5,
                reserved: int = 0, budget_usd_per_hour: float | None = None, max_instances: int = 1000) -> Policy:
    """A strategy by name, sized from the trace and the per-instance capacity at the SLO."""
    rates = window_rates(requests)
    first = instances_for(rates[0], spec)
    peak = instances_for(rates.max(), spec)
    if name == "static-peak":
        return StaticSchedule.fixed(split_spot(peak, 0.0, reserved), name)
    if name == "static-spot":
        return StaticSchedule.fixed(split_spot(peak, spot_fraction, reserved), name)
    if name in ("reactive", "reactive-spot"):
        return Reactive(initial_instances=first, reserved=reserved, max_instances=max_instances,
                        spot_fraction=spot_fraction if name == "reactive-spot" else 0.0, name=name)
    if name == "budget":
        if budget_usd_per_hour is None:
            raise ConfigError("the budget strategy needs a USD/hour budget (--budget-usd-per-hour)")
        return Budget(initial_instances=first, reserved=reserved, max_instances=max_instances,
                      usd_per_hour=budget_usd_per_hour, name=name)
    if name == "rolling":
        return Rolling(initial_instances=first, reserved=reserved)
    raise ConfigError(f"unknown strategy '{name}' (one of {', '.join(STRATEGIES)})")


def compare_strategies(requests: SimRequests, spec: FleetSpec, names: list[str], config: SimConfig = SimConfig(),
                       progress: Callable[[str, float], None] | None = None, **policy_opts) -> list[SimulationResult]:
    """Run every named strategy on the same requests, fleet and seed."""
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
        raise InputFormatError(f"{where}: {field} '{value}' is not a number") from None
    if n < 0 or not math.isfinite(n):
        raise InputFormatError(f"{where}: {field} must be >= 0 (got {value})")
    return n


def _count(value: str, where: str, field: str) -> int:
    return int(math.ceil(_nonneg(value, where, field) - 1e-9))


def read_preemptions(path: str | Path) -> tuple[float, ...]:
    """Spot notice times to replay: one number of seconds per line (a header and # comments are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: preemption file not found")
    times = []
    for i, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        cell = line.split("#")[0].strip().split(",")[0].strip()
        if cell and cell.lower() not in ("t_s", "time_s", "time"):
            times.append(_nonneg(cell, f"{path}: line {i}", "time"))
    return tuple(sorted(times))


def read_schedule(path: str | Path) -> StaticSchedule:
    """A static schedule from a CSV (``time_s`` + any of ``reserved``, ``on_demand``, ``spot`` instance counts)
    or from ``fleetwise optimize --json`` output (its instance counts summed over offers and read as instances
    of the simulated type; reservations held throughout)."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(f"{path}: schedule file not found")
    if path.suffix.lower() == ".json":
        return _schedule_from_optimize(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise InputFormatError(f"{path}: no schedule rows")
    header = [h.strip() for h in rows[0].keys() if h is not None]
    if "time_s" not in header or not set(header) & set(ROLES):
        raise InputFormatError(f"{path}: needs a time_s column and at least one of {', '.join(ROLES)}")
    times, counts = [], []
    for i, row in enumerate(rows, start=2):
        where = f"{path}: line {i}"
        if None in row:
            raise InputFormatError(f"{where}: more cells than the header has columns")
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        times.append(_nonneg(row["time_s"], where, "time_s"))
        counts.append({r: _count(row[r] or "0", where, r) for r in ROLES if r in row})
    try:
        return StaticSchedule(times, counts, "schedule")
    except ConfigError as exc:
        raise InputFormatError(f"{path}: {exc}") from None


def _offer_counts(sched: dict, tier: str, path: Path) -> np.ndarray:
    """Instances per period summed over offers; every count finite and >= 0."""
    try:
        arr = np.asarray(sched[tier], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise InputFormatError(f"{path}: schedule.{tier} must be a list of per-offer lists of counts, as "
                               "'fleetwise optimize --json' writes") from None
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InputFormatError(f"{path}: schedule.{tier} must be a non-empty list of per-offer lists of counts")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputFormatError(f"{path}: schedule.{tier} has a missing, infinite or negative count")
    return arr.sum(axis=0)


def _schedule_from_optimize(path: Path) -> StaticSchedule:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sched = data["schedule"]
        period_s = float(sched["period_h"]) * 3600.0
        reserved = sum(int(r["count"]) for r in data.get("reservations", []))
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise InputFormatError(f"{path}: not a 'fleetwise optimize --json' output (missing or bad {exc})") from None
    if not (period_s > 0 and math.isfinite(period_s)) or reserved < 0:
        raise InputFormatError(f"{path}: schedule.period_h must be > 0 and reservation counts >= 0")
    spot, od = _offer_counts(sched, "spot", path), _offer_counts(sched, "on_demand", path)
    if len(spot) != len(od):
        raise InputFormatError(f"{path}: schedule.spot and schedule.on_demand cover different numbers of periods")
    times = [k * period_s for k in range(len(spot))]
    counts = [{"reserved": reserved, "spot": math.ceil(s - 1e-9), "on_demand": math.ceil(d - 1e-9)}
              for s, d in zip(spot, od)]
    return StaticSchedule(times, counts, "schedule")
