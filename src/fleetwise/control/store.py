"""The controller's durable state with SQLAlchemy: a SQLite file by default, PostgreSQL (or any SQLAlchemy URL)
when several processes or a restart on another machine must see it.

Two tables: ``decisions`` (append-only: every decision with its inputs, reason, mode, expected cost and
latency) and ``state`` (small named JSON values: the draining set, the desired counts, the demand history the
forecaster warm-starts from). Every write commits before the caller acts on it - the controller's crash safety
rests on "intent is written before acting".
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from fleetwise.control.types import Decision
from fleetwise.errors import ConfigError
from fleetwise.stateurl import first_line, redact_url, sql_engine

DEFAULT_URL = "sqlite:///fleetwise-control.db"


def _finite(x: float) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _json(value: object) -> str:
    return json.dumps(value, allow_nan=False, default=_plain, separators=(",", ":"))


def _plain(value: object) -> object:
    """JSON for values json does not know: NaN/inf floats become null, sets lists, numpy scalars numbers."""
    if isinstance(value, float):
        return None
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _clean(value: object) -> object:
    """Non-finite floats anywhere in a JSON value become None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    return value


class SqlStore:
    """:class:`~fleetwise.control.types.Store` on SQLAlchemy Core (``sqlite:///PATH``, ``postgresql://...``)."""

    def __init__(self, url: str = DEFAULT_URL) -> None:
        import sqlalchemy as sa

        url = _driver(url)
        self.engine = sql_engine(url, "--store")
        meta = sa.MetaData()
        self.decisions_t = sa.Table(
            "fleetwise_decisions", meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("t", sa.Float, nullable=False),
            sa.Column("loop", sa.String(16), nullable=False),
            sa.Column("reason", sa.String(32), nullable=False),
            sa.Column("mode", sa.String(16), nullable=False),
            sa.Column("desired", sa.Text, nullable=False),
            sa.Column("usd_per_hour", sa.Float),
            sa.Column("ttft_p95_ms", sa.Float),
            sa.Column("tpot_p95_ms", sa.Float),
            sa.Column("inputs", sa.Text, nullable=False),
        )
        self.state_t = sa.Table(
            "fleetwise_state", meta,
            sa.Column("key", sa.String(128), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
            sa.Column("updated", sa.Float, nullable=False),
        )
        try:
            meta.create_all(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise ConfigError(f"--store {redact_url(url)}: cannot open the database ({first_line(exc)})") from None

    def record(self, decision: Decision) -> int:
        row = {"t": decision.t, "loop": decision.loop, "reason": decision.reason, "mode": decision.mode,
               "desired": _json(dict(decision.desired)), "usd_per_hour": _finite(decision.usd_per_hour),
               "ttft_p95_ms": _finite(decision.ttft_p95_ms), "tpot_p95_ms": _finite(decision.tpot_p95_ms),
               "inputs": _json(_clean(dict(decision.inputs)))}
        with self.engine.begin() as conn:
            result = conn.execute(self.decisions_t.insert().values(**row))
            return int(result.inserted_primary_key[0])

    def decisions(self, limit: int = 100, since_id: int = 0) -> list[Decision]:
        t = self.decisions_t
        query = t.select().where(t.c.id > since_id).order_by(t.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [Decision(t=r["t"], loop=r["loop"], reason=r["reason"], mode=r["mode"],
                         desired=json.loads(r["desired"]), usd_per_hour=_nan(r["usd_per_hour"]),
                         ttft_p95_ms=_nan(r["ttft_p95_ms"]), tpot_p95_ms=_nan(r["tpot_p95_ms"]),
                         inputs=json.loads(r["inputs"]), id=r["id"]) for r in rows]

    def count(self) -> int:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.decisions_t)).scalar_one())

    def put(self, key: str, value: object) -> None:
        import sqlalchemy as sa

        text, now = _json(_clean(value)), time.time()
        t = self.state_t
        with self.engine.begin() as conn:  # update-or-insert in one transaction (portable across dialects)
            done = conn.execute(sa.update(t).where(t.c.key == key).values(value=text, updated=now)).rowcount
            if not done:
                conn.execute(sa.insert(t).values(key=key, value=text, updated=now))

    def get(self, key: str, default: object = None) -> object:
        t = self.state_t
        with self.engine.connect() as conn:
            row = conn.execute(t.select().where(t.c.key == key)).mappings().first()
        return default if row is None else json.loads(row["value"])

    def close(self) -> None:
        self.engine.dispose()


def _driver(url: str) -> str:
    """A bare path is a SQLite file."""
    if "://" not in url:
        return f"sqlite:///{Path(url)}"
    return url
