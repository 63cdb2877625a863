"""Tests that need an external tool or service: skipped on a developer's machine without it, failed in CI.

``.ci/run`` installs every tool the suite uses and sets ``FLEETWISE_REQUIRE_SERVICES=1``; with it set, a
missing tool is a failure (a silent skip there would hide that the tests never ran). Call it in a fixture or
a test, not at import - a failure while collecting would stop the whole run, not just these tests::

    from services import require

    @pytest.fixture(scope="module")
    def promtool() -> str:
        return require("promtool", "apt-get install prometheus")

``tests/`` must be importable: test directories without ``__init__.py`` put it on ``sys.path`` themselves
(see tests/control/test_alerts.py).
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ENV = "FLEETWISE_REQUIRE_SERVICES"


def required() -> bool:
    """Whether missing tools and services fail tests instead of skipping them (CI)."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def unavailable(what: str, reason: str) -> None:
    """Skip the current test because ``what`` is missing - or fail it in CI."""
    message = f"{what} is not available ({reason})"
    if required():
        pytest.fail(f"{message}, and {REQUIRE_ENV}=1 requires it", pytrace=False)
    pytest.skip(message)


def require(tool: str, reason: str) -> str:
    """The path of executable ``tool``; skips (locally) or fails (CI) when it is not on PATH.

    Args:
        tool: executable name, looked up on PATH.
        reason: how to get it, shown in the skip or failure message.
    """
    path = shutil.which(tool)
    if path is None:
        unavailable(tool, reason)
    return path


def reachable(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether a TCP server answers at host:port."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


POSTGRES_URL = os.environ.get("FLEETWISE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def require_postgres() -> str:
    """The test database's URL; skips (locally) or fails (CI) when PostgreSQL does not answer."""
    if not reachable("127.0.0.1", 5432):
        unavailable("PostgreSQL on 127.0.0.1:5432", "the test database; set FLEETWISE_TEST_POSTGRES for another")
    return POSTGRES_URL


REDIS_URL = os.environ.get("FLEETWISE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require_redis() -> str:
    """The test Redis server's URL; skips (locally) or fails (CI) when Redis does not answer."""
    if not reachable("127.0.0.1", 6379):
        unavailable("Redis on 127.0.0.1:6379", "the test server; set FLEETWISE_TEST_REDIS for another")
    return REDIS_URL
