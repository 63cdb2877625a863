"""One serving engine (a tensor-parallel group) inside the fleet simulator.

Same engine semantics as :mod:`fleetwise.perf.serving` (continuous batching, chunked prefill within a token
budget, KV cache reserved for prompt + output at admission, step times from the perf model), restated on
Python scalars so one event costs microseconds:

* decoding sequences share a step counter: a sequence that joins at counter ``c`` needing ``r`` more tokens
  finishes when the counter reaches ``c + r``; a heap of those finish counts gives the next completion;
* a run of decode-only steps up to the next completion is one event (step times grow linearly with the
  context, so the run's length is an arithmetic series); a request routed to the engine mid-run cuts the
  run at the end of the step in progress;
* removals (migration, preemption) are lazy in the heap and exact in the aggregates.

What an engine needs from the rest of the simulator is :class:`EngineHost` (the request side,
:class:`fleetwise.sim.dispatch.Dispatcher`); what the rest needs from an engine is its admission methods
(``has_room``, ``assign``, ``assign_transfer``), removals (``progress``, ``remove``, ``victim``,
``could_make_room``), ``step_end`` for its scheduled events, and the counters routers read (``work``,
``slots``, ``max_batch``, ``kv_free``).
"""

from __future__ import annotations

from collections import deque
from heapq import heappop, heappush
from typing import TYPE_CHECKING, Protocol

from fleetwise.perf.steps import StepModel, steps_to_cover

if TYPE_CHECKING:
    from fleetwise.sim.fleet import Instance


class EngineHost(Protocol):
    """The narrow interface an engine talks to: request lengths and classes, KV needs, outcomes, queued work
    and the event queue."""

    osl: list[int]  # output tokens of each request
    cls: list[int]  # priority class of each request
    assigned_work: list[int]  # tokens a request brought to the engine that holds it

    def kv_need(self, rid: int) -> int: ...

    def first_token(self, rid: int, t: float) -> None: ...

    def complete(self, rid: int, t: float) -> None: ...

    def pull(self, engine: Engine, t: float) -> None: ...

    def push_step(self, t: float, engine: Engine) -> None: ...


def steps_done(elapsed: float, dt0: float, slope: float, k: int) -> int:
    """Whole steps of a run (lengths dt0, dt0+slope, ...) finished ``elapsed`` seconds after it began."""
    if elapsed <= 0.0:
        return 0
    n = steps_to_cover(elapsed, dt0, slope)
    if n * dt0 + slope * n * (n - 1) / 2.0 > elapsed + 1e-12:
        n -= 1
    return min(n, k)


class Engine:
    """Mutable state of one engine; the simulator calls ``assign``, ``remove``, ``plan`` and ``step_end``."""

    __slots__ = ("budget", "busy_s", "busy_until", "chunks", "class_count", "class_kv", "counter", "ctx_sum",
                 "dec", "heap", "host", "id", "instance", "joining", "kv_cap", "kv_free", "max_batch", "n_dec",
                 "prefill", "run_dt0", "run_k", "run_slope", "run_t0", "serving", "slots", "sm", "step_dec",
                 "step_dt", "version", "work")

    def __init__(self, eid: int, instance: Instance, host: EngineHost, sm: StepModel, *, max_batch: int,
                 budget: int, kv_cap: int, classes: int) -> None:
        self.id = eid
        self.instance = instance
        self.host = host
        self.sm = sm
        self.max_batch = max_batch
        self.budget = budget
        self.kv_cap = kv_cap
        self.kv_free = kv_cap
        self.prefill: deque[list] = deque()  # [rid, done, total, gen_before]
        self.dec: dict[int, tuple[int, int, int, int]] = {}  # rid -> (join counter, ctx at join, gen at join, finish)
        self.heap: list[tuple[int, int]] = []  # (finish counter, rid), lazily cleaned
        self.n_dec = 0
        self.ctx_sum = 0  # context of the decoding sequences at the current counter
        self.counter = 0
        self.slots = 0  # requests admitted (prefilling + decoding)
        self.work = 0  # tokens assigned and not yet finished (the router's "outstanding work")
        self.version = 0  # bumps invalidate the scheduled step-end event
        self.busy_until = -1.0  # end of the scheduled step or run; < now when idle
        self.run_t0 = self.run_dt0 = self.run_slope = 0.0
        self.run_k = 0  # > 0 while a decode run is scheduled
        self.chunks: list[tuple[list, int]] = []  # prompt chunks of the scheduled mixed step
        self.step_dec = 0
        self.step_dt = 0.0
        self.busy_s = 0.0
        self.serving = True
        self.class_count = [0] * classes
        self.class_kv = [0] * classes  # KV reserved by each class's admitted requests
        self.joining: list[tuple[float, int, int, int]] = []  # (ready at, rid, gen, context): KV arriving

    # -- admission -----------------------------------------------------------------------------------
    def has_room(self, kv_need: int) -> bool:
        return self.slots < self.max_batch and self.kv_free >= kv_need

    def assign(self, rid: int, prefill_total: int, gen: int, kv_need: int, work: int, cls: int, now: float) -> None:
        """Admit a request: its prompt (plus any generated tokens being recomputed) joins the prefill queue."""
        self.prefill.append([rid, 0, prefill_total, gen])
        self._take(kv_need, work, cls, now, now)

    def assign_transfer(self, rid: int, gen: int, context: int, ready_s: float, kv_need: int, work: int, cls: int,
                        now: float) -> None:
        """Admit a request whose KV cache arrives by transfer at ``ready_s``: it joins the decoding batch at the
        first step boundary after that, with no prefill."""
        self.joining.append((ready_s, rid, gen, context))
        self._take(kv_need, work, cls, now, ready_s)

    def _take(self, kv_need: int, work: int, cls: int, now: float, ready_s: float) -> None:
        """Reserve a slot and KV for an admitted request; start stepping, or end a decode run when it is ready."""
        self.kv_free -= kv_need
        self.slots += 1
        self.work += work
        self.class_count[cls] += 1
        self.class_kv[cls] += kv_need
        if self.busy_until < now:
            self.plan(now)
        elif self.run_k:
            self._cut_run(ready_s)

    def _admit_joining(self, now: float) -> None:
        keep = []
        for ready, rid, gen, context in self.joining:
            if ready > now:
                keep.append((ready, rid, gen, context))
                continue
            finish = self.counter + (self.host.osl[rid] - gen)
            self.dec[rid] = (self.counter, context, gen, finish)
            heappush(self.heap, (finish, rid))
            self.n_dec += 1
            self.ctx_sum += context
        self.joining = keep

    def _cut_run(self, now: float) -> None:
        """End the scheduled decode run at the step in progress, so a new prompt joins the next step."""
        k = steps_to_cover(now - self.run_t0, self.run_dt0, self.run_slope)
        if k < self.run_k:
            self.run_k = k
            self._schedule(self.run_t0 + k * self.run_dt0 + self.run_slope * k * (k - 1) / 2.0)

    def _schedule(self, t_end: float) -> None:
        self.version += 1
        self.busy_until = t_end
        self.host.push_step(t_end, self)

    # -- stepping ------------------------------------------------------------------------------------
    def plan(self, now: float) -> None:
        """Schedule the next iteration (or decode run) starting at ``now``; idle when nothing to do."""
        self.run_k = 0
        if self.joining:
            self._admit_joining(now)
        if self.prefill:
            self._plan_mixed(now)
        elif self.n_dec:
            self._plan_run(now)
        elif self.joining:  # nothing to run until a transfer lands: wake up then
            self.chunks, self.step_dec, self.step_dt = [], 0, 0.0
            self._schedule(min(j[0] for j in self.joining))
        else:
            self.busy_until = -1.0
            self.version += 1

    def _plan_mixed(self, now: float) -> None:
        budget = self.budget - self.n_dec
        chunks = []
        p_tokens = 0
        pairs = 0.0
        for entry in self.prefill:
            if budget <= 0:
                break
            start = entry[1]
            take = min(entry[2] - start, budget)
            chunks.append((entry, take))
            pairs += take * start + take * (take + 1) / 2.0
            p_tokens += take
            budget -= take
        self.chunks = chunks
        self.step_dec = self.n_dec
        dt = self.sm(p_tokens, pairs, self.n_dec, self.ctx_sum, len(chunks))
        self.step_dt = dt  # counted as busy when the step completes (a kill may cut it short)
        self._schedule(now + dt)

    def _plan_run(self, now: float) -> None:
        heap, dec = self.heap, self.dec
        while True:  # drop heap entries of sequences that left
            f, rid = heap[0]
            d = dec.get(rid)
            if d is not None and d[3] == f:
                break
            heappop(heap)
        k = heap[0][0] - self.counter
        n = self.n_dec
        dt0 = self.sm(0, 0.0, n, self.ctx_sum)
        slope = self.sm.ctx_coef * n
        if self.joining:  # end the run where the first transferred KV cache lands, so it joins then
            k = min(k, steps_to_cover(min(j[0] for j in self.joining) - now, dt0, slope))
        self.run_t0, self.run_dt0, self.run_slope, self.run_k = now, dt0, slope, k
        self._schedule(now + k * dt0 + slope * k * (k - 1) / 2.0)

    def step_end(self, now: float) -> None:
        """Apply the iteration (or run) that just ended, then plan the next one."""
        elapsed_run = 0.0
        if self.run_k:
            k = self.run_k
            elapsed_run = k * self.run_dt0 + self.run_slope * k * (k - 1) / 2.0
            self.busy_s += elapsed_run
            self.counter += k
            self.ctx_sum += self.n_dec * k
            self.run_k = 0
            self._retire(now)
        else:
            self.busy_s += self.step_dt
            if self.step_dec and self.n_dec:
                self.counter += 1
                self.ctx_sum += self.n_dec
                self._retire(now)
            for entry, take in self.chunks:
                if entry[0] < 0:  # removed during the step
                    continue
                entry[1] += take
                if entry[1] >= entry[2]:
                    self.prefill.remove(entry)
                    self._prompt_done(entry, now)
            self.chunks = []
        if self.serving:
            self.host.pull(self, now)
        self.plan(now)
        if not self.slots and not self.serving:
            self.instance.engine_idle(now)

    def _prompt_done(self, entry: list, now: float) -> None:
        rid, _, total, gen = entry
        host = self.host
        host.first_token(rid, now)
        gen += 1
        osl = host.osl[rid]
        if gen >= osl:
            self._release(rid, now)
            host.complete(rid, now)
            return
        finish = self.counter + (osl - gen)
        self.dec[rid] = (self.counter, total + 1, gen, finish)
        heappush(self.heap, (finish, rid))
        self.n_dec += 1
        self.ctx_sum += total + 1

    def _retire(self, now: float) -> None:
        heap, dec, counter = self.heap, self.dec, self.counter
        host = self.host
        while heap and heap[0][0] <= counter:
            f, rid = heappop(heap)
            d = dec.get(rid)
            if d is None or d[3] != f:
                continue
            del dec[rid]
            self.n_dec -= 1
            self.ctx_sum -= d[1] + counter - d[0]
            self._release(rid, now)
            host.complete(rid, now)

    def _release(self, rid: int, now: float) -> None:
        host = self.host
        need = host.kv_need(rid)
        self.kv_free += need
        self.slots -= 1
        self.work -= host.assigned_work[rid]
        c = host.cls[rid]
        self.class_count[c] -= 1
        self.class_kv[c] -= need

    # -- removals ------------------------------------------------------------------------------------
    def progress(self, now: float) -> list[tuple[int, int, int]]:
        """(rid, generated tokens, tokens still to generate) of every admitted request at ``now``."""
        done = self._run_steps_done(now)
        out = [(e[0], e[3], self.host.osl[e[0]] - e[3]) for e in self.prefill]
        out += [(rid, gen, self.host.osl[rid] - gen) for _, rid, gen, _ in self.joining]
        for rid, (c0, _, g0, f) in self.dec.items():
            out.append((rid, g0 + self.counter + done - c0, f - self.counter - done))
        return out

    def _run_steps_done(self, now: float) -> int:
        if not self.run_k:
            return 0
        return steps_done(now - self.run_t0, self.run_dt0, self.run_slope, self.run_k)

    def remove(self, rid: int, now: float) -> int:
        """Take an admitted request off the engine; returns the output tokens it had generated."""
        d = self.dec.pop(rid, None)
        if d is not None:
            c0, ctx0, g0, _ = d
            gen = g0 + self.counter + self._run_steps_done(now) - c0
            self.n_dec -= 1
            self.ctx_sum -= ctx0 + self.counter - c0
        else:
            for entry in self.prefill:
                if entry[0] == rid:
                    break
            else:
                return self._remove_joining(rid, now)
            self.prefill.remove(entry)
            gen = entry[3]
            entry[0] = -1  # a chunk of it may be in the scheduled step
        self._release(rid, now)
        if self.run_k:
            self._cut_run(now)
        return gen

    def _remove_joining(self, rid: int, now: float) -> int:
        for k, (_, jrid, gen, _) in enumerate(self.joining):
            if jrid == rid:
                del self.joining[k]
                self._release(rid, now)
                return gen
        raise KeyError(rid)

    def victim(self, below: int) -> int | None:
        """The admitted request of the lowest class worse than ``below`` with the least progress, if any."""
        worst = max((c for c, n in enumerate(self.class_count) if n), default=-1)
        if worst <= below:
            return None
        cls = self.host.cls
        for entry in reversed(self.prefill):
            if cls[entry[0]] == worst:
                return entry[0]
        best, best_left = None, -1
        for rid, (_, _, _, f) in self.dec.items():
            if cls[rid] == worst and f > best_left:
                best, best_left = rid, f
        return best

    def could_make_room(self, below: int, kv_need: int) -> bool:
        """Whether evicting every admitted request of a class worse than ``below`` frees a slot and the KV."""
        lower = sum(self.class_count[below + 1:])
        if not lower:
            return False
        kv = self.kv_free + sum(self.class_kv[below + 1:])
        return self.slots - lower < self.max_batch and kv >= kv_need

    def estimated_step_s(self) -> float:
        """Seconds of a decode step at the current batch (the drain strategy's clock)."""
        return self.sm(0, 0.0, max(self.n_dec, 1), self.ctx_sum)
