"""Requests for the fleet simulator: arrivals, lengths and a priority class each, plus the classes' SLOs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fleetwise.errors import ConfigError
from fleetwise.traffic.records import RequestTrace


@dataclass(frozen=True)
class PriorityClass:
    """A priority class: lower index = higher priority. A request meets its SLO when its TTFT and TPOT are
    both within the targets; it is dropped after ``max_wait_s`` in the queue (None: waits forever)."""

    name: str
    ttft_ms: float
    tpot_ms: float
    max_wait_s: float | None = None


# TTFT / TPOT targets of the named classes relative to the interactive SLO the user gives (conventions, not
# measurements: realtime halves the TTFT target; batch work only has a completion-time target, an hour to
# first token; background none at all). Override by building PriorityClass records.
NAMED_CLASSES = ("realtime", "interactive", "batch", "background")


def named_class(name: str, ttft_ms: float, tpot_ms: float) -> PriorityClass:
    """A named class with targets derived from the interactive SLO."""
    if name == "realtime":
        return PriorityClass(name, ttft_ms / 2.0, tpot_ms)
    if name == "interactive":
        return PriorityClass(name, ttft_ms, tpot_ms)
    if name == "batch":
        return PriorityClass(name, 3_600_000.0, math.inf)
    if name == "background":
        return PriorityClass(name, math.inf, math.inf)
    raise ConfigError(f"unknown priority class '{name}' (one of {', '.join(NAMED_CLASSES)})")


@dataclass(frozen=True)
class SimRequests:
    """Arrival times (s from the trace start, sorted), token lengths and class index of every request."""

    arrival_s: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    cls: np.ndarray
    classes: tuple[PriorityClass, ...]

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        if n == 0:
            raise ConfigError("no requests to simulate")
        if not (len(self.isl) == len(self.osl) == len(self.cls) == n):
            raise ConfigError("arrival, input, output and class arrays must have the same length")
        if not self.classes:
            raise ConfigError("need at least one priority class")
        if not np.all(np.isfinite(self.arrival_s)) or (n > 1 and np.any(np.diff(self.arrival_s) < 0)):
            raise ConfigError("arrival times must be finite and sorted")
        if np.any(self.isl < 1) or np.any(self.osl < 1):
            raise ConfigError("input and output lengths must be >= 1 token")
        if np.any(self.cls < 0) or np.any(self.cls >= len(self.classes)):
            raise ConfigError(f"class indices must lie in 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return len(self.arrival_s)

    @classmethod
    def from_trace(cls, trace: RequestTrace, classes: tuple[PriorityClass, ...], mix: tuple[float, ...] | None = None,
                   seed: int = 0) -> SimRequests:
        """Requests of a trace, each drawn into a class with probabilities ``mix`` (default: all the first)."""
        n = len(trace)
        if n == 0:
            raise ConfigError("the trace has no requests")
        if not classes:
            raise ConfigError("need at least one priority class")
        if mix is None:
            labels = np.zeros(n, dtype=np.int64)
        else:
            p = np.asarray(mix, dtype=float)
            if len(p) != len(classes) or np.any(p < 0) or not math.isclose(p.sum(), 1.0, abs_tol=1e-6):
                raise ConfigError("class shares must be >= 0, one per class, and sum to 1")
            labels = np.random.default_rng(seed).choice(len(classes), size=n, p=p / p.sum())
        t = np.asarray(trace.arrival_s, dtype=float)
        order = np.argsort(t, kind="stable")
        t = t[order] - t[order[0]]
        isl = np.maximum(np.asarray(trace.input_tokens, dtype=np.int64)[order], 1)
        osl = np.maximum(np.asarray(trace.output_tokens, dtype=np.int64)[order], 1)
        return cls(t, isl, osl, labels[order] if mix is not None else labels, tuple(classes))
