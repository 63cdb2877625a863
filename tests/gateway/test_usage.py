"""The usage log on every backend (round trip, filters, batches) and :func:`usage_summary` on hand-made rows."""

from __future__ import annotations

import asyncio
import calendar

import pytest

from fleetwise.errors import ConfigError
from fleetwise.gateway.types import UsageRecord
from fleetwise.gateway.usage import BufferedUsage, MemoryUsage, open_usage, usage_summary
from tests.gateway.state_backends import KINDS, fresh_state

DAY1 = calendar.timegm((2026, 12, 6, 0, 0, 0))
DAY2 = DAY1 + 86400.0


def _rows() -> list[UsageRecord]:
    """Two tenants over two UTC days; every saving mechanism once; one failed request."""
    return [
        UsageRecord(DAY1 + 36000.25, "acme", "small", "auto", 100, 50, 0.001, 0.004, "route"),
        UsageRecord(DAY1 + 86399.5, "acme", "big", "big", 200, 100, 0.0, 0.01, "cache"),
        UsageRecord(DAY2 + 1.0, "beta", "big", "big", 300, 0, 0.0, 0.006, "dedup"),
        UsageRecord(DAY2 + 7200.125, "beta", "small", "small", 10, 10, 0.0005, 0.0005, "", 502),
        UsageRecord(DAY2 + 7200.125, "beta", "small", "small", 10, 10, 0.0005, 0.0005, "", 502),  # a twin
    ]


@pytest.fixture(params=KINDS)
def spec(request, tmp_path):
    """(url, options) of a fresh usage on one backend; its keys or tables are removed afterwards."""
    yield from fresh_state(request.param, tmp_path, "usage", "table", ['fwtest_{tag}_usage'])


def test_rows_round_trip_and_filter_by_tenant_and_time(spec):
    url, options = spec
    rows = _rows()

    async def scenario():
        log = await open_usage(url, **options)
        try:
            await log.record(rows[3:])  # written out of time order, in two batches
            await log.record(rows[:3])
            await log.record([])
            everything = await log.query()
            acme = await log.query("acme")
            window = await log.query(None, since=DAY1 + 86399.5, until=DAY2 + 7200.125)
            nobody = await log.query("nobody")
        finally:
            await log.aclose()
        return everything, acme, window, nobody

    everything, acme, window, nobody = asyncio.run(scenario())
    assert everything == rows  # every field exact, oldest first, identical rows both kept
    assert acme == rows[:2]
    assert window == rows[1:3]  # since inclusive, until exclusive
    assert nobody == []
    assert usage_summary(everything) == usage_summary(rows)


def test_usage_summary_adds_up_by_tenant_model_day_and_mechanism():
    got = usage_summary(_rows())
    assert got["total"] == {"requests": 5, "errors": 2, "prompt_tokens": 620, "completion_tokens": 170,
                            "cost_usd": pytest.approx(0.002), "list_cost_usd": pytest.approx(0.021),
                            "saved_usd": pytest.approx(0.019)}
    assert got["saved_by"] == {"cache": pytest.approx(0.01), "dedup": pytest.approx(0.006),
                               "route": pytest.approx(0.003)}
    assert list(got["by_tenant"]) == ["acme", "beta"]
    assert got["by_tenant"]["acme"]["requests"] == 2 and got["by_tenant"]["acme"]["cost_usd"] == 0.001
    assert got["by_tenant"]["acme"]["saved_usd"] == pytest.approx(0.013)
    assert got["by_tenant"]["beta"]["errors"] == 2 and got["by_tenant"]["beta"]["saved_usd"] == 0.006
    assert got["by_model"]["big"]["prompt_tokens"] == 500 and got["by_model"]["big"]["cost_usd"] == 0.0
    assert got["by_model"]["small"]["requests"] == 3 and got["by_model"]["small"]["cost_usd"] == 0.002
    assert list(got["by_day"]) == ["2026-12-06", "2026-12-07"]  # 23:59:59.5 stays on the 6th
    assert got["by_day"]["2026-12-06"]["list_cost_usd"] == pytest.approx(0.014)
    assert got["by_day"]["2026-12-07"]["completion_tokens"] == 20
    assert usage_summary([])["total"]["requests"] == 0 and usage_summary([])["saved_by"]["cache"] == 0.0


def test_a_buffered_log_writes_in_batches_and_flushes_before_reading():
    rows = _rows()
    writes: list[int] = []

    class Counting(MemoryUsage):
        async def record(self, batch):
            writes.append(len(batch))
            await super().record(batch)

    async def scenario():
        log = BufferedUsage(Counting(), flush_s=0.05, max_rows=3)
        for row in rows[:2]:
            await log.record([row])
        assert writes == []  # buffered
        await asyncio.sleep(0.15)
        assert writes == [2]  # written together after flush_s
        await log.record(rows[2:])  # reaches max_rows: written at once
        assert writes == [2, 3]
        await log.record(rows[:1])
        got = await log.query()  # flushes first
        await log.aclose()
        return got

    got = asyncio.run(scenario())
    assert writes == [2, 3, 1] and len(got) == 6


def test_an_unusable_url_or_server_is_one_clear_config_error(tmp_path):
    async def fails(url: str) -> str:
        with pytest.raises(ConfigError) as err:
            await open_usage(url)
        return str(err.value)

    assert "use memory, sqlite:///PATH" in asyncio.run(fails("mongodb://db/x"))
    assert "cannot reach Redis" in asyncio.run(fails("redis://127.0.0.1:1/0"))
    assert "cannot use the database" in asyncio.run(fails("postgresql://postgres@127.0.0.1:1/test"))
    assert "cannot use the database" in asyncio.run(fails(f"sqlite:///{tmp_path}/missing/dir/usage.db"))
