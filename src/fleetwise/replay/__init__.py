"""Replay: drive any OpenAI-compatible endpoint with a real request trace, open loop, and measure it.

:func:`replay_trace` (and its async twin :func:`areplay_trace`) send each request of a
:class:`~fleetwise.traffic.RequestTrace` at its arrival time and return a :class:`ReplayResult` with
per-request TTFT, TPOT, E2E, ITL and client lag; :mod:`fleetwise.replay.instant` is an endpoint that
answers at once, for tests and for measuring the replayer itself.
"""

from fleetwise.replay.client import (
    APIS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_TIMEOUT_S,
    HTTP_CLIENTS,
    ReplayProgress,
    RequestMix,
    areplay_trace,
    discover_model,
    find_model,
    normalize_url,
    replay_trace,
    request_bodies,
)
from fleetwise.replay.results import CSV_COLUMNS, DEFAULT_TPOT_MS, DEFAULT_TTFT_MS, ReplayResult

__all__ = [
    "APIS", "CSV_COLUMNS", "DEFAULT_MAX_IN_FLIGHT", "DEFAULT_TIMEOUT_S", "DEFAULT_TPOT_MS", "DEFAULT_TTFT_MS",
    "HTTP_CLIENTS", "ReplayProgress", "ReplayResult", "RequestMix", "areplay_trace", "discover_model", "find_model",
    "normalize_url", "replay_trace", "request_bodies",
]
