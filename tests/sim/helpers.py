"""Shared helpers of the fleet-simulator tests: requests built in the test, fleets, and the checks every run
must pass."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fleetwise.perf.predict import arrivals
from fleetwise.sim.policies import StaticSchedule
from fleetwise.sim.requests import PriorityClass, SimRequests
from fleetwise.sim.results import SimulationResult
from fleetwise.sim.setup import FleetSpec

INTERACTIVE = PriorityClass("interactive", 1000.0, 50.0)
BATCH = PriorityClass("batch", 3_600_000.0, math.inf)
TWO_CLASSES = (INTERACTIVE, BATCH)


def requests(arrival_s, isl=1000, osl=250, cls=None, classes=(INTERACTIVE,)) -> SimRequests:
    """SimRequests with scalar or per-request lengths and classes (default: all the first class)."""
    t = np.asarray(arrival_s, dtype=float)
    n = len(t)
    isl = np.broadcast_to(np.asarray(isl, dtype=np.int64), (n,)).copy()
    osl = np.broadcast_to(np.asarray(osl, dtype=np.int64), (n,)).copy()
    labels = np.zeros(n, dtype=np.int64) if cls is None else np.asarray(cls, dtype=np.int64)
    return SimRequests(t, isl, osl, labels, tuple(classes))


def poisson(n: int, rate: float, seed: int = 0, start: float = 0.0) -> np.ndarray:
    return start + arrivals(n, rate, "poisson", seed)


def mixed_lengths(n: int, seed: int, max_isl: int = 4000, max_osl: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, max_isl, n), rng.integers(1, max_osl, n)


def fixed(**counts: int) -> StaticSchedule:
    """A fixed fleet; instances are created in the order given (the first role gets instance 0)."""
    return StaticSchedule.fixed(dict(counts))


def with_itype(spec: FleetSpec, **changes) -> FleetSpec:
    return dataclasses.replace(spec, itype=dataclasses.replace(spec.itype, **changes))


def served_total(tick) -> int:
    return sum(tick.serving.values())


def active_total(tick) -> int:
    return sum(tick.serving.values()) + sum(tick.provisioning.values())


def check_outcomes(res: SimulationResult) -> None:
    """Every request is in exactly one final state, and the per-request arrays agree with the counts."""
    assert res.requests == len(res.arrival_s) == len(res.ttft_s) == len(res.tpot_s)
    assert res.completed + res.dropped + res.unfinished == res.requests
    assert min(res.completed, res.dropped, res.unfinished) >= 0
    assert sum(res.dropped_by_reason.values()) == res.dropped
    done = np.isfinite(res.ttft_s)
    assert int(done.sum()) == res.completed  # reached only by completed requests
    assert np.all(res.ttft_s[done] > 0)
    assert np.all(np.isnan(res.tpot_s[~done]))
    assert np.all(np.isfinite(res.tpot_s[done])) and np.all(res.tpot_s[done] >= 0)
    assert 0 <= res.migrated <= res.requests and 0 <= res.requeued <= res.requests
    assert 0.0 <= res.slo_attainment <= 1.0
