"""Serving one replica under load: an event-driven simulation of continuous batching.

The engine modelled is an in-flight-batching server (TensorRT-LLM, vLLM, SGLang):

* requests wait in a FIFO queue and are admitted while there is a free batch slot and KV-cache room
  for the whole request (prompt + output, rounded to blocks; no eviction, like TensorRT-LLM's
  GUARANTEED_NO_EVICT policy), so the KV capacity caps concurrency;
* each iteration gives every decoding sequence one token and fills the rest of the token budget
  (``max_num_tokens``) with prompt chunks in admission order (chunked prefill); a request emits its
  first token in the iteration that finishes its prompt;
* iteration times come from :func:`fleetwise.perf.steps.step_time` (as a :class:`~fleetwise.perf.steps.StepModel`).

Runs of decode-only iterations between events (an arrival that can be admitted, a completion) are
advanced in one move: context grows by one token per sequence per step, so step times form an
arithmetic series whose sum is closed-form. Cost is therefore proportional to the number of
requests, not of tokens.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from fleetwise.errors import InfeasibleError
from fleetwise.perf.replica import Replica
from fleetwise.perf.steps import StepModel, prefill_pairs, steps_to_cover


@dataclass(frozen=True)
class Requests:
    """Requests to replay: arrival times (s) and token lengths, as arrays."""

    arrival_s: np.ndarray
    isl: np.ndarray
    osl: np.ndarray

    def __len__(self) -> int:
        return len(self.isl)


@dataclass(frozen=True)
class SimResult:
    """Per-request timings and per-step token gaps of one simulated run."""

    arrival_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    itl_s: np.ndarray  # distinct inter-token gaps ...
    itl_weight: np.ndarray  # ... and how many tokens saw each gap
    busy_s: float
    mean_batch: float

    def tail(self, n: int) -> SimResult:
        """The ``n`` requests that arrived last (a run without its warm-up). The step gaps, busy time and mean
        batch stay those of the whole run: steps are not tied to requests."""
        keep = np.sort(np.argsort(self.arrival_s, kind="stable")[-n:])
        return dataclasses.replace(self, arrival_s=self.arrival_s[keep], first_token_s=self.first_token_s[keep],
                                   finish_s=self.finish_s[keep], isl=self.isl[keep], osl=self.osl[keep])


class _Engine:
    """Mutable state of one simulated replica; run() drives it to completion.

    Decoding sequences advance in lockstep (one token each per step), so the engine keeps a global count of
    decode steps ``g`` and, per sequence, the count at which it finishes (a heap): the shortest remaining
    output is ``heap[0] - g`` and the decoding context grows by the number of sequences per step - no pass
    over the batch per event. Hot loops work on Python lists (NumPy's per-element cost would dominate).
    """

    def __init__(self, replica: Replica, work: Requests, *, static_batch: int | None, closed_loop: int | None):
        self.r = replica
        self.step = StepModel(replica)  # step_time folded into constants: called once per iteration
        n = len(work)
        self.isl_a = work.isl.astype(np.int64)
        self.osl_a = np.maximum(work.osl.astype(np.int64), 1)
        self.isl = self.isl_a.tolist()
        self.osl = self.osl_a.tolist()
        self.arrival = work.arrival_s.astype(float).tolist()
        self.first = [math.nan] * n
        self.finish = [math.nan] * n
        self.static_batch = static_batch
        self.max_batch = static_batch or replica.max_batch
        self.budget = 1 << 60 if static_batch else replica.max_num_tokens
        block = replica.profile.kv_block_tokens
        self.kv_need = (-(-(self.isl_a + self.osl_a) // block) * block).tolist()
        self.kv_free = replica.memory.kv_capacity_tokens
        self.closed_loop = closed_loop
        self.incoming: deque[int] = deque()
        self.next_open = 0  # next request index not yet handed to `incoming` (closed loop)
        if closed_loop:
            self.arrival = [math.inf] * n
            for _ in range(min(closed_loop, n)):
                self._release(0.0)
        else:
            self.incoming.extend(np.argsort(work.arrival_s, kind="stable").tolist())
        self.queue: deque[int] = deque()
        self.prefilling: deque[int] = deque()  # admitted, prompt not finished, admission order
        self.done_prefill = [0] * n
        self.g = 0  # decode steps so far (every decoding sequence gains one token per step)
        self.ends: list[tuple[int, int]] = []  # heap of (g at which a decoding sequence has all its tokens, id)
        self.ctx = 0  # total context (prompt + generated) of the decoding sequences
        self.t = 0.0
        self.itl: list[tuple[float, int]] = []
        self.busy = 0.0
        self.batch_time = 0.0

    def _release(self, t: float) -> None:
        if self.next_open < len(self.isl):
            self.arrival[self.next_open] = t
            self.incoming.append(self.next_open)
            self.next_open += 1

    def _arrive(self) -> None:
        incoming, arrival, t = self.incoming, self.arrival, self.t
        while incoming and arrival[incoming[0]] <= t:
            self.queue.append(incoming.popleft())

    def _admit(self) -> None:
        if self.static_batch and (self.prefilling or self.ends):
            return
        queue, need = self.queue, self.kv_need
        while queue and len(self.prefilling) + len(self.ends) < self.max_batch:
            rid = queue[0]
            if need[rid] > self.kv_free:
                if not self.prefilling and not self.ends:
                    raise InfeasibleError(
                        f"a request of {self.isl[rid]}+{self.osl[rid]} tokens needs more KV cache than "
                        f"{self.r.label} holds ({self.r.memory.kv_capacity_tokens} tokens)"
                    )
                break
            queue.popleft()
            self.kv_free -= need[rid]
            self.prefilling.append(rid)

    def _finish_done(self) -> None:
        """Retire every decoding sequence that has produced all its output tokens."""
        ends, g = self.ends, self.g
        while ends and ends[0][0] <= g:
            rid = heapq.heappop(ends)[1]
            self.finish[rid] = self.t
            self.kv_free += self.kv_need[rid]
            self.ctx -= self.isl[rid] + self.osl[rid]
            if self.closed_loop:
                self._release(self.t)

    def _mixed_step(self) -> None:
        """One iteration with prompt chunks (and every decoding sequence)."""
        n_dec = len(self.ends)
        budget = max(self.budget - n_dec, 0)
        chunks: list[tuple[int, int]] = []
        pairs = 0.0
        p_tokens = 0
        for rid in self.prefilling:
            if budget <= 0:
                break
            start = self.done_prefill[rid]
            take = min(self.isl[rid] - start, budget)
            chunks.append((rid, take))
            pairs += prefill_pairs(take, start)
            budget -= take
            p_tokens += take
        dt = self.step(p_tokens, pairs, n_dec, self.ctx, len(chunks))
        self._advance(dt, n_dec + len(chunks))
        if n_dec:
            self.itl.append((dt, n_dec))
            self.g += 1
            self.ctx += n_dec
            self._finish_done()
        for rid, take in chunks:
            self.done_prefill[rid] += take
            if self.done_prefill[rid] >= self.isl[rid]:
                self.prefilling.remove(rid)
                self.first[rid] = self.t
                if self.osl[rid] <= 1:
                    self.finish[rid] = self.t
                    self.kv_free += self.kv_need[rid]
                    if self.closed_loop:
                        self._release(self.t)
                else:  # its first token is out: osl - 1 decode steps to go
                    heapq.heappush(self.ends, (self.g + self.osl[rid] - 1, rid))
                    self.ctx += self.isl[rid] + 1

    def _decode_run(self) -> None:
        """Advance k decode-only iterations at once, up to the next completion or admissible arrival."""
        n_dec = len(self.ends)
        k = self.ends[0][0] - self.g
        dt0 = self.step(0, 0.0, n_dec, self.ctx)
        slope = self.step.ctx_coef * n_dec  # each step adds one token of context per sequence
        if self.incoming and self._could_admit_more():
            k = max(1, min(k, steps_to_cover(self.arrival[self.incoming[0]] - self.t, dt0, slope)))
        elapsed = k * dt0 + slope * k * (k - 1) / 2.0
        self._advance(elapsed, n_dec)
        self.itl.append((elapsed / k, n_dec * k))
        self.g += k
        self.ctx += n_dec * k
        self._finish_done()

    def _could_admit_more(self) -> bool:
        if self.static_batch:
            return False
        return len(self.ends) + len(self.prefilling) < self.max_batch

    def _advance(self, dt: float, batch: int) -> None:
        self.t += dt
        self.busy += dt
        self.batch_time += dt * batch

    def run(self) -> SimResult:
        while True:
            self._arrive()
            self._admit()
            if self.prefilling:
                self._mixed_step()
            elif self.ends:
                self._decode_run()
            elif self.incoming:
                self.t = max(self.t, self.arrival[self.incoming[0]])
                continue
            else:
                break
        gaps = np.array(self.itl, dtype=float).reshape(-1, 2)
        return SimResult(
            arrival_s=np.array(self.arrival, dtype=float),
            first_token_s=np.array(self.first, dtype=float),
            finish_s=np.array(self.finish, dtype=float),
            isl=self.isl_a,
            osl=self.osl_a,
            itl_s=gaps[:, 0],
            itl_weight=gaps[:, 1],
            busy_s=self.busy,
            mean_batch=self.batch_time / self.busy if self.busy else 0.0,
        )


def simulate(
    replica: Replica,
    work: Requests,
    *,
    static_batch: int | None = None,
    closed_loop: int | None = None,
) -> SimResult:
    """Replay a workload through one tensor-parallel group of the replica.

    Args:
        static_batch: run static batching with this batch size (no admission until a batch ends).
        closed_loop: keep this many requests outstanding (a new one arrives as one completes);
            arrival times in ``work`` are then ignored.
    """
    return _Engine(replica, work, static_batch=static_batch, closed_loop=closed_loop).run()
