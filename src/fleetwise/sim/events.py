"""The fleet simulator's event loop: a time-ordered heap of events merged with the sorted arrivals.

Events at equal times run in the order they were scheduled (a sequence number breaks ties); an arrival runs
after every event at or before its time. An engine's step-end event carries the engine's version when it was
scheduled and is skipped when the engine has since rescheduled (a bumped version), so cancelling a step costs
nothing in the heap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from heapq import heappop, heappush
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleetwise.sim.engine import Engine

STEP, TICK, READY, NOTICE, KILL, REPLAY = range(6)


class EventQueue:
    """Scheduled events: ``(time, sequence, kind, object, engine version)`` in a heap."""

    __slots__ = ("heap", "seq")

    def __init__(self) -> None:
        self.heap: list = []
        self.seq = 0

    def push(self, t: float, kind: int, obj=None) -> None:
        """Schedule an event of ``kind`` (a control tick, an instance's readiness, notice or kill...)."""
        self.seq += 1
        heappush(self.heap, (t, self.seq, kind, obj, 0))

    def push_step(self, t: float, engine: Engine) -> None:
        """Schedule the end of an engine's current step (or decode run)."""
        self.seq += 1
        heappush(self.heap, (t, self.seq, STEP, engine, engine.version))


def run_loop(queue: EventQueue, arrival: list[float], stop: float, arrive: Callable[[int, float], None],
             handle: Callable[[int, object, float], None], open_requests: Callable[[], int],
             progress: Callable[[float], None] | None = None) -> float:
    """Run events and arrivals in time order until ``stop``, or until every request is closed after the last
    arrival; returns the time the run stopped at.

    Args:
        arrive: called with (request index, time) for every arrival.
        handle: called with (kind, object, time) for every event but engine step ends, which run here.
        open_requests: the number of requests not yet completed or dropped.
        progress: called with the share of arrivals done (about every 1% and at the end).
    """
    heap = queue.heap
    n = len(arrival)
    now = 0.0
    i = 0
    every = max(n // 100, 1)
    while True:
        ta = arrival[i] if i < n else math.inf
        if heap and heap[0][0] <= ta:
            t, _, kind, obj, ver = heappop(heap)
            if t > stop:
                now = stop
                break
            now = t
            if kind == STEP:
                if obj.version == ver:
                    obj.step_end(t)
            else:
                handle(kind, obj, t)
        elif i < n:
            now = ta
            arrive(i, ta)
            i += 1
            if progress is not None and i % every == 0:
                progress(i / n)
        else:
            break
        if i >= n and not open_requests():
            break
    if progress is not None:
        progress(1.0)
    return now
