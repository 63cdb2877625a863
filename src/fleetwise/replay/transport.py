"""The replay's HTTP transports: POST a body, then read the status and the body's pieces as they arrive.

Two well-kept clients sit behind one small interface (:class:`Transport` opens :class:`Answer` s), both on
keep-alive HTTP/1.1 connections, one request at a time per connection, with a pool of ``max_in_flight``:

- ``aiohttp`` (the default): its C-accelerated response parser and connection pool cost ~250-300 us of CPU
  per request, so one process replays 3,000 req/s with a client lag p99 under 3 ms on 2 cores
  (``benchmarks/replay_speed.py``; 4,000 req/s saturate the core: lag p99 11 ms);
- ``httpx``: the same measurements at a small fraction of the rate (~170 req/s: its pool scans every
  connection on every request).

Each transport's own work sits on every request's critical path and so in its latencies: a sequential
round trip to an endpoint that answers at once takes ~0.3 ms on aiohttp, ~0.8 ms on httpx (2 cores), times
``time_compress`` in trace time.

A piece of body is timestamped when the replay reads it, one event-loop turn after the socket delivered it.

Failures, by the reason :func:`failure_reason` gives them::

    Exception
    ├── TimeoutError                         timeout          the replay's per-request deadline passed
    ├── aiohttp.ClientConnectionError,       connection_lost  refused, reset, or closed before the answer
    │   aiohttp.ClientPayloadError,                           was complete
    │   httpx.NetworkError, RemoteProtocolError, OSError
    ├── aiohttp.ClientError, httpx.HTTPError protocol_error   an answer that is not readable HTTP
    └── anything else                        client_error
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Protocol

TRANSPORTS = ("aiohttp", "httpx")
KEEPALIVE_S = 4.0
"""Reuse an idle connection only this long: uvicorn (vLLM, SGLang) closes idle ones after 5 s, and a request
written into a connection the server is closing fails for no fault of the server."""
CONNECT_TIMEOUT_S = 30.0
USER_AGENT = "fleetwise-replay"


class Answer(Protocol):
    """A response whose head has arrived."""

    status: int

    def chunks(self) -> AsyncIterator[tuple[float, bytes]]:
        """(``time.perf_counter()`` when read, bytes) of the body, de-chunked, until its end."""
        ...

    async def aclose(self) -> None:
        """Give the connection back to the pool (or close it if the body was not read to its end)."""
        ...


class Transport(Protocol):
    """POSTs JSON bodies over a pool of keep-alive connections."""

    async def post(self, url: str, body: bytes, stream: bool) -> Answer:
        """Send ``body`` to ``url`` and wait for the response head (``stream``: ask for SSE)."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


def open_transport(name: str, max_in_flight: int, timeout_s: float, headers: dict[str, str]) -> Transport:
    """The transport called ``name`` (one of :data:`TRANSPORTS`), with ``headers`` on every request."""
    headers = {"user-agent": USER_AGENT, **headers}
    if name == "aiohttp":
        return AiohttpTransport(max_in_flight, headers)
    if name == "httpx":
        return HttpxTransport(max_in_flight, timeout_s, headers)
    raise ValueError(f"unknown transport '{name}' (one of {', '.join(TRANSPORTS)})")


def _accept(stream: bool) -> dict[str, str]:
    return {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}


class AiohttpTransport:
    """POSTs over an ``aiohttp.ClientSession`` with ``max_in_flight`` pooled connections."""

    def __init__(self, max_in_flight: int, headers: dict[str, str]) -> None:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=0, keepalive_timeout=KEEPALIVE_S)
        # the replay's own deadline covers the whole request; only connecting gets a timeout of its own.
        # No cookies, no decompression, no environment proxy: a load generator talks to the endpoint as is.
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S),
            headers=headers, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False, trust_env=False,
            skip_auto_headers=("accept-encoding",))
        self.urls: dict[str, object] = {}  # yarl.URL per URL string: parsed once, not per request
        self.heads = {s: _accept(s) for s in (True, False)}

    async def post(self, url: str, body: bytes, stream: bool) -> _AiohttpAnswer:
        parsed = self.urls.get(url)
        if parsed is None:
            import yarl

            parsed = self.urls[url] = yarl.URL(url)
        resp = await self.session.post(parsed, data=body, headers=self.heads[stream], allow_redirects=False)
        return _AiohttpAnswer(resp)

    async def aclose(self) -> None:
        await self.session.close()


class _AiohttpAnswer:
    def __init__(self, resp) -> None:
        self.resp = resp
        self.status = resp.status

    async def chunks(self) -> AsyncIterator[tuple[float, bytes]]:
        async for chunk in self.resp.content.iter_any():
            yield time.perf_counter(), chunk

    async def aclose(self) -> None:
        self.resp.release()  # pooled again only if the body was read to its end, else closed


class HttpxTransport:
    """POSTs over an ``httpx.AsyncClient`` with ``max_in_flight`` pooled connections."""

    def __init__(self, max_in_flight: int, timeout_s: float, headers: dict[str, str]) -> None:
        import httpx

        limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight,
                              keepalive_expiry=KEEPALIVE_S)
        timeout = httpx.Timeout(connect=min(timeout_s, CONNECT_TIMEOUT_S), read=timeout_s, write=timeout_s,
                                pool=None)
        self.client = httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False,
                                        follow_redirects=False, headers=headers)
        self.heads = {s: _accept(s) for s in (True, False)}

    async def post(self, url: str, body: bytes, stream: bool) -> _HttpxAnswer:
        request = self.client.build_request("POST", url, content=body, headers=self.heads[stream])
        return _HttpxAnswer(await self.client.send(request, stream=True))

    async def aclose(self) -> None:
        await self.client.aclose()


class _HttpxAnswer:
    def __init__(self, resp) -> None:
        self.resp = resp
        self.status = resp.status_code

    async def chunks(self) -> AsyncIterator[tuple[float, bytes]]:
        async for chunk in self.resp.aiter_raw():
            yield time.perf_counter(), chunk

    async def aclose(self) -> None:
        await self.resp.aclose()


def unreached(exc: BaseException) -> bool:
    """Whether the request never reached the server (the connection was refused or could not be made): it
    is safe to send it elsewhere, since the server saw none of it."""
    import aiohttp
    import httpx

    return isinstance(exc, aiohttp.ClientConnectorError | httpx.ConnectError | ConnectionRefusedError)


def failure_reason(exc: BaseException) -> str:
    """The replay's failure reason for an exception a transport raised (see the module docstring)."""
    import aiohttp
    import httpx

    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | httpx.NetworkError
                  | httpx.RemoteProtocolError | OSError):
        return "connection_lost"
    if isinstance(exc, aiohttp.ClientError | httpx.HTTPError):
        return "protocol_error"
    return "client_error"
