"""One fresh store per state backend for the gateway's tests: (url, options), cleaned up afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.services import require_postgres, require_redis

KINDS = ["memory", "sqlite", "redis", "postgresql"]


def _drop_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def _drop_postgres(url: str, tables: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def fresh_state(kind: str, tmp_path: Path, name: str, pg_option: str, pg_tables: list[str]) -> Iterator[tuple]:
    """Yield (url, options) of an empty ``name`` store of ``kind``; Redis keys and PostgreSQL tables (named
    by ``pg_tables`` with ``{tag}``) are dropped after. ``pg_option`` is the option that takes the tag."""
    tag = uuid.uuid4().hex[:10]
    if kind == "memory":
        yield "memory", {}
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path}/{name}.db", {}
    elif kind == "redis":
        url, prefix = require_redis(), f"fwtest:{tag}:"
        yield url, {"prefix": prefix}
        _drop_redis(url, prefix)
    else:
        url = require_postgres()
        yield url, {pg_option: pg_option_value(pg_option, tag)}
        _drop_postgres(url, [t.format(tag=tag) for t in pg_tables])


def pg_option_value(option: str, tag: str) -> str:
    return f"fwtest_{tag}_" if option == "prefix" else f"fwtest_{tag}_usage"
