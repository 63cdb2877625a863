"""Backends by model: least outstanding tokens within a model, draining backends excluded, and the set kept in
step with a fleetwise controller (``GET /api/backends`` every second) when one is given.

Outstanding tokens are prompt + ``max_tokens`` of the requests sent to a backend and not finished - the
simulator's ``least-work`` rule and ``fleetwise replay``'s. Saturation (for admission) is judged per backend
from two signals, either of which suffices:

* the engine's own load, read from its ``/metrics`` every ``scrape_interval_s`` (vLLM V0/V1 and SGLang names,
  :mod:`fleetwise.enginemetrics`): ``waiting`` requests >= ``max_waiting`` or KV-cache usage >=
  ``max_kv_usage``. The defaults (5 waiting, 80% KV) are llm-d's workload-variant-autoscaler saturation
  thresholds (see :class:`fleetwise.sim.anchors.WvaSaturation`). A reading older than three intervals (the
  backend stopped answering ``/metrics``, or has none) no longer counts;
* the gateway's own count: outstanding tokens >= ``tokens`` (default: 64 requests of 1,000 prompt + 250
  output tokens, a vLLM replica's usual batch) - what a backend without metrics is judged by, and what catches
  a burst between two scrapes.

A model is saturated when all its live backends are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from fleetwise.enginemetrics import load_gauges

DEFAULT_SATURATION_TOKENS = 64 * 1250
DEFAULT_MAX_WAITING = 5
DEFAULT_MAX_KV_USAGE = 0.80
DEFAULT_SCRAPE_INTERVAL_S = 1.0
CONTROLLER_POLL_S = 1.0
STALE_AFTER_INTERVALS = 3


@dataclass(frozen=True)
class Saturation:
    """When a backend counts as saturated (see the module docstring); ``scrape_interval_s`` 0: no scraping."""

    tokens: int = DEFAULT_SATURATION_TOKENS
    max_waiting: float = DEFAULT_MAX_WAITING
    max_kv_usage: float = DEFAULT_MAX_KV_USAGE
    scrape_interval_s: float = DEFAULT_SCRAPE_INTERVAL_S


@dataclass
class Backend:
    url: str
    outstanding: int = 0
    draining: bool = False
    failures: int = 0
    waiting: float | None = None  # from the engine's /metrics (None: not read yet, or it has none)
    kv_usage: float | None = None
    scraped_at: float = -1e18  # time.monotonic() of the last good reading
    ejected_until: float = -1e18  # time.monotonic() until which it takes no new request (it refused one)
    token_ids: bool = True  # False: it answered 400 to ``return_token_ids`` (not vLLM >= 0.10.2), so never sent

    def eject(self, seconds: float) -> None:
        self.ejected_until = time.monotonic() + seconds

    def saturated(self, limits: Saturation, now: float) -> bool:
        if self.outstanding >= limits.tokens:
            return True
        if now - self.scraped_at > STALE_AFTER_INTERVALS * limits.scrape_interval_s:
            return False
        return ((self.waiting is not None and self.waiting >= limits.max_waiting)
                or (self.kv_usage is not None and self.kv_usage >= limits.max_kv_usage))


@dataclass
class Pool:
    """The backends of one model."""

    model: str
    backends: dict[str, Backend] = field(default_factory=dict)
    limits: Saturation = Saturation()

    def pick(self, exclude: frozenset[str] = frozenset()) -> Backend | None:
        """The live backend with the least outstanding tokens (None: none takes work); one that refused a
        request lately (ejected) only if no other is left."""
        best, best_key, now = None, None, time.monotonic()
        for b in self.backends.values():
            if b.draining or b.url in exclude:
                continue
            key = (b.ejected_until > now, b.outstanding)
            if best is None or key < best_key:
                best, best_key = b, key
        return best

    @property
    def saturated(self) -> bool:
        now = time.monotonic()
        return all(b.saturated(self.limits, now) for b in self.backends.values() if not b.draining)

    def set_urls(self, urls: list[str], draining: list[str] = ()) -> None:
        """Make the pool these URLs (keeping the counters of those already known); ``draining`` take no work."""
        wanted = {u.rstrip("/") for u in urls} | {u.rstrip("/") for u in draining}
        for url in list(self.backends):
            if url not in wanted and not self.backends[url].outstanding:
                del self.backends[url]
        for url in wanted:
            b = self.backends.setdefault(url, Backend(url))
            b.draining = url in {u.rstrip("/") for u in draining}
        for url in set(self.backends) - wanted:  # gone but still busy: finish, take nothing new
            self.backends[url].draining = True


class Backends:
    """Every model's pool."""

    def __init__(self, by_model: dict[str, list[str]], limits: Saturation = Saturation()) -> None:
        self.pools: dict[str, Pool] = {}
        self.limits = limits
        for model, urls in by_model.items():
            self.pool(model).set_urls(urls)
        self._tasks: list[asyncio.Task] = []

    def pool(self, model: str) -> Pool:
        if model not in self.pools:
            self.pools[model] = Pool(model, limits=self.limits)
        return self.pools[model]

    def models(self) -> list[str]:
        return sorted(m for m, p in self.pools.items() if p.backends)

    def follow(self, controller_url: str, session) -> None:
        """Poll a fleetwise controller's ``/api/backends`` and mirror it into the pool of its model."""
        self._tasks.append(asyncio.get_running_loop().create_task(self._poll(controller_url.rstrip("/"), session)))

    def watch_load(self, session) -> None:
        """Read every backend's ``/metrics`` every ``scrape_interval_s`` (nothing if it is 0)."""
        if self.limits.scrape_interval_s > 0:
            self._tasks.append(asyncio.get_running_loop().create_task(self._scrape_loop(session)))

    async def _scrape_loop(self, session) -> None:
        while True:
            backends = [b for p in self.pools.values() for b in p.backends.values()]
            await asyncio.gather(*(self._scrape(b, session) for b in backends))
            await asyncio.sleep(self.limits.scrape_interval_s)

    async def _scrape(self, backend: Backend, session) -> None:
        """One reading; a backend that does not answer, or has no /metrics, keeps its last (it goes stale)."""
        import aiohttp

        try:
            timeout = aiohttp.ClientTimeout(total=max(self.limits.scrape_interval_s, 0.5))
            async with session.get(backend.url + "/metrics", timeout=timeout) as resp:
                if resp.status != 200:
                    return
                gauges = load_gauges(await resp.text())
        except (TimeoutError, aiohttp.ClientError, ValueError, UnicodeDecodeError):
            return
        if "waiting" in gauges or "kv_usage" in gauges:
            backend.waiting, backend.kv_usage = gauges.get("waiting"), gauges.get("kv_usage")
            backend.scraped_at = time.monotonic()

    async def _poll(self, base: str, session) -> None:
        while True:
            with contextlib.suppress(Exception):  # a controller restarting: keep the last set
                async with session.get(base + "/api/backends") as resp:
                    if resp.status != 200:  # e.g. 503 from a controller that has not stepped since it started
                        raise ValueError(resp.status)
                    data = await resp.json()
                self.pool(data["model"]).set_urls([b["url"] for b in data["backends"]],
                                                  [b["url"] for b in data.get("draining", [])])
            await asyncio.sleep(CONTROLLER_POLL_S)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
