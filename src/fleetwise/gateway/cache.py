"""Exact response cache and in-flight de-duplication.

Only deterministic requests are cached or joined: ``temperature`` 0, or an explicit ``seed`` (with ``n`` at
most 1). The key is a SHA-256 of the tenant's cache scope, the model that serves the request and the
request body normalized (keys sorted; fields that do not change the answer - ``stream``,
``stream_options``, ``user``, ``cache``, ``priority`` - left out), so a streamed and a non-streamed
request share an entry, and no entry is served across tenants unless they declare the same scope.

:class:`MemoryCache` is an LRU with per-entry expiry; :class:`RedisCache` stores the same bytes with
``SET key value PX ttl`` so several gateway processes share it. :class:`Flights` is the single-flight table of
one process: the first request for a key runs the upstream call as its own task and every request for the
same key - the first one included - reads the answer from the flight as it grows, so a waiter that
disconnects cancels nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine

IGNORED_FIELDS = ("stream", "stream_options", "user", "cache", "priority", "metadata")


def deterministic(body: dict) -> bool:
    """Whether the same request must give the same answer: temperature 0 or a seed, one choice."""
    if body.get("n", 1) not in (1, None):
        return False
    temperature = body.get("temperature", 1.0)
    zero = isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and temperature == 0
    return zero or isinstance(body.get("seed"), int)


def cache_key(scope: str, model: str, body: dict) -> str:
    """The entry's key: scope, serving model and the normalized request."""
    kept = {k: v for k, v in body.items() if k not in IGNORED_FIELDS and k != "model"}
    text = json.dumps([scope, model, kept], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "fwc:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class MemoryCache:
    """An LRU of at most ``max_entries`` with per-entry expiry (one process)."""

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires <= self.clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if self.max_entries <= 0 or not ttl_s > 0:
            return
        self._data[key] = (self.clock() + ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    async def aclose(self) -> None:
        self._data.clear()


class RedisCache:
    """The cache in Redis (``redis://host:port/db``): shared by every gateway process on it."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url)

    async def get(self, key: str) -> bytes | None:
        return await self._redis.get(key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if ttl_s > 0 and math.isfinite(ttl_s):
            await self._redis.set(key, value, px=max(1, int(ttl_s * 1000)))

    async def aclose(self) -> None:
        await self._redis.aclose()


class Flight:
    """One upstream call shared by every request with the same key: the chunks so far, then the end."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.done = False
        self.error: BaseException | None = None
        self.result: object = None  # what the producer returns (status, usage...)
        self.waiters = 0
        self._changed = asyncio.Event()

    def push(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._wake()

    def finish(self, result: object = None, error: BaseException | None = None) -> None:
        self.done, self.result, self.error = True, result, error
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def follow(self) -> AsyncIterator[bytes]:
        """Every chunk from the first, as they arrive, until the flight ends."""
        i = 0
        while True:
            while i < len(self.chunks):
                yield self.chunks[i]
                i += 1
            if self.done:
                return
            await self._changed.wait()


class Flights:
    """In-flight calls by key (one process). ``join`` returns (flight, leader?)."""

    def __init__(self) -> None:
        self._flights: dict[str, Flight] = {}
        self._tasks: set[asyncio.Task] = set()

    def join(self, key: str, produce: Callable[[Flight], Coroutine]) -> tuple[Flight, bool]:
        """The flight for ``key``; when none is running, start ``produce(flight)`` as its own task."""
        flight = self._flights.get(key)
        if flight is not None and not flight.done:
            flight.waiters += 1
            return flight, False
        flight = Flight()
        self._flights[key] = flight
        task = asyncio.get_running_loop().create_task(self._run(key, flight, produce))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return flight, True

    async def _run(self, key: str, flight: Flight, produce) -> None:
        try:
            result = await produce(flight)
            flight.finish(result)
        except BaseException as exc:  # every follower must learn how it ended
            flight.finish(error=exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
