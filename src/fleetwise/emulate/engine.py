"""One emulated engine: the fleet simulator's continuous batching, stepped in real time.

The scheduling is the simulator's (:mod:`fleetwise.sim.engine`), one iteration at a time instead of compressed
into runs, because every iteration must reach the clients as a streamed token:

* FIFO admission from a waiting queue while a slot (``max_num_seqs``) and the KV cache for prompt + output
  (rounded up to whole blocks) are free - head-of-line, as vLLM's scheduler and the simulator do;
* each iteration decodes one token for every running sequence and fills the rest of the token budget
  (``max_num_tokens``) with prompt chunks, first come first served (chunked prefill);
* its duration is the simulator's :class:`~fleetwise.perf.steps.StepModel` of the same replica - one step model
  for ``fleetwise simulate`` and ``fleetwise emulate``;
* a prompt finishes prefilling at the end of an iteration and its first token appears then; sequences that
  joined in an iteration decode from the next one.

Time: the engine keeps an absolute schedule (iteration ``k`` ends at the sum of the first ``k`` step times,
divided by ``time_scale``), so a late wake-up of the event loop delays one token and is caught up, instead of
adding up over a stream. All times an engine reports (TTFT, ITL, metrics) are emulated seconds: real seconds
times ``time_scale``.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from fleetwise.perf.steps import StepModel

WAITING, RUNNING, FINISHED, ABORTED = "waiting", "running", "finished", "aborted"
# When the event loop falls this far (real seconds) behind the schedule, the engine stops catching up and
# restarts its clock: the backlog is the process's overload, not the modelled GPU's, and replaying it in a
# burst would hide that.
MAX_LAG_S = 0.25


class EngineStopped(Exception):
    """The engine is gone (the worker was reclaimed or shut down) before the request finished."""


@dataclass(frozen=True)
class EngineLimits:
    """What the engine may hold: the simulator's :class:`~fleetwise.sim.core.EngineSpec` limits."""

    step_model: StepModel
    max_num_seqs: int
    max_num_tokens: int
    kv_capacity_tokens: int
    kv_block_tokens: int
    max_context: int


class EmuRequest:
    """One request inside an engine; the HTTP handler waits on it for tokens."""

    __slots__ = (
        "_waiter",
        "admitted_s",
        "arrival_s",
        "context",
        "finish_s",
        "first_s",
        "generated",
        "kv_need",
        "max_tokens",
        "output_tokens",
        "prefilled",
        "prompt_tokens",
        "reason",
        "rid",
        "state",
    )

    def __init__(self, rid: int, prompt_tokens: int, output_tokens: int, block: int,
                 max_tokens: int | None = None) -> None:
        self.rid = rid
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens  # tokens this request will generate (decided at arrival)
        self.max_tokens = max_tokens
        self.kv_need = -(-(prompt_tokens + output_tokens) // block) * block
        self.state = WAITING
        self.arrival_s = self.admitted_s = self.first_s = self.finish_s = math.nan  # emulated seconds
        self.generated = 0
        self.prefilled = 0
        self.context = 0
        self._waiter: asyncio.Future | None = None
        self.reason = ""

    @property
    def done(self) -> bool:
        return self.state in (FINISHED, ABORTED)

    async def wait(self) -> None:
        """Until the engine produced another token or ended the request."""
        if self.done:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiter = fut
        await fut

    def _wake(self) -> None:
        fut = self._waiter
        if fut is not None:
            self._waiter = None
            if not fut.done():
                fut.set_result(None)


class EmulatedEngine:
    """The iteration loop of one engine. ``submit`` a request, then ``await req.wait()`` for its tokens."""

    def __init__(self, limits: EngineLimits, *, time_scale: float = 1.0, name: str = "0",
                 on_step: Callable[[int, int, float, int], None] | None = None,
                 on_finish: Callable[[EmuRequest], None] | None = None) -> None:
        self.limits = limits
        self.time_scale = time_scale
        self.latency_scale = 1.0  # run-time slow-down (POST /admin/config)
        self.name = name
        self.waiting: deque[EmuRequest] = deque()
        self.prefilling: deque[EmuRequest] = deque()
        self.decoding: list[EmuRequest] = []
        self.kv_free = limits.kv_capacity_tokens
        self.ctx_sum = 0
        self.work = 0  # tokens (prompt + output) of requests not yet finished: the router's outstanding work
        self.steps = 0
        self.busy_s = 0.0  # emulated seconds spent in iterations
        self.lag_resets = 0
        self._on_step = on_step
        self._on_finish = on_finish
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._t0 = 0.0
        self._stopped = False

    # -- clock -----------------------------------------------------------------------------------------
    def now(self) -> float:
        """Emulated seconds since the engine started."""
        return (asyncio.get_running_loop().time() - self._t0) * self.time_scale

    # -- requests --------------------------------------------------------------------------------------
    @property
    def running(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    def kv_usage(self) -> float:
        """Share of the KV cache reserved by admitted requests (vLLM's ``kv_cache_usage_perc``, 0-1)."""
        cap = self.limits.kv_capacity_tokens
        return (cap - self.kv_free) / cap if cap else 0.0

    def submit(self, req: EmuRequest) -> None:
        """Queue a request; it is admitted at the next iteration boundary with room for it."""
        if self._stopped:
            raise EngineStopped("the engine has stopped")
        req.arrival_s = self.now()
        self.waiting.append(req)
        self.work += req.prompt_tokens + req.output_tokens
        self._wake.set()

    def abort(self, req: EmuRequest) -> None:
        """Drop a request (its client went away): frees its slot and KV cache at once."""
        if req.done:
            return
        if req.state == WAITING:
            self.waiting.remove(req)
        elif req in self.prefilling:
            self.prefilling.remove(req)
            self._release(req)
        else:
            self.decoding.remove(req)
            self.ctx_sum -= req.context
            self._release(req)
        self._end(req, ABORTED, "abort")

    # -- loop ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._t0 = asyncio.get_running_loop().time()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"engine-{self.name}")

    async def stop(self) -> None:
        """Stop stepping; every open request ends with :class:`EngineStopped` raised in its handler."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for req in [*self.waiting, *self.prefilling, *self.decoding]:
            self._end(req, ABORTED, "stopped")
        self.waiting.clear()
        self.prefilling.clear()
        self.decoding = []

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t = loop.time()
        while True:
            self._admit()
            if not self.prefilling and not self.decoding:
                self._wake.clear()
                await self._wake.wait()
                t = loop.time()
                continue
            chunks, stepped, dt = self._plan()
            t_end = t + dt / self.time_scale
            delay = t_end - loop.time()
            if delay < -MAX_LAG_S:
                self.lag_resets += 1
                t_end = loop.time()
            await asyncio.sleep(max(delay, 0.0))  # sleep(0) still lets handlers run when behind
            self._apply(chunks, stepped, dt, (t_end - self._t0) * self.time_scale)
            t = t_end

    def _admit(self) -> None:
        lim = self.limits
        now = None
        while self.waiting:
            req = self.waiting[0]
            if self.running >= lim.max_num_seqs or self.kv_free < req.kv_need:
                return
            self.waiting.popleft()
            self.kv_free -= req.kv_need
            req.state = RUNNING
            req.admitted_s = now = self.now() if now is None else now
            self.prefilling.append(req)

    def _plan(self) -> tuple[list[tuple[EmuRequest, int]], list[EmuRequest], float]:
        """The next iteration: prompt chunks within the token budget after one token per decoding sequence."""
        stepped = self.decoding[:]
        budget = self.limits.max_num_tokens - len(stepped)
        chunks = []
        p_tokens = 0
        pairs = 0.0
        for req in self.prefilling:
            if budget <= 0:
                break
            start = req.prefilled
            take = min(req.prompt_tokens - start, budget)
            chunks.append((req, take))
            pairs += take * start + take * (take + 1) / 2.0
            p_tokens += take
            budget -= take
        dt = self.limits.step_model(p_tokens, pairs, len(stepped), self.ctx_sum, len(chunks)) * self.latency_scale
        return chunks, stepped, dt

    def _apply(self, chunks: list[tuple[EmuRequest, int]], stepped: list[EmuRequest], dt: float,
               now: float) -> None:
        """End of an iteration at emulated time ``now``: one token per decoding sequence, prompt chunks done."""
        self.steps += 1
        self.busy_s += dt
        keep = []
        decoded = 0
        for req in stepped:
            if req.state != RUNNING:  # aborted during the iteration
                continue
            decoded += 1
            req.generated += 1
            req.context += 1
            if req.generated >= req.output_tokens:
                self.ctx_sum -= req.context - 1
                self._release(req)
                self._end(req, FINISHED, _reason(req), now)
            else:
                keep.append(req)
                req._wake()
        self.ctx_sum += len(keep)
        self.decoding = keep
        prompt_tokens = firsts = 0
        for req, take in chunks:
            if req.state != RUNNING:
                continue
            req.prefilled += take
            prompt_tokens += take
            if req.prefilled >= req.prompt_tokens:
                self.prefilling.remove(req)
                firsts += 1
                req.first_s = now
                req.generated = 1
                if req.output_tokens <= 1:
                    self._release(req)
                    self._end(req, FINISHED, _reason(req), now)
                    continue
                req.context = req.prompt_tokens + 1
                self.ctx_sum += req.context
                keep.append(req)
                req._wake()
        if self._on_step is not None:
            self._on_step(prompt_tokens, decoded + firsts, dt, decoded)

    def _release(self, req: EmuRequest) -> None:
        self.kv_free += req.kv_need

    def _end(self, req: EmuRequest, state: str, reason: str, now: float | None = None) -> None:
        req.state = state
        req.reason = reason
        req.finish_s = self.now() if now is None else now
        self.work -= req.prompt_tokens + req.output_tokens
        if state == FINISHED and self._on_finish is not None:
            self._on_finish(req)
        req._wake()


def run_virtual(engine: EmulatedEngine, arrival_s, requests: list[EmuRequest]) -> list[float]:
    """Run ``requests`` (arriving at the sorted emulated times ``arrival_s``) through the engine's iteration
    loop on a virtual clock - what the emulator does with no HTTP or event-loop delay - and return the end time
    of every iteration. The engine must not have been started; its requests carry their times afterwards."""
    clock = [0.0]
    engine.now = lambda: clock[0]
    step_ends: list[float] = []
    nxt, t, n = 0, 0.0, len(requests)

    def arrive_before(limit: float, inclusive: bool) -> None:
        nonlocal nxt
        while nxt < n and (arrival_s[nxt] <= limit if inclusive else arrival_s[nxt] < limit):
            clock[0] = arrival_s[nxt]
            engine.submit(requests[nxt])
            nxt += 1

    while True:
        arrive_before(t, inclusive=True)
        clock[0] = t
        engine._admit()
        if not engine.prefilling and not engine.decoding:
            if nxt == n:
                return step_ends
            t = arrival_s[nxt]
            continue
        chunks, stepped, dt = engine._plan()
        t_end = t + dt
        arrive_before(t_end, inclusive=False)  # arrivals during an iteration wait for its end
        engine._apply(chunks, stepped, dt, t_end)
        step_ends.append(t_end)
        t = t_end


def _reason(req: EmuRequest) -> str:
    """vLLM's finish reason: 'length' when the request stopped at its max_tokens, else 'stop' (an end of
    sequence, here the drawn output length)."""
    return "length" if req.generated == req.max_tokens else "stop"
