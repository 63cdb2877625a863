"""The instant endpoint: a minimal OpenAI-compatible server that answers at once, for tests and benchmarks.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length request bodies, chunked streaming responses) on a
raw :class:`asyncio.Protocol`, so a replay against it measures the load generator rather than a web framework.
Routes: ``GET /v1/models``, ``GET /health``, ``POST /v1/completions`` and ``POST /v1/chat/completions``
(stream or not, ``stream_options.include_usage`` honoured). Every completion has exactly ``max_tokens``
tokens (``max_completion_tokens`` for chat; 16 if neither is given), one token per SSE event.

Faults, for testing a client's failure handling, are chosen per request by the ``fault`` constructor
argument (a function of the request's sequence number and JSON body) or by a ``"fault"`` field in the body:

- ``http_<status>`` (e.g. ``http_429``): answer that status with an OpenAI-style error body;
- ``close_mid_stream``: send the headers and half the events, then drop the connection;
- ``close``: drop the connection without answering;
- ``hang``: never answer (the client's timeout fires);
- ``no_done``: end the stream cleanly but without ``data: [DONE]``.

``first_token_delay_s`` and ``token_delay_s`` slow the stream down (the events are then written one by one).

Run one from the shell with ``python -m fleetwise.replay.instant --port 8000``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

FaultRule = Callable[[int, dict], "str | None"]

DEFAULT_MAX_TOKENS = 16
_MAX_HEAD_BYTES = 64 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


@dataclass(frozen=True)
class InstantConfig:
    """How the instant endpoint answers."""

    model: str = "instant"
    """The one model id listed by /v1/models (requests may name any model)."""
    first_token_delay_s: float = 0.0
    """Wait this long before the first streamed event."""
    token_delay_s: float = 0.0
    """Wait this long between streamed events."""
    fault: FaultRule | None = None
    """``fault(n, body)`` -> a fault name (see the module docstring) or None; ``n`` counts requests from 0."""


def _head(status: int, content_type: str, length: int | None) -> bytes:
    framing = f"content-length: {length}" if length is not None else "transfer-encoding: chunked"
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: {content_type}\r\n"
            f"{framing}\r\n\r\n").encode()


def _json_response(status: int, obj: object) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return _head(status, "application/json", len(body)) + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _error(status: int, message: str) -> bytes:
    return _json_response(status, {"error": {"message": message, "type": "instant_fault", "code": status}})


def _prompt_tokens(body: dict, chat: bool) -> int:
    """Token ids count exactly; text counts one token per whitespace-separated word (an approximation)."""
    if chat:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        return sum(len(str(m.get("content") or "").split()) for m in messages)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if prompt and isinstance(prompt[0], list):  # a batch of prompts: only the first is answered
            prompt = prompt[0]
        if all(isinstance(t, int) for t in prompt[:1]):
            return len(prompt)
        return len(" ".join(map(str, prompt)).split())
    return len(str(prompt or "").split())


def _events(body: dict, chat: bool, n_out: int, prompt_tokens: int, rid: str) -> list[bytes]:
    """The SSE events of a streamed answer, each a complete ``data: ...\\n\\n`` block."""
    model = json.dumps(str(body.get("model", "")))
    if chat:
        head = (f'{{"id":"{rid}","object":"chat.completion.chunk","created":0,"model":{model},'
                '"choices":[{"index":0,')
        token = head + '"delta":{"content":"x"},"finish_reason":null}]}'
        last = head + '"delta":{"content":"x"},"finish_reason":"length"}]}'
        out = [f"data: {head}" + '"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n']
    else:
        head = (f'{{"id":"{rid}","object":"text_completion","created":0,"model":{model},'
                '"choices":[{"index":0,')
        token = head + '"text":" x","logprobs":null,"finish_reason":null}]}'
        last = head + '"text":" x","logprobs":null,"finish_reason":"length"}]}'
        out = []
    token_event = f"data: {token}\n\n"
    out.extend([token_event] * (n_out - 1))
    if n_out:
        out.append(f"data: {last}\n\n")
    if (body.get("stream_options") or {}).get("include_usage"):
        kind = "chat.completion.chunk" if chat else "text_completion"
        out.append(f'data: {{"id":"{rid}","object":"{kind}","created":0,"model":{model},"choices":[],'
                   f'"usage":{{"prompt_tokens":{prompt_tokens},"completion_tokens":{n_out},'
                   f'"total_tokens":{prompt_tokens + n_out}}}}}\n\n')
    return [e.encode() for e in out]


def _whole(body: dict, chat: bool, n_out: int, prompt_tokens: int, rid: str) -> bytes:
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n_out,
             "total_tokens": prompt_tokens + n_out}
    if chat:
        message = {"role": "assistant", "content": "x" * n_out}
        choice = {"index": 0, "message": message, "finish_reason": "length"}
        return _json_response(200, {"id": rid, "object": "chat.completion", "created": 0,
                                    "model": body.get("model", ""), "choices": [choice], "usage": usage})
    choice = {"index": 0, "text": " x" * n_out, "logprobs": None, "finish_reason": "length"}
    return _json_response(200, {"id": rid, "object": "text_completion", "created": 0,
                                "model": body.get("model", ""), "choices": [choice], "usage": usage})


class _Connection(asyncio.Protocol):
    """One client connection: parse requests as they arrive, answer each in order."""

    def __init__(self, server: InstantServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.trickle: asyncio.Task | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.server.connections.discard(self)
        if self.trickle is not None:
            self.trickle.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.transport is not None and not self.transport.is_closing():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > _MAX_HEAD_BYTES:
                    self._close(_error(400, "request head too large"))
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            parts = head[0].split(" ")
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
            if "transfer-encoding" in headers:
                self._close(_error(411, "chunked request bodies are not supported"))
                return
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            if len(parts) < 2:
                self._close(_error(400, "bad request line"))
                return
            self.server.handle(self, parts[0], parts[1], body)
            if headers.get("connection", "").lower() == "close" and self.transport is not None:
                self.transport.close()

    def _close(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            self.transport.close()


class InstantServer:
    """The instant endpoint's request handling; :meth:`start` binds it to a port on the running loop."""

    def __init__(self, config: InstantConfig | None = None) -> None:
        self.config = config or InstantConfig()
        self.count = 0
        self.connections: set[_Connection] = set()
        self.requests: list[dict] = []  # bodies of the completions received, kept only when record=True
        self.record = False
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: a free port) and return the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, backlog=4096)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def handle(self, conn: _Connection, method: str, path: str, raw: bytes) -> None:
        path = path.split("?", 1)[0]
        write = conn.transport.write
        if path in ("/v1/models", "/models") and method == "GET":
            write(_json_response(200, {"object": "list", "data": [
                {"id": self.config.model, "object": "model", "created": 0, "owned_by": "fleetwise"}]}))
        elif path == "/health" and method == "GET":
            write(_head(200, "text/plain", 0))
        elif path in ("/v1/completions", "/v1/chat/completions") and method == "POST":
            self._complete(conn, path.endswith("/chat/completions"), raw)
        elif path in ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health"):
            write(_error(405, f"{method} is not allowed on {path}"))
        else:
            write(_error(404, f"no route {path}"))

    def _complete(self, conn: _Connection, chat: bool, raw: bytes) -> None:
        n, self.count = self.count, self.count + 1
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise TypeError
        except (ValueError, TypeError):
            conn.transport.write(_error(400, "the body is not a JSON object"))
            return
        if self.record:
            self.requests.append(body)
        fault = body.get("fault") or (self.config.fault(n, body) if self.config.fault else None)
        if fault and self._fault(conn, fault):
            return
        n_out = body.get("max_completion_tokens") if chat else None
        n_out = int(n_out if n_out is not None else body.get("max_tokens") or DEFAULT_MAX_TOKENS)
        prompt_tokens = _prompt_tokens(body, chat)
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{n}"
        if not body.get("stream"):
            conn.transport.write(_whole(body, chat, n_out, prompt_tokens, rid))
            return
        events = _events(body, chat, n_out, prompt_tokens, rid)
        if fault == "close_mid_stream":
            half = b"".join(map(_chunk, events[:len(events) // 2]))
            conn.transport.write(_head(200, "text/event-stream", None) + half)
            conn.transport.close()
            return
        if fault != "no_done":
            events.append(b"data: [DONE]\n\n")
        if self.config.first_token_delay_s or self.config.token_delay_s:
            conn.trickle = asyncio.get_running_loop().create_task(self._trickle(conn, events))
            return
        conn.transport.write(_head(200, "text/event-stream", None) + _chunk(b"".join(events)) + b"0\r\n\r\n")

    def _fault(self, conn: _Connection, fault: str) -> bool:
        """Act out a fault that replaces the answer; False for those that shape a streamed answer."""
        if fault.startswith("http_") and fault[5:].isdigit():
            conn.transport.write(_error(int(fault[5:]), f"injected {fault}"))
        elif fault == "close":
            conn.transport.close()
        elif fault == "hang":
            pass  # the connection stays open and silent until the client gives up
        elif fault in ("close_mid_stream", "no_done"):
            return False
        else:
            conn.transport.write(_error(400, f"unknown fault '{fault}'"))
        return True

    async def _trickle(self, conn: _Connection, events: list[bytes]) -> None:
        transport = conn.transport
        transport.write(_head(200, "text/event-stream", None))
        await asyncio.sleep(self.config.first_token_delay_s)
        for k, event in enumerate(events):
            if k and self.config.token_delay_s:
                await asyncio.sleep(self.config.token_delay_s)
            if transport.is_closing():
                return
            transport.write(_chunk(event))
        transport.write(b"0\r\n\r\n")
        conn.trickle = None


@contextmanager
def serve_in_thread(config: InstantConfig | None = None, host: str = "127.0.0.1",
                    port: int = 0) -> Iterator[InstantServer]:
    """Run an instant endpoint on its own event loop in a daemon thread; yields the server, whose ``url``
    attribute is ``http://host:port``. The server is stopped when the block ends."""
    server = InstantServer(config)
    loop = asyncio.new_event_loop()
    ready: dict = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            ready["port"] = loop.run_until_complete(server.start(host, port))
        except Exception as exc:  # noqa: BLE001 - reported to the caller below
            ready["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=run, name="instant-endpoint", daemon=True)
    thread.start()
    started.wait(10)
    if "error" in ready:
        raise ready["error"]
    server.url = f"http://{host}:{ready['port']}"
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _every(name: str, period: int) -> FaultRule:
    return lambda n, body: name if period and n % period == period - 1 else None


def main(argv: list[str] | None = None) -> None:
    """``python -m fleetwise.replay.instant``: serve until interrupted (uvloop when installed)."""
    p = argparse.ArgumentParser(prog="python -m fleetwise.replay.instant", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="instant")
    p.add_argument("--first-token-delay-s", type=float, default=0.0)
    p.add_argument("--token-delay-s", type=float, default=0.0)
    p.add_argument("--fault", default=None, help="Inject this fault (e.g. http_500) ...")
    p.add_argument("--fault-every", type=int, default=0, help="... into every N-th request.")
    args = p.parse_args(argv)
    config = InstantConfig(args.model, args.first_token_delay_s, args.token_delay_s,
                           _every(args.fault, args.fault_every) if args.fault else None)

    async def serve() -> None:
        server = InstantServer(config)
        port = await server.start(args.host, args.port)
        print(f"instant endpoint on http://{args.host}:{port}", flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    try:
        runner(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
