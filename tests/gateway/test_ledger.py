"""Budget ledgers on every backend: exact admission under concurrency (one process and three), settle /
release / idempotence, day and month limits, hold expiry and the factory's errors.

Redis and PostgreSQL are the servers this machine runs (tests/services.py: skipped locally without them,
failed in CI); each test uses its own key prefix / tables and removes them.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import subprocess
import sys
import time

import pytest

from fleetwise.errors import ConfigError
from fleetwise.gateway.ledger import open_ledger, period_end
from fleetwise.gateway.types import Denied, Reservation, periods
from tests.gateway.state_backends import KINDS, fresh_state

COST = 0.05  # each request's worst case
BUDGET = 1.00  # covers exactly 20 of them (0.05 * 20 is 1.0000000000000002 in floats: micro-dollars are exact)
TENANT = "acme"


@pytest.fixture(params=KINDS)
def spec(request, tmp_path):
    """(url, options) of a fresh ledger on one backend; its keys or tables are removed afterwards."""
    yield from fresh_state(request.param, tmp_path, "ledger", "prefix", ['fwtest_{tag}_ledger_periods', 'fwtest_{tag}_ledger_holds'])


def _run(spec, scenario, **extra):
    """Open the ledger, run ``scenario(ledger)`` on a fresh event loop, close it."""
    url, options = spec

    async def main():
        ledger = await open_ledger(url, **options, **extra)
        try:
            return await scenario(ledger)
        finally:
            await ledger.aclose()

    return asyncio.run(main())


def _admitted(results) -> list[Reservation]:
    assert all(isinstance(r, (Reservation, Denied)) for r in results)
    return [r for r in results if isinstance(r, Reservation)]


def test_500_concurrent_reservations_admit_exactly_what_the_budget_covers(spec):
    day, _ = periods()
    limits = {day: BUDGET}

    async def scenario(ledger):
        first = await asyncio.gather(*(ledger.reserve(TENANT, COST, limits) for _ in range(500)))
        admitted = _admitted(first)
        assert len(admitted) == 20
        assert len({r.id for r in admitted}) == 20 and all(r.periods == (day,) for r in admitted)
        refused = [r for r in first if isinstance(r, Denied)]
        assert all(d.period == day and d.asked_usd == COST and d.remaining_usd < COST for d in refused)
        assert await ledger.usage(TENANT, day) == (0.0, 1.0)

        await asyncio.gather(*(ledger.settle(r, 0.02) for r in admitted))  # actual cost below the worst case
        assert await ledger.usage(TENANT, day) == (0.4, 0.0)

        again = _admitted(await asyncio.gather(*(ledger.reserve(TENANT, COST, limits) for _ in range(100))))
        assert len(again) == 12  # the 0.6 freed holds 12 more worst cases, no more
        spent, reserved = await ledger.usage(TENANT, day)
        assert (spent, reserved) == (0.4, 0.6) and spent + reserved <= BUDGET

        await asyncio.gather(*(ledger.release(r) for r in again))  # these requests failed upstream
        assert await ledger.usage(TENANT, day) == (0.4, 0.0)

        await ledger.settle(admitted[0], 0.5)  # a second settle
        await ledger.release(admitted[1])  # a release after a settle
        await ledger.settle(again[0], 0.5)  # a settle after a release
        await ledger.release(again[1])  # a second release
        assert await ledger.usage(TENANT, day) == (0.4, 0.0)
        assert await ledger.usage("someone-else", day) == (0.0, 0.0)

    _run(spec, scenario)


CHILD = """
import asyncio, json, sys
from fleetwise.gateway.ledger import open_ledger
from fleetwise.gateway.types import Reservation

async def main(url, options, tenant, limits, cost, n):
    ledger = await open_ledger(url, **options)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # every process starts reserving at once
    out = await asyncio.gather(*(ledger.reserve(tenant, cost, limits) for _ in range(n)))
    await ledger.aclose()
    print(sum(isinstance(r, Reservation) for r in out), flush=True)

asyncio.run(main(*json.loads(sys.argv[1])))
"""


@pytest.mark.parametrize("spec", ["sqlite", "redis", "postgresql"], indirect=True)
def test_three_processes_on_one_store_admit_at_most_the_budget(spec):
    url, options = spec
    day, _ = periods()
    _run(spec, lambda ledger: asyncio.sleep(0))  # create the tables before the processes race
    argv = json.dumps([url, options, TENANT, {day: BUDGET}, COST, 170])
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, argv], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=30)[1]
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    counts = [int(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sum(counts) == 20, counts
    assert _run(spec, lambda ledger: ledger.usage(TENANT, day)) == (0.0, 1.0)


def test_day_and_month_limits_both_hold_all_or_none(spec):
    day1, day2, month = "day:2099-03-10", "day:2099-03-11", "month:2099-03"

    async def scenario(ledger):
        first = await ledger.reserve(TENANT, 0.9, {day1: 1.0, month: 1.5})
        await ledger.settle(first, 0.9)
        refused = await ledger.reserve(TENANT, 0.2, {day1: 1.0, month: 1.5})
        assert isinstance(refused, Denied) and refused.period == day1
        assert await ledger.usage(TENANT, month) == (0.9, 0.0)  # the month had room and was not held

        second = await ledger.reserve(TENANT, 0.5, {day2: 1.0, month: 1.5})
        await ledger.settle(second, 0.5)
        refused = await ledger.reserve(TENANT, 0.2, {day2: 1.0, month: 1.5})  # the new day has room
        assert isinstance(refused, Denied) and refused.period == month
        assert (refused.limit_usd, refused.spent_usd, refused.reserved_usd, refused.asked_usd) == (1.5, 1.4, 0, 0.2)
        assert refused.remaining_usd == pytest.approx(0.1)
        assert await ledger.usage(TENANT, day2) == (0.5, 0.0)  # all or none: the day was not held

        last = await ledger.reserve(TENANT, 0.1, {day2: 1.0, month: 1.5})  # exactly fills the month
        assert isinstance(last, Reservation) and last.periods == (day2, month)
        assert await ledger.usage(TENANT, month) == (1.4, 0.1)
        assert await ledger.usage(TENANT, day2) == (0.5, 0.1)
        assert await ledger.usage(TENANT, day1) == (0.9, 0.0)

    _run(spec, scenario)


def test_a_crashed_gateways_hold_expires(spec):
    day, _ = periods()
    now = [time.time()]

    async def scenario(ledger):
        lost = await ledger.reserve(TENANT, 0.6, {day: 1.0})  # its gateway never settles it
        now[0] += 3599.0
        assert isinstance(await ledger.reserve(TENANT, 0.6, {day: 1.0}), Denied)
        now[0] += 2.0  # the hold is an hour old
        later = await ledger.reserve(TENANT, 0.6, {day: 1.0})
        assert isinstance(later, Reservation)
        assert await ledger.usage(TENANT, day) == (0.0, 0.6)
        await ledger.settle(lost, 0.6)  # too late: the hold is gone, and so is this settle
        await ledger.settle(later, 0.5)
        assert await ledger.usage(TENANT, day) == (0.5, 0.0)

    _run(spec, scenario, hold_ttl_s=3600.0, clock=lambda: now[0])


def test_no_limits_holds_nothing_and_bad_amounts_are_refused(spec):
    day, _ = periods()

    async def scenario(ledger):
        free = await ledger.reserve(TENANT, 5.0, {})
        assert isinstance(free, Reservation) and free.periods == ()
        await ledger.settle(free, 4.0)
        assert await ledger.usage(TENANT, day) == (0.0, 0.0)
        with pytest.raises(ValueError, match="amount"):
            await ledger.reserve(TENANT, -1.0, {day: 1.0})
        with pytest.raises(ValueError, match="amount"):
            await ledger.reserve(TENANT, float("nan"), {day: 1.0})

    _run(spec, scenario)


def test_period_ends_are_utc_boundaries():
    assert period_end("day:2026-12-31") == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert period_end("month:2026-12") == period_end("day:2026-12-31")
    assert period_end("month:2026-02") == period_end("day:2026-02-28")
    assert period_end("week:2026-50") is None and period_end("day:bad") is None


def test_an_unusable_url_or_server_is_one_clear_config_error(tmp_path):
    async def fails(url: str) -> str:
        with pytest.raises(ConfigError) as err:
            await open_ledger(url)
        return str(err.value)

    assert "use memory, sqlite:///PATH" in asyncio.run(fails("mysql://db/x"))
    assert "cannot reach Redis" in asyncio.run(fails("redis://127.0.0.1:1/0"))
    assert "cannot use the database" in asyncio.run(fails("postgresql://postgres@127.0.0.1:1/test"))
    message = asyncio.run(fails(f"sqlite:///{tmp_path}/missing/dir/ledger.db"))
    assert "cannot open" in message and "\n" not in message
