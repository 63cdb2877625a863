"""The HTTP face of an emulated worker: vLLM's OpenAI-compatible API, /metrics, /health, cloud metadata paths.

Errors follow the OpenAI error object (``{"error": {"message", "type", "param", "code"}}``) with vLLM's statuses:
400 for malformed JSON, invalid parameters and prompts beyond the context window; 404 for an unknown model or
path; 413 for a body over the size limit; 503 while the worker is cold-starting. A failing request never
stops the server.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleetwise.emulate.engine import FINISHED, EmuRequest, EngineStopped
from fleetwise.emulate.tokens import WORDS, chat_tokens, prompt_token_ids, text_tokens, token_id, token_text
from fleetwise.emulate.worker import Worker
from fleetwise.errors import ConfigError

MAX_BODY_BYTES = 16 << 20  # 16 MiB: a 1M-token prompt as ids fits; anything larger is refused, not parsed
SSE_DONE = b"data: [DONE]\n\n"
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8")]


class APIError(Exception):
    """An OpenAI-style error answer."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


def error_object(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    """The OpenAI error body."""
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def retry_headers(status: int) -> dict[str, str]:
    """``Retry-After`` for answers a client should retry (rate limited, starting up)."""
    return {"retry-after": "1"} if status in (429, 503) else {}


def error_response(status: int, message: str, kind: str = "invalid_request_error",
                   param: str | None = None) -> JSONResponse:
    return JSONResponse(error_object(status, message, kind, param), status_code=status,
                        headers=retry_headers(status))


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1)
    temperature: float | None = Field(None, ge=0, le=2)
    return_token_ids: bool | None = None  # vLLM >= 0.10.2: token ids next to the text (prompt's in the first chunk)


class CompletionBody(_Common):
    prompt: str | list[int] | list[str] | list[list[int]]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    if err.get("type") == "json_invalid":
        return f"request body is not valid JSON: {err.get('msg', '')}", None
    return f"invalid value for '{loc}': {err.get('msg', 'invalid')}", loc or None


def _prompt_tokens(body: CompletionBody) -> int:
    p = body.prompt
    if isinstance(p, str):
        return text_tokens(p)
    if not p:
        raise APIError(400, "prompt must not be empty", param="prompt")
    if isinstance(p[0], int):
        return len(p)
    if len(p) != 1:
        raise APIError(400, "the emulator serves one prompt per request (send a batch as separate requests)",
                       param="prompt")
    one = p[0]
    return text_tokens(one) if isinstance(one, str) else len(one)


_TAIL = ',"logprobs":null,"finish_reason":null}]}\n\n'
# Token i's text is WORDS[i % len(WORDS)]: every token event of a stream is its head plus one of these
# (with ``return_token_ids``, the token's id goes in front of the tail, where vLLM puts it).
_TEXT_BODIES = tuple(json.dumps(token_text(i)) + _TAIL for i in range(len(WORDS)))
_CHAT_BODIES = tuple('"content":' + json.dumps(token_text(i)) + "}" + _TAIL for i in range(len(WORDS)))
_TEXT_ID_BODIES = tuple(json.dumps(token_text(i)) + f',"token_ids":[{token_id(i)}]' + _TAIL for i in range(len(WORDS)))
_CHAT_ID_BODIES = tuple('"content":' + json.dumps(token_text(i)) + f'}},"token_ids":[{token_id(i)}]' + _TAIL
                        for i in range(len(WORDS)))


class _Stream:
    """Renders one request's tokens as vLLM's SSE chunks; every token event is pre-rendered once per stream
    (a stream of thousands of tokens cycles through ``len(WORDS)`` texts), so a token costs a tuple lookup.

    With ``token_ids`` (the request's ``return_token_ids``), each chunk's choice carries its ``token_ids`` and
    the first chunk the prompt's ``prompt_token_ids`` (in the choice for completions, at the top for chat, as
    vLLM does) when the prompt was given as ids - the emulator has no tokenizer to turn text into ids."""

    def __init__(self, req: EmuRequest, rid: str, model: str, chat: bool, usage: bool,
                 token_ids: bool = False, prompt_ids: list[int] | None = None) -> None:
        self.req, self.chat, self.usage = req, chat, usage
        created = int(time.time())
        prompt = f'"prompt_token_ids":{json.dumps(prompt_ids)},' if token_ids and prompt_ids is not None else ""
        if chat:
            lead = (f'data: {{"id":"{rid}","object":"chat.completion.chunk","created":{created},'
                    f'"model":{json.dumps(model)},')
            head = lead + '"choices":[{"index":0,"delta":{'
            bodies = _CHAT_ID_BODIES if token_ids else _CHAT_BODIES
            self.first = (lead + prompt + '"choices":[{"index":0,"delta":{"role":"assistant",' + bodies[0]).encode()
        else:
            head = (f'data: {{"id":"{rid}","object":"text_completion","created":{created},'
                    f'"model":{json.dumps(model)},"choices":[{{"index":0,"text":')
            bodies = _TEXT_ID_BODIES if token_ids else _TEXT_BODIES
            self.first = (head[:-len('"text":')] + prompt + '"text":' + bodies[0]).encode()
        self.events = tuple((head + b).encode() for b in bodies)
        self.rid, self.model, self.created = rid, model, created

    def tokens(self, start: int, stop: int) -> bytes:
        events, k = self.events, len(self.events)
        if start == 0:
            return self.first + b"".join(events[i % k] for i in range(1, stop))
        if stop - start == 1:
            return events[start % k]
        return b"".join(events[i % k] for i in range(start, stop))

    def end(self) -> bytes:
        """The finish event, the usage event if asked for, and ``[DONE]``."""
        r = self.req
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        # json.dumps of {"id", "object", "created", "model", "choices", ...} in this key order, spelled out.
        lead = f'data: {{"id":"{self.rid}","object":"{obj}","created":{self.created},"model":{json.dumps(self.model)},'
        empty = '"delta":{}' if self.chat else '"text":""'
        out = [f'{lead}"choices":[{{"index":0,{empty},"logprobs":null,"finish_reason":{json.dumps(r.reason)}}}]}}\n\n']
        if self.usage:
            out.append(f'{lead}"choices":[],"usage":{{"prompt_tokens":{r.prompt_tokens},"completion_tokens":'
                       f'{r.generated},"total_tokens":{r.prompt_tokens + r.generated}}}}}\n\n')
        return "".join(out).encode() + SSE_DONE


def _usage(r: EmuRequest) -> dict:
    return {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.generated,
            "total_tokens": r.prompt_tokens + r.generated}


class _Gone(Exception):
    """The client disconnected before its request body arrived."""


class _WorkerApp(FastAPI):
    """FastAPI, with the completion endpoints called ahead of its routing and middleware (see
    :class:`_Completions`); every other path goes through FastAPI as usual."""

    hot_paths: dict[str, _Completions]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.hot_paths.get(scope["path"])
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _Completions:
    """``POST /v1/completions`` or ``/v1/chat/completions`` as a bare ASGI app.

    These two paths carry all the load (1,000 streams at an H100's speed are ~30k SSE events/s), and
    FastAPI's routing, middleware and ``StreamingResponse`` (a task group and two tasks per stream, five
    wrappers around every event) cost more than the emulation itself. Here a stream is one task plus one
    that waits for the client to disconnect, and a token event is one ``send``.
    """

    def __init__(self, worker: Worker, chat: bool) -> None:
        self.worker, self.chat = worker, chat

    async def __call__(self, scope, receive, send) -> None:
        received = asyncio.get_running_loop().time()
        try:
            body, prompt_tokens = self._parse(await _read_asgi(scope, receive))
            req = await _admit(self.worker, body, prompt_tokens, received)
        except _Gone:
            return
        except APIError as exc:
            await _send_error(send, exc.status, exc.message, exc.kind, exc.param)
            return
        except Exception as exc:  # noqa: BLE001 - a bug: still an error object, and the server keeps serving
            await _send_error(send, 500, f"internal error: {type(exc).__name__}", "internal_server_error")
            return
        rid = f"{'chatcmpl' if self.chat else 'cmpl'}-{self.worker.name}-{req.rid}"
        model = body.model or self.worker.model_id
        ids = bool(body.return_token_ids)
        prompt_ids = prompt_token_ids(getattr(body, "prompt", None)) if ids else None
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            await self._stream(send, receive, req, _Stream(req, rid, model, self.chat, usage, ids, prompt_ids))
        else:
            await self._complete(send, req, rid, model, prompt_ids, ids)

    def _parse(self, raw: bytes) -> tuple[_Common, int]:
        if not self.chat:
            body = _parse(CompletionBody, raw)
            return body, _prompt_tokens(body)
        body = _parse(ChatBody, raw)
        if body.max_completion_tokens is not None and body.max_tokens is None:
            body.max_tokens = body.max_completion_tokens
        return body, chat_tokens([m.model_dump() for m in body.messages])

    async def _complete(self, send, req: EmuRequest, rid: str, model: str, prompt_ids: list[int] | None,
                        ids: bool) -> None:
        try:
            while not req.done:
                await req.wait()
        except BaseException:
            self.worker.engine.abort(req)
            raise
        if req.state != FINISHED:
            await _send_error(send, 503, "worker reclaimed before the request finished", "service_unavailable")
            return
        text = "".join(token_text(i) for i in range(req.generated))
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                   "finish_reason": req.reason} if self.chat else
                  {"index": 0, "text": text, "logprobs": None, "finish_reason": req.reason})
        answer = {"id": rid, "object": "chat.completion" if self.chat else "text_completion",
                  "created": int(time.time()), "model": model, "choices": [choice], "usage": _usage(req)}
        if ids:  # where vLLM puts them: the prompt's at the top for chat, in the choice for completions
            choice["token_ids"] = [token_id(i) for i in range(req.generated)]
            (answer if self.chat else choice)["prompt_token_ids"] = prompt_ids
        await _send_json(send, 200, answer)

    async def _stream(self, send, receive, req: EmuRequest, fmt: _Stream) -> None:
        engine = self.worker.engine
        watcher = asyncio.get_running_loop().create_task(_abort_on_disconnect(receive, engine, req))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            sent = 0
            while True:
                n = req.generated
                if n > sent:  # every token the engine made since the last wake-up, in one write
                    await send({"type": "http.response.body", "body": fmt.tokens(sent, n), "more_body": True})
                    sent = n
                if req.done:
                    break
                await req.wait()
            if req.state == FINISHED:
                await send({"type": "http.response.body", "body": fmt.end(), "more_body": False})
            # else reclaimed or the client went away: the response stays unfinished (no [DONE]), the
            # connection is dropped
        finally:
            watcher.cancel()
            if not req.done:
                engine.abort(req)


async def _admit(worker: Worker, body: _Common, prompt_tokens: int, received: float) -> EmuRequest:
    """Check a request against the worker's state and limits, then hand it to the engine."""
    if body.model is not None and body.model not in worker.model_names:
        raise APIError(404, f"The model `{body.model}` does not exist.", "not_found_error", "model")
    if not worker.ready:
        raise APIError(503, "worker is starting (cold start)" if not worker.reclaimed else "worker reclaimed",
                       "service_unavailable")
    status = worker.injected_error()
    if status is not None:
        raise APIError(status, f"injected failure ({status})", "rate_limit_error" if status == 429 else
                       "server_error")
    room = worker.max_context - prompt_tokens
    max_tokens = body.max_tokens if body.max_tokens is not None else room
    if room < 1 or max_tokens > room:
        raise APIError(400, f"This model's maximum context length is {worker.max_context} tokens. However, you "
                            f"requested {prompt_tokens + max(max_tokens, 0)} tokens ({prompt_tokens} in the "
                            f"prompt, {max(max_tokens, 0)} in the completion). Please reduce the length.",
                       param="max_tokens" if room >= 1 else "prompt")
    if body.min_tokens > max_tokens:
        raise APIError(400, f"min_tokens ({body.min_tokens}) must be <= max_tokens ({max_tokens})",
                       param="min_tokens")
    req = worker.new_request(prompt_tokens, max_tokens, body.min_tokens, body.ignore_eos)
    if req.kv_need > worker.limits.kv_capacity_tokens:
        raise APIError(400, f"the request needs {req.kv_need} tokens of KV cache; the engine holds "
                            f"{worker.limits.kv_capacity_tokens}", param="max_tokens")
    try:
        await worker.submit(req, received)
    except EngineStopped:
        raise APIError(503, "worker reclaimed", "service_unavailable") from None
    return req


async def _abort_on_disconnect(receive, engine, req: EmuRequest) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    engine.abort(req)  # a no-op once the request is done


async def _read_asgi(scope, receive) -> bytes:
    """The request body, refused (413) past :data:`MAX_BODY_BYTES` before or while it arrives."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > MAX_BODY_BYTES:
                raise APIError(413, f"request body of {int(value)} bytes is over the {MAX_BODY_BYTES} byte limit")
            break
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise APIError(413, f"request body is over the {MAX_BODY_BYTES} byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send_json(send, status: int, obj: dict, headers: tuple = ()) -> None:
    """A JSON answer as Starlette's ``JSONResponse`` renders it."""
    body = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-length", str(len(body)).encode()), (b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send, status: int, message: str, kind: str, param: str | None = None) -> None:
    headers = tuple((k.encode(), v.encode()) for k, v in retry_headers(status).items())
    await _send_json(send, status, error_object(status, message, kind, param), headers)


def create_app(worker: Worker) -> FastAPI:
    """The FastAPI application of one worker (the worker is started and stopped with the app)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        if not worker.engine._task:
            worker.start()
        yield
        await worker.stop()

    app = _WorkerApp(title="fleetwise emulated worker", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.worker = worker
    app.hot_paths = {}

    @app.exception_handler(APIError)
    async def _api_error(_r, exc: APIError):
        return error_response(exc.status, exc.message, exc.kind, exc.param)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_r, exc: StarletteHTTPException):
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), kind)

    @app.exception_handler(Exception)
    async def _unexpected(_r, exc: Exception):  # a bug: still an error object, and the server keeps serving
        return error_response(500, f"internal error: {type(exc).__name__}", "internal_server_error")

    @app.get("/health")
    async def health():
        if worker.ready:
            return Response(status_code=200)
        return error_response(503, "worker is starting (cold start)", "service_unavailable")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{
            "id": worker.model_id, "object": "model", "created": int(time.time()), "owned_by": "fleetwise",
            "root": worker.replica.model.hf_id, "parent": None, "max_model_len": worker.max_context}]}

    @app.get("/metrics")
    async def metrics():
        return Response(worker.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    for path, chat in (("/v1/completions", False), ("/v1/chat/completions", True)):
        endpoint = _Completions(worker, chat)
        app.hot_paths[path] = endpoint
        app.router.add_route(path, endpoint, methods=["POST"])  # FastAPI still answers 405 for other methods

    # -- cloud metadata paths (served on the worker's own port) ---------------------------------------
    @app.put("/latest/api/token")
    async def aws_token():
        return PlainTextResponse("fleetwise-emulated-imdsv2-token")

    @app.get("/latest/meta-data/spot/instance-action")
    async def aws_action():
        action = worker.aws_instance_action()
        if action is None:
            return PlainTextResponse("Not Found", status_code=404)
        return JSONResponse(action)

    @app.get("/computeMetadata/v1/instance/preempted")
    async def gcp_preempted(request: Request):
        if request.headers.get("metadata-flavor") != "Google":
            return PlainTextResponse("Missing required header: Metadata-Flavor: Google", status_code=403)
        return PlainTextResponse(worker.gcp_preempted(), headers={"Metadata-Flavor": "Google"})

    @app.get("/metadata/scheduledevents")
    async def azure_events(request: Request):
        if request.headers.get("metadata", "").lower() != "true":
            return JSONResponse({"error": "Bad request. Required metadata header not specified"}, status_code=400)
        return JSONResponse(worker.azure_scheduled_events())

    # -- administration --------------------------------------------------------------------------------
    @app.post("/admin/interrupt")
    async def interrupt(request: Request):
        raw = await _read(request)
        data = _json_object(raw) if raw.strip() else {}
        try:
            notice = worker.interrupt(data.get("notice_s", 120.0), data.get("kind", "aws"))
        except ConfigError as exc:
            raise APIError(400, str(exc)) from None
        return {"kind": notice.kind, "notice_s": notice.notice_s, "reclaim_at_unix": notice.reclaim_unix}

    @app.post("/admin/config")
    async def configure(request: Request):
        data = _json_object(await _read(request))
        try:
            faults = worker.configure(**data)
        except ConfigError as exc:
            raise APIError(400, str(exc)) from None
        return vars(faults)

    return app


async def _read(request: Request) -> bytes:
    """A FastAPI route's body under the same size limit as the completion endpoints."""
    return await _read_asgi(request.scope, request.receive)


def _parse(model: type[BaseModel], raw: bytes):
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        message, param = _validation_message(exc)
        raise APIError(400, message, param=param) from None


def _json_object(raw: bytes) -> dict:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object")
    return data
