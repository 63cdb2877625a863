"""The usage log: one row per finished request, in memory, a SQL table or Redis, and what it adds up to.

Implementations of :class:`~fleetwise.gateway.types.UsageLog`, chosen by URL with :func:`open_usage`:

* ``memory`` - :class:`MemoryUsage`, a list (one process, lost on restart);
* ``sqlite:///PATH`` and ``postgresql://...`` - :class:`SqlUsage`, a table written with SQLAlchemy Core in a
  thread (one ``executemany`` insert per batch);
* ``redis://...`` - :class:`RedisUsage`, a sorted set per tenant scored by the request's time, so a time range
  is one ``ZRANGEBYSCORE`` whatever order rows were written in (a stream is ordered by arrival, not by ``t``).

Every backend writes a batch (``record(rows)``) in one round trip; :class:`BufferedUsage` wraps any of them to
gather rows from many requests and write them every ``flush_s`` seconds or ``max_rows`` rows, so a request
never waits for the log. ``query(tenant, since, until)`` returns rows with ``since <= t < until`` oldest first.

:func:`usage_summary` adds rows up: requests, tokens, spend and savings, by tenant, by serving model, by UTC
day, and savings by mechanism (``saved_by`` in cache / dedup / route: the sum of
``list_cost_usd - cost_usd``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, fields

from fleetwise.errors import ConfigError
from fleetwise.gateway.types import SAVINGS, UsageLog, UsageRecord
from fleetwise.stateurl import first_line, ping_redis, redact_url, sql_engine, state_kind

_FIELDS = tuple(f.name for f in fields(UsageRecord))


def _keep(row: UsageRecord, tenant: str | None, since: float, until: float | None) -> bool:
    return (tenant is None or row.tenant == tenant) and row.t >= since and (until is None or row.t < until)


class MemoryUsage:
    """The usage log as a list in memory."""

    def __init__(self) -> None:
        self.rows: list[UsageRecord] = []

    async def open(self) -> MemoryUsage:
        return self

    async def record(self, rows: Sequence[UsageRecord]) -> None:
        self.rows.extend(rows)

    async def query(self, tenant: str | None = None, since: float = 0.0, until: float | None = None
                    ) -> list[UsageRecord]:
        return sorted((r for r in self.rows if _keep(r, tenant, since, until)), key=lambda r: r.t)

    async def aclose(self) -> None:
        pass


class SqlUsage:
    """The usage log as a table (SQLAlchemy Core, ``sqlite:///PATH`` or ``postgresql://...``), in a thread."""

    def __init__(self, url: str, table: str = "fleetwise_usage") -> None:
        import sqlalchemy as sa

        self.url = url
        self.engine = sql_engine(url, "usage log")
        meta = sa.MetaData()
        self.table = sa.Table(
            table, meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("t", sa.Float, nullable=False),
            sa.Column("tenant", sa.String(128), nullable=False),
            sa.Column("model", sa.String(256), nullable=False),
            sa.Column("requested_model", sa.String(256), nullable=False),
            sa.Column("prompt_tokens", sa.Integer, nullable=False),
            sa.Column("completion_tokens", sa.Integer, nullable=False),
            sa.Column("cost_usd", sa.Float(53), nullable=False),
            sa.Column("list_cost_usd", sa.Float(53), nullable=False),
            sa.Column("saved_by", sa.String(16), nullable=False),
            sa.Column("status", sa.Integer, nullable=False),
            sa.Index(f"{table}_tenant_t", "tenant", "t"),
            sa.Index(f"{table}_t", "t"),
        )

    async def open(self) -> SqlUsage:
        """Create the table if missing."""
        import sqlalchemy as sa

        try:
            await asyncio.to_thread(self.table.metadata.create_all, self.engine)
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            raise ConfigError(f"usage log {redact_url(self.url)}: cannot use the database ({first_line(exc)})"
                              ) from None
        return self

    async def record(self, rows: Sequence[UsageRecord]) -> None:
        """Insert the rows in one transaction."""
        if rows:
            await asyncio.to_thread(self._insert, [asdict(r) for r in rows])

    def _insert(self, rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.table.insert(), rows)

    async def query(self, tenant: str | None = None, since: float = 0.0, until: float | None = None
                    ) -> list[UsageRecord]:
        return await asyncio.to_thread(self._select, tenant, since, until)

    def _select(self, tenant: str | None, since: float, until: float | None) -> list[UsageRecord]:
        c = self.table.c
        query = self.table.select().where(c.t >= since).order_by(c.t, c.id)
        if tenant is not None:
            query = query.where(c.tenant == tenant)
        if until is not None:
            query = query.where(c.t < until)
        with self.engine.connect() as conn:
            return [UsageRecord(**{k: m[k] for k in _FIELDS}) for m in conn.execute(query).mappings()]

    async def aclose(self) -> None:
        await asyncio.to_thread(self.engine.dispose)


class RedisUsage:
    """The usage log in Redis: a sorted set per tenant (score: the request's time) and the set of tenants."""

    def __init__(self, url: str, prefix: str = "fleetwise:usage:") -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        try:
            self._redis = aioredis.from_url(url)
        except ValueError as exc:
            raise ConfigError(f"usage log {redact_url(url)}: not a usable Redis URL ({exc})") from None

    async def open(self) -> RedisUsage:
        """Check that the server answers."""
        await ping_redis(self._redis, self.url, "usage log")
        return self

    def _key(self, tenant: str) -> str:
        return f"{self.prefix}{{{tenant}}}"

    async def record(self, rows: Sequence[UsageRecord]) -> None:
        """Add the rows in one pipelined round trip (a random id keeps identical rows apart)."""
        if not rows:
            return
        by_tenant: dict[str, dict[str, float]] = defaultdict(dict)
        for r in rows:
            by_tenant[r.tenant][json.dumps([uuid.uuid4().hex[:12], *_values(r)])] = r.t
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(self.prefix + "tenants", *by_tenant)
        for tenant, members in by_tenant.items():
            pipe.zadd(self._key(tenant), members)
        await pipe.execute()

    async def query(self, tenant: str | None = None, since: float = 0.0, until: float | None = None
                    ) -> list[UsageRecord]:
        if tenant is None:
            tenants = sorted(t.decode() for t in await self._redis.smembers(self.prefix + "tenants"))
        else:
            tenants = [tenant]
        high = "+inf" if until is None else f"({until!r}"
        pipe = self._redis.pipeline(transaction=False)
        for name in tenants:
            pipe.zrangebyscore(self._key(name), repr(float(since)), high)
        found = [UsageRecord(*json.loads(m)[1:]) for members in await pipe.execute() for m in members]
        return sorted(found, key=lambda r: r.t)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _values(row: UsageRecord) -> tuple:
    """The row's fields in declaration order (shallow, unlike dataclasses.astuple)."""
    return tuple(getattr(row, name) for name in _FIELDS)


class BufferedUsage:
    """Any usage log behind a buffer: ``record`` returns at once; rows are written every ``flush_s`` seconds
    or as soon as ``max_rows`` wait. ``query`` and ``aclose`` write what is buffered first."""

    def __init__(self, log: UsageLog, flush_s: float = 1.0, max_rows: int = 500) -> None:
        self.log = log
        self.flush_s = flush_s
        self.max_rows = max_rows
        self._rows: list[UsageRecord] = []
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    async def record(self, rows: Sequence[UsageRecord]) -> None:
        self._rows.extend(rows)
        if len(self._rows) >= self.max_rows:
            await self.flush()
        elif self._task is None and self._rows:
            self._task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self.flush_s)
        self._task = None
        await asyncio.shield(self.flush())  # a cancel (aclose) must not drop rows taken from the buffer

    async def flush(self) -> None:
        """Write the buffered rows (one batch)."""
        async with self._lock:
            rows, self._rows = self._rows, []
            if rows:
                await self.log.record(rows)

    async def query(self, tenant: str | None = None, since: float = 0.0, until: float | None = None
                    ) -> list[UsageRecord]:
        await self.flush()
        return await self.log.query(tenant, since, until)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        await self.log.aclose()


# ---------------------------------------------------------------------------------------------- summaries


def _totals(rows: Sequence[UsageRecord]) -> dict:
    """Requests, errors, tokens, spend, list price and savings of some rows (sums with math.fsum)."""
    saved = [r.list_cost_usd - r.cost_usd for r in rows if r.saved_by in SAVINGS]
    return {
        "requests": len(rows),
        "errors": sum(1 for r in rows if r.status >= 400),
        "prompt_tokens": sum(r.prompt_tokens for r in rows),
        "completion_tokens": sum(r.completion_tokens for r in rows),
        "cost_usd": math.fsum(r.cost_usd for r in rows),
        "list_cost_usd": math.fsum(r.list_cost_usd for r in rows),
        "saved_usd": math.fsum(saved),
    }


def _grouped(rows: Iterable[UsageRecord], key: Callable[[UsageRecord], str]) -> dict[str, dict]:
    groups: dict[str, list[UsageRecord]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return {name: _totals(group) for name, group in sorted(groups.items())}


def utc_day(t: float) -> str:
    """``YYYY-MM-DD`` of a time, UTC."""
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def usage_summary(rows: Sequence[UsageRecord]) -> dict:
    """Totals of usage rows, by tenant, by serving model and by UTC day, and savings by mechanism.

    Returns:
        ``{"total": T, "by_tenant": {name: T}, "by_model": {model: T}, "by_day": {"YYYY-MM-DD": T},
        "saved_by": {"cache": usd, "dedup": usd, "route": usd}}`` where each ``T`` has ``requests``,
        ``errors`` (status >= 400), ``prompt_tokens``, ``completion_tokens``, ``cost_usd``, ``list_cost_usd``
        and ``saved_usd`` (``list_cost_usd - cost_usd`` of the rows some mechanism made cheaper).
    """
    return {
        "total": _totals(rows),
        "by_tenant": _grouped(rows, lambda r: r.tenant),
        "by_model": _grouped(rows, lambda r: r.model),
        "by_day": _grouped(rows, lambda r: utc_day(r.t)),
        "saved_by": {m: math.fsum(r.list_cost_usd - r.cost_usd for r in rows if r.saved_by == m)
                     for m in SAVINGS},
    }


# ---------------------------------------------------------------------------------------------- factory


def make_usage(url: str, **options) -> UsageLog:
    """The usage log a URL names, not yet opened (``options``: ``table`` for SQL, ``prefix`` for Redis)."""
    kind = state_kind(url, "usage log")
    if kind == "memory":
        return MemoryUsage()
    return RedisUsage(url, **options) if kind == "redis" else SqlUsage(url, **options)


async def open_usage(url: str, **options) -> UsageLog:
    """Open the usage log a URL names: ``memory``, ``sqlite:///PATH``, ``redis://...``, ``postgresql://...``.

    Raises:
        ConfigError: an unknown URL, a database that cannot be opened or a server that does not answer.
    """
    return await make_usage(url, **options).open()
