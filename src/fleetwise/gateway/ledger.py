"""Budget ledgers: exact, atomic reserve / settle / release of USD per tenant and period.

Four implementations of :class:`~fleetwise.gateway.types.BudgetLedger`, chosen by URL with :func:`open_ledger`:

* ``memory`` - :class:`MemoryLedger`, one process. ``reserve`` never awaits between the check and the record,
  so on the event loop it is one indivisible step.
* ``sqlite:///PATH`` - :class:`SqliteLedger`. Every operation is one ``BEGIN IMMEDIATE`` transaction (the
  file's write lock is taken before the first read, so no other connection - in this process or another -
  can change the rows between the check and the record), run in a thread.
* ``redis://...`` - :class:`RedisLedger`. ``reserve`` is one Lua script (check every period, then ``HINCRBY``
  them all), ``settle`` / ``release`` another; Redis runs a script with nothing interleaved.
* ``postgresql://...`` - :class:`PostgresLedger`, SQLAlchemy's async engine on psycopg 3. Every operation is
  one transaction that first takes a transaction-scoped advisory lock on the tenant
  (``pg_advisory_xact_lock``), so the operations of one tenant are serialized - across gateway processes
  too - and, holding a single lock each, two transactions can never deadlock.

Amounts cross the interface as USD floats and are stored as integer micro-dollars, so a limit of $1.00 admits
exactly twenty holds of $0.05 (floats would add up to 1.0000000000000002 and refuse the twentieth). Each
amount is rounded to the nearest micro-dollar, so a request cheaper than $0.0000005 is counted as free.

**Hold expiry.** A reservation is held until it is settled or released, or for ``hold_ttl_s`` (default one
hour) at most: a gateway that crashes between reserve and settle would otherwise block its tenant's budget
until the period ends (a month, for a monthly limit). Expired holds are dropped - their amount leaves
``reserved`` - at the tenant's next ``reserve`` (Redis keeps them in a per-tenant hash indexed by a sorted set
of expiry times; SQL backends in a holds table). The effect: a request still running after ``hold_ttl_s`` is
no longer counted, and its later ``settle`` does nothing (the ledger cannot tell it from a second settle), so
``hold_ttl_s`` must exceed the gateway's longest upstream timeout. ``usage`` reports the stored figures; an
expired hold stays in ``reserved`` there until the tenant's next reservation sweeps it.

Redis period keys expire ``PERIOD_KEEP_S`` after their period ends; SQL rows are kept.
"""

from __future__ import annotations

import asyncio
import calendar
import heapq
import json
import math
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass

from fleetwise.errors import ConfigError
from fleetwise.gateway.types import BudgetLedger, Denied, Reservation
from fleetwise.stateurl import first_line, ping_redis, psycopg_url, redact_url, state_kind

MICRO = 1_000_000  # stored unit: micro-dollars
DEFAULT_HOLD_TTL_S = 3600.0
PERIOD_KEEP_S = 35 * 86400.0  # Redis keeps a period's figures this long after it ends (last month stays readable)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _micro(usd: float, what: str) -> int:
    """USD as integer micro-dollars; a negative or non-finite amount is a caller's bug."""
    if not isinstance(usd, (int, float)) or not math.isfinite(usd) or usd < 0:
        raise ValueError(f"{what} must be a finite amount >= 0 USD, got {usd!r}")
    return round(usd * MICRO)


def _usd(micro: int | str | None) -> float:
    return int(micro or 0) / MICRO


def _limits_micro(limits: Mapping[str, float]) -> dict[str, int]:
    return {period: _micro(limit, f"limit of {period}") for period, limit in limits.items()}


def _refusal(tenant: str, limits: Mapping[str, int], state: Mapping[str, tuple[int, int]],
             amount: int) -> Denied | None:
    """The first period (in ``limits`` order) whose spent + reserved + amount passes its limit, else None."""
    for period, limit in limits.items():
        spent, reserved = state[period]
        if spent + reserved + amount > limit:
            return Denied(tenant, period, _usd(limit), _usd(spent), _usd(reserved), _usd(amount))
    return None


def _new_reservation(tenant: str, amount: int, limits: Mapping[str, int]) -> Reservation:
    return Reservation(uuid.uuid4().hex, tenant, _usd(amount), tuple(limits))


def period_end(period: str) -> float | None:
    """When a ``day:YYYY-MM-DD`` or ``month:YYYY-MM`` period ends (epoch seconds, UTC); None for other keys."""
    kind, _, value = period.partition(":")
    try:
        if kind == "day":
            return calendar.timegm(time.strptime(value, "%Y-%m-%d")) + 86400.0
        if kind == "month":
            year, month = (int(x) for x in value.split("-"))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            return float(calendar.timegm((year, month, 1, 0, 0, 0)))
    except ValueError:
        return None
    return None


# ---------------------------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class _Hold:
    tenant: str
    amount: int
    periods: tuple[str, ...]
    expires: float


class MemoryLedger:
    """The ledger in one process's memory (one gateway; lost on restart)."""

    def __init__(self, hold_ttl_s: float = DEFAULT_HOLD_TTL_S, clock: Callable[[], float] = time.time) -> None:
        self.hold_ttl_s = hold_ttl_s
        self.clock = clock
        self._rows: dict[tuple[str, str], list[int]] = {}  # (tenant, period) -> [spent, reserved]
        self._holds: dict[str, _Hold] = {}
        self._expiry: list[tuple[float, str]] = []  # heap of (expires, reservation id)

    async def open(self) -> MemoryLedger:
        return self

    async def reserve(self, tenant: str, amount_usd: float, limits: Mapping[str, float]) -> Reservation | Denied:
        """Hold ``amount_usd`` in every period of ``limits`` or in none (no await inside: atomic)."""
        amount, lims = _micro(amount_usd, "amount"), _limits_micro(limits)
        now = self.clock()
        self._sweep(now)
        rows = {p: self._rows.setdefault((tenant, p), [0, 0]) for p in lims}
        denied = _refusal(tenant, lims, {p: (r[0], r[1]) for p, r in rows.items()}, amount)
        if denied is not None:
            return denied
        for row in rows.values():
            row[1] += amount
        res = _new_reservation(tenant, amount, lims)
        if res.periods:
            self._holds[res.id] = _Hold(tenant, amount, res.periods, now + self.hold_ttl_s)
            heapq.heappush(self._expiry, (now + self.hold_ttl_s, res.id))
        return res

    def _sweep(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, hold_id = heapq.heappop(self._expiry)
            self._finish(hold_id, None)
        if len(self._expiry) > 2 * len(self._holds) + 1024:  # settled holds linger in the heap: compact it
            self._expiry = [(hold.expires, hold_id) for hold_id, hold in self._holds.items()]
            heapq.heapify(self._expiry)

    def _finish(self, hold_id: str, actual: int | None) -> None:
        hold = self._holds.pop(hold_id, None)
        if hold is None:
            return
        for period in hold.periods:
            row = self._rows[(hold.tenant, period)]
            row[1] -= hold.amount
            row[0] += actual or 0

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Replace the hold by ``actual_usd``; a second settle (or one after release/expiry) does nothing."""
        self._finish(reservation.id, _micro(actual_usd, "actual cost"))

    async def release(self, reservation: Reservation) -> None:
        """Drop the hold; idempotent."""
        self._finish(reservation.id, None)

    async def usage(self, tenant: str, period: str) -> tuple[float, float]:
        spent, reserved = self._rows.get((tenant, period), (0, 0))
        return _usd(spent), _usd(reserved)

    async def aclose(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------- SQL
# The transaction logic is written once, as generators that yield (sql, params) and receive the rows; a
# synchronous driver runs them on sqlite3 and an asynchronous one on SQLAlchemy's async engine.

Step = tuple[str, dict]
Tx = Generator[Step, list, object]


class _Sql:
    """The statements of the SQL ledgers, on tables named with ``prefix``."""

    def __init__(self, prefix: str, tenant_lock: str | None) -> None:
        if not _IDENT.match(prefix + "x"):
            raise ConfigError(f"ledger table prefix {prefix!r}: letters, digits and _ only")
        periods, holds = f"{prefix}ledger_periods", f"{prefix}ledger_holds"
        self.prefix = prefix
        self.tenant_lock = tenant_lock
        self.schema = (
            (f"CREATE TABLE IF NOT EXISTS {periods} (tenant TEXT NOT NULL, period TEXT NOT NULL, "
             "spent BIGINT NOT NULL DEFAULT 0, reserved BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (tenant, period))"),
            (f"CREATE TABLE IF NOT EXISTS {holds} (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, "
             "amount BIGINT NOT NULL, periods TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)"),
            f"CREATE INDEX IF NOT EXISTS {holds}_expiry ON {holds} (tenant, expires_at)",
        )
        self.ensure = (f"INSERT INTO {periods} (tenant, period, spent, reserved) VALUES (:tenant, :period, 0, 0) "
                       "ON CONFLICT (tenant, period) DO NOTHING")
        self.read = f"SELECT spent, reserved FROM {periods} WHERE tenant = :tenant AND period = :period"
        self.add = (f"UPDATE {periods} SET spent = spent + :spent, reserved = reserved + :reserved "
                    "WHERE tenant = :tenant AND period = :period")
        self.hold = f"SELECT amount, periods FROM {holds} WHERE id = :id"
        self.expired = f"SELECT id, amount, periods FROM {holds} WHERE tenant = :tenant AND expires_at <= :now"
        self.insert_hold = (f"INSERT INTO {holds} (id, tenant, amount, periods, expires_at) "
                            "VALUES (:id, :tenant, :amount, :periods, :expires_at)")
        self.delete_hold = f"DELETE FROM {holds} WHERE id = :id"

    def lock(self, tenant: str) -> Tx:
        """Serialize this tenant's transactions (PostgreSQL; SQLite's BEGIN IMMEDIATE already locks the file)."""
        if self.tenant_lock:
            yield self.tenant_lock, {"key": self.prefix + tenant}

    def reserve(self, res: Reservation, amount: int, limits: dict[str, int], now: float, ttl_s: float) -> Tx:
        """Sweep expired holds, check every period, then hold in all of them - or return the refusal."""
        yield from self.lock(res.tenant)
        yield from self.sweep(res.tenant, now)
        state = {}
        for period in limits:
            rows = yield self.read, {"tenant": res.tenant, "period": period}
            if not rows:
                yield self.ensure, {"tenant": res.tenant, "period": period}
            state[period] = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
        denied = _refusal(res.tenant, limits, state, amount)
        if denied is not None:
            return denied
        for period in limits:
            yield self.add, {"tenant": res.tenant, "period": period, "spent": 0, "reserved": amount}
        yield self.insert_hold, {"id": res.id, "tenant": res.tenant, "amount": amount,
                                 "periods": json.dumps(list(limits)), "expires_at": now + ttl_s}
        return res

    def sweep(self, tenant: str, now: float) -> Tx:
        for hold_id, amount, periods in (yield self.expired, {"tenant": tenant, "now": now}):
            yield from self.drop(tenant, hold_id, int(amount), json.loads(periods), 0)

    def drop(self, tenant: str, hold_id: str, amount: int, periods: list[str], actual: int) -> Tx:
        yield self.delete_hold, {"id": hold_id}
        for period in periods:
            yield self.add, {"tenant": tenant, "period": period, "spent": actual, "reserved": -amount}

    def finish(self, res: Reservation, actual: int) -> Tx:
        """Settle (``actual`` >= 0) or release (0) a hold that is still there; nothing otherwise."""
        yield from self.lock(res.tenant)
        rows = yield self.hold, {"id": res.id}
        if rows:
            yield from self.drop(res.tenant, res.id, int(rows[0][0]), json.loads(rows[0][1]), actual)

    def usage(self, tenant: str, period: str) -> Tx:
        rows = yield self.read, {"tenant": tenant, "period": period}
        return (_usd(rows[0][0]), _usd(rows[0][1])) if rows else (0.0, 0.0)


def _steps(*steps: Step) -> Tx:
    """A transaction of fixed statements (the schema)."""
    for step in steps:  # noqa: UP028 - ``yield from`` would pass the driver's send() on to a tuple iterator
        yield step


def _drive_sync(conn: sqlite3.Connection, tx: Tx) -> object:
    """Run a transaction generator on a sqlite3 connection; its return value."""
    try:
        sql, params = next(tx)
        while True:
            sql, params = tx.send(conn.execute(sql, params).fetchall())
    except StopIteration as stop:
        return stop.value


async def _drive_async(conn, tx: Tx) -> object:
    """Run a transaction generator on a SQLAlchemy ``AsyncConnection``; its return value."""
    from sqlalchemy import text

    try:
        sql, params = next(tx)
        while True:
            result = await conn.execute(text(sql), params)
            sql, params = tx.send(result.fetchall() if result.returns_rows else [])
    except StopIteration as stop:
        return stop.value


class SqliteLedger:
    """The ledger in a SQLite file: every operation one ``BEGIN IMMEDIATE`` transaction, in a thread.

    Safe for several processes sharing the file (SQLite's write lock serializes them; a waiting writer retries
    for up to ``busy_timeout_s``). Within a process one connection is shared under a lock.
    """

    def __init__(self, path: str, hold_ttl_s: float = DEFAULT_HOLD_TTL_S, prefix: str = "fleetwise_",
                 busy_timeout_s: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.hold_ttl_s = hold_ttl_s
        self.clock = clock
        self._sql = _Sql(prefix, None)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigError(f"ledger sqlite:///{path}: cannot open the database ({exc})") from None

    async def open(self) -> SqliteLedger:
        """Create the tables if missing (WAL journal: readers never wait for the writer)."""
        try:
            await asyncio.to_thread(self._create)
        except sqlite3.Error as exc:
            raise ConfigError(f"ledger sqlite:///{self.path}: cannot open the database ({exc})") from None
        return self

    def _create(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable against a process crash
        self._run(_steps(*((statement, {}) for statement in self._sql.schema)))

    def _run(self, tx: Tx) -> object:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                out = _drive_sync(self._conn, tx)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return out

    async def reserve(self, tenant: str, amount_usd: float, limits: Mapping[str, float]) -> Reservation | Denied:
        """Check and hold in one transaction (see :class:`BudgetLedger`)."""
        amount, lims = _micro(amount_usd, "amount"), _limits_micro(limits)
        res = _new_reservation(tenant, amount, lims)
        if not lims:
            return res
        return await asyncio.to_thread(self._run, self._sql.reserve(res, amount, lims, self.clock(),
                                                                    self.hold_ttl_s))

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        actual = _micro(actual_usd, "actual cost")
        if reservation.periods:
            await asyncio.to_thread(self._run, self._sql.finish(reservation, actual))

    async def release(self, reservation: Reservation) -> None:
        if reservation.periods:
            await asyncio.to_thread(self._run, self._sql.finish(reservation, 0))

    async def usage(self, tenant: str, period: str) -> tuple[float, float]:
        return await asyncio.to_thread(self._run, self._sql.usage(tenant, period))

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._conn.close()


_PG_TENANT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"
_PG_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('fleetwise-ledger-schema', 0))"


class PostgresLedger:
    """The ledger in PostgreSQL (async engine, psycopg 3): every operation one transaction under the tenant's
    advisory lock, so all gateway processes on the database share one exact budget."""

    def __init__(self, url: str, hold_ttl_s: float = DEFAULT_HOLD_TTL_S, prefix: str = "fleetwise_",
                 pool_size: int = 10, clock: Callable[[], float] = time.time) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        self.url = url
        self.hold_ttl_s = hold_ttl_s
        self.clock = clock
        self._sql = _Sql(prefix, _PG_TENANT_LOCK)
        try:
            self.engine = create_async_engine(psycopg_url(url), pool_size=pool_size, max_overflow=0,
                                              pool_pre_ping=True)
        except Exception as exc:  # noqa: BLE001 - a bad URL or a missing driver: one line for the user
            raise ConfigError(f"ledger {redact_url(url)}: not a usable PostgreSQL URL ({exc})") from None

    async def open(self) -> PostgresLedger:
        """Create the tables if missing (under a lock: concurrent CREATE TABLE IF NOT EXISTS can collide)."""
        try:
            async with self.engine.begin() as conn:
                await _drive_async(conn, _steps((_PG_SCHEMA_LOCK, {}), *((s, {}) for s in self._sql.schema)))
        except Exception as exc:  # noqa: BLE001 - unreachable server, bad credentials, no database
            await self.engine.dispose()
            raise ConfigError(f"ledger {redact_url(self.url)}: cannot use the database ({first_line(exc)})") from None
        return self

    async def _run(self, tx: Tx) -> object:
        async with self.engine.begin() as conn:
            return await _drive_async(conn, tx)

    async def reserve(self, tenant: str, amount_usd: float, limits: Mapping[str, float]) -> Reservation | Denied:
        """Check and hold in one transaction under the tenant's lock (see :class:`BudgetLedger`)."""
        amount, lims = _micro(amount_usd, "amount"), _limits_micro(limits)
        res = _new_reservation(tenant, amount, lims)
        if not lims:
            return res
        return await self._run(self._sql.reserve(res, amount, lims, self.clock(), self.hold_ttl_s))

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        actual = _micro(actual_usd, "actual cost")
        if reservation.periods:
            await self._run(self._sql.finish(reservation, actual))

    async def release(self, reservation: Reservation) -> None:
        if reservation.periods:
            await self._run(self._sql.finish(reservation, 0))

    async def usage(self, tenant: str, period: str) -> tuple[float, float]:
        return await self._run(self._sql.usage(tenant, period))

    async def aclose(self) -> None:
        await self.engine.dispose()


# ---------------------------------------------------------------------------------------------- Redis
# Keys of a tenant share the hash tag {tenant}, so a script touching them stays on one Redis Cluster slot.
# A hold is a field of the tenant's holds hash: JSON [amount, period key, ...]; the sorted set beside it holds
# each hold's expiry time, and every reserve first drops the expired ones from the period keys.

_LUA_COMMON = """
local function unhold(holds, exps, id, actual)
  local rec = redis.call('HGET', holds, id)
  redis.call('ZREM', exps, id)
  if not rec then return 0 end
  redis.call('HDEL', holds, id)
  local hold = cjson.decode(rec)
  for i = 2, #hold do
    if redis.call('EXISTS', hold[i]) == 1 then
      if hold[1] ~= '0' then redis.call('HINCRBY', hold[i], 'reserved', '-' .. hold[1]) end
      if actual ~= '0' then redis.call('HINCRBY', hold[i], 'spent', actual) end
    end
  end
  return 1
end
"""

# KEYS: holds, expiries, period keys...  ARGV: now, id, amount, expires, limit per period..., expire-at per period...
_LUA_RESERVE = _LUA_COMMON + """
local holds, exps, n = KEYS[1], KEYS[2], #KEYS - 2
for _, id in ipairs(redis.call('ZRANGEBYSCORE', exps, '-inf', ARGV[1])) do unhold(holds, exps, id, '0') end
local amount = tonumber(ARGV[3])
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i + 2], 'spent', 'reserved')
  local spent, reserved = v[1] or '0', v[2] or '0'
  if tonumber(spent) + tonumber(reserved) + amount > tonumber(ARGV[4 + i]) then return {i, spent, reserved} end
end
local hold = {ARGV[3]}
for i = 1, n do
  redis.call('HINCRBY', KEYS[i + 2], 'reserved', ARGV[3])
  if ARGV[4 + n + i] ~= '0' then redis.call('EXPIREAT', KEYS[i + 2], ARGV[4 + n + i]) end
  hold[i + 1] = KEYS[i + 2]
end
redis.call('HSET', holds, ARGV[2], cjson.encode(hold))
redis.call('ZADD', exps, ARGV[4], ARGV[2])
return {0}
"""

# KEYS: holds, expiries.  ARGV: id, actual cost ('0' to release)
_LUA_FINISH = _LUA_COMMON + "return unhold(KEYS[1], KEYS[2], ARGV[1], ARGV[2])\n"


class RedisLedger:
    """The ledger in Redis (``redis://host:port/db``): one Lua script per operation, shared by every gateway."""

    def __init__(self, url: str, hold_ttl_s: float = DEFAULT_HOLD_TTL_S, prefix: str = "fleetwise:ledger:",
                 max_connections: int = 32, clock: Callable[[], float] = time.time) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.hold_ttl_s = hold_ttl_s
        self.clock = clock
        self.prefix = prefix
        try:
            pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=max_connections, timeout=30)
        except ValueError as exc:
            raise ConfigError(f"ledger {redact_url(url)}: not a usable Redis URL ({exc})") from None
        self._redis = aioredis.Redis.from_pool(pool)
        self._reserve = self._redis.register_script(_LUA_RESERVE)
        self._finish = self._redis.register_script(_LUA_FINISH)

    async def open(self) -> RedisLedger:
        """Check that the server answers."""
        await ping_redis(self._redis, self.url, "ledger")
        return self

    def _keys(self, tenant: str) -> tuple[str, str]:
        return f"{self.prefix}{{{tenant}}}:holds", f"{self.prefix}{{{tenant}}}:hold-expiry"

    def _period_key(self, tenant: str, period: str) -> str:
        return f"{self.prefix}{{{tenant}}}:period:{period}"

    async def reserve(self, tenant: str, amount_usd: float, limits: Mapping[str, float]) -> Reservation | Denied:
        """Check and hold in one script (see :class:`BudgetLedger`)."""
        amount, lims = _micro(amount_usd, "amount"), _limits_micro(limits)
        res = _new_reservation(tenant, amount, lims)
        if not lims:
            return res
        now = self.clock()
        keys = [*self._keys(tenant), *(self._period_key(tenant, p) for p in lims)]
        expire_at = [_expire_at(p, now) for p in lims]
        args = [repr(now), res.id, amount, repr(now + self.hold_ttl_s), *lims.values(), *expire_at]
        out = await self._reserve(keys=keys, args=args)
        if int(out[0]) == 0:
            return res
        period = res.periods[int(out[0]) - 1]
        return Denied(tenant, period, _usd(lims[period]), _usd(out[1]), _usd(out[2]), _usd(amount))

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        actual = _micro(actual_usd, "actual cost")
        if reservation.periods:
            await self._finish(keys=list(self._keys(reservation.tenant)), args=[reservation.id, actual])

    async def release(self, reservation: Reservation) -> None:
        if reservation.periods:
            await self._finish(keys=list(self._keys(reservation.tenant)), args=[reservation.id, 0])

    async def usage(self, tenant: str, period: str) -> tuple[float, float]:
        spent, reserved = await self._redis.hmget(self._period_key(tenant, period), "spent", "reserved")
        return _usd(spent), _usd(reserved)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _expire_at(period: str, now: float) -> int:
    """Epoch second a Redis period key may go (0: never, for period keys of an unknown form)."""
    end = period_end(period)
    return 0 if end is None else int(max(end, now) + PERIOD_KEEP_S)


# ---------------------------------------------------------------------------------------------- factory


def make_ledger(url: str, **options) -> BudgetLedger:
    """The ledger a URL names, not yet opened (``options``: ``hold_ttl_s``, ``prefix``, ``clock``)."""
    kind = state_kind(url, "ledger")
    if kind == "memory":
        return MemoryLedger(**{k: v for k, v in options.items() if k != "prefix"})
    if kind == "sqlite":
        return SqliteLedger(url[len("sqlite:///"):], **options)
    return (RedisLedger if kind == "redis" else PostgresLedger)(url, **options)


async def open_ledger(url: str, **options) -> BudgetLedger:
    """Open the ledger a URL names: ``memory``, ``sqlite:///PATH``, ``redis://...``, ``postgresql://...``.

    Raises:
        ConfigError: an unknown URL, a database that cannot be opened or a server that does not answer.
    """
    return await make_ledger(url, **options).open()
