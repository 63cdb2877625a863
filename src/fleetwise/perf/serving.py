"""Serving one replica under load: an event-driven simulation of continuous batching.

The engine modelled is an in-flight-batching server (TensorRT-LLM, vLLM, SGLang):

* requests wait in a FIFO queue and are admitted while there is a free batch slot and KV-cache room
  for the whole request (prompt + output, rounded to blocks; no eviction, like TensorRT-LLM's
  GUARANTEED_NO_EVICT policy), so the KV capacity caps concurrency;
* each iteration gives every decoding sequence one token and fills the rest of the token budget
  (``max_num_tokens``) with prompt chunks in admission order (chunked prefill); a request emits its
  first token in the iteration that finishes its prompt;
* iteration times come from :func:`fleetwise.perf.steps.step_time`.

Runs of decode-only iterations between events (an arrival that can be admitted, a completion) are
advanced in one move: context grows by one token per sequence per step, so step times form an
arithmetic series whose sum is closed-form. Cost is therefore proportional to the number of
requests, not of tokens.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from fleetwise.errors import InfeasibleError
from fleetwise.perf.replica import Replica
from fleetwise.perf.steps import prefill_pairs, step_time, steps_to_cover


@dataclass(frozen=True)
class Workload:
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


class _Engine:
    """Mutable state of one simulated replica; run() drives it to completion."""

    def __init__(self, replica: Replica, work: Workload, *, static_batch: int | None, closed_loop: int | None):
        self.r = replica
        self.work = work
        n = len(work)
        self.isl = work.isl.astype(np.int64)
        self.osl = np.maximum(work.osl.astype(np.int64), 1)
        self.arrival = work.arrival_s.astype(float).copy()
        self.first = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.static_batch = static_batch
        self.max_batch = static_batch or replica.max_batch
        self.budget = 1 << 60 if static_batch else replica.max_num_tokens
        block = replica.profile.kv_block_tokens
        self.kv_need = -(-(self.isl + self.osl) // block) * block
        self.kv_free = replica.memory.kv_capacity_tokens
        self.closed_loop = closed_loop
        self.incoming: deque[int] = deque()
        self.next_open = 0  # next request index not yet handed to `incoming` (closed loop)
        if closed_loop:
            self.arrival[:] = np.inf
            for _ in range(min(closed_loop, n)):
                self._release(0.0)
        else:
            self.incoming.extend(np.argsort(self.arrival, kind="stable").tolist())
        self.queue: deque[int] = deque()
        self.prefilling: deque[int] = deque()  # admitted, prompt not finished, admission order
        self.done_prefill = np.zeros(n, dtype=np.int64)
        self.decoding: dict[int, None] = {}  # insertion-ordered set of request ids
        self._dec_cache: np.ndarray | None = None
        self.generated = np.zeros(n, dtype=np.int64)
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
        while self.incoming and self.arrival[self.incoming[0]] <= self.t:
            self.queue.append(self.incoming.popleft())

    def _admit(self) -> None:
        if self.static_batch and (self.prefilling or self.decoding):
            return
        while self.queue and len(self.prefilling) + len(self.decoding) < self.max_batch:
            rid = self.queue[0]
            if self.kv_need[rid] > self.kv_free:
                if not self.prefilling and not self.decoding:
                    raise InfeasibleError(
                        f"a request of {self.isl[rid]}+{self.osl[rid]} tokens needs more KV cache than "
                        f"{self.r.label} holds ({self.r.memory.kv_capacity_tokens} tokens)"
                    )
                break
            self.queue.popleft()
            self.kv_free -= self.kv_need[rid]
            self.prefilling.append(rid)

    def _decoding_ids(self) -> np.ndarray:
        if self._dec_cache is None:
            self._dec_cache = np.fromiter(self.decoding, dtype=np.int64, count=len(self.decoding))
        return self._dec_cache

    def _finish_done(self, dec: np.ndarray) -> None:
        """Retire every decoding sequence that has produced all its output tokens."""
        done = dec[self.generated[dec] >= self.osl[dec]]
        if not len(done):
            return
        self.finish[done] = self.t
        self.kv_free += int(self.kv_need[done].sum())
        for rid in done.tolist():
            del self.decoding[rid]
            if self.closed_loop:
                self._release(self.t)
        self._dec_cache = None

    def _mixed_step(self) -> None:
        """One iteration with prompt chunks (and every decoding sequence)."""
        dec = self._decoding_ids()
        n_dec = len(dec)
        ctx = int((self.isl[dec] + self.generated[dec]).sum()) if n_dec else 0
        budget = max(self.budget - n_dec, 0)
        chunks: list[tuple[int, int]] = []
        pairs = 0.0
        for rid in self.prefilling:
            if budget <= 0:
                break
            start = int(self.done_prefill[rid])
            take = min(int(self.isl[rid]) - start, budget)
            chunks.append((rid, take))
            pairs += prefill_pairs(take, start)
            budget -= take
        p_tokens = sum(take for _, take in chunks)
        dt = float(step_time(self.r, p_tokens, pairs, n_dec, ctx, len(chunks)))
        self._advance(dt, n_dec + len(chunks))
        if n_dec:
            self.itl.append((dt, n_dec))
            self.generated[dec] += 1
            self._finish_done(dec)
        for rid, take in chunks:
            self.done_prefill[rid] += take
            if self.done_prefill[rid] >= self.isl[rid]:
                self.prefilling.remove(rid)
                self.first[rid] = self.t
                self.generated[rid] = 1
                if self.osl[rid] <= 1:
                    self.finish[rid] = self.t
                    self.kv_free += self.kv_need[rid]
                    if self.closed_loop:
                        self._release(self.t)
                else:
                    self.decoding[rid] = None
                    self._dec_cache = None

    def _decode_run(self) -> None:
        """Advance k decode-only iterations at once, up to the next completion or admissible arrival."""
        dec = self._decoding_ids()
        n_dec = len(dec)
        remaining = self.osl[dec] - self.generated[dec]
        k = int(remaining.min())
        ctx = float((self.isl[dec] + self.generated[dec]).sum())
        dt0 = float(step_time(self.r, 0, 0.0, n_dec, ctx))
        slope = float(step_time(self.r, 0, 0.0, n_dec, ctx + n_dec)) - dt0
        if self.incoming and self._could_admit_more():
            k = max(1, min(k, steps_to_cover(self.arrival[self.incoming[0]] - self.t, dt0, slope)))
        elapsed = k * dt0 + slope * k * (k - 1) / 2.0
        self._advance(elapsed, n_dec)
        self.itl.append((elapsed / k, n_dec * k))
        self.generated[dec] += k
        self._finish_done(dec)

    def _could_admit_more(self) -> bool:
        if self.static_batch:
            return False
        return len(self.decoding) + len(self.prefilling) < self.max_batch

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
            elif self.decoding:
                self._decode_run()
            elif self.incoming:
                self.t = max(self.t, float(self.arrival[self.incoming[0]]))
                continue
            else:
                break
        gaps = np.array(self.itl, dtype=float).reshape(-1, 2)
        return SimResult(
            arrival_s=self.arrival,
            first_token_s=self.first,
            finish_s=self.finish,
            isl=self.isl,
            osl=self.osl,
            itl_s=gaps[:, 0],
            itl_weight=gaps[:, 1],
            busy_s=self.busy,
            mean_batch=self.batch_time / self.busy if self.busy else 0.0,
        )


def simulate(
    replica: Replica,
    work: Workload,
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
