"""State URLs shared by the controller's store and the gateway's ledger, cache and usage log:
``memory``, ``sqlite:///PATH``, ``redis://HOST:PORT/DB``, ``postgresql://USER@HOST:PORT/DB``."""

from __future__ import annotations

from fleetwise.errors import ConfigError

KINDS = ("memory", "sqlite", "redis", "postgresql")


def state_kind(url: str, what: str = "state") -> str:
    """Which backend a URL names (one of :data:`KINDS`); a one-line ConfigError for anything else."""
    if url == "memory":
        return "memory"
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return "sqlite"
    if url.startswith(("redis://", "rediss://", "unix://")):
        return "redis"
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return "postgresql"
    raise ConfigError(f"{what} {redact_url(url)!r}: use memory, sqlite:///PATH, redis://HOST:PORT/DB or "
                      "postgresql://USER@HOST:PORT/DB")


def psycopg_url(url: str) -> str:
    """``postgresql://`` with psycopg 3 (SQLAlchemy's default driver would be psycopg2)."""
    scheme, rest = url.split("://", 1)
    return url if "+" in scheme else "postgresql+psycopg://" + rest


def redact_url(url: str) -> str:
    """The URL without a password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}@{host}"
    return url


def first_line(exc: BaseException) -> str:
    """The first line of an error (the driver's own error when SQLAlchemy wraps one), for a one-line message."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0]


def sql_engine(url: str, what: str):
    """A SQLAlchemy engine for a ``sqlite:///`` or ``postgresql://`` URL (psycopg 3), or a one-line ConfigError
    naming ``what`` (e.g. ``--store``) and the URL without its password."""
    import sqlalchemy as sa

    dialect_url = psycopg_url(url) if url.startswith(("postgresql://", "postgres://")) else url
    try:
        return sa.create_engine(dialect_url, pool_pre_ping=True)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"{what} {redact_url(url)}: not a usable database URL ({exc})") from None


async def ping_redis(client, url: str, what: str):
    """``client`` once Redis answers a PING, else a one-line ConfigError (the client is closed)."""
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - refused, timed out, bad password: one line for the user
        await client.aclose()
        raise ConfigError(f"{what} {redact_url(url)}: cannot reach Redis ({first_line(exc)})") from None
    return client
