"""The replay's HTTP transports: the same answers from aiohttp and httpx against the instant endpoint, and
the failure reason of each kind of exception."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
import pytest

from fleetwise.replay.instant import InstantConfig, serve_in_thread
from fleetwise.replay.transport import TRANSPORTS, failure_reason, open_transport

BODY = json.dumps({"model": "m", "prompt": [1000, 1], "max_tokens": 3, "stream": True}).encode()


async def _post_twice(name: str, url: str) -> list[tuple[int, bytes, bool]]:
    transport = open_transport(name, 4, 10.0, {"x-test": "1"})
    out = []
    try:
        for _ in range(2):  # the second goes over the kept-alive connection
            answer = await transport.post(url + "/v1/completions", BODY, True)
            pieces = [(t, c) async for t, c in answer.chunks()]
            await answer.aclose()
            times = [t for t, _ in pieces]
            out.append((answer.status, b"".join(c for _, c in pieces), times == sorted(times)))
    finally:
        await transport.aclose()
    return out


@pytest.mark.parametrize("name", TRANSPORTS)
def test_both_transports_return_the_status_and_the_dechunked_body(name):
    with serve_in_thread(InstantConfig()) as server:
        answers = asyncio.run(_post_twice(name, server.url))
    for status, body, ordered in answers:
        assert status == 200 and ordered
        assert body.count(b"data: ") == 4 and body.endswith(b"data: [DONE]\n\n")  # 3 tokens, [DONE]
        assert b"\r\n" not in body.replace(b"\r\n\r\n", b"")  # no chunk framing left
    assert server.count == 2


def test_unknown_transport():
    with pytest.raises(ValueError, match="unknown transport 'curl'"):
        open_transport("curl", 1, 1.0, {})


@pytest.mark.parametrize("exc, reason", [
    (TimeoutError(), "timeout"),
    (aiohttp.ServerTimeoutError(), "timeout"),
    (httpx.ReadTimeout("slow"), "timeout"),
    (aiohttp.ServerDisconnectedError(), "connection_lost"),
    (aiohttp.ClientPayloadError("Response payload is not completed"), "connection_lost"),
    (httpx.RemoteProtocolError("peer closed connection"), "connection_lost"),
    (ConnectionRefusedError(), "connection_lost"),
    (aiohttp.ClientResponseError(None, (), status=400, message="bad head"), "protocol_error"),
    (httpx.DecodingError("bad"), "protocol_error"),
    (ValueError("x"), "client_error"),
])
def test_failure_reasons(exc, reason):
    assert failure_reason(exc) == reason
