"""The controller's store on SQLite (default) and on the PostgreSQL server this machine runs."""

from __future__ import annotations

import math
import uuid

import pytest

from fleetwise.control.store import SqlStore
from fleetwise.control.types import Decision
from fleetwise.errors import ConfigError
from tests.services import require_postgres


def _store(kind: str, tmp_path) -> SqlStore:
    if kind == "sqlite":
        return SqlStore(f"sqlite:///{tmp_path}/s.db")
    url = require_postgres()
    store = SqlStore(url)
    with store.engine.begin() as conn:  # each test starts from empty tables
        conn.execute(store.decisions_t.delete())
        conn.execute(store.state_t.delete())
    return store


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_decisions_round_trip_newest_first_with_nan_as_nan(kind, tmp_path):
    store = _store(kind, tmp_path)
    first = store.record(Decision(t=1.0, loop="slow", reason="forecast", mode="active",
                                  desired={"p/spot": 2}, usd_per_hour=10.5, ttft_p95_ms=math.nan,
                                  inputs={"observation": {"arrivals_rps": math.nan, "running": 3}}))
    second = store.record(Decision(t=2.0, loop="fast", reason="queue", mode="active", desired={"p/spot": 3},
                                   usd_per_hour=12.0, ttft_p95_ms=420.0, tpot_p95_ms=31.0))
    assert second > first
    rows = store.decisions(10)
    assert [d.id for d in rows] == [second, first]
    assert rows[1].desired == {"p/spot": 2} and math.isnan(rows[1].ttft_p95_ms)
    assert rows[1].inputs == {"observation": {"arrivals_rps": None, "running": 3}}
    assert rows[0].tpot_p95_ms == 31.0
    assert [d.id for d in store.decisions(10, since_id=first)] == [second]
    assert store.count() == 2
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_named_state_is_replaced_and_survives_a_new_connection(kind, tmp_path):
    store = _store(kind, tmp_path)
    key = f"intent-{uuid.uuid4().hex[:8]}"
    assert store.get(key, "none") == "none"
    store.put(key, {"desired": {"spot": 1}, "draining": {}})
    store.put(key, {"desired": {"spot": 2}, "draining": {"w1": 3.5}})
    store.close()
    again = SqlStore(str(store.engine.url.render_as_string(hide_password=False)).replace("+psycopg", ""))
    assert again.get(key) == {"desired": {"spot": 2}, "draining": {"w1": 3.5}}
    again.close()


def test_an_unusable_url_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="--store"):
        SqlStore("nosuchdb://x/y")
    with pytest.raises(ConfigError, match="cannot open"):
        SqlStore(f"sqlite:///{tmp_path}/missing-dir/deeper/s.db")
