"""Routers of the fleet simulator: which serving engine takes a request, by name.

A router is called with the serving engines and the KV tokens the request needs, and returns an engine with
room for it (a free batch slot and the KV) or None when none has room; the request then waits in its class's
queue. Routers that draw at random get the run's routing generator, so the router chosen does not move the
spot draws. New routers register in :data:`ROUTERS`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from fleetwise.errors import ConfigError

if TYPE_CHECKING:
    from fleetwise.sim.engine import Engine


class Router(Protocol):
    """Picks an engine with room for a request, or None."""

    def route(self, engines: Sequence[Engine], kv_need: int) -> Engine | None: ...


def least_work(engines: Sequence[Engine], kv_need: int) -> Engine | None:
    """The engine with room and the fewest tokens still to process (the first such on a tie)."""
    best, best_work = None, math.inf
    for e in engines:
        if e.work < best_work and e.slots < e.max_batch and e.kv_free >= kv_need:
            best, best_work = e, e.work
    return best


class LeastWork:
    """Least outstanding work: scans every engine per request."""

    def __init__(self, rng: random.Random) -> None:
        del rng  # deterministic

    @staticmethod
    def route(engines: Sequence[Engine], kv_need: int) -> Engine | None:
        return least_work(engines, kv_need)


class RoundRobin:
    """The next engine with room after the one that took the last request."""

    def __init__(self, rng: random.Random) -> None:
        del rng  # deterministic
        self._next = 0

    def route(self, engines: Sequence[Engine], kv_need: int) -> Engine | None:
        n = len(engines)
        for k in range(n):
            e = engines[(self._next + k) % n]
            if e.has_room(kv_need):
                self._next = (self._next + k + 1) % n
                return e
        return None


class PowerOfTwo:
    """Power of two choices: the less loaded of two engines drawn at random, else least work."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def route(self, engines: Sequence[Engine], kv_need: int) -> Engine | None:
        if len(engines) >= 2:
            a, b = self._rng.sample(engines, 2)
            ok = [e for e in (a, b) if e.has_room(kv_need)]
            if ok:
                return min(ok, key=lambda e: e.work)
        return least_work(engines, kv_need)


ROUTERS: dict[str, Callable[[random.Random], Router]] = {
    "least-work": LeastWork,
    "round-robin": RoundRobin,
    "p2c": PowerOfTwo,
}


def make_router(name: str, rng: random.Random) -> Router:
    """The router registered as ``name``, drawing from ``rng`` if it draws at all."""
    factory = ROUTERS.get(name)
    if factory is None:
        raise ConfigError(f"unknown router '{name}' (one of {', '.join(ROUTERS)})")
    return factory(rng)
