"""Backends by model: least outstanding tokens within a model, draining backends excluded, and the set kept in
step with a fleetwise controller (``GET /api/backends`` every second) when one is given.

Outstanding tokens are prompt + ``max_tokens`` of the requests sent to a backend and not finished - the
simulator's ``least-work`` rule and ``fleetwise replay``'s. Saturation (for admission) is outstanding tokens
over a per-backend budget: a backend is saturated past ``saturation_tokens`` (default: 64 requests of 1,000
prompt + 250 output tokens, a vLLM replica's usual batch), and a model is saturated when all its backends are.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

DEFAULT_SATURATION_TOKENS = 64 * 1250
CONTROLLER_POLL_S = 1.0


@dataclass
class Backend:
    url: str
    outstanding: int = 0
    draining: bool = False
    failures: int = 0


@dataclass
class Pool:
    """The backends of one model."""

    model: str
    backends: dict[str, Backend] = field(default_factory=dict)
    saturation_tokens: int = DEFAULT_SATURATION_TOKENS

    def pick(self, exclude: frozenset[str] = frozenset()) -> Backend | None:
        """The live backend with the least outstanding tokens (None: none takes work)."""
        best = None
        for b in self.backends.values():
            if b.draining or b.url in exclude:
                continue
            if best is None or b.outstanding < best.outstanding:
                best = b
        return best

    @property
    def saturated(self) -> bool:
        live = [b for b in self.backends.values() if not b.draining]
        return not live or all(b.outstanding >= self.saturation_tokens for b in live)

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

    def __init__(self, by_model: dict[str, list[str]], saturation_tokens: int = DEFAULT_SATURATION_TOKENS) -> None:
        self.pools: dict[str, Pool] = {}
        self.saturation_tokens = saturation_tokens
        for model, urls in by_model.items():
            self.pool(model).set_urls(urls)
        self._task: asyncio.Task | None = None

    def pool(self, model: str) -> Pool:
        if model not in self.pools:
            self.pools[model] = Pool(model, saturation_tokens=self.saturation_tokens)
        return self.pools[model]

    def models(self) -> list[str]:
        return sorted(m for m, p in self.pools.items() if p.backends)

    def follow(self, controller_url: str, session) -> None:
        """Poll a fleetwise controller's ``/api/backends`` and mirror it into the pool of its model."""
        self._task = asyncio.get_running_loop().create_task(self._poll(controller_url.rstrip("/"), session))

    async def _poll(self, base: str, session) -> None:
        while True:
            with contextlib.suppress(Exception):  # a controller restarting: keep the last set
                async with session.get(base + "/api/backends") as resp:
                    data = await resp.json()
                self.pool(data["model"]).set_urls([b["url"] for b in data["backends"]],
                                                  [b["url"] for b in data.get("draining", [])])
            await asyncio.sleep(CONTROLLER_POLL_S)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
