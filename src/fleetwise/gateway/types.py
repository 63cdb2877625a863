"""The gateway's small interfaces and records: tenants, budget reservations, the response cache, usage.

Shared state lives behind three protocols so one process can keep it in memory (or a SQLite file) and several
gateway processes can share it in Redis or PostgreSQL:

* :class:`BudgetLedger` - atomic reserve / settle / release of USD against per-tenant limits per period.
  A request reserves its worst-case cost (prompt + ``max_tokens`` at the model's prices) *before* it is sent,
  settles to the actual usage after (streamed usage included) and releases on failure, so concurrent requests
  can never spend past a limit by more than one request's settled difference - the check and the record are
  one atomic step (LiteLLM's check-then-record is not: its issues #34732, #40095).
* :class:`ResponseCache` - bytes by key with a TTL (deterministic responses only; the key includes the
  tenant's cache scope).
* :class:`UsageLog` - one row per finished request: tenant, model, tokens, cost and what saved money.

Periods are UTC: ``day:YYYY-MM-DD`` and ``month:YYYY-MM``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

PRIORITIES = ("realtime", "interactive", "batch", "background")  # most to least urgent
SAVINGS = ("cache", "dedup", "route")  # what can make a request cheaper than sending it as asked


def periods(t: float | None = None) -> tuple[str, str]:
    """The (day, month) period keys of a time (now by default), UTC."""
    tm = time.gmtime(time.time() if t is None else t)
    return time.strftime("day:%Y-%m-%d", tm), time.strftime("month:%Y-%m", tm)


@dataclass(frozen=True)
class Tenant:
    """Who sends requests: their hashed API keys, limits, priority and cache scope."""

    name: str
    key_hashes: frozenset[str] = frozenset()
    budget_usd_per_day: float | None = None
    budget_usd_per_month: float | None = None
    rate_limit_rps: float | None = None
    priority: str = "interactive"
    cache_scope: str = ""  # tenants that declare the same scope share cache entries; default: their name

    def limits(self, t: float | None = None) -> dict[str, float]:
        """Budget limits (USD) by period key at time ``t``."""
        day, month = periods(t)
        out = {}
        if self.budget_usd_per_day is not None:
            out[day] = self.budget_usd_per_day
        if self.budget_usd_per_month is not None:
            out[month] = self.budget_usd_per_month
        return out


@dataclass(frozen=True)
class Reservation:
    """USD held for one request in each period it counts against, until settled or released."""

    id: str
    tenant: str
    amount_usd: float
    periods: tuple[str, ...]


@dataclass(frozen=True)
class Denied:
    """A reservation refused: the period whose limit it would pass, and what is left there."""

    tenant: str
    period: str
    limit_usd: float
    spent_usd: float
    reserved_usd: float
    asked_usd: float

    @property
    def remaining_usd(self) -> float:
        return max(0.0, self.limit_usd - self.spent_usd - self.reserved_usd)


class BudgetLedger(Protocol):
    """Atomic budget accounting (implementations: memory, SQLite, Redis, PostgreSQL)."""

    async def reserve(self, tenant: str, amount_usd: float, limits: Mapping[str, float]) -> Reservation | Denied:
        """Hold ``amount_usd`` in every period of ``limits`` if, in each, spent + reserved + amount <= limit;
        else hold nothing and say which period refused. All periods or none, atomically."""
        ...

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the hold with the actual cost (idempotent: a second settle of the same id does nothing)."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Drop the hold (the request failed before any cost); idempotent."""
        ...

    async def usage(self, tenant: str, period: str) -> tuple[float, float]:
        """(spent, reserved) USD of a tenant in a period."""
        ...

    async def aclose(self) -> None:
        ...


class ResponseCache(Protocol):
    """Bytes by key with a time to live (memory LRU, Redis)."""

    async def get(self, key: str) -> bytes | None:
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        ...

    async def aclose(self) -> None:
        ...


@dataclass(frozen=True)
class UsageRecord:
    """One finished request.

    Attributes:
        cost_usd: what it cost (0 for a cache hit or a de-duplicated join).
        list_cost_usd: what it would have cost sent as asked (the model asked for, no cache, no join): the
            saving is ``list_cost_usd - cost_usd``, attributed to ``saved_by``.
    """

    t: float
    tenant: str
    model: str  # the model that served it
    requested_model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    list_cost_usd: float
    saved_by: str = ""  # "" or one of SAVINGS
    status: int = 200


class UsageLog(Protocol):
    async def record(self, rows: Sequence[UsageRecord]) -> None:
        ...

    async def query(self, tenant: str | None = None, since: float = 0.0, until: float | None = None
                    ) -> list[UsageRecord]:
        ...

    async def aclose(self) -> None:
        ...
