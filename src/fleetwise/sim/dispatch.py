"""The request side of the fleet simulator: per-request state, priority queues, admission and routing.

Every request ends in exactly one state - completed, dropped (with a reason) or unfinished (open) when the
run stops - and may on the way be migrated (kept its generated tokens, re-prefilled its context elsewhere, or
received its KV cache by transfer) or requeued (preempted by a higher class, or restarted from its prompt).

The :class:`Dispatcher` is what an engine talks to (:class:`fleetwise.sim.engine.EngineHost`): request
lengths and classes, the KV a request needs, first tokens and completions, pulling queued work, scheduling its
steps. The instance lifecycle talks to it through :meth:`Dispatcher.engines_up`, :meth:`~Dispatcher.engines_down`,
:meth:`~Dispatcher.migrate`, :meth:`~Dispatcher.requeue` and :meth:`~Dispatcher.offer_queue`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from fleetwise.sim.requests import PriorityClass, SimRequests
from fleetwise.sim.routers import Router

if TYPE_CHECKING:
    from fleetwise.sim.core import EngineSpec
    from fleetwise.sim.engine import Engine
    from fleetwise.sim.fleet import Instance

OPEN, DONE, DROPPED = 0, 1, 2
LATENCY_SENSITIVE_MS = 60_000.0  # classes with a TTFT target up to a minute drive scaling


class Dispatcher:
    """Requests of one run: their state, the queues, and which engine serves each."""

    def __init__(self, requests: SimRequests, spec: EngineSpec, router: Router,
                 push_step: Callable[[float, Engine], None], drop_reasons: dict[int, str],
                 kv_transfer_gb_per_s: float = 0.0) -> None:
        self.reqs = requests
        self.spec = spec
        self.classes: Sequence[PriorityClass] = requests.classes
        self.multi = len(self.classes) > 1
        n = len(requests)
        self.arrival = requests.arrival_s.tolist()
        self.isl = requests.isl.tolist()
        self.osl = requests.osl.tolist()
        self.cls = requests.cls.tolist()
        block = spec.kv_block_tokens
        self._kvn = (-(-(requests.isl + requests.osl) // block) * block).tolist()
        self.first = [math.nan] * n
        self.finish = [math.nan] * n
        self.state = bytearray(n)
        self.carry = [0] * n
        self.assigned_work = [0] * n
        self.migrated = bytearray(n)
        self.requeued = bytearray(n)
        self.enqueued_at = [0.0] * n
        self.queues = [deque() for _ in self.classes]
        self.qlen = 0
        self.open = n
        self.serving: list[Engine] = []  # engines taking new requests, in the order they came up
        self.push_step = push_step
        self._route = router.route
        self._drop_reasons = drop_reasons
        self._kv_bandwidth = kv_transfer_gb_per_s * 1e9
        self.kv_transfers = 0
        self._ttft_target = [c.ttft_ms for c in requests.classes]
        self._tpot_target = [c.tpot_ms for c in requests.classes]
        self._sensitive = [c.ttft_ms <= LATENCY_SENSITIVE_MS for c in requests.classes]
        self.reset_tick()

    def reset_tick(self) -> None:
        """Start the measurements of a new control interval."""
        self.tick_arrivals = 0
        self.tick_sensitive = 0
        self.tick_ttft: list[float] = []
        self.tick_slo: list[float] = []  # TTFT / its class's target, for policies
        self.tick_tpot_slo: list[float] = []  # TPOT / its class's target, of requests finished this tick

    def open_requests(self) -> int:
        return self.open

    def kv_need(self, rid: int) -> int:
        return self._kvn[rid]

    # -- arrivals and queues ---------------------------------------------------------------------------
    def arrive(self, rid: int, t: float) -> None:
        """A request arrives: dropped if it can never fit, else routed, else it preempts lower classes or waits."""
        self.tick_arrivals += 1
        if self._sensitive[self.cls[rid]]:
            self.tick_sensitive += 1
        if self.isl[rid] + self.osl[rid] > self.spec.max_context:
            self._drop(rid, "exceeds_context")
            return
        if self._kvn[rid] > self.spec.kv_capacity_tokens:
            self._drop(rid, "exceeds_kv_cache")
            return
        if self.qlen and self._waiting_at_or_above(self.cls[rid]):
            self._enqueue(rid, t)
            return
        e = self._route(self.serving, self._kvn[rid])
        if e is not None:
            self._dispatch(e, rid, t)
        elif not (self.multi and self._preempt_for(rid, t)):
            self._enqueue(rid, t)

    def _waiting_at_or_above(self, c: int) -> bool:
        return any(self.queues[j] for j in range(c + 1))

    def _dispatch(self, e: Engine, rid: int, t: float) -> None:
        gen = self.carry[rid]
        total = self.isl[rid] + gen
        work = total + self.osl[rid] - gen
        self.assigned_work[rid] = work
        e.assign(rid, total, gen, self._kvn[rid], work, self.cls[rid], t)

    def _enqueue(self, rid: int, t: float, front: bool = False) -> None:
        q = self.queues[self.cls[rid]]
        if front:
            q.appendleft(rid)
        else:
            q.append(rid)
        self.enqueued_at[rid] = t
        self.qlen += 1

    def pull(self, e: Engine, t: float) -> None:
        """An engine with room takes queued requests, highest class first, FIFO within a class."""
        while self.qlen:
            for c, q in enumerate(self.queues):
                if q:
                    break
            rid = q[0]
            wait = self.classes[c].max_wait_s
            # Work already started elsewhere (migrated, requeued) is never timed out: its client is streaming.
            if wait is not None and t - self.enqueued_at[rid] > wait and not (self.migrated[rid] or self.requeued[rid]):
                q.popleft()
                self.qlen -= 1
                self._drop(rid, "queue_timeout")
                continue
            if not e.has_room(self._kvn[rid]):
                return
            q.popleft()
            self.qlen -= 1
            self._dispatch(e, rid, t)

    def _preempt_for(self, rid: int, t: float) -> bool:
        """Make room for a request by requeueing lower-class work (recompute: generated tokens are kept)."""
        c, need = self.cls[rid], self._kvn[rid]
        for e in self.serving:
            if not e.could_make_room(c, need):
                continue
            victims = []
            while not e.has_room(need):
                v = e.victim(c)
                if v is None:
                    break
                victims.append((v, e.remove(v, t)))
            for v, gen in reversed(victims):
                self.requeued[v] = min(self.requeued[v] + 1, 255)
                self.carry[v] = gen
                self._enqueue(v, t, front=True)
            if e.has_room(need):
                self._dispatch(e, rid, t)
                return True
        return False

    # -- outcomes --------------------------------------------------------------------------------------
    def complete(self, rid: int, t: float) -> None:
        self.finish[rid] = t
        self.state[rid] = DONE
        self.open -= 1
        if self.osl[rid] > 1 and self.first[rid] == self.first[rid]:
            tpot_ms = (t - self.first[rid]) / (self.osl[rid] - 1) * 1e3
            self.tick_tpot_slo.append(tpot_ms / self._tpot_target[self.cls[rid]])

    def first_token(self, rid: int, t: float) -> None:
        if self.first[rid] != self.first[rid]:
            self.first[rid] = t
            ttft = t - self.arrival[rid] + self.spec.frontend_s
            self.tick_ttft.append(ttft)
            self.tick_slo.append(ttft * 1e3 / self._ttft_target[self.cls[rid]])

    def _drop(self, rid: int, reason: str) -> None:
        self.state[rid] = DROPPED
        self._drop_reasons[rid] = reason
        self.open -= 1

    # -- what the instance lifecycle asks ---------------------------------------------------------------
    def engines_up(self, engines: Sequence[Engine], t: float) -> None:
        """New engines take new requests, and queued ones now."""
        self.serving.extend(engines)
        for e in engines:
            self.pull(e, t)

    def engines_down(self, engines: Sequence[Engine]) -> None:
        """These engines take no new requests (they keep the ones they hold)."""
        for e in engines:
            e.serving = False
        self.serving = [e for e in self.serving if e.serving]

    def migrate(self, rid: int, gen: int, t: float, source: Instance | None = None, had_kv: bool = False) -> None:
        """Move a request elsewhere keeping its output so far. The target receives the KV cache over the network
        (``kv_transfer_gb_per_s``) when the source is still up and the request was decoding; otherwise it
        re-prefills prompt + output."""
        self.migrated[rid] = min(self.migrated[rid] + 1, 255)
        self.carry[rid] = gen
        e = (None if self.qlen and self._waiting_at_or_above(self.cls[rid] - 1)
             else self._route(self.serving, self._kvn[rid]))
        if e is None:
            self._enqueue(rid, t, front=True)
            return
        bandwidth = self._kv_bandwidth if source is not None and had_kv else 0.0
        if bandwidth > 0 and self.spec.kv_bytes_per_token > 0:
            context = self.isl[rid] + gen
            ready = t + context * self.spec.kv_bytes_per_token / bandwidth
            work = self.osl[rid] - gen
            self.assigned_work[rid] = work
            self.kv_transfers += 1
            e.assign_transfer(rid, gen, context, ready, self._kvn[rid], work, self.cls[rid], t)
        else:
            self._dispatch(e, rid, t)

    def requeue(self, rid: int, t: float) -> None:
        """Restart from the prompt: output so far is discarded, so the first token is measured again."""
        self.requeued[rid] = min(self.requeued[rid] + 1, 255)
        self.carry[rid] = 0
        self.first[rid] = math.nan
        self._enqueue(rid, t, front=True)

    def offer_queue(self, t: float) -> None:
        """Let every serving engine with room take queued work now (requeues do not wait for a step end)."""
        for e in self.serving:
            if not self.qlen:
                return
            if e.slots < e.max_batch:
                self.pull(e, t)

    # -- what the control loop reads -------------------------------------------------------------------
    def urgent_queued(self, t: float) -> int:
        """Queued requests that have waited half their class's TTFT target (batch work waits by design)."""
        n = 0
        for c, q in enumerate(self.queues):
            limit = self._ttft_target[c] / 2e3  # half the target: late enough to matter, early enough to act
            if q and math.isfinite(limit):
                n += sum(1 for rid in q if t - self.enqueued_at[rid] >= limit)
        return n

    def sensitive_classes(self) -> list[int]:
        """Indices of the classes whose TTFT target drives scaling."""
        return [c for c, s in enumerate(self._sensitive) if s]
